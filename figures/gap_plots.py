"""Quality figures: the per-tensor quantization gap and the bytes-for-BPB exchange rate.

>>> import pandas as pd
>>> rows = pd.DataFrame({"name": ["a", "b"], "scheme": ["int6", "int6"], "scheme_next": ["int8", "int8"],
...                      "delta_bytes": [50_000, 20_000], "delta_bpb": [-0.002, -0.0001]})
>>> exchange_rate_frame(rows)[["name", "exchange_bpb_per_kb", "within_budget"]].values.tolist()
[['a', 4e-05, True], ['b', 5e-06, True]]
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from pgolf.budget.errors import PgolfInputError
from pgolf.figures.formatting import format_bytes, scaled_formatter
from pgolf.figures.frames import as_frame, numeric, require
from pgolf.figures.style import FLOOR_COLOR, PALETTE, add_legend, new_axes, set_title, styled, tall_axis

NOISE_COLOR = "0.78"  # a difference whose 95% interval contains 0

BUDGET_BYTES = 100_000


# ---------------------------------------------------------------- per-tensor quantization gap

SYMLOG_RATIO = 8.0  # the largest bar this many times the next tensor's: symlog axis, or the rest are slivers


def quant_gap_frame(data, column: str = "gap_only_this_bpb", top: int | None = 30) -> pd.DataFrame:
    """Rows name, scheme, <column>, its 95% interval <column>_lo/_hi and <column>_significant
    (when given), proxy_gap_bpb (when given) for the `top` tensors with the largest gap under any
    scheme, largest first."""
    frame = as_frame(data)
    require(frame, ("name", column), "quant-gap plot")
    if "scheme" not in frame:
        frame["scheme"] = frame["plan"] if "plan" in frame else "plan"
    proxy = "proxy_gap_bpb" if "proxy_gap_bpb" in frame and frame["proxy_gap_bpb"].notna().any() else None
    bounds = [f"{column}_lo", f"{column}_hi"] if {f"{column}_lo", f"{column}_hi"} <= set(frame) else []
    sig = f"{column}_significant"
    if sig in frame:
        frame[sig] = frame[sig].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    cols = ["name", "scheme", column] + bounds + ([sig] if sig in frame else []) + ([proxy] if proxy else [])
    frame = numeric(frame[cols], [column] + bounds + ([proxy] if proxy else []), "quant-gap plot")
    frame = frame.dropna(subset=[column])
    if not len(frame):
        raise PgolfInputError(None, f"quant-gap plot: no values in column {column}")
    if frame.duplicated(["name", "scheme"]).any():
        raise PgolfInputError(None, "quant-gap plot: more than one row per name and scheme")
    order = frame.groupby("name", sort=False)[column].max().sort_values(ascending=False, kind="stable")
    names = list(order.index[:top] if top else order.index)
    out = frame[frame["name"].isin(names)].copy()
    out["rank"] = out["name"].map({n: i for i, n in enumerate(names)})
    schemes = list(dict.fromkeys(frame["scheme"]))
    out["scheme_order"] = out["scheme"].map({s: i for i, s in enumerate(schemes)})
    out = out.sort_values(["rank", "scheme_order"], kind="stable").drop(columns="scheme_order").reset_index(drop=True)
    out.attrs.update(column=column, proxy=proxy, total=int(order.size), bounds=bool(bounds),
                     significant=sig if sig in out else None)
    return out


def symlog_threshold(values) -> float | None:
    """Linear range of a symlog axis when one value dwarfs the rest (>= SYMLOG_RATIO x the next
    largest), else None: everything but the giant stays on the linear part.

    >>> symlog_threshold([0.04, 0.001, 0.0008]), symlog_threshold([0.002, 0.001])
    (0.001, None)
    """
    v = np.sort(np.abs(np.asarray(values, float)[np.isfinite(values)]))[::-1]
    if v.size < 2 or v[1] <= 0 or v[0] < SYMLOG_RATIO * v[1]:
        return None
    return float(max(v[1], v[0] * 1e-6))  # at most 6 decades of log: a 5e-324 runner-up overflows the axis


@styled
def draw_quant_gap(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    column, proxy = frame.attrs["column"], frame.attrs.get("proxy")
    names = list(dict.fromkeys(frame["name"]))
    schemes = list(dict.fromkeys(frame["scheme"]))
    owned = ax is None
    ax = ax or new_axes(rows=len(names) * max(1, 0.6 * len(schemes)) + 2)
    height = 0.8 / len(schemes)
    sig, bounds = frame.attrs.get("significant"), frame.attrs.get("bounds")
    noise = 0
    for j, scheme in enumerate(schemes):
        rows = frame[frame["scheme"] == scheme]
        ys = (len(names) - 1 - rows["rank"].to_numpy()) + 0.4 - height * (j + 0.5)
        quiet = ~rows[sig].to_numpy(bool) if sig else np.zeros(len(rows), bool)
        noise += int(quiet.sum())
        colors = [NOISE_COLOR if q else PALETTE[j % len(PALETTE)] for q in quiet]
        ax.barh(ys, rows[column], height=height * 0.9, color=colors, label=scheme)
        if bounds:
            v = rows[column].to_numpy(float)
            err = np.vstack([v - rows[f"{column}_lo"].to_numpy(float), rows[f"{column}_hi"].to_numpy(float) - v])
            ax.errorbar(v, ys, xerr=np.clip(err, 0, None), fmt="none", ecolor="0.15", elinewidth=0.8, capsize=2,
                        zorder=4, label="95% interval" if j == 0 else None)
        if proxy:
            ax.scatter(rows[proxy], ys, marker="D", s=22, color="white", edgecolors=FLOOR_COLOR, zorder=3,
                       label="gradient proxy" if j == 0 else None)
    if noise:
        ax.barh([np.nan], [np.nan], color=NOISE_COLOR, label="grey: within noise (95% interval contains 0)")
    ax.axvline(0, color=FLOOR_COLOR, lw=0.8)
    ax.set_yticks(np.arange(len(names))[::-1], names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.grid(axis="y", visible=False)
    peak = np.nanmax(np.abs(frame[[c for c in (column, proxy) if c]].to_numpy(float)))
    per_name = frame.groupby("name", sort=False)[column].max()
    linthresh = symlog_threshold(per_name.to_numpy(float))
    if linthresh is not None:
        # one tensor (the tied embedding) dwarfs the rest: linear up to the next largest bar, log beyond
        if bounds:
            linthresh = max(linthresh, float(frame.loc[frame[column].abs() <= linthresh, f"{column}_hi"].abs().max()))
        ax.set_xscale("symlog", linthresh=linthresh, linscale=3.0)
        ax.plot([], [], ls="none", label=f"x axis symlog: linear within ±{linthresh * 1e3:.2g} mBPB, log beyond")
    if linthresh is not None:  # decade ticks in plain milli-BPB (0.1, 1, 10, 100), never 10^k
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 1e3:,.4g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{column} (ΔBPB in milli-BPB, symlog axis; 1 mBPB = 0.001 bits per byte)")
    elif peak < 0.05:  # gaps are small in BPB: milli-BPB ticks (2, 4, 6) read at a glance; data stays BPB
        ax.xaxis.set_major_formatter(scaled_formatter(1e-3))
        ax.set_xlabel(f"{column} (ΔBPB in milli-BPB; 1 mBPB = 0.001 bits per byte)")
    else:
        ax.set_xlabel(f"{column} (ΔBPB, bits per byte)")
    tall_axis(ax)
    # a scheme's legend patch in its own colour, even when its first bar is grey (within noise)
    handles, labels = ax.get_legend_handles_labels()
    handles = [Patch(facecolor=PALETTE[schemes.index(lab) % len(PALETTE)], label=lab) if lab in schemes else h
               for h, lab in zip(handles, labels)]
    add_legend(ax, owned, ncol=min(3, len(schemes) + 1), handles=handles)
    if title is None:
        shown = len(names)
        total = frame.attrs.get("total", shown)
        subset = f"top {shown} of {total} tensors" if total > shown else f"{shown} tensors"
        title = f"Quantization gap per tensor ({column}) under {', '.join(map(str, schemes))}: {subset}, largest first"
        if proxy:
            title += "; ◇ = gradient proxy"
        if noise:
            title += f"; {noise} within noise (grey)"
    set_title(ax, title)
    return ax


def plot_quant_gap(data, ax: Axes | None = None, *, column: str = "gap_only_this_bpb", top: int | None = 30,
                   title: str | None = None) -> Axes:
    """Horizontal bars of ΔBPB per tensor (one bar per scheme), sorted, proxy gap as ◇ markers.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"name": ["a", "b"], "scheme": ["int4", "int4"], "gap_only_this_bpb": [0.02, 0.001]})
    >>> len(plot_quant_gap(rows).patches)
    2
    """
    return draw_quant_gap(quant_gap_frame(data, column=column, top=top), ax=ax, title=title)


# ---------------------------------------------------------------- exchange rate

def exchange_rate_frame(data, top: int | None = 25, budget_bytes: int = BUDGET_BYTES) -> pd.DataFrame:
    """Each tensor's next precision step, ranked by exchange rate.

    exchange_bpb_per_kb = -bpb_per_kb: BPB gained per 1,000 bytes spent (upgrades, delta_bytes > 0;
    best first) or BPB lost per 1,000 bytes saved (downgrades; cheapest first). within_budget marks
    the greedy choice of the next `budget_bytes`: upgrades in rank order (one step per tensor) until
    the bytes run out; downgrades until they free that many bytes. With delta_bpb_significant, a
    step within noise ranks as rate 0 (no gain, no loss; within_noise True); an upgrade is bought
    only when it gains (rate > 0).
    """
    frame = as_frame(data)
    require(frame, ("name", "scheme", "scheme_next", "delta_bytes", "delta_bpb"), "exchange-rate plot")
    frame = numeric(frame, ("delta_bytes", "delta_bpb"), "exchange-rate plot")
    frame = frame[frame["delta_bytes"] != 0].dropna(subset=["delta_bytes", "delta_bpb"])
    if not len(frame):
        raise PgolfInputError(None, "exchange-rate plot: no step changes any bytes")
    frame["bpb_per_kb"] = frame["delta_bpb"] / (frame["delta_bytes"] / 1000.0)
    frame["exchange_bpb_per_kb"] = -frame["bpb_per_kb"]
    frame["direction"] = np.where(frame["delta_bytes"] > 0, "upgrade", "downgrade")
    sig = frame["delta_bpb_significant"] if "delta_bpb_significant" in frame else pd.Series(True, frame.index)
    frame["within_noise"] = ~sig.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)
    frame["rank_rate"] = frame["exchange_bpb_per_kb"].where(~frame["within_noise"], 0.0)
    parts = []
    for direction, best_first in (("upgrade", False), ("downgrade", True)):
        rows = frame[frame["direction"] == direction].sort_values("rank_rate", ascending=best_first, kind="stable")
        rows = rows.head(top) if top else rows
        moved, chosen, within = 0.0, set(), []
        for name, delta, rate in zip(rows["name"], rows["delta_bytes"].abs(), rows["rank_rate"]):
            fits = moved + delta <= budget_bytes if direction == "upgrade" else moved < budget_bytes
            # bytes are spent only on an upgrade that gains: not on noise, not on a measured loss
            take = name not in chosen and fits and not (direction == "upgrade" and rate <= 0)
            if take:
                moved += delta
                chosen.add(name)
            within.append(take)
        rows = rows.assign(within_budget=within, cumulative_bytes=rows["delta_bytes"].abs().where(within, 0).cumsum())
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True)
    out["label"] = out["name"].astype(str) + "  " + out["scheme"].astype(str) + " → " + out["scheme_next"].astype(str)
    cols = ["direction", "label", "name", "scheme", "scheme_next", "delta_bytes", "delta_bpb", "bpb_per_kb",
            "exchange_bpb_per_kb", "within_noise", "within_budget", "cumulative_bytes"]
    out = out[cols]
    out.attrs.update(budget_bytes=int(budget_bytes), within_noise=int(out["within_noise"].sum()))
    return out


@styled
def draw_exchange_rate(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    budget = frame.attrs.get("budget_bytes", BUDGET_BYTES)
    up, down = frame[frame["direction"] == "upgrade"], frame[frame["direction"] == "downgrade"]
    gap = 1 if len(up) and len(down) else 0
    rows = len(up) + len(down) + gap
    owned = ax is None
    ax = ax or new_axes(rows=rows + 2)
    y_up = rows - 1 - np.arange(len(up))
    y_down = len(down) - 1 - np.arange(len(down))
    for rows_, ys, color, name in ((up, y_up, PALETTE[2], "upgrade: BPB gained per KB spent"),
                                   (down, y_down, PALETTE[3], "downgrade: BPB lost per KB saved")):
        if not len(rows_):
            continue
        chosen = rows_["within_budget"].to_numpy(bool)
        noise = rows_["within_noise"].to_numpy(bool)
        real = ~noise
        ax.barh(ys[chosen & real], rows_["exchange_bpb_per_kb"][chosen & real], height=0.72, color=color,
                label=f"{name} (within {format_bytes(budget)})")
        if (~chosen & real).any():
            ax.barh(ys[~chosen & real], rows_["exchange_bpb_per_kb"][~chosen & real], height=0.72, color=color,
                    alpha=0.35, label=f"{name.split(':')[0]}: beyond {format_bytes(budget)}")
    noisy = frame["within_noise"].to_numpy(bool)
    if noisy.any():
        ys_all = np.concatenate([y_up, y_down])
        ax.barh(ys_all[noisy], frame["exchange_bpb_per_kb"][noisy], height=0.72, color=NOISE_COLOR,
                label="within noise: ranked as no gain")
    ax.set_yticks(np.concatenate([y_up, y_down]), list(up["label"]) + list(down["label"]))
    ax.set_ylim(-0.7, rows - 0.3)
    if gap:
        ax.axhline(len(down) - 0.5 + 0.5 * gap, color="0.5", lw=0.8)
    ax.grid(axis="y", visible=False)
    ax.axvline(0, color=FLOOR_COLOR, lw=0.8)
    tall_axis(ax)
    peak = frame["exchange_bpb_per_kb"].abs().max()
    if peak < 0.01:  # rates are tiny in BPB: show milli-BPB, keep the data in BPB
        ax.xaxis.set_major_formatter(scaled_formatter(1e-3))
        ax.set_xlabel("ΔBPB per KB (milli-BPB per 1,000 bytes; 1 mBPB = 0.001 BPB)")
    else:
        ax.set_xlabel("ΔBPB per KB (BPB per 1,000 bytes)")
    add_legend(ax, owned, ncol=2)
    if title is None:
        title = (f"Exchange rate (ΔBPB per KB) of each tensor's next precision step: where do the next "
                 f"{format_bytes(budget)} go (solid = greedy choice)")
        if noisy.any():
            title += f"; {int(noisy.sum())} steps within noise (grey, ranked as no gain)"
    set_title(ax, title)
    return ax


def plot_exchange_rate(data, ax: Axes | None = None, *, top: int | None = 25, budget_bytes: int = BUDGET_BYTES,
                       title: str | None = None) -> Axes:
    """Ranked bars: BPB gained per KB for upgrades, BPB lost per KB saved for downgrades.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"name": ["a", "b"], "scheme": ["int6", "int6"], "scheme_next": ["int8", "int8"],
    ...                      "delta_bytes": [50_000, 20_000], "delta_bpb": [-0.002, -0.0001]})
    >>> len(plot_exchange_rate(rows).patches)
    2
    """
    return draw_exchange_rate(exchange_rate_frame(data, top=top, budget_bytes=budget_bytes), ax=ax, title=title)
