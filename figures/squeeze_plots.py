"""`pgolf squeeze` as a figure: bytes per tensor relative to its order-0 floor, one marker row per codec.

>>> import torch
>>> from pgolf.budget.exact.squeeze import squeeze
>>> r = squeeze({"w": torch.randn(300, 256), "v": torch.randn(256, 300)}, "int6", codecs=("zlib", "ans"))
>>> f = squeeze_frame(r)
>>> sorted(f["codec"].unique()), bool((f["ratio_to_entropy"] > 1).all())
(['ans', 'zlib'], True)
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.axes import Axes

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.squeeze import CODEC_COLUMNS
from pgolf.figures.frames import as_frame, numeric, require
from pgolf.figures.style import FLOOR_COLOR, PALETTE, new_axes, set_title, styled


def squeeze_frame(data, top: int | None = 30) -> pd.DataFrame:
    """One row per tensor x codec: name, codec, bytes, entropy_bytes, ratio_to_entropy (bytes / floor);
    the `top` tensors with the largest floor (None: all)."""
    frame = as_frame(data)
    require(frame, ("name", "entropy_bytes"), "squeeze plot")
    frame = numeric(frame, ["entropy_bytes"] + [c for c in CODEC_COLUMNS.values() if c in frame], "squeeze plot")
    frame = frame[frame["entropy_bytes"] > 0]
    if top is not None:
        frame = frame.nlargest(top, "entropy_bytes")
    rows = []
    for spec, col in CODEC_COLUMNS.items():
        if col not in frame:
            continue
        for name, b, h in zip(frame["name"], frame[col], frame["entropy_bytes"]):
            if pd.notna(b) and math.isfinite(float(b) / float(h)):  # a floor of 5e-324 bytes: no ratio
                rows.append({"name": name, "codec": spec, "bytes": int(b), "entropy_bytes": float(h),
                             "ratio_to_entropy": float(b) / float(h)})
    if not rows:
        raise PgolfInputError(None, "squeeze plot: no codec columns (zlib_bytes, ans_bytes, ...) in the input")
    return pd.DataFrame(rows)


@styled
def draw_squeeze(frame: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    names = list(dict.fromkeys(frame["name"]))
    ax = ax or new_axes(height=5.0, width=max(9.0, min(14.0, 2.0 + 0.35 * len(names))))
    for j, codec in enumerate(dict.fromkeys(frame["codec"])):
        rows = frame[frame["codec"] == codec]
        ax.plot([names.index(n) for n in rows["name"]], rows["ratio_to_entropy"], "o", ms=4,
                color=PALETTE[j % len(PALETTE)], label=codec)
    ax.axhline(1.0, color=FLOOR_COLOR, lw=1.0, ls="--", label="order-0 floor")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("bytes ÷ order-0 entropy floor")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="codec")
    set_title(ax, title or "Bytes per tensor relative to its order-0 floor, per codec")
    return ax


def plot_squeeze(data, ax: Axes | None = None, *, top: int | None = 30, title: str | None = None) -> Axes:
    """Markers per tensor and codec at bytes / floor (a SqueezeReport, its frame or its JSON).

    >>> import torch, pgolf as pg
    >>> r = pg.squeeze({"w": torch.randn(300, 256)}, "int6", codecs=("zlib", "ans"))
    >>> ax = pg.plot_squeeze(r)
    >>> len(ax.get_yticklabels()) >= 1
    True
    """
    return draw_squeeze(squeeze_frame(data, top=top), ax=ax, title=title)
