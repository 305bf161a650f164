"""Byte-budget figures: headroom vs BPB, bytes per tensor, compressors vs the entropy floor.

Each figure is two functions: `<kind>_frame(data, ...)` computes exactly the rows that will be
drawn (the CSV written beside the figure), and `plot_<kind>(data, ax=None, ...)` draws them.

>>> import pandas as pd
>>> rows = pd.DataFrame({"plan": ["a", "b"], "compressor": ["zlib", "zlib"],
...                      "bytes_total": [15e6, 12e6], "val_bpb": [1.22, 1.25]})
>>> headroom_frame(rows)["on_frontier"].tolist()
[True, True]
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.glossary import CAP_BYTES
from pgolf.figures.formatting import byte_axis, format_bytes
from pgolf.figures.frames import as_frame, module_of, numeric, require
from pgolf.figures.labels import keep_inside, label_points
from pgolf.figures.style import (
    CAP_COLOR, FLOOR_COLOR, PALETTE, PART_COLORS, add_legend, new_axes, set_title, styled, tall_axis,
)

PARTS = ("values_bytes", "scales_bytes", "passthrough_bytes")


def pareto_front(cost_x, cost_y) -> np.ndarray:
    """Mask of points no other point beats on both costs (both minimised).

    >>> pareto_front([1, 2, 3], [3, 1, 2]).tolist()
    [True, True, False]
    """
    cx, cy = np.asarray(cost_x, float), np.asarray(cost_y, float)
    mask = np.zeros(len(cx), bool)
    best = np.inf
    for i in np.lexsort((cy, cx)):
        if cy[i] < best:
            mask[i], best = True, cy[i]
    return mask


# ---------------------------------------------------------------- headroom vs BPB

def significant_front(cost_x, cost_y, half) -> np.ndarray:
    """Of the Pareto points, those that stay on the drawn frontier: walking from the fewest bytes,
    a point is kept only when its BPB is below the last kept one by more than the combined 95%
    half-widths (sqrt(h1^2 + h2^2): independent errors, conservative for positively correlated
    plans). Points are given as (bytes cost, BPB, 95% half-width); NaN half-width = no error known.

    >>> significant_front([1, 2, 3], [1.30, 1.29, 1.20], [0.02, 0.02, 0.02]).tolist()
    [True, False, True]
    """
    cx, cy, h = (np.asarray(a, float) for a in (cost_x, cost_y, half))
    pareto = pareto_front(cx, cy)
    keep = np.zeros(len(cx), bool)
    last = None
    for i in np.lexsort((cy, cx)):
        if pareto[i] and (last is None or cy[last] - cy[i] > np.hypot(np.nan_to_num(h[last]), np.nan_to_num(h[i]))):
            keep[i], last = True, i
    return keep


def headroom_frame(data, x: str = "bytes_total", y: str | None = None, cap: int | None = None) -> pd.DataFrame:
    """One row per plan/compressor: label, x (bytes_total or headroom_bytes), y (val_bpb), cap,
    under_cap, on_frontier (no other row has fewer bytes *and* lower BPB); with an error
    (plan_gap_bpb_lo/_hi, else val_bpb_se), bpb_half95 and frontier_within_noise (a Pareto point
    not significantly better than the cheaper point before it: the frontier skips it)."""
    if x not in ("bytes_total", "headroom_bytes"):
        raise PgolfInputError(None, f"x must be bytes_total or headroom_bytes, not {x!r}")
    frame = as_frame(data)
    y = y or ("val_bpb" if "val_bpb" in frame or "val_bpb_quantized" not in frame else "val_bpb_quantized")
    if "label" not in frame:
        require(frame, ("plan", "compressor"), "headroom plot")
        frame["label"] = frame["plan"].astype(str) + " + " + frame["compressor"].astype(str)
    if cap is None:
        caps = numeric(frame[["cap"]], ["cap"], "headroom plot")["cap"].dropna().unique() if "cap" in frame else []
        if len(caps) > 1:
            raise PgolfInputError(None, f"headroom plot: rows disagree on cap ({', '.join(map(str, caps))})")
        cap = int(caps[0]) if len(caps) else CAP_BYTES
    other = "headroom_bytes" if x == "bytes_total" else "bytes_total"
    if x not in frame and other in frame:  # headroom = cap - bytes_total, either way round
        frame[x] = cap - pd.to_numeric(frame[other], errors="coerce")
    require(frame, (x, y), "headroom plot")
    dup = frame["label"][frame["label"].duplicated()]
    if len(dup):
        raise PgolfInputError(None, f"headroom plot: more than one row for {dup.iloc[0]!r}")
    keep = [c for c in ("label", "plan", "compressor") if c in frame]
    if {"plan_gap_bpb", "plan_gap_bpb_hi"} <= set(frame):
        frame["bpb_half95"] = pd.to_numeric(frame["plan_gap_bpb_hi"], errors="coerce") \
            - pd.to_numeric(frame["plan_gap_bpb"], errors="coerce")
    elif "val_bpb_se" in frame:
        frame["bpb_half95"] = 1.96 * pd.to_numeric(frame["val_bpb_se"], errors="coerce")
    errs = ["bpb_half95"] if "bpb_half95" in frame else []
    out = numeric(frame[keep + [x, y] + errs], (x, y, *errs), "headroom plot").dropna(subset=[x, y])
    out = out.reset_index(drop=True)
    if not len(out):
        raise PgolfInputError(None, f"headroom plot: no row has both {x} and {y}")
    out["cap"] = int(cap)
    out["under_cap"] = out[x] < cap if x == "bytes_total" else out[x] > 0
    bytes_cost = out[x] if x == "bytes_total" else -out[x]
    out["on_frontier"] = pareto_front(bytes_cost, out[y])
    if errs:
        out["frontier_within_noise"] = out["on_frontier"] & ~significant_front(bytes_cost, out[y], out["bpb_half95"])
    out.attrs.update(x=x, y=y, errors=bool(errs))
    return out


@styled
def draw_headroom(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    x, y, cap = frame.attrs["x"], frame.attrs["y"], int(frame["cap"].iloc[0])
    owned = ax is None
    ax = ax or new_axes()
    ok, over = frame[frame["under_cap"]], frame[~frame["under_cap"]]
    ax.scatter(ok[x], ok[y], s=36, color=PALETTE[0], zorder=3, label="under the cap")
    if len(over):
        ax.scatter(over[x], over[y], s=44, marker="X", color=CAP_COLOR, zorder=3, label="over the cap")
    errors = frame.attrs.get("errors", False)
    front = frame[frame["on_frontier"]]
    frontier_label = "Pareto frontier"
    if errors:
        ax.errorbar(frame[x], frame[y], yerr=frame["bpb_half95"].fillna(0).clip(lower=0), fmt="none",
                    ecolor="0.45", elinewidth=0.8, capsize=2, zorder=2, label="95% interval (vs unquantized)")
        front = front[~front["frontier_within_noise"]]
        dropped = int(frame["frontier_within_noise"].sum())
        frontier_label = ("Pareto frontier (significant steps only)" if len(front) > 1 else
                          "frontier within noise: no step significant")
        if dropped and len(front) > 1:
            frontier_label += f"; {dropped} within noise skipped"
    front = front.sort_values(x)
    (frontier,) = ax.plot(front[x], front[y], color="0.35", ls="--", lw=1.0, zorder=2, label=frontier_label,
                          marker="o" if len(front) == 1 else None, mfc="none")
    cap_x = cap if x == "bytes_total" else 0
    cap_line = ax.axvline(cap_x, color=CAP_COLOR, lw=1.2, zorder=1, label=f"cap {format_bytes(cap)}")
    lo, hi = min(frame[x].min(), cap_x), max(frame[x].max(), cap_x)
    pad = 0.08 * (hi - lo or abs(hi) or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    span = frame["bpb_half95"].fillna(0).clip(lower=0) if errors else 0.0
    ylo, yhi = (frame[y] - span).min(), (frame[y] + span).max()
    ypad = 0.12 * (yhi - ylo or abs(yhi) or 1.0)
    ax.set_ylim(ylo - ypad, yhi + ypad)
    byte_axis(ax.xaxis, max(abs(lo), abs(hi)), what=x)
    ax.set_ylabel(f"{y} after roundtrip (bits per byte)" if y in ("val_bpb", "val_bpb_quantized") else y)
    # "best": the corner with fewest points and lines under it (the labels then keep clear of it)
    legend = ax.legend(loc="best")
    if title is None:
        best = ok.nsmallest(1, y)
        found = f"; lowest {y} under the cap: {best['label'].iloc[0]} ({best[y].iloc[0]:.4f})" if len(best) else ""
        title = f"{y} vs {x} for {len(frame)} plan × compressor pairs{found}"
    set_title(ax, title)
    first = np.flatnonzero(frame["on_frontier"].to_numpy())
    label_points(ax, frame[x].tolist(), frame[y].tolist(), frame["label"].tolist(), first=first, fontsize=8,
                 avoid=[legend], lines=[frontier, cap_line], owned=owned)
    return ax


def plot_headroom_vs_bpb(data, ax: Axes | None = None, *, x: str = "bytes_total", y: str | None = None,
                         cap: int | None = None, title: str | None = None) -> Axes:
    """Each plan/compressor as a point (x = bytes_total or headroom_bytes, y = val_bpb after the
    roundtrip), the cap as a vertical line, the Pareto frontier dashed, every point labelled.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"plan": ["a", "b"], "compressor": ["zlib", "zlib"],
    ...                      "bytes_total": [15e6, 12e6], "val_bpb": [1.22, 1.25]})
    >>> len(plot_headroom_vs_bpb(rows).collections) > 0
    True
    """
    return draw_headroom(headroom_frame(data, x=x, y=y, cap=cap), ax=ax, title=title)


# ---------------------------------------------------------------- bytes per tensor

def tensor_bytes_frame(data, group: str = "tensor", depth: int = 3, top: int | None = None) -> pd.DataFrame:
    """Rows per tensor (or module group): values_bytes, scales_bytes, passthrough_bytes (payload of
    passthrough tensors), entropy_bytes and compressed_bytes where given; largest first; beyond
    `top` rows the rest are summed into one 'other' row. Tied tensors are counted once."""
    if group not in ("tensor", "module"):
        raise PgolfInputError(None, f"group must be tensor or module, not {group!r}")
    frame = as_frame(data)
    require(frame, ("name", "kind", "values_bytes", "scales_bytes", "payload_bytes"), "tensor-bytes plot")
    if "tied_to" in frame:
        frame = frame[frame["tied_to"].isna() | (frame["tied_to"].astype(str) == "")]
    extras = [c for c in ("entropy_bytes", "compressed_bytes") if c in frame and frame[c].notna().any()]
    frame = numeric(frame, ("values_bytes", "scales_bytes", "payload_bytes"), "tensor-bytes plot", complete=True)
    frame = numeric(frame, extras, "tensor-bytes plot")
    passthrough = frame["kind"].astype(str) == "passthrough"
    frame["passthrough_bytes"] = frame["payload_bytes"].where(passthrough, 0.0)
    frame.loc[passthrough, ["values_bytes", "scales_bytes"]] = 0.0
    frame["label"] = frame["name"].astype(str) if group == "tensor" else frame["name"].astype(str).map(
        lambda n: module_of(n, depth))
    frame["tensors"] = 1
    sums = {c: (c, lambda s: s.sum(min_count=1)) for c in (*PARTS, "payload_bytes", *extras)}
    out = frame.groupby("label", sort=False).agg(tensors=("tensors", "sum"), **sums).reset_index()
    out = out.sort_values("payload_bytes", ascending=False, kind="stable").reset_index(drop=True)
    if top is not None and len(out) > top:
        rest = out.iloc[top:]
        other = {"label": f"other ({int(rest['tensors'].sum())} tensors)", "tensors": int(rest["tensors"].sum())}
        other.update({c: rest[c].sum(min_count=1) for c in (*PARTS, "payload_bytes", *extras)})
        out = pd.concat([out.iloc[:top], pd.DataFrame([other])], ignore_index=True)
    plans = frame["plan"].dropna().unique() if "plan" in frame else []
    out.attrs.update(group=group, plan=str(plans[0]) if len(plans) == 1 else None)
    return out


@styled
def draw_tensor_bytes(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    owned = ax is None
    ax = ax or new_axes(rows=len(frame) + 2)
    ypos = np.arange(len(frame))[::-1]  # largest at the top
    left = np.zeros(len(frame))
    for part in PARTS:
        values = frame[part].to_numpy(float)
        if np.any(values > 0):
            ax.barh(ypos, values, left=left, height=0.72, color=PART_COLORS[part], label=part.replace("_bytes", ""))
        left += values
    if "entropy_bytes" in frame:
        ax.scatter(frame["entropy_bytes"], ypos, marker="|", s=160, linewidths=2.0, color=FLOOR_COLOR,
                   zorder=3, label="entropy floor (order-0)")
    if "compressed_bytes" in frame:
        ax.scatter(frame["compressed_bytes"], ypos, marker="D", s=18, color="white", edgecolors=FLOOR_COLOR,
                   zorder=4, label="compressed alone")
    ax.set_yticks(ypos, frame["label"])
    ax.set_ylim(-0.7, len(frame) - 0.3)
    ax.grid(axis="y", visible=False)
    peak = np.nanmax([left.max(), *(frame[c].max() for c in ("entropy_bytes", "compressed_bytes") if c in frame)])
    ax.set_xlim(0, peak * 1.04)
    byte_axis(ax.xaxis, peak, what="payload bytes")
    tall_axis(ax)
    add_legend(ax, owned, ncol=5)
    if title is None:
        unit = "tensor" if frame.attrs.get("group", "tensor") == "tensor" else "module group"
        plan = frame.attrs.get("plan")
        title = (f"Payload bytes per {unit}: values + scales + passthrough"
                 f"{f' under plan {plan}' if plan else ''}, with the order-0 entropy floor")
    set_title(ax, title)
    return ax


def plot_tensor_bytes(data, ax: Axes | None = None, *, group: str = "tensor", depth: int = 3,
                      top: int | None = None, title: str | None = None) -> Axes:
    """Stacked horizontal bars of values / scales / passthrough bytes per tensor (group="module":
    per module prefix such as blocks.3.attn), entropy floor as |, compressed-alone size as ◇.

    >>> import torch
    >>> from pgolf.budget.exact.measure import measure_budget
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> len(plot_tensor_bytes(measure_budget(sd, "int6", "zlib")).patches) > 0
    True
    """
    return draw_tensor_bytes(tensor_bytes_frame(data, group=group, depth=depth, top=top), ax=ax, title=title)


# ---------------------------------------------------------------- compressors vs entropy floor

RELATIVE = {"ratio": "ratio_to_entropy", "bytes": "bytes_over_entropy"}


def compressors_frame(data, relative: str = "ratio") -> pd.DataFrame:
    """One row per scheme × compressor (summed over tensors): compressed_bytes, entropy_bytes,
    ratio_to_entropy = compressed / entropy and bytes_over_entropy = compressed - entropy; the bars
    show the first (relative="ratio") or the second (relative="bytes")."""
    if relative not in RELATIVE:
        raise PgolfInputError(None, f"relative must be ratio or bytes, not {relative!r}")
    frame = as_frame(data)
    require(frame, ("scheme", "compressor", "compressed_bytes", "entropy_bytes"), "compressors plot")
    frame = numeric(frame, ("compressed_bytes", "entropy_bytes"), "compressors plot", complete=True)
    out = frame.groupby(["scheme", "compressor"], sort=False)[["compressed_bytes", "entropy_bytes"]].sum().reset_index()
    ratio = out["compressed_bytes"] / out["entropy_bytes"].where(out["entropy_bytes"] > 0)
    if not np.isfinite(ratio).all():  # 0, negative, or so small (5e-324) the ratio overflows
        bad = out[~np.isfinite(ratio)].iloc[0]
        raise PgolfInputError(None, f"compressors plot: entropy_bytes is {bad['entropy_bytes']:g} for "
                                    f"{bad['scheme']} + {bad['compressor']}: no ratio to it")
    out["ratio_to_entropy"] = ratio
    out["bytes_over_entropy"] = out["compressed_bytes"] - out["entropy_bytes"]
    out.attrs.update(relative=relative)
    return out


@styled
def draw_compressors(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    relative = frame.attrs.get("relative", "ratio")
    column = RELATIVE[relative]
    schemes = list(dict.fromkeys(frame["scheme"]))
    compressors = list(dict.fromkeys(frame["compressor"]))
    ax = ax or new_axes(height=5.0, width=max(7.0, min(14.0, 2.0 + 0.5 * len(frame))))
    width = 0.8 / len(compressors)
    bar_texts = []
    for j, comp in enumerate(compressors):
        rows = frame[frame["compressor"] == comp]
        xs = [schemes.index(s) - 0.4 + width * (j + 0.5) for s in rows["scheme"]]
        bars = ax.bar(xs, rows[column], width=width * 0.92, color=PALETTE[j % len(PALETTE)], label=comp)
        if len(frame) <= 40:  # values on the bars; a white backing keeps them readable over the floor line
            fmt = "{:.2f}×" if relative == "ratio" else "{:,.0f}"
            bar_texts += ax.bar_label(bars, labels=[fmt.format(v) for v in rows[column]], rotation=90, padding=2,
                                      fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.4,
                                                        "alpha": 0.85})
    floor = 1.0 if relative == "ratio" else 0.0
    ax.axhline(floor, color=FLOOR_COLOR, lw=1.0, ls="--", label="order-0 entropy floor")
    ax.set_xticks(range(len(schemes)), schemes, rotation=30 if len(schemes) > 5 else 0,
                  ha="right" if len(schemes) > 5 else "center")
    ax.grid(axis="x", visible=False)
    top = frame[column].max()
    if relative == "ratio":
        ax.set_ylim(0, max(top, 1.0) * 1.18)
        ax.set_ylabel("compressed bytes ÷ entropy floor")
    else:
        ax.set_ylim(min(0, frame[column].min()) * 1.18, max(top, 0) * 1.18 or 1)
        byte_axis(ax.yaxis, frame[column].abs().max(), what="compressed − entropy floor")
    ax.set_xlabel("scheme")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="compressor")
    if title is None:
        what = ("Compressed bytes ÷ order-0 entropy floor" if relative == "ratio"
                else "Bytes above the order-0 entropy floor")
        title = f"{what} per scheme × compressor (below the floor: the compressor exploits context)"
    set_title(ax, title)
    keep_inside(ax, bar_texts)
    return ax


def plot_compressors_vs_entropy(data, ax: Axes | None = None, *, relative: str = "ratio",
                                title: str | None = None) -> Axes:
    """Grouped bars: for each scheme, each compressor's bytes relative to the entropy floor.

    >>> import torch
    >>> from pgolf.budget.exact.compare import compressor_frame
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> ax = plot_compressors_vs_entropy(compressor_frame(sd, ["int6"], ["zlib", "lzma"]))
    >>> len(ax.patches) + len(ax.lines) + len(ax.collections) > 0
    True
    """
    return draw_compressors(compressors_frame(data, relative=relative), ax=ax, title=title)
