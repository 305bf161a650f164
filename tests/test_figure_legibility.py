"""Every figure legible at a glance, on realistic sizes: no two drawn texts overlap, no text leaves
the canvas, the title is whole and names the finding's variables, byte axes carry decimal units
with thousands separators and no scientific offset.

The data comes from real pgolf functions on a seeded 9-layer model with the baseline's 92 tensor
names (model_dim 64, so every measurement takes a moment): exact bytes per plan x compressor
(`compare`), per tensor (`measure_budget`, `tensor_table`), compressed-alone bytes per
precision step, quantization errors per tensor.
Only the roundtrip val_bpb per preset is a table of typical magnitudes (the layout depends on
their spacing, not on their exact values)."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from pgolf.budget.quant.official import is_control_tensor  # noqa: E402
from pgolf.budget.exact.compare import compare  # noqa: E402
from pgolf.budget.exact.measure import measure_budget, tensor_table  # noqa: E402
from pgolf.budget.forecast.shapes import baseline_specs, param_count, synthetic_state_dict  # noqa: E402
from pgolf.budget.exact.measure import half_fp16_cap  # noqa: E402
from pgolf.figures.frames import plan_points  # noqa: E402
from pgolf.figures.labels import renderer_of  # noqa: E402
from pgolf.figures.plots import PLOTS  # noqa: E402
from pgolf.budget.quant.plans import quantize_small  # noqa: E402
from pgolf.inspect.headroom import alone_bytes, roundtrip  # noqa: E402
from pgolf.trainer.logs import parse_log  # noqa: E402

COMPRESSORS = ("zlib", "zstd", "lzma", "zlib+transpose", "none")  # brotli's best level: seconds each
# Roundtrip val_bpb of a trained baseline under each preset: typical magnitudes (compressors of one
# plan share its value, so their points line up at one height: the crowded case).
PRESET_BPB = {"official-int8": 1.2244, "fp16-embed": 1.2197, "int6": 1.2301, "int5-mlp-int6-attn": 1.2372,
              "sdclip-int6-int8emb": 1.2263, "ternary": 1.3810}
TOLERANCE_PX = 0.5  # boxes may touch; float noise below half a pixel is not an overlap


# ---------------------------------------------------------------- realistic data

def make_narrow_sd():
    """The baseline's 92 tensor names at model_dim 64 (its matrices are small, so its plans go
    through quantize_small, as in the demo)."""
    return synthetic_state_dict(baseline_specs(model_dim=64, num_heads=4, num_kv_heads=2), seed=1)


def make_headroom_points(narrow_sd):
    """6 presets x 5 compressors = 30 points: exact artifact bytes; the demo's cap (half the fp16
    artifact) puts some points over it."""
    cap, _ = half_fp16_cap(narrow_sd)
    report = compare(narrow_sd, [quantize_small(p) for p in PRESET_BPB], COMPRESSORS, cap=cap, quiet=True)
    bpb = pd.DataFrame({"plan": [f"{p}+small" for p in PRESET_BPB], "val_bpb": list(PRESET_BPB.values())})
    return plan_points(report, bpb)


def relative_error(t: torch.Tensor, spec: str) -> float:
    t = t.float()
    return float(((roundtrip(t, spec).float() - t) ** 2).sum() / (t ** 2).sum().clamp_min(1e-12))


def quantized_names(sd) -> list[str]:
    """The matrices a plan quantizes (control tensors stay float under every plan)."""
    return [n for n, t in sd.items() if t.ndim == 2 and not is_control_tensor(n)]


def gap_bpb(sd, name: str, spec: str) -> float:
    """A ΔBPB in the range real gaps take: all int6 gaps together about 0.005 BPB, int4 about 0.1."""
    total = sum(sd[n].numel() for n in quantized_names(sd))
    return 5.0 * relative_error(sd[name], spec) * sd[name].numel() / total


def make_gap_rows(narrow_sd):
    """Every matrix of the 9-layer model under int4 and int6: a gap that grows with the roundtrip
    error and the tensor's size, and a proxy beside it (the plot draws whatever the columns hold)."""
    rows = []
    rng = np.random.default_rng(0)
    for name in quantized_names(narrow_sd):
        for scheme in ("int4", "int6"):
            gap = gap_bpb(narrow_sd, name, scheme)
            rows.append({"name": name, "scheme": scheme, "gap_only_this_bpb": gap,
                         "proxy_gap_bpb": gap * float(rng.uniform(0.6, 1.4))})
    return pd.DataFrame(rows)


