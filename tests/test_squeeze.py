"""`pgolf squeeze`: floors, exact codec bytes per tensor, best choice, totals, CLI forms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pgolf.budget.exact.build import assign, quantize_item
from pgolf.budget.exact.squeeze import CODEC_COLUMNS, conditional_floor_bytes, squeeze
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files import entropy
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.glossary import COLUMNS
from pgolf.figures.cli import main


def model():
    g = torch.Generator().manual_seed(1)
    cols = torch.rand(1, 320, generator=g) * 3 + 0.1  # columns of very different magnitude: H(q|col) < H(q)
    return {"mlp.fc.weight": torch.randn(256, 320, generator=g) * cols,
            "emb.weight": torch.randn(512, 200, generator=g), "gain": torch.rand(64, generator=g)}


def test_rows_are_exact_bytes_and_floors():
    sd = model()
    r = squeeze(sd, "int6", codecs=("zlib", "brotli+byte-shuffle", "ans"))
    f = r.frame.set_index("name")
    assert set(r.frame.columns) <= set(COLUMNS)
    items = {i.name: quantize_item(i) for i in assign(sd, "int6")}
    for name, item in items.items():
        assert f.loc[name, "zlib_bytes"] == len(get_compressor("zlib").compress(item.values))
        assert f.loc[name, "ans_bytes"] == len(entropy.encode(np.frombuffer(item.values, np.uint8)))
        assert f.loc[name, "best_bytes"] == min(f.loc[name, c] for c in ("zlib_bytes", "brotli_shuffle_bytes", "ans_bytes"))
    fc = f.loc["mlp.fc.weight"]
    assert fc.entropy_col_group_bytes < 0.97 * fc.entropy_bytes  # the planted column structure shows
    assert fc.entropy_row_group_bytes <= fc.entropy_bytes  # per-row scales already normalize rows
    assert fc.entropy_bytes + fc.ans_table_bytes < fc.ans_bytes < (fc.entropy_bytes + fc.ans_table_bytes) * 1.001 + 16
    assert np.isnan(f.loc["gain", "entropy_row_group_bytes"])  # fp32 passthrough: no symbol matrix
    h = r.headline
    assert h["best_bytes"] == int(r.frame.best_bytes.sum()) <= h["ans_bytes"]
    assert h["net_saving_bytes"] == h["brotli_shuffle_bytes"] - h["best_bytes"] - h["bytes_code_decoder"]
    assert h["bytes_code_decoder"] > 500  # the ANS decoder block, chosen for the int6 matrices


def test_conditional_floor_never_above_order0():
    rng = np.random.default_rng(0)
    q = np.clip(np.round(rng.normal(0, 4, (64, 96))), -31, 31).astype(np.int8)
    h0 = entropy.entropy_bits(q.view(np.uint8)) / 8
    for axis in (0, 1):
        assert conditional_floor_bytes(q, axis) <= h0 + 1e-9
    assert conditional_floor_bytes(q, 0, groups=1) == pytest.approx(h0, rel=1e-12)


def test_unknown_codec_is_an_input_error():
    with pytest.raises(PgolfInputError, match="squeeze codecs are"):
        squeeze(model(), "int6", codecs=("gzip",))


def test_cli_json_and_markdown(tmp_path, capsys):
    path = tmp_path / "m.pt"
    torch.save(model(), path)
    assert main(["squeeze", str(path), "--plan", "int6", "--codecs", "zlib,ans", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"] == "int6" and len(out["tensors"]) == 3 and "zpaq_bytes" not in out
    assert main(["squeeze", str(path), "--plan", "int6", "--codecs", "ans", "--markdown", "--quiet"]) == 0
    assert "| name |" in capsys.readouterr().out
    assert set(CODEC_COLUMNS.values()) <= set(COLUMNS)


def test_layouts_keep_floors_and_count_the_permutation():
    sd = model()
    plain = squeeze(sd, "int6", codecs=("zlib", "ans")).frame.set_index("name")
    rows = squeeze(sd, "int6", codecs=("zlib", "ans"), layout="sorted-rows").frame.set_index("name")
    tr = squeeze(sd, "int6", codecs=("ans",), layout="transpose", permute_mlp=True).frame.set_index("name")
    # order-0 is permutation invariant: ANS differs by exactly the stored permutation (256 rows x 8 bits)
    assert rows.loc["mlp.fc.weight", "ans_bytes"] == plain.loc["mlp.fc.weight", "ans_bytes"] + 256
    assert tr.loc["emb.weight", "ans_bytes"] == plain.loc["emb.weight", "ans_bytes"]
    assert (rows.entropy_bytes == plain.entropy_bytes).all()
    with pytest.raises(PgolfInputError, match="layout"):
        squeeze(sd, "int6", layout="zigzag")


def test_column_tables_pay_off_where_columns_differ():
    r = squeeze(model(), "int6", codecs=("ans", "ans:col16", "ans:row16"))
    fc = r.frame.set_index("name").loc["mlp.fc.weight"]
    assert fc.ans_col16_bytes < 0.98 * fc.ans_bytes  # 16 tables + 160 label bytes beat one table
    assert fc.ans_col16_bytes > fc.entropy_col_group_bytes  # never below its own floor
    assert fc.best_codec == "ans:col16" and fc.best_bytes == fc.ans_col16_bytes  # the emitted decoder reads it
    f = r.frame
    assert r.headline["ans_col16_bytes"] == int(f.ans_col16_bytes.fillna(f.ans_bytes).sum())
    # what squeeze reports is the compressor's real stream of that tensor alone, and it roundtrips
    from pgolf.budget.exact.build import assign, quantize_item
    from pgolf.budget.files.compressors import get_compressor

    item = quantize_item(next(i for i in assign(model(), "int6") if i.name == "mlp.fc.weight"))
    blob = get_compressor("ans:col16").compress(item.values, [(0, *item.shape)])
    assert len(blob) == fc.ans_col16_bytes and get_compressor("ans:col16").decompress(blob, 1 << 20) == item.values
    # the grouped decoder holds plain ans's code: counted once, not once per codec chosen
    from pgolf.budget.exact.squeeze import _decoder_cost
    from pgolf.budget.quant.plans import resolve_plan

    int6 = resolve_plan("int6")
    both, grouped, ans = (_decoder_cost(model(), int6, c) for c in ({"ans", "ans:col16"}, {"ans:col16"}, {"ans"}))
    assert both == grouped > ans > 0


def test_plot_has_one_marker_per_tensor_and_codec():
    from pgolf.figures.squeeze_plots import plot_squeeze, squeeze_frame

    r = squeeze(model(), "int6", codecs=("zlib", "ans"))
    frame = squeeze_frame(r)
    assert len(frame) == 2 * 3 and (frame.ratio_to_entropy > 0.9).all()
    ax = plot_squeeze(r.to_dict()["tensors"])
    assert sum(len(line.get_xdata()) for line in ax.lines) == 6 + 2  # markers + the floor line's two ends


def test_free_permutations_keep_order0_bytes(capsys):
    from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

    sd = synthetic_state_dict(baseline_specs(2, 256, 4, 2, 2, 256), seed=1)
    plain = squeeze(sd, "int6", codecs=("ans",))
    moved = squeeze(sd, "int6", codecs=("ans",), permute_mlp=True, permute_heads=True)
    assert moved.headline["layout"] == "as-is + permute-mlp + permute-heads"
    assert moved.headline["ans_bytes"] == plain.headline["ans_bytes"]  # order-0 ignores order
    assert moved.headline["entropy_bytes"] == plain.headline["entropy_bytes"]
    assert main(["squeeze", "--baseline", "--plan", "int6", "--codecs", "gzip", "--quiet"]) == 2
    assert "squeeze codecs are" in capsys.readouterr().err


@pytest.mark.parametrize("plan", ["int6", "official-int8"])
def test_grouped_artifacts_code_every_quantized_matrix_by_class(plan):
    """build_artifact, compare and budget see the same matrices: every quantized one-byte matrix of
    at least MATRIX_MIN_VALUES values, in both artifact layouts; the artifact reads back exactly."""
    from pgolf.budget.exact import container
    from pgolf.budget.exact.build import build_artifact, fake_quantize, matrix_shape
    from pgolf.budget.exact.compare import compare
    from pgolf.budget.exact.decode import read_artifact

    sd = model()
    blob = build_artifact(sd, plan, "ans:col16")
    body = container.parse_frame(blob)[2]
    want = sum(1 for i in assign(sd, plan) if i.tied_to is None and matrix_shape(quantize_item(i)))
    assert want == 2 and int.from_bytes(body[2:6], "little") == want
    assert int(compare(sd, [plan], ["ans:col16"]).frame.bytes_model.iloc[0]) == len(blob)
    back, fq = read_artifact(blob), fake_quantize(sd, plan)
    assert all(torch.equal(back[k], fq[k]) for k in fq)
