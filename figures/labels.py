"""Point labels that never overlap: greedy placement over candidate offsets, a numbered key when
the plot runs out of room.

`place_labels` tries, for each point in priority order, offsets on rings around it (nearest
first; the text anchored by its corner or edge nearest to the point) and keeps the cheapest one
that stays inside the axes and touches no earlier label, no marker, no avoided box (the legend)
and no earlier leader line, and whose own leader line crosses no earlier label. Cost is the
distance, plus penalties for crossing data lines, other leaders or markers. A label set away
from its point gets a thin leader line to it.

`label_points` adds the fallback: the labels that found no free spot (and, if need be, every
point off the Pareto frontier) are replaced by small numbers, and a key below the plot (beside
it in someone else's Axes) spells out each number, so every point stays identifiable.

Offsets are in points and the layout is settled before measuring, so the result holds when the
figure is saved at any dpi.

>>> from pgolf.figures.style import new_axes
>>> ax = new_axes(); _ = ax.scatter([0, 0.01], [0, 0.01])
>>> texts = place_labels(ax, [0, 0.01], [0, 0.01], ["first label", "second label"])
>>> overlapping(text_boxes(texts))
[]
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

MARKER_RADIUS_PT = 3.5  # half the width of a scatter marker of size 36-44 pt²
GAP_PT = 1.0  # free space kept above and below every label box (and around markers)
GAP_X_PT = 3.0  # and left and right of it: two labels on one line must not read as one
LEADER_FROM_PT = 9.0  # a label anchored farther than this from its point gets a leader line
RINGS_PT = ((6, 8), (10, 8), (16, 16), (24, 16), (34, 16), (46, 24), (60, 24), (76, 32), (94, 32), (116, 40),
            (140, 40), (170, 48), (200, 48))  # (radius, directions): finer directions farther out
ATTEMPTS = 6  # layouts tried before every point off the frontier gets a number
FULL_REACH_PT = 100.0  # beyond this a full label gives way to a number
PENALTY = {"data_line": 80.0, "leader": 60.0, "marker": 80.0}


def renderer_of(fig):
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get else fig._get_renderer()


def _text_box(text: Text, renderer) -> Bbox:
    if isinstance(text, Annotation):
        text.update_positions(renderer)  # an annotation's text transform depends on its offset
    return Text.get_window_extent(text, renderer)


def text_boxes(texts: Sequence[Text]) -> list[Bbox]:
    """Display-space boxes of the texts only (leader lines excluded)."""
    texts = [t for t in texts if t is not None]
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


# ---------------------------------------------------------------- geometry on arrays of boxes (x0, y0, x1, y1)

def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) mask of pairs of boxes that overlap with positive area."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), bool)
    a, b = a[:, None, :], b[None, :, :]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return (w > 0) & (h > 0)


def segments_cross(segs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(len(segs), len(boxes)) mask: segment (x0, y0, x1, y1) passes through the box's interior
    (Liang-Barsky clipping)."""
    if not len(segs) or not len(boxes):
        return np.zeros((len(segs), len(boxes)), bool)
    sx, sy = segs[:, 0:1], segs[:, 1:2]
    dx, dy = segs[:, 2:3] - sx, segs[:, 3:4] - sy
    lo, hi = np.zeros((len(segs), len(boxes))), np.ones((len(segs), len(boxes)))
    ok = np.ones_like(lo, bool)
    bx0, by0, bx1, by1 = (boxes[None, :, k] for k in range(4))
    for p, q in ((-dx, sx - bx0), (dx, bx1 - sx), (-dy, sy - by0), (dy, by1 - sy)):
        p = np.broadcast_to(p, lo.shape)
        flat = np.abs(p) < 1e-12
        ok &= ~flat | (q > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(flat, 0.0, q / np.where(flat, 1.0, p))
        lo = np.where(~flat & (p < 0), np.maximum(lo, r), lo)
        hi = np.where(~flat & (p > 0), np.minimum(hi, r), hi)
    return ok & (hi - lo > 1e-9)


def line_segments(lines: Sequence[Line2D]) -> np.ndarray:
    """Display-space segments of drawn lines (the frontier, the cap line), as (n, 4)."""
    segs = []
    for line in lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        segs += [(*a, *b) for a, b in zip(xy[:-1], xy[1:])]
    return np.asarray(segs, float).reshape(-1, 4)


# ---------------------------------------------------------------- greedy placement

def _candidates() -> np.ndarray:
    """(dx, dy, ha, va) offsets in points, nearest ring first; ha/va: -1 right/top, 0 center, 1 left/bottom."""
    rows = []
    for radius, n in RINGS_PT:
        for k in range(n):
            angle = 2 * math.pi * k / n + math.pi / 4  # start at upper right: the usual reading spot
            c, s = math.cos(angle), math.sin(angle)
            ha = 1 if c > 0.38 else -1 if c < -0.38 else 0
            va = 1 if s > 0.38 else -1 if s < -0.38 else 0
            rows.append((radius * c, radius * s, ha, va))
    return np.asarray(rows, float)


CANDIDATES = _candidates()
HA = {1: "left", -1: "right", 0: "center"}
VA = {1: "bottom", -1: "top", 0: "center"}


@dataclasses.dataclass
class _Obstacles:
    markers: np.ndarray  # every point's marker box: no label on it (leaders over it: soft)
    texts: np.ndarray  # labels placed so far and avoided boxes (the legend): no label, no leader on them
    leaders: np.ndarray  # leader lines so far: no label on them (crossing them: soft)
    lines: np.ndarray  # data lines: soft


def _geometry(px: float, py: float, w: float, h: float, pt: float, inside: Bbox, obst: _Obstacles):
    """Per candidate: the label's box, its leader segment, whether it needs one, whether it leaves
    the Axes, and how many hard obstacles it hits."""
    c = CANDIDATES
    ax_, ay_ = px + c[:, 0] * pt, py + c[:, 1] * pt  # the anchor: the box corner/edge nearest the point
    x0 = ax_ - w * (c[:, 2] == -1) - w / 2 * (c[:, 2] == 0)
    y0 = ay_ - h * (c[:, 3] == -1) - h / 2 * (c[:, 3] == 0)
    boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1)
    padded = boxes + np.array([-GAP_X_PT, -GAP_PT, GAP_X_PT, GAP_PT]) * pt
    far = np.hypot(c[:, 0], c[:, 1]) > LEADER_FROM_PT
    leaders = np.stack([ax_, ay_, np.full_like(ax_, px), np.full_like(ay_, py)], axis=1)
    out = (boxes[:, 0] < inside.x0) | (boxes[:, 1] < inside.y0) | (boxes[:, 2] > inside.x1) | (boxes[:, 3] > inside.y1)
    hits = boxes_overlap(padded, obst.markers).sum(axis=1) + boxes_overlap(padded, obst.texts).sum(axis=1) \
        + segments_cross(obst.leaders, padded).sum(axis=0) + far * segments_cross(leaders, obst.texts).sum(axis=1)
    return boxes, leaders, far, out, hits