def make_exchange_rows(narrow_sd):
    """int6 -> int8 (upgrade) and int6 -> int5 (downgrade) for every matrix: the measured
    compressed-alone bytes of each scheme, ΔBPB from the change in roundtrip error."""
    names = quantized_names(narrow_sd)
    alone = alone_bytes(narrow_sd, [(n, s) for n in names for s in ("int5", "int6", "int8")], "zlib")
    rows = []
    for name in names:
        for step in ("int8", "int5"):
            rows.append({"name": name, "scheme": "int6", "scheme_next": step,
                         "delta_bytes": alone[(name, step)] - alone[(name, "int6")],
                         "delta_bpb": gap_bpb(narrow_sd, name, step) - gap_bpb(narrow_sd, name, "int6")})
    return pd.DataFrame(rows)


def make_compressor_rows(narrow_sd):
    """5 uniform schemes x 4 compressors (lzma and brotli at their best settings take seconds per
    tensor), per tensor stored in the scheme: compressed-alone bytes and the entropy floor."""
    frames = []
    for scheme in ("fp16", "int8", "int6", "int4", "ternary"):
        for comp in ("zlib", "zstd", "zlib+transpose", "none"):
            frame = tensor_table(narrow_sd, quantize_small(scheme), comp)
            frames.append(frame[frame["scheme"] == scheme].assign(compressor=comp))
    return pd.concat(frames, ignore_index=True)


def official_like_log(seed: int, last_step: int, shift: float) -> str:
    """A record's log shape: a loss spike in the first steps, train_loss every 200 steps, val every 1,000."""
    rng = np.random.default_rng(seed)
    lines = ["train_batch_tokens:524288 train_seq_len:1024 iterations:20000 warmup_steps:20",
             "step:0/20000 val_loss:6.9370 val_bpb:4.0978 train_time:0ms step_avg:0.01ms"]
    for step in [*range(1, 11), *range(200, last_step + 1, 200), last_step]:
        loss = 2.0 + shift + 4.9 / (1 + step / 60) + float(rng.normal(0, 0.03)) + (9.0 if step == 2 else 0.0)
        lines.append(f"step:{step}/20000 train_loss:{loss:.4f} train_time:{43 * step}ms step_avg:43.50ms")
        if step % 1000 == 0 or step == last_step:
            val = 2.05 + shift + 4.9 / (1 + step / 60)
            lines.append(f"step:{step}/20000 val_loss:{val:.4f} val_bpb:{val / 1.6925:.4f} train_time:{43 * step}ms")
    return "\n".join(lines) + "\n"


def make_curve_logs():
    return pd.concat([parse_log(official_like_log(0, 13_780, 0.0), source="records/NaiveBaseline/train.log"),
                      parse_log(official_like_log(1, 12_400, 0.02), source="runs/demo/train/train.log")],
                     ignore_index=True)


@pytest.fixture(scope="module")
def narrow_sd():
    return make_narrow_sd()


@pytest.fixture(scope="module")
def headroom_points(narrow_sd):
    return make_headroom_points(narrow_sd)


@pytest.fixture(scope="module")
def int6_budget(narrow_sd):
    """Exact bytes per tensor of the 9-layer model under int6 + zlib."""
    return measure_budget(narrow_sd, quantize_small("int6"), "zlib")


@pytest.fixture(scope="module")
def gap_rows(narrow_sd):
    return make_gap_rows(narrow_sd)


@pytest.fixture(scope="module")
def exchange_rows(narrow_sd):
    return make_exchange_rows(narrow_sd)


@pytest.fixture(scope="module")
def compressor_rows(narrow_sd):
    return make_compressor_rows(narrow_sd)


@pytest.fixture(scope="module")
def curve_logs():
    return make_curve_logs()


# ---------------------------------------------------------------- what "legible" means, measured

def drawn_texts(fig) -> tuple[list[Text], object]:
    """Every text artist the Agg renderer really draws (visible, not empty; multi-line ones too),
    with the renderer that drew them."""
    renderer = renderer_of(fig)
    drawn: list[Text] = []
    original = Text.draw

    def record(self, renderer_):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer_)

    Text.draw = record  # Annotation.draw calls Text.draw too
    try:
        fig.draw(renderer)
    finally:
        Text.draw = original
    return list(dict.fromkeys(drawn)), renderer


