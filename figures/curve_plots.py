"""Training curves from logs: train/val loss (nats, left axis) and val_bpb (right axis) against
step or tokens, one colour per log so our run and an official record overlay directly.

>>> frame = training_curve_frame(parse_log("step:1/2 train_loss:6.9\\nstep:2/2 val_loss:6.1 val_bpb:3.6\\n"))
>>> frame[["step", "metric", "value"]].values.tolist()
[[1, 'train_loss', 6.9], [2, 'val_loss', 6.1], [2, 'val_bpb', 3.6]]
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from pgolf.budget.errors import PgolfInputError
from pgolf.figures.formatting import count_formatter
from pgolf.figures.frames import as_frame, numeric, require
from pgolf.figures.style import PALETTE, add_legend, new_axes, set_title, styled
from pgolf.trainer.logs import parse_log

METRICS = ("train_loss", "val_loss", "val_bpb")
LOSS_METRICS = ("train_loss", "val_loss")
STYLES = {"train_loss": {"lw": 1.0, "alpha": 0.7}, "val_loss": {"lw": 1.6, "marker": "o", "ms": 3},
          "val_bpb": {"lw": 1.6, "ls": "--", "marker": "s", "ms": 3}}


def _frames(data) -> pd.DataFrame:
    """A parse_log frame, a list of them, or log paths (str/Path, or a list of them)."""
    if isinstance(data, (str, os.PathLike)):
        return parse_log(data)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and data \
            and all(isinstance(d, (str, os.PathLike)) for d in data):
        return pd.concat([parse_log(d) for d in data], ignore_index=True)
    return as_frame(data)


def training_curve_frame(data, x: str = "step", metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Long rows (source, x, metric, value) of every logged value that will be drawn."""
    if x not in ("step", "tokens"):
        raise PgolfInputError(None, f"x must be step or tokens, not {x!r}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise PgolfInputError(None, f"metrics must be among {', '.join(METRICS)}, not {unknown or 'none'}")
    frame = _frames(data)
    present = [m for m in metrics if m in frame]
    require(frame, (x, *(present[:1] or metrics[:1])), "training-curve plot")
    if "source" not in frame:
        frame["source"] = "log"
    frame = numeric(frame, (x, *present), "training-curve plot")
    lacking = frame.loc[frame[x].isna(), "source"].unique()
    if len(lacking):
        raise PgolfInputError(None, f"training-curve plot: no {x} for {lacking[0]}"
                              + (" (the log states no train_batch_tokens)" if x == "tokens" else ""))
    long = frame.melt(id_vars=["source", x], value_vars=present, var_name="metric", value_name="value")
    long = long.dropna(subset=["value"])
    if not len(long):
        raise PgolfInputError(None, f"training-curve plot: no values for {', '.join(metrics)}")
    long["metric_order"] = long["metric"].map({m: i for i, m in enumerate(METRICS)})
    sources = list(dict.fromkeys(frame["source"]))
    long["source_order"] = long["source"].map({s: i for i, s in enumerate(sources)})
    long = long.sort_values(["source_order", "metric_order", x], kind="stable")
    long = long.drop(columns=["metric_order", "source_order"]).reset_index(drop=True)
    long[x] = long[x].astype("int64")
    long.attrs.update(x=x)
    return long


def _robust_top(values: np.ndarray) -> float | None:
    """Upper limit that keeps the first few steps' huge losses from flattening the rest."""
    if values.size < 8:
        return None
    q = np.quantile(values, 0.95)
    lo = values.min()
    top = q + 0.6 * (q - lo)
    return top if values.max() > top else None


def _legend_handles(sources: list[str], metrics: list[str]) -> list[Line2D]:
    """One entry per metric (its line style); with several logs also one per log (its colour)."""
    if len(sources) == 1:
        return [Line2D([], [], color=PALETTE[METRICS.index(m)], label=m, **STYLES[m]) for m in metrics]
    by_metric = [Line2D([], [], color="0.3", label=m, **STYLES[m]) for m in metrics]
    by_source = [Line2D([], [], color=PALETTE[i % len(PALETTE)], lw=4, label=s) for i, s in enumerate(sources)]
    return by_source + by_metric


def _finding(frame: pd.DataFrame, x: str) -> str:
    """'final val_bpb 1.2172 at step 13,780' (one log) or the log with the lowest final val_bpb."""
    bpb = frame[frame["metric"] == "val_bpb"]
    if not len(bpb):
        return ""
    last = bpb.groupby("source", sort=False).tail(1)
    if len(last) == 1:
        row = last.iloc[0]
        return f"; final val_bpb {row['value']:.4f} at {x} {row[x]:,}"
    best = last.nsmallest(1, "value").iloc[0]
    return f"; lowest final val_bpb: {best['source']} ({best['value']:.4f})"


@styled
def draw_training_curve(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    x = frame.attrs.get("x", "step")
    owned = ax is None
    ax = ax or new_axes(height=5.5)
    sources = list(dict.fromkeys(frame["source"]))
    metrics = list(dict.fromkeys(frame["metric"]))
    right = ax.twinx() if "val_bpb" in metrics and any(m in metrics for m in LOSS_METRICS) else None
    for i, source in enumerate(sources):
        for metric in metrics:
            rows = frame[(frame["source"] == source) & (frame["metric"] == metric)]
            if not len(rows):
                continue
            target = right if (metric == "val_bpb" and right is not None) else ax
            color = PALETTE[METRICS.index(metric)] if len(sources) == 1 else PALETTE[i % len(PALETTE)]
            target.plot(rows[x], rows["value"], color=color, label=f"{source} · {metric}", **STYLES[metric])
    loss_values = frame.loc[frame["metric"].isin(LOSS_METRICS), "value"].to_numpy()
    bpb_values = frame.loc[frame["metric"] == "val_bpb", "value"].to_numpy()
    for axis_, values in ((ax, loss_values if right is not None or "val_bpb" not in metrics else bpb_values),
                          (right, bpb_values)):
        if axis_ is not None and values.size and (top := _robust_top(values)) is not None:
            axis_.set_ylim(values.min() - 0.03 * (top - values.min()), top)
    has_loss = any(m in metrics for m in LOSS_METRICS)
    ax.set_ylabel("loss (nats)" if has_loss else "val_bpb (bits per byte)")
    if right is not None:
        right.set_ylabel("val_bpb (bits per byte)")
        right.grid(False)
        right.spines["right"].set_visible(True)
    if x == "tokens":
        ax.xaxis.set_major_formatter(count_formatter())
        ax.set_xlabel("training tokens")
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, pos=None: f"{v:,.0f}"))
        ax.set_xlabel("step")
    handles = _legend_handles(sources, metrics)
    add_legend(ax, owned, ncol=4, handles=handles)
    if title is None:
        what = " and ".join(filter(None, [", ".join(m for m in metrics if m in LOSS_METRICS),
                                          "val_bpb" if "val_bpb" in metrics else ""]))
        side = " (loss left, val_bpb right)" if right is not None else ""
        logs = "one log" if len(sources) == 1 else f"{len(sources)} logs"
        title = f"{what} vs {x} for {logs}{side}{_finding(frame, x)}"
    set_title(ax, title)
    return ax


def plot_training_curve(data, ax: Axes | None = None, *, x: str = "step", metrics: Sequence[str] = METRICS,
                        title: str | None = None) -> Axes:
    """Loss and val_bpb curves against step or tokens, several logs overlaid. `data`: parse_log
    frame(s) or log path(s). Returns the left (loss) Axes; the val_bpb twin is `ax.figure.axes[-1]`.

    >>> from pgolf.trainer.logs import parse_log
    >>> ax = plot_training_curve(parse_log("step:1/2 train_loss:6.9\\nstep:2/2 val_loss:6.1 val_bpb:3.6\\n"))
    >>> len(ax.lines) > 0
    True
    """
    return draw_training_curve(training_curve_frame(data, x=x, metrics=metrics), ax=ax, title=title)