def _free_spots(px, py, w, h, pt, inside, obst, own, reach_pt) -> int:
    _, _, _, out, hits = _geometry(px, py, w, h, pt, inside, obst)
    return int((~out & (hits == 0) & (np.hypot(CANDIDATES[:, 0], CANDIDATES[:, 1]) <= reach_pt)).sum())


def _best_offset(px: float, py: float, w: float, h: float, pt: float, inside: Bbox, obst: _Obstacles,
                 own: int, force: bool = False, reach_pt: float = RINGS_PT[-1][0], strict: bool = False):
    """Cheapest feasible (dx, dy, ha, va, box, leader) for a w x h label at display point (px, py),
    None when every candidate touches something (unless `force`)."""
    c = CANDIDATES
    boxes, leaders, far, out, hits = _geometry(px, py, w, h, pt, inside, obst)
    others = np.delete(obst.markers, own, axis=0)
    cost = np.hypot(c[:, 0], c[:, 1]) + PENALTY["data_line"] * segments_cross(obst.lines, boxes).sum(axis=0) \
        + far * (PENALTY["leader"] * _leaders_cross(leaders, obst.leaders)
                 + PENALTY["marker"] * segments_cross(leaders, others).sum(axis=1))
    feasible = ~out & (hits == 0) & (np.hypot(c[:, 0], c[:, 1]) <= reach_pt)
    if strict:  # crossing leaders make labels hard to attribute: not allowed at all
        feasible &= ~(far & (_leaders_cross(leaders, obst.leaders) > 0))
    if not feasible.any():
        if not force:
            return None
        cost, feasible = cost + 1e4 * hits + 1e6 * out, np.ones_like(feasible)
    i = int(np.argmin(np.where(feasible, cost, np.inf)))
    return c[i, 0], c[i, 1], HA[int(c[i, 2])], VA[int(c[i, 3])], boxes[i], leaders[i] if far[i] else None


