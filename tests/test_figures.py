"""Figures: each plot draws exactly the rows of its CSV, keeps pyplot clean, writes valid PNG/SVG,
and `pgolf plot` turns bad input into one error line with no files."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from pgolf.budget.errors import PgolfInputError  # noqa: E402
from pgolf.budget.report_base import Report  # noqa: E402
from pgolf.figures.budget_plots import pareto_front  # noqa: E402
from pgolf.figures.cli import main as pgolf_main  # noqa: E402
from pgolf.figures.export import export_plot, figure_bytes, figure_view  # noqa: E402
from pgolf.figures.formatting import byte_axis, byte_unit, format_bytes, format_mb, mb_formatter  # noqa: E402
from pgolf.figures.frames import as_frame, module_of  # noqa: E402
from pgolf.figures.labels import overlapping, text_boxes  # noqa: E402
from pgolf.figures.plots import PLOTS  # noqa: E402
from pgolf.figures.style import STYLE, new_axes  # noqa: E402
from pgolf.trainer.logs import parse_log  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- small synthetic inputs

def headroom_rows() -> pd.DataFrame:
    """Six plan/compressor points, crowded near the cap, one over it."""
    return pd.DataFrame({
        "plan": ["official-int8", "official-int8", "fp16-embed", "int6", "int6", "ternary"],
        "compressor": ["zlib", "zstd", "zlib", "zstd", "brotli", "lzma"],
        "bytes_total": [15_863_489, 15_790_002, 16_190_331, 12_402_118, 12_360_907, 6_021_554],
        "val_bpb": [1.2244, 1.2244, 1.2177, 1.2301, 1.2301, 1.2870],
    })


def tensor_rows() -> pd.DataFrame:
    rows = []
    for b in range(2):
        for part, values in (("attn.c_q", 262_144), ("attn.c_k", 131_072), ("mlp.fc", 524_288)):
            rows.append(dict(name=f"blocks.{b}.{part}.weight", kind="quantized", values_bytes=values + b,
                             scales_bytes=1_024 if part != "attn.c_k" else 512, payload_bytes=values + b + 1_536,
                             entropy_bytes=int(values * 0.62), compressed_bytes=int(values * 0.66), plan="int6"))
        rows.append(dict(name=f"blocks.{b}.attn_scale", kind="passthrough", values_bytes=1_024, scales_bytes=0,
                         payload_bytes=1_024, entropy_bytes=np.nan, compressed_bytes=980, plan="int6"))
    rows.append(dict(name="tok_emb.weight", kind="passthrough", values_bytes=1_048_576, scales_bytes=0,
                     payload_bytes=1_048_576, entropy_bytes=901_200, compressed_bytes=955_000, plan="int6"))
    return pd.DataFrame(rows)


def gap_rows() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(7):
        for scheme, scale in (("int5", 3e-3), ("int6", 1e-3)):
            gap = float(rng.gamma(1.0, scale))
            rows.append(dict(name=f"blocks.{i % 3}.t{i}.weight", scheme=scheme, gap_only_this_bpb=gap,
                             proxy_gap_bpb=gap * float(rng.uniform(0.5, 1.5))))
    return pd.DataFrame(rows)


def compressor_rows() -> pd.DataFrame:
    rows = []
    for s, entropy in (("int8", 9_000_000), ("int6", 6_100_000), ("ternary", 2_900_000)):
        for c, factor in (("zlib", 1.11), ("zstd", 1.04), ("brotli", 0.97)):
            for half in (0, 1):  # two tensors per scheme x compressor: the frame sums them
                rows.append(dict(scheme=s, compressor=c, compressed_bytes=int(entropy * factor / 2) + half,
                                 entropy_bytes=entropy // 2))
    return pd.DataFrame(rows)


def exchange_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["a", "b", "c", "d", "a", "b", "c"],
        "scheme": ["int6"] * 7,
        "scheme_next": ["int8", "int8", "int8", "int8", "int5", "int5", "int5"],
        "delta_bytes": [60_000, 30_000, 50_000, 10_000, -30_000, -15_000, -80_000],
        "delta_bpb": [-0.0030, -0.0024, -0.0010, -0.0001, 0.0006, 0.0009, 0.0004],
    })


LOG_A = "\n".join(
    ["train_batch_tokens:8192 train_seq_len:256 iterations:60"]
    + [f"step:{s}/60 train_loss:{6.0 - 0.05 * s:.4f} train_time:{40 * s}ms step_avg:40.00ms" for s in range(1, 61, 3)]
    + [f"step:{s}/60 val_loss:{5.9 - 0.05 * s:.4f} val_bpb:{3.4 - 0.03 * s:.4f} train_time:{40 * s}ms"
       for s in (0, 30, 60)]
) + "\n"
LOG_B = LOG_A.replace("train_loss:5", "train_loss:4").replace("8192", "16384")



def curve_input() -> pd.DataFrame:
    return pd.concat([parse_log(LOG_A, source="ours"), parse_log(LOG_B, source="record")], ignore_index=True)


def squeeze_rows() -> pd.DataFrame:
    return pd.DataFrame({"name": ["blocks.0.mlp.fc.weight", "tok_emb.weight", "blocks.0.attn_scale"],
                         "entropy_bytes": [600_000.0, 350_000.0, 420.0], "zlib_bytes": [640_000, 360_000, 520],
                         "brotli_shuffle_bytes": [605_000, 352_000, 470], "ans_bytes": [600_400, 350_300, 980]})


INPUTS = {
    "squeeze": squeeze_rows,
    "headroom": headroom_rows, "tensor-bytes": tensor_rows, "quant-gap": gap_rows,
    "compressors": compressor_rows, "exchange-rate": exchange_rows, "training-curve": curve_input,
}


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path)


def all_axes(ax):
    return ax.figure.axes


def bar_containers(ax) -> list[BarContainer]:
    return [c for a in all_axes(ax) for c in a.containers if isinstance(c, BarContainer)]


# ---------------------------------------------------------------- every kind

@pytest.mark.parametrize("kind", list(PLOTS))
def test_plot_returns_axes_without_pyplot_state(kind):
    before = plt.get_fignums()
    rc_before = dict(matplotlib.rcParams)
    ax = PLOTS[kind].plot(INPUTS[kind]())
    assert isinstance(ax, matplotlib.axes.Axes)
    assert plt.get_fignums() == before
    assert dict(matplotlib.rcParams) == rc_before  # the style applies only while drawing
    assert ax.get_title(loc="left")
    assert ax.figure.get_size_inches()[1] >= 3.0


@pytest.mark.parametrize("kind", list(PLOTS))
def test_plot_into_a_given_axes(kind):
    fig = Figure(figsize=(8, 6))
    given = fig.add_subplot()
    assert PLOTS[kind].plot(INPUTS[kind](), ax=given) is given


@pytest.mark.parametrize("kind", list(PLOTS))
def test_export_writes_valid_png_svg_and_csv(kind, tmp_path):
    before = plt.get_fignums()
    paths = export_plot(kind, INPUTS[kind](), tmp_path)
    assert plt.get_fignums() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{kind}.{ext}" for ext in ("csv", "png", "svg"))
    png = paths["png"].read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 20_000
    width, height = Image.open(paths["png"]).size
    assert width == (7 if kind == "compressors" else 9) * STYLE["savefig.dpi"]  # 9 bars: the narrowest width
    assert 3 * STYLE["savefig.dpi"] <= height <= 30 * STYLE["savefig.dpi"]
    root = ET.parse(paths["svg"]).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(paths["svg"].read_bytes()) > 10_000
    frame = PLOTS[kind].frame(INPUTS[kind]())
    pd.testing.assert_frame_equal(read_csv(paths["csv"]), frame.reset_index(drop=True), check_dtype=False)


def test_figure_view_renders_png_for_notebooks():
    view = figure_view(PLOTS["compressors"].plot(compressor_rows()))
    assert view._repr_png_()[:8] == PNG_MAGIC
    assert repr(view) == "<pgolf figure 7.0 x 5.0 in>"


def test_same_data_gives_the_same_svg():
    a, b = (figure_bytes(PLOTS["compressors"].plot(compressor_rows()).figure, "svg") for _ in range(2))
    assert a == b and b"<dc:date>" not in a


# ---------------------------------------------------------------- the CSV is what the artists hold

def test_headroom_artists_match_csv(tmp_path):
    paths = export_plot("headroom", headroom_rows(), tmp_path)
    csv = read_csv(paths["csv"])
    ax = PLOTS["headroom"].plot(headroom_rows())
    points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(map(tuple, points)) == sorted(zip(csv["bytes_total"], csv["val_bpb"]))
    frontier = next(line for line in ax.lines if line.get_label() == "Pareto frontier")
    on = csv[csv["on_frontier"]].sort_values("bytes_total")
    assert frontier.get_xydata().tolist() == on[["bytes_total", "val_bpb"]].values.tolist()
    cap = next(line for line in ax.lines if line.get_label().startswith("cap"))
    assert cap.get_xdata()[0] == 16_000_000
    # fp16-embed is over the cap, official-int8+zstd beats official-int8+zlib on bytes at equal BPB
    assert csv["under_cap"].tolist() == [True, True, False, True, True, True]
    assert csv[csv["on_frontier"]]["label"].tolist() == [
        "official-int8 + zstd", "fp16-embed + zlib", "int6 + brotli", "ternary + lzma"]


def test_headroom_labels_do_not_overlap():
    ax = PLOTS["headroom"].plot(headroom_rows())
    labels = set(headroom_rows()["plan"] + " + " + headroom_rows()["compressor"])
    texts = [t for t in ax.texts if t.get_text() in labels]
    assert len(texts) == 6
    ax.figure.draw_without_rendering()
    boxes = text_boxes(texts)
    assert overlapping(boxes) == []
    inside = ax.get_window_extent()
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)


def test_overlapping_detects_overlap():
    ax = new_axes()
    a = ax.text(0.5, 0.5, "same place")
    b = ax.text(0.5, 0.5, "same place too")
    c = ax.text(0.05, 0.05, "far")
    assert overlapping(text_boxes([a, b, c])) == [(0, 1)]


def test_headroom_x_headroom_derived_from_bytes():
    frame = PLOTS["headroom"].frame(headroom_rows(), x="headroom_bytes")
    assert frame["headroom_bytes"].tolist() == [16_000_000 - b for b in headroom_rows()["bytes_total"]]
    assert frame["on_frontier"].tolist() == PLOTS["headroom"].frame(headroom_rows())["on_frontier"].tolist()
    ax = PLOTS["headroom"].plot(headroom_rows(), x="headroom_bytes")
    assert next(line for line in ax.lines if line.get_label().startswith("cap")).get_xdata()[0] == 0


@pytest.mark.parametrize("seed", range(4))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 12, 40), rng.integers(0, 12, 40)
    mask = pareto_front(x, y)
    for i in range(40):
        dominated = any((x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i])) for j in range(40))
        duplicate_before = any(x[j] == x[i] and y[j] == y[i] for j in range(40) if j != i and mask[j])
        assert mask[i] == (not dominated and not duplicate_before)


def test_tensor_bytes_parts_and_markers():
    frame = PLOTS["tensor-bytes"].frame(tensor_rows())
    emb = frame.set_index("label").loc["tok_emb.weight"]
    assert (emb["values_bytes"], emb["scales_bytes"], emb["passthrough_bytes"]) == (0, 0, 1_048_576)
    assert frame["label"].iloc[0] == "tok_emb.weight"  # largest first
    ax = PLOTS["tensor-bytes"].plot(tensor_rows())
    widths = {c.get_label(): [p.get_width() for p in c.patches] for c in bar_containers(ax)}
    assert widths["values"] == frame["values_bytes"].tolist()
    assert widths["scales"] == frame["scales_bytes"].tolist()
    assert widths["passthrough"] == frame["passthrough_bytes"].tolist()
    floor = next(c for c in ax.collections if c.get_label().startswith("entropy floor"))
    np.testing.assert_array_equal(floor.get_offsets()[:, 0], frame["entropy_bytes"].to_numpy())
    assert ax.xaxis.get_label().get_text() == "payload bytes (MB = 10⁶ bytes)"


def test_tensor_bytes_module_rollup_sums_exactly():
    rows = tensor_rows()
    frame = PLOTS["tensor-bytes"].frame(rows, group="module").set_index("label")
    assert frame.loc["blocks.1.attn", "values_bytes"] == 262_145 + 131_073
    assert frame.loc["blocks.1.attn", "tensors"] == 2
    assert frame.loc["blocks.0", "passthrough_bytes"] == 1_024
    quantized = rows["kind"] == "quantized"
    expected = rows.loc[quantized, ["values_bytes", "scales_bytes"]].to_numpy().sum() + \
        rows.loc[~quantized, "payload_bytes"].sum()
    assert frame[["values_bytes", "scales_bytes", "passthrough_bytes"]].to_numpy().sum() == expected


def test_tensor_bytes_top_and_tied():
    rows = tensor_rows()
    rows.loc[len(rows)] = dict(name="lm_head.weight", kind="passthrough", values_bytes=1_048_576, scales_bytes=0,
                               payload_bytes=1_048_576, entropy_bytes=901_200, compressed_bytes=955_000, plan="int6")
    rows["tied_to"] = [None] * (len(rows) - 1) + ["tok_emb.weight"]
    frame = PLOTS["tensor-bytes"].frame(rows, top=3)
    assert len(frame) == 4 and frame["label"].iloc[-1] == f"other ({len(rows) - 1 - 3} tensors)"
    assert frame["payload_bytes"].sum() == rows["payload_bytes"].iloc[:-1].sum()


def test_quant_gap_sorted_with_proxy():
    frame = PLOTS["quant-gap"].frame(gap_rows(), top=4)
    names = list(dict.fromkeys(frame["name"]))
    best = gap_rows().groupby("name")["gap_only_this_bpb"].max().sort_values(ascending=False)
    assert names == list(best.index[:4])
    ax = PLOTS["quant-gap"].plot(gap_rows(), top=4)
    for container in bar_containers(ax):
        scheme = container.get_label()
        assert [p.get_width() for p in container.patches] == \
            frame.loc[frame["scheme"] == scheme, "gap_only_this_bpb"].tolist()
    proxies = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert sorted(proxies) == sorted(frame["proxy_gap_bpb"])


def test_compressors_ratio_values():
    frame = PLOTS["compressors"].frame(compressor_rows())
    assert len(frame) == 9
    row = frame[(frame["scheme"] == "int6") & (frame["compressor"] == "zlib")].iloc[0]
    assert row["compressed_bytes"] == 2 * int(6_100_000 * 1.11 / 2) + 1
    assert row["ratio_to_entropy"] == row["compressed_bytes"] / 6_100_000
    ax = PLOTS["compressors"].plot(compressor_rows())
    heights = {c.get_label(): [p.get_height() for p in c.patches] for c in bar_containers(ax)}
    assert heights["brotli"] == frame.loc[frame["compressor"] == "brotli", "ratio_to_entropy"].tolist()
    byte_frame = PLOTS["compressors"].frame(compressor_rows(), relative="bytes")
    assert (byte_frame["bytes_over_entropy"] == byte_frame["compressed_bytes"] - byte_frame["entropy_bytes"]).all()


def test_exchange_rate_ranking_and_budget():
    frame = PLOTS["exchange-rate"].frame(exchange_rows(), budget_bytes=100_000)
    up = frame[frame["direction"] == "upgrade"]
    # BPB per 1,000 bytes: b 8e-5, a 5e-5, c 2e-5, d 1e-5 -> b and a fit in 100,000 bytes, c does not, d does
    assert up["name"].tolist() == ["b", "a", "c", "d"]
    assert up["exchange_bpb_per_kb"].tolist() == pytest.approx([8e-5, 5e-5, 2e-5, 1e-5], rel=1e-12)
    assert up["within_budget"].tolist() == [True, True, False, True]
    down = frame[frame["direction"] == "downgrade"]
    assert down["name"].tolist() == ["c", "a", "b"]  # cheapest saving first
    assert down["within_budget"].tolist() == [True, True, False]
    assert (frame["bpb_per_kb"] == frame["delta_bpb"] / (frame["delta_bytes"] / 1000)).all()
    ax = PLOTS["exchange-rate"].plot(exchange_rows(), budget_bytes=100_000)
    widths = sorted(p.get_width() for c in bar_containers(ax) for p in c.patches)
    assert widths == sorted(frame["exchange_bpb_per_kb"])


def test_training_curve_lines_match_csv_and_tokens():
    frame = PLOTS["training-curve"].frame(curve_input(), x="tokens")
    ax = PLOTS["training-curve"].plot(curve_input(), x="tokens")
    lines = {line.get_label(): line.get_xydata().tolist() for a in all_axes(ax) for line in a.lines}
    for (source, metric), rows in frame.groupby(["source", "metric"]):
        assert lines[f"{source} · {metric}"] == rows[["tokens", "value"]].values.tolist()
    assert frame.loc[frame["source"] == "record", "tokens"].max() == 60 * 16384
    assert len(ax.figure.axes) == 2 and ax.figure.axes[1].get_ylabel() == "val_bpb (bits per byte)"


def test_training_curve_reads_log_paths(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(LOG_A)
    b.write_text(LOG_B)
    frame = PLOTS["training-curve"].frame([a, b], metrics=("val_bpb",))
    assert frame["source"].unique().tolist() == [f"{tmp_path.name}/a.log", f"{tmp_path.name}/b.log"]
    assert frame["value"].tolist() == [3.4, 2.5, 1.6] * 2


def test_training_curve_tokens_need_batch_tokens():
    with pytest.raises(PgolfInputError, match="no tokens for log.*train_batch_tokens"):
        PLOTS["training-curve"].frame(parse_log("step:1/2 train_loss:3.0\n"), x="tokens")


# ---------------------------------------------------------------- inputs and bad input

def test_report_and_json_dict_inputs():
    report = Report(title="budget", headline={"plan": "int6", "compressor": "zstd"},
                    frame=tensor_rows().drop(columns="plan"))
    assert as_frame(report)["plan"].unique().tolist() == ["int6"]
    as_dict = json.loads(report.to_json())
    pd.testing.assert_frame_equal(PLOTS["tensor-bytes"].frame(as_dict), PLOTS["tensor-bytes"].frame(report))
    assert PLOTS["tensor-bytes"].frame(report).attrs["plan"] == "int6"
    assert len(as_frame(as_dict["tensors"])) == len(tensor_rows())


@pytest.mark.parametrize("kind, data, problem", [
    ("headroom", pd.DataFrame({"plan": ["a"], "compressor": ["z"]}), "needs column(s) bytes_total, val_bpb"),
    ("headroom", headroom_rows().assign(val_bpb=["x"] * 6), "non-numeric value 'x'"),
    ("headroom", pd.concat([headroom_rows()] * 2), "more than one row for 'official-int8 + zlib'"),
    ("tensor-bytes", headroom_rows(), "needs column(s) name, kind"),
    ("quant-gap", gap_rows().assign(gap_only_this_bpb=np.nan), "no values in column gap_only_this_bpb"),
    ("compressors", compressor_rows().assign(entropy_bytes=0), "entropy_bytes is 0"),
    ("exchange-rate", exchange_rows().assign(delta_bytes=0), "no step changes any bytes"),
    ("headroom", 42, "cannot plot a int"),
    ("headroom", pd.DataFrame(columns=["plan", "compressor", "bytes_total", "val_bpb"]), "no rows"),
])
def test_bad_data_raises_input_error(kind, data, problem):
    with pytest.raises(PgolfInputError, match=re.escape(problem)):
        PLOTS[kind].plot(data)


def test_cli_plot_csv_and_json(tmp_path, capsys):
    headroom_rows().to_csv(tmp_path / "h.csv", index=False)
    assert pgolf_main(["plot", "headroom", str(tmp_path / "h.csv"), "-o", str(tmp_path / "out"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["png"].endswith("out/headroom.png")
    report = {"plan": "int6", "compressor": "zstd", "tensors": tensor_rows().drop(columns="plan").to_dict("records")}
    (tmp_path / "b.json").write_text(json.dumps(report, allow_nan=True).replace("NaN", "null"))
    assert pgolf_main(["plot", "tensor-bytes", str(tmp_path / "b.json"), "-o", str(tmp_path / "tb"),
                       "--group", "module", "--title", "my title"]) == 0
    out = capsys.readouterr().out
    assert out.count("wrote ") == 3 and "tensor-bytes.svg" in out
    csv = read_csv(tmp_path / "tb" / "tensor-bytes.csv")
    assert csv["label"].tolist() == ["tok_emb", "blocks.1.mlp", "blocks.0.mlp", "blocks.1.attn", "blocks.0.attn",
                                     "blocks.0", "blocks.1"]


def test_cli_training_curve_from_logs(tmp_path, capsys):
    (tmp_path / "a.log").write_text(LOG_A)
    (tmp_path / "b.log").write_text(LOG_B)
    code = pgolf_main(["plot", "training-curve", str(tmp_path / "a.log"), str(tmp_path / "b.log"),
                       "-o", str(tmp_path / "o"), "--x", "tokens", "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""
    assert read_csv(tmp_path / "o" / "training-curve.csv")["source"].nunique() == 2


@pytest.mark.parametrize("kind, name, content, problem", [
    ("headroom", "missing.csv", None, "no such file"),
    ("headroom", "bin.csv", b"a,b\n\x00\x01\x02", "binary file"),
    ("headroom", "bad.json", b'{"plan": ', "not valid JSON"),
    ("headroom", "empty.csv", b"", "empty file"),
    ("headroom", "cols.csv", b"a,b\n1,2\n", "headroom plot needs column(s) plan, compressor"),
    ("headroom", "two.json", b'{"x": [{"a": 1}], "y": [{"b": 2}]}', "several row lists"),
    ("training-curve", "junk.log", b"nothing\nhere\n", "not a training log"),
    ("tensor-bytes", "h.csv", b"plan,compressor\na,b\n", "needs column(s) name"),
])
def test_cli_bad_input_one_line_exit_2_no_files(tmp_path, capsys, kind, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code = pgolf_main(["plot", kind, str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"pgolf: error: {path}") and problem in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_rejects_option_of_another_kind(tmp_path, capsys):
    headroom_rows().to_csv(tmp_path / "h.csv", index=False)
    argv = ["plot", "headroom", str(tmp_path / "h.csv"), "-o", str(tmp_path / "o"), "--group", "module"]
    assert pgolf_main(argv) == 2
    assert "takes no option group" in capsys.readouterr().err


# ---------------------------------------------------------------- units

@pytest.mark.parametrize("value, unit", [(15_863_489, (1_000_000, "MB")), (262_144, (1_000, "KB")), (512, (1, "bytes")),
                                         (0, (1, "bytes"))])
def test_byte_unit(value, unit):
    assert byte_unit(value) == unit


def test_byte_formatting():
    assert format_bytes(15_863_489) == "15,863,489 bytes"
    assert format_mb(15_863_489) == "15.86 MB"
    assert mb_formatter()(16_000_000, 0) == "16.00"
    ax = new_axes()
    ax.plot([0, 2_000_000], [0, 1])
    assert byte_axis(ax.xaxis, 2_000_000, what="bytes_total") == "bytes_total (MB = 10⁶ bytes)"
    ax.figure.draw_without_rendering()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "1.0" in ticks and all("e" not in t for t in ticks)
    ax2 = new_axes()
    ax2.plot([0, 500_000], [0, 1])
    byte_axis(ax2.xaxis, 500_000)
    ax2.figure.draw_without_rendering()
    assert "200" in [t.get_text() for t in ax2.get_xticklabels()]


@pytest.mark.parametrize("module", ["style", "formatting", "frames", "labels", "budget_plots", "gap_plots",
                                    "curve_plots", "plots", "kinds"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"pgolf.figures.{module}"))
    assert result.failed == 0 and result.attempted > 0


def test_module_of():
    assert module_of("blocks.3.attn.c_q.weight") == "blocks.3.attn"
    assert module_of("blocks.3.attn.c_q.weight", depth=2) == "blocks.3"
    assert module_of("skip_weights") == "skip_weights"
