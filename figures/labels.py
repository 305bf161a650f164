"""Point labels that do not overlap: greedy placement on rings of candidate offsets.

Each label tries offsets around its point, nearest first, and takes the first whose text box
stays inside the axes and touches no earlier label and no marker. Offsets are in points, and the
layout is settled before measuring, so the result holds when the figure is saved at any dpi.

>>> from pgolf.figures.style import new_axes
>>> ax = new_axes(); _ = ax.scatter([0, 0.01], [0, 0.01])
>>> texts = place_labels(ax, [0, 0.01], [0, 0.01], ["first label", "second label"])
>>> overlapping(text_boxes(texts))
[]
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

MARKER_HALF_PT = 4.0  # half the side of the box kept free around each marker
DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1), (1, 0), (-1, 0))
RADII_PT = (6, 14, 24, 36, 50, 66, 84)


def renderer_of(fig):
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get else fig._get_renderer()


def _text_box(text: Text, renderer) -> Bbox:
    if isinstance(text, Annotation):
        text.update_positions(renderer)  # an annotation's text transform depends on its offset
    return Text.get_window_extent(text, renderer)


def text_boxes(texts: Sequence[Text]) -> list[Bbox]:
    """Display-space boxes of the texts only (leader lines excluded)."""
    if not texts:
        return []
    renderer = renderer_of(texts[0].figure)
    return [_text_box(t, renderer) for t in texts]


def overlapping(boxes: Sequence[Bbox]) -> list[tuple[int, int]]:
    """Index pairs of boxes that overlap with positive area."""
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        if min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0:
            pairs.append((i, j))
    return pairs


def _overlap_area(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _candidates():
    for radius in RADII_PT:
        for dx, dy in DIRECTIONS:
            norm = math.hypot(dx, dy)
            yield radius * dx / norm, radius * dy / norm, radius


def place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 fontsize: float | None = None, avoid: Sequence[Bbox] = ()) -> list[Annotation]:
    """Annotate each (x, y) with its label without overlaps (also clear of `avoid` boxes)."""
    fig = ax.figure
    fig.draw_without_rendering()  # settle limits and constrained layout before measuring
    renderer = renderer_of(fig)
    pt = fig.dpi / 72.0
    inside = ax.get_window_extent(renderer)
    taken: list[Bbox] = list(avoid)
    for x, y in zip(xs, ys):
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - MARKER_HALF_PT * pt, py - MARKER_HALF_PT * pt,
                                       px + MARKER_HALF_PT * pt, py + MARKER_HALF_PT * pt))
    placed: list[Annotation] = []
    for x, y, label in zip(xs, ys, labels):
        ann = ax.annotate(label, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize,
                          annotation_clip=False)
        ann.set_in_layout(False)  # labels must not move the axes they were placed in
        best = None
        for dx, dy, radius in _candidates():
            ann.set_position((dx, dy))
            ann.set_ha("left" if dx > 0.5 else "right" if dx < -0.5 else "center")
            ann.set_va("bottom" if dy > 0.5 else "top" if dy < -0.5 else "center")
            box = _text_box(ann, renderer)
            outside = box.width * box.height - _overlap_area(box, inside)
            cost = 1e3 * max(outside, 0.0) + sum(_overlap_area(box, t) for t in taken)
            if best is None or cost < best[0]:
                best = (cost, dx, dy, radius, ann.get_ha(), ann.get_va(), box)
            if cost <= 1e-6:
                break
        _, dx, dy, radius, ha, va, box = best
        ann.remove()
        # Far from its point: a thin leader line keeps the label attributable.
        leader = {"arrowstyle": "-", "lw": 0.5, "color": "0.4", "shrinkA": 0, "shrinkB": 3} \
            if radius > RADII_PT[1] else None
        ann = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                          fontsize=fontsize, annotation_clip=False, arrowprops=leader)
        ann.set_in_layout(False)
        taken.append(box)
        placed.append(ann)
    return placed