def _leaders_cross(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """How many of the segments `old` each segment of `new` properly crosses."""
    if not len(old):
        return np.zeros(len(new))
    p, r = new[:, None, :2], new[:, None, 2:] - new[:, None, :2]
    q, s = old[None, :, :2], old[None, :, 2:] - old[None, :, :2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    qp = q - p
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / denom
        u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / denom
    return ((np.abs(denom) > 1e-12) & (t > 0.02) & (t < 0.98) & (u > 0.02) & (u < 0.98)).sum(axis=1)


# a light backing inside the free gap: a grid or data line behind a label never cuts through its letters
BACKING = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
RELPOS = {"left": 0.0, "center": 0.5, "right": 1.0, "bottom": 0.0, "top": 1.0}


def place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 fontsize: float | None = None, avoid: Sequence[Bbox] = (), lines: Sequence[Line2D] = (),
                 order: Sequence[int] | None = None, force: bool = False,
                 marker_pt: float = MARKER_RADIUS_PT, reach_pt: float | Sequence[float] = RINGS_PT[-1][0],
                 strict: bool | Sequence[bool] = False, settled: bool = False) -> list[Annotation | None]:
    """Annotate each (x, y) with its label where it overlaps nothing (see module docstring).
    Returns one Annotation per point, None where no free spot exists (unless `force`: then the
    least bad spot is taken). `order`: the points to label, most important first; `reach_pt`:
    the farthest a label may sit from its point; `strict`: its leader may cross no other (both
    one value or one per point). `settled`: the caller has just drawn the figure."""
    fig = ax.figure
    if not settled:
        fig.draw_without_rendering()  # settle limits and constrained layout before measuring
    renderer = renderer_of(fig)
    pt = fig.dpi / 72.0
    inside = ax.get_window_extent(renderer).padded(-GAP_PT * pt)
    points = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    r = (marker_pt + GAP_PT) * pt
    obst = _Obstacles(np.column_stack([points - r, points + r]),
                      np.asarray([b.extents for b in avoid], float).reshape(-1, 4), np.zeros((0, 4)),
                      line_segments(lines))
    reach = np.broadcast_to(np.asarray(reach_pt, float), (len(labels),))
    strict = np.broadcast_to(np.asarray(strict, bool), (len(labels),))
    placed: list[Annotation | None] = [None] * len(labels)
    for i in (range(len(labels)) if order is None else order):
        probe = ax.text(0, 0, labels[i], fontsize=fontsize)  # only measured
        size = Text.get_window_extent(probe, renderer)
        probe.remove()
        best = _best_offset(*points[i], size.width, size.height, pt, inside, obst, i, force, reach[i], strict[i])
        if best is None:
            continue
        dx, dy, ha, va, box, leader = best
        # set away from its point: a thin line from the label's nearest corner keeps it attributable
        arrow = None if leader is None else {"arrowstyle": "-", "lw": 0.6, "color": "0.45", "shrinkA": 0,
                                             "shrinkB": marker_pt, "relpos": (RELPOS[ha], RELPOS[va]),
                                             "patchA": None}
        ann = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                          fontsize=fontsize, annotation_clip=False, arrowprops=arrow, bbox=BACKING)
        ann.set_in_layout(False)  # labels must not move the axes they were placed in
        if leader is not None:
            obst.leaders = np.vstack([obst.leaders, leader])
        obst.texts = np.vstack([obst.texts, box])
        placed[i] = ann
    return placed


# ---------------------------------------------------------------- fallback: numbers and a key

@dataclasses.dataclass
class PointLabels:
    texts: list[Annotation]  # one per point: its label or its number
    numbered: dict[int, int]  # point index -> the number standing in for its label
    key: object | None  # the Legend spelling out the numbers


def _least_room_first(ax: Axes, points: np.ndarray, labels: Sequence[str], fontsize, marker_pt: float) -> list[int]:
    """Point indices, those whose label has the fewest free spots (inside the Axes, off every
    marker, within reach) first: a point at the edge or in a crowd must choose before the others
    take its few spots."""
    fig = ax.figure
    renderer = renderer_of(fig)
    pt = fig.dpi / 72.0
    inside = ax.get_window_extent(renderer).padded(-GAP_PT * pt)
    r = (marker_pt + GAP_PT) * pt
    obst = _Obstacles(np.column_stack([points - r, points + r]), np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)))
    room = []
    for i, label in enumerate(labels):
        probe = ax.text(0, 0, label, fontsize=fontsize)
        size = Text.get_window_extent(probe, renderer)
        probe.remove()
        room.append(_free_spots(*points[i], size.width, size.height, pt, inside, obst, i, FULL_REACH_PT))
    return sorted(range(len(labels)), key=lambda i: room[i])