def legibility_problems(fig, drawn=None) -> list[str]:
    texts, renderer = drawn or drawn_texts(fig)
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text only, not leader lines
    canvas = fig.bbox
    problems = []
    for t, b in zip(texts, boxes):
        if b.x0 < canvas.x0 - TOLERANCE_PX or b.y0 < canvas.y0 - TOLERANCE_PX or \
                b.x1 > canvas.x1 + TOLERANCE_PX or b.y1 > canvas.y1 + TOLERANCE_PX:
            problems.append(f"outside the canvas: {t.get_text()!r} {b.extents.round(1).tolist()}")
        if t.get_fontsize() < 7:
            problems.append(f"font below 7 pt: {t.get_text()!r}")
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > TOLERANCE_PX and h > TOLERANCE_PX:
                problems.append(f"overlap: {texts[i].get_text()!r} and {texts[j].get_text()!r}")
    return problems


def marker_boxes(ax, renderer) -> list:
    """Display boxes of every scatter marker in the Axes (size s is the marker's area in pt²)."""
    out = []
    for coll in ax.collections:
        if not isinstance(coll, PathCollection) or not len(coll.get_offsets()):
            continue
        xy = coll.get_offset_transform().transform(coll.get_offsets())
        sizes = np.broadcast_to(coll.get_sizes(), (len(xy),))
        for (x, y), s in zip(xy, sizes):
            r = 0.5 * np.sqrt(s) * ax.figure.dpi / 72 * 0.8  # the marker's body, not its antialiased rim
            out.append(Bbox.from_extents(x - r, y - r, x + r, y + r))
    return out


def _overlap(a, b, tol=TOLERANCE_PX) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _segment_through(p, q, boxes: np.ndarray, tol=TOLERANCE_PX) -> np.ndarray:
    """Which boxes (x0, y0, x1, y1 rows, shrunk by tol) segment p-q passes through, sampled every
    half pixel."""
    n = max(2, int(np.hypot(*(np.subtract(q, p))) * 2))
    pts = np.asarray(p) + np.linspace(0, 1, n)[:, None] * (np.asarray(q) - np.asarray(p))
    x, y = pts[:, 0:1], pts[:, 1:2]
    inside = (x > boxes[:, 0] + tol) & (x < boxes[:, 2] - tol) & (y > boxes[:, 1] + tol) & (y < boxes[:, 3] - tol)
    return inside.any(axis=0)


def label_problems(ax, drawn=None) -> list[str]:
    """Point labels attributable at a glance: no text on a data point, no leader line through
    another text, and a label without a leader right next to its point."""
    fig = ax.figure
    texts, renderer = drawn or drawn_texts(fig)
    boxes = {t: Text.get_window_extent(t, renderer) for t in texts}
    markers = marker_boxes(ax, renderer)
    problems = []
    for t, box in boxes.items():
        if any(_overlap(box, m) for m in markers):
            problems.append(f"text on a data point: {t.get_text()!r}")
    near = 12 * fig.dpi / 72
    for ann in (t for t in texts if isinstance(t, Annotation)):
        point = ann.xycoords == "data" and ax.transData.transform(ann.xy)
        arrow = ann.arrow_patch
        if arrow is not None and arrow.get_visible():
            xy = arrow.get_transform().transform(arrow.get_path().vertices)
            others = [t for t in boxes if t is not ann]
            extents = np.array([boxes[t].extents for t in others]).reshape(-1, 4)
            crossed = np.zeros(len(others), bool)
            for a, b in zip(xy[:-1], xy[1:]):
                crossed |= _segment_through(a, b, extents)
            problems += [f"leader of {ann.get_text()!r} crosses {t.get_text()!r}" for t, c in zip(others, crossed) if c]
        else:
            box = boxes[ann]
            gap = np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))
            if gap > near:
                problems.append(f"{ann.get_text()!r} is {gap:.0f} px from its point with no leader line")
    return problems


def tick_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
            for t in axis.get_ticklabels() if t.get_text()]


def number_problems(fig) -> list[str]:
    """Numbers on the ticks: thousands separators, no scientific notation or offset text."""
    problems = []
    for text in tick_texts(fig):
        if re.search(r"(?<![\d.,])\d{4,}", text):
            problems.append(f"no thousands separator: {text!r}")
        if re.search(r"\de[+-]?\d|×10|10\^", text):
            problems.append(f"scientific notation: {text!r}")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_offset_text().get_visible() and axis.get_offset_text().get_text():
                problems.append(f"offset text {axis.get_offset_text().get_text()!r}")
    return problems


def title_of(ax) -> str:
    return " ".join(ax.get_title(loc="left").split())


