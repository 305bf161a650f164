"""Write a figure in pairs: PNG and SVG for a person, the CSV of exactly the plotted rows for a
machine. Everything is rendered in memory first and then written atomically, so a failure leaves
no partial set of files.

>>> paths = export_plot("compressors", rows, "out/")        # doctest: +SKIP
>>> sorted(paths)                                           # doctest: +SKIP
['csv', 'png', 'svg']
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pgolf.budget.atomic import write_bytes_atomic
from pgolf.budget.errors import PgolfInputError
from pgolf.figures.plots import PLOTS
from pgolf.figures.style import STYLE

FORMATS = ("png", "svg", "csv")


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """PNG or SVG bytes of a figure; SVG without a date so the same data gives the same file."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context(STYLE):  # savefig.dpi and the SVG id salt come from the style
        fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()


class FigureView:
    """What a notebook cell should return to show a pgolf figure: our figures never touch pyplot,
    so Jupyter's inline backend does not know them; this renders the PNG itself."""

    def __init__(self, ax_or_fig: Axes | Figure):
        self.figure = ax_or_fig if isinstance(ax_or_fig, Figure) else ax_or_fig.figure

    def _repr_png_(self) -> bytes:
        return figure_bytes(self.figure, "png")

    def __repr__(self) -> str:
        width, height = self.figure.get_size_inches()
        return f"<pgolf figure {width:.1f} x {height:.1f} in>"


def figure_view(ax_or_fig: Axes | Figure) -> FigureView:
    """`figure_view(plot_headroom_vs_bpb(frame))` as a cell's last line shows the PNG in Jupyter."""
    return FigureView(ax_or_fig)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV text of the frame; floats are written with repr so they read back bit-exact."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def save_figure(ax_or_fig: Axes | Figure, frame: pd.DataFrame, out_dir: str | os.PathLike,
                stem: str) -> dict[str, Path]:
    """out_dir/<stem>.png, .svg and .csv (the frame); returns {"png": path, "svg": path, "csv": path}."""
    fig = ax_or_fig if isinstance(ax_or_fig, Figure) else ax_or_fig.figure
    blobs = {"png": figure_bytes(fig, "png"), "svg": figure_bytes(fig, "svg"), "csv": csv_bytes(frame)}
    out = Path(out_dir)
    return {fmt: write_bytes_atomic(out / f"{stem}.{fmt}", blob) for fmt, blob in blobs.items()}


def export_plot(kind: str, data, out_dir: str | os.PathLike, *, title: str | None = None,
                stem: str | None = None, **options) -> dict[str, Path]:
    """Draw plot `kind` (a key of PLOTS) from `data` and save PNG, SVG and the plotted rows' CSV."""
    if kind not in PLOTS:
        raise PgolfInputError(None, f"unknown plot kind {kind!r}; choose from {', '.join(PLOTS)}")
    spec = PLOTS[kind]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise PgolfInputError(None, f"plot {kind} takes no option {', '.join(unknown)} (it takes: "
                              f"{', '.join(spec.options) or 'none'})")
    frame = spec.frame(data, **options)
    ax = spec.draw(frame, title=title)
    return save_figure(ax, frame, out_dir, stem or kind)