def _add_key(ax: Axes, entries: list[str], owned: bool, fontsize: float | None):
    handles = [Line2D([], [], linestyle="none") for _ in entries]
    style = {"handlelength": 0, "handletextpad": 0, "fontsize": fontsize, "title_fontsize": fontsize,
             "title": "numbered points", "alignment": "left"}
    if not owned:  # someone else's Axes: beside it, never over data
        return ax.legend(handles, entries, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **style)
    fig = ax.figure
    renderer = renderer_of(fig)
    longest = max(Text(0, 0, e, fontsize=fontsize, figure=fig).get_window_extent(renderer).width for e in entries)
    ncol = max(1, min(4, int(0.92 * fig.bbox.width // (longest + 20 * fig.dpi / 72))))
    return fig.legend(handles, entries, loc="outside lower center", ncol=ncol, columnspacing=1.6, **style)


def label_points(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], *,
                 first: Sequence[int] = (), fontsize: float | None = 8, avoid=(), lines: Sequence[Line2D] = (),
                 owned: bool = True, marker_pt: float = MARKER_RADIUS_PT) -> PointLabels:
    """Label every point: its full label where there is room, else a number explained in a key.

    Points in `first` (e.g. the Pareto frontier) are placed first and keep their full labels.
    `avoid`: artists to keep clear of (their boxes are re-measured after each layout change).
    With `owned` the figure grows to make room for the key below the plot; otherwise the key
    goes beside the Axes.
    """
    fig = ax.figure
    base_w, base_h = fig.get_size_inches()
    fig.draw_without_rendering()
    points = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    important = list(dict.fromkeys(int(i) for i in first))
    rest = [i for i in _least_room_first(ax, points, labels, fontsize, marker_pt) if i not in important]
    numbered: set[int] = set()
    key, keyed = None, None
    for attempt in range(ATTEMPTS):
        by_x = sorted(numbered, key=lambda i: (xs[i], ys[i]))
        number = {i: k + 1 for k, i in enumerate(by_x)}
        texts = [str(number[i]) if i in number else labels[i] for i in range(len(labels))]
        if by_x != keyed:  # the key changed: redo it, and the layout with it
            if key is not None:
                key.remove()
                key = None
                fig.set_size_inches(base_w, base_h)
            if number:
                key = _add_key(ax, [f"{number[i]}  {labels[i]}" for i in by_x], owned, fontsize)
                if owned:  # grow the figure by the key's height so the plot keeps its size
                    fig.draw_without_rendering()
                    extra = key.get_window_extent(renderer_of(fig)).height / fig.dpi
                    fig.set_size_inches(base_w, base_h + extra + 0.1)
            fig.draw_without_rendering()
            keyed = by_x
        boxes = [a.get_window_extent(renderer_of(fig)) for a in avoid]
        # numbers first (they must sit right next to their points), then the frontier's labels, then the rest
        order = [i for i in important + rest if i in number] + [i for i in important + rest if i not in number]
        last = attempt == ATTEMPTS - 1
        # a full label far from its point, or with a leader across another, reads worse than a number
        full = [i not in number for i in range(len(labels))]
        placed = place_labels(ax, xs, ys, texts, fontsize=fontsize, avoid=boxes, lines=lines, order=order,
                              force=last, marker_pt=marker_pt, strict=full, settled=True,
                              reach_pt=[FULL_REACH_PT if f else RINGS_PT[-1][0] for f in full])
        failed = {i for i, a in enumerate(placed) if a is None}
        if not failed:
            return PointLabels(placed, number, key)
        for a in placed:
            if a is not None:
                a.remove()
        # numbers that found no room, or a last try: every point off the frontier gets a number
        numbered = set(rest) | numbered | failed if failed <= numbered or attempt == ATTEMPTS - 2 \
            else numbered | failed
    raise AssertionError("unreachable: the last attempt places every label")


def keep_inside(ax: Axes, texts: Sequence[Text], margin_pt: float = 3.0) -> None:
    """Widen the y limits until every text (bar-end labels) lies inside the Axes, so none can run
    into the title or the tick labels below."""
    texts = [t for t in texts if t.get_text()]
    fig = ax.figure
    for _ in range(4):
        fig.draw_without_rendering()
        renderer = renderer_of(fig)
        box = ax.get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in texts]
        if not boxes:
            return
        margin = margin_pt * fig.dpi / 72
        over = max(b.y1 for b in boxes) - (box.y1 - margin)
        under = (box.y0 + margin) - min(b.y0 for b in boxes)
        if over <= 0 and under <= 0:
            return
        lo, hi = ax.get_ylim()
        per_px = (hi - lo) / box.height
        ax.set_ylim(lo - max(under, 0) * per_px * 1.1, hi + max(over, 0) * per_px * 1.1)
