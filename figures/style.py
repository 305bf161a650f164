"""One look for every pgolf figure, and Axes that never touch pyplot's global state.

`STYLE` is a plain rc dict applied only while a plot draws (`matplotlib.rc_context`), so a user's
own settings are untouched afterwards. `new_axes` builds a `Figure` directly (no `plt.figure`), so
library figures never pile up in pyplot's figure manager and nothing needs `plt.close`.

>>> ax = new_axes(rows=10)
>>> ax.figure.get_size_inches().round(2).tolist()
[9.0, 4.0]
"""
from __future__ import annotations

import functools

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pgolf.figures.labels import renderer_of

# Okabe-Ito: distinguishable with the common colour-vision deficiencies and in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
CAP_COLOR = "#D55E00"
FLOOR_COLOR = "#000000"
PART_COLORS = {"values_bytes": "#0072B2", "scales_bytes": "#E69F00", "passthrough_bytes": "#999999"}

STYLE: dict[str, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "lines.linewidth": 1.5,
    "svg.hashsalt": "pgolf",  # stable SVG element ids: same data, same file
}

WIDTH_IN = 9.0
ROW_IN = 0.26  # height per bar row: tensor names stay readable at 9 pt


def styled(plot):
    """Decorator: run a plot function inside `rc_context(STYLE)`."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def figure_height(rows: int | None = None, base: float = 5.0, per_row: float = ROW_IN) -> float:
    """Height in inches: fixed for scatter/line plots, growing with the number of bar rows."""
    if rows is None:
        return base
    return max(3.0, 1.4 + per_row * rows)


def new_axes(rows: int | None = None, width: float = WIDTH_IN, height: float | None = None) -> Axes:
    """A fresh Axes on a Figure that pyplot does not know about (Agg canvas, constrained layout)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height or figure_height(rows)), layout="constrained")
        FigureCanvasAgg(fig)  # gives text measurement (label placement) and savefig without pyplot
        return fig.add_subplot()


def add_legend(ax: Axes, owned: bool, ncol: int = 2, handles=None) -> None:
    """Legend below the plot when the figure is ours (it can never hide data); inside at the
    emptiest spot when drawing into someone else's Axes."""
    kwargs = {"handles": handles} if handles is not None else {}
    if owned:
        handles_, labels = (handles, [h.get_label() for h in handles]) if handles is not None \
            else ax.get_legend_handles_labels()
        ax.figure.legend(handles_, labels, loc="outside lower center", ncol=min(ncol, len(labels)))
    else:
        ax.legend(loc="best", **kwargs)


def tall_axis(ax: Axes, rows_over: int = 30) -> None:
    """On a bar chart taller than `rows_over` rows, repeat the value ticks along the top, so the
    scale is readable from either end of a tall figure."""
    if len(ax.get_yticks()) > rows_over:
        ax.tick_params(axis="x", top=True, labeltop=True)


def _title_width_px(ax: Axes) -> float:
    """Room for a left-aligned title: from the Axes' left edge to the figure's right edge when the
    figure holds only this plot (and its twins), else the Axes' own width; layout settled first."""
    fig = ax.figure
    fig.draw_without_rendering()
    box = ax.get_window_extent()
    alone = all(other.get_position().bounds == ax.get_position().bounds for other in fig.axes)
    right = fig.bbox.x1 if alone else box.x1
    return right - box.x0 - 6 * fig.dpi / 72  # a small margin: never touch the edge


def wrap_to_width(text: str, width_px: float, measure) -> str:
    """Greedy word wrap by measured width: each line as long as fits in `width_px`.

    >>> wrap_to_width("a bb ccc", 4, len)
    'a bb\\nccc'
    """
    lines: list[str] = []
    for word in text.split():
        if lines and measure(f"{lines[-1]} {word}") <= width_px:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


def set_title(ax: Axes, title: str) -> None:
    """Left-aligned title, wrapped by its measured width (bold digits and capitals are wide) so it
    never runs past the figure's edge."""
    fig = ax.figure
    width = _title_width_px(ax)
    probe = ax.set_title(title, loc="left")
    renderer = renderer_of(fig)

    def measure(line: str) -> float:
        probe.set_text(line)
        return probe.get_window_extent(renderer).width

    ax.set_title(wrap_to_width(title, width, measure), loc="left")