def assert_legible(ax, title_words):
    fig = ax.figure
    drawn = drawn_texts(fig)
    problems = legibility_problems(fig, drawn) + number_problems(fig) + label_problems(ax, drawn)
    assert problems == [], "\n".join(problems[:20]) + (f"\n... {len(problems)} in all" if len(problems) > 20 else "")
    title = title_of(ax)
    for word in title_words:
        assert word in title, f"{word!r} not in title {title!r}"


# ---------------------------------------------------------------- every kind

def assert_every_point_named(ax, labels):
    """Each point is identifiable: its full label on the plot, or its number in the key."""
    shown = " | ".join(t.get_text() for t in ax.figure.findobj(Text))
    missing = [label for label in labels if label not in shown]
    assert missing == []


@pytest.mark.parametrize("x", ["bytes_total", "headroom_bytes"])
def test_headroom_30_points_legible(headroom_points, x):
    assert len(headroom_points) == 30 and headroom_points["plan"].nunique() == 6
    ax = PLOTS["headroom"].plot(headroom_points, x=x)
    assert_legible(ax, ["val_bpb", x, "30 plan × compressor pairs", "lowest val_bpb under the cap"])
    assert ax.xaxis.get_label().get_text() == f"{x} (KB = 10³ bytes)"
    assert_every_point_named(ax, headroom_points["label"])


def test_headroom_at_the_baseline_scale_legible(headroom_points):
    """The same 30 points at the 17,059,912-parameter baseline's scale, against the 16,000,000 cap."""
    scale = param_count(baseline_specs()) / param_count(baseline_specs(model_dim=64, num_heads=4, num_kv_heads=2))
    frame = headroom_points[["label", "plan", "compressor", "val_bpb"]].assign(
        bytes_total=(headroom_points["bytes_total"] * scale).round())
    ax = PLOTS["headroom"].plot(frame)
    assert_legible(ax, ["val_bpb", "bytes_total"])
    assert ax.xaxis.get_label().get_text() == "bytes_total (MB = 10⁶ bytes)"
    assert_every_point_named(ax, frame["label"])


def test_headroom_full_demo_shape_legible(headroom_points):
    """The full demo's shape: every plan with four compressors, some over the cap."""
    frame = headroom_points[headroom_points["compressor"] != "none"]
    ax = PLOTS["headroom"].plot(frame)
    assert_legible(ax, ["val_bpb", "bytes_total", "24 plan × compressor pairs"])
    assert_every_point_named(ax, frame["label"])


def test_tensor_bytes_every_tensor_of_9_layers_legible(int6_budget):
    ax = PLOTS["tensor-bytes"].plot(int6_budget)
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert len(names) == 92 and "blocks.8.attn.proj.weight" in names
    assert_legible(ax, ["bytes per tensor", "int6", "entropy floor"])
    assert ax.xaxis.get_label().get_text() == "payload bytes (KB = 10³ bytes)"


def test_tensor_bytes_module_groups_legible(int6_budget):
    ax = PLOTS["tensor-bytes"].plot(int6_budget, group="module")
    assert_legible(ax, ["bytes per module group", "int6"])


def test_quant_gap_legible(gap_rows):
    assert gap_rows["name"].nunique() == 55  # tok_emb and 6 matrices in each of 9 blocks
    ax = PLOTS["quant-gap"].plot(gap_rows)
    assert_legible(ax, ["Quantization gap", "gap_only_this_bpb", "int4", "int6", "top 30 of 55"])


def with_intervals(rows, column: str, seed: int = 0):
    """Rows with the 95% interval a measurement carries: SE about a third of a typical gap, so
    the small gaps come out within noise (as on a 16,384-token slice)."""
    rng = np.random.default_rng(seed)
    typical = float(rows[column].abs().median())
    se = typical * rng.uniform(0.2, 0.5, len(rows))
    return rows.assign(**{f"{column}_se": se, f"{column}_lo": rows[column] - 2.1 * se,
                          f"{column}_hi": rows[column] + 2.1 * se,
                          f"{column}_significant": (rows[column] - 2.1 * se > 0) | (rows[column] + 2.1 * se < 0)})


def test_quant_gap_with_error_bars_and_a_dominant_embedding_legible(gap_rows):
    """The tied embedding 30x every other tensor: a symlog axis (said in the legend) keeps every
    bar and interval readable; within-noise bars grey."""
    rows = with_intervals(gap_rows, "gap_only_this_bpb")
    others = rows.loc[~rows["name"].eq("tok_emb.weight"), "gap_only_this_bpb"].max()
    emb = rows["name"].eq("tok_emb.weight")
    for col in ("gap_only_this_bpb", "gap_only_this_bpb_lo", "gap_only_this_bpb_hi"):
        rows.loc[emb, col] = rows.loc[emb, col] - rows.loc[emb, "gap_only_this_bpb"] + 30 * others
    assert (~rows["gap_only_this_bpb_significant"]).sum() > 5
    ax = PLOTS["quant-gap"].plot(rows)
    assert ax.get_xscale() == "symlog"
    legend = " ".join(t.get_text() for t in ax.figure.legends[0].get_texts())
    assert "symlog" in legend and "95% interval" in legend and "within noise" in legend
    assert_legible(ax, ["Quantization gap", "within noise"])


def test_headroom_with_error_bars_legible(headroom_points):
    rows = headroom_points.assign(plan_gap_bpb=headroom_points["val_bpb"] - 1.2200,
                                  plan_gap_bpb_hi=headroom_points["val_bpb"] - 1.2200 + 0.004)
    frame = PLOTS["headroom"].frame(rows)
    assert frame["frontier_within_noise"].any()  # 1.2244 vs 1.2263: 0.0019 apart, within ±0.004
    ax = PLOTS["headroom"].plot(rows)
    assert_legible(ax, ["val_bpb", "bytes_total"])
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "95% interval" in legend and "frontier" in legend


def test_exchange_rate_with_steps_within_noise_legible(exchange_rows):
    rows = with_intervals(exchange_rows, "delta_bpb")
    frame = PLOTS["exchange-rate"].frame(rows, budget_bytes=53_309)
    assert frame["within_noise"].any() and not (frame["within_noise"] & frame["within_budget"]
                                                & frame["direction"].eq("upgrade")).any()
    ax = PLOTS["exchange-rate"].plot(rows, budget_bytes=53_309)
    assert_legible(ax, ["Exchange rate", "within noise"])


def test_compressors_legible(compressor_rows):
    ax = PLOTS["compressors"].plot(compressor_rows)
    assert_legible(ax, ["entropy floor", "scheme × compressor"])
    by_bytes = PLOTS["compressors"].plot(compressor_rows, relative="bytes")
    assert_legible(by_bytes, ["entropy floor"])
    assert "bytes" in by_bytes.yaxis.get_label().get_text()


@pytest.mark.parametrize("budget", [53_309, 123_457])  # 53,309: the demo's, once cut off at the edge
def test_exchange_rate_legible_with_any_budget(exchange_rows, budget):
    ax = PLOTS["exchange-rate"].plot(exchange_rows, budget_bytes=budget)
    assert_legible(ax, ["Exchange rate", f"{budget:,} bytes", "precision step"])


@pytest.mark.parametrize("x", ["step", "tokens"])
def test_training_curve_legible(curve_logs, x):
    ax = PLOTS["training-curve"].plot(curve_logs, x=x)
    assert_legible(ax, ["train_loss", "val_loss", "val_bpb", f"vs {x}", "2 logs"])


# ---------------------------------------------------------------- the checker itself

def test_checker_sees_overlaps_clipping_and_stray_labels():
    from pgolf.figures.style import new_axes

    ax = new_axes()
    ax.scatter([0.2, 0.8], [0.5, 0.5], s=36)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.text(0.5, 0.8, "same place")
    ax.text(0.5, 0.8, "same place too")
    ax.annotate("on its point", (0.2, 0.5), xytext=(0, 0), textcoords="offset points")
    ax.annotate("far, no leader", (0.8, 0.5), xytext=(0, 60), textcoords="offset points")
    ax.annotate("leader through", (0.2, 0.5), xytext=(0.5, 0.9), arrowprops={"arrowstyle": "-"})
    ax.text(0.33, 0.7, "in the way")
    ax.set_title("a two-line title\n" + "far too long to fit " * 8, loc="left")  # multi-line texts count too
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, pos: f"{v * 1e4:.0f}"))
    drawn = drawn_texts(ax.figure)
    problems = legibility_problems(ax.figure, drawn) + number_problems(ax.figure) + label_problems(ax, drawn)
    assert "overlap: 'same place' and 'same place too'" in problems
    assert any(p.startswith("outside the canvas: 'a two-line title") for p in problems)
    assert "no thousands separator: '10000'" in problems
    assert "text on a data point: 'on its point'" in problems
    assert any(p.startswith("'far, no leader' is ") for p in problems)
    assert "leader of 'leader through' crosses 'in the way'" in problems
