"""pgolf predict --like, --delta and the record-recipe presets, on the participants' trained fixtures."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from conftest import fixture_path
from pgolf.budget import predict_commands
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.forecast.like import Recipe, draw_like, load_recipe, recipe_table, source_name
from pgolf.budget.forecast.predict import config_specs, predict, predict_delta
from pgolf.budget.forecast.shapes import baseline_specs, infer_config, param_count
from pgolf.budget.quant.plans import PRESETS, quantize_small

MODELS = ("sp1024-2L-d64", "sp1024-3L-d128")


def recipe(model: str) -> Recipe:
    path = fixture_path("artifacts", model, "final_model.pt")
    if not path.exists():
        pytest.skip(f"fixture {path} absent (../shared/fixtures not mounted)")
    return load_recipe(path)


@pytest.fixture(scope="module")
def d128() -> Recipe:
    return recipe("sp1024-3L-d128")


def test_infer_config_reads_the_fixtures_shapes():
    r = recipe("sp1024-2L-d64")
    assert r.config == {"layers": 2, "dim": 64, "heads": 4, "kv_heads": 2, "mlp_mult": 1.0, "vocab": 1024}
    assert param_count(config_specs(**r.config)) == 107_080  # the fixture README's count
    shapes = {s.name: s.shape for s in baseline_specs(9, 512, 8, 4, 3, 1024, num_unique_layers=3)}
    # depths 8 and 9 store the same tensors (4 skips): the smaller is named, the bytes are the same
    assert infer_config(shapes) == {"layers": 8, "dim": 512, "heads": 8, "kv_heads": 4, "mlp_mult": 3.0,
                                    "vocab": 1024, "unique_layers": 3}
    assert infer_config({"tok_emb.weight": (10, 4), "w": (3, 3)}) is None


# (plan, compressor): the official export as the fixtures shipped, and the new presets with the
# block matrices quantized too (quantize_small: the fixtures' blocks are under the passthrough limit)
CASES = [("official-int8", "zlib"), (quantize_small("int6-floor"), "zstd"),
         (quantize_small("sdclip-int6-int7emb"), "brotli+byte-shuffle"), (quantize_small("int6-floor-fp16emb"), "zlib")]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("plan, compressor", CASES, ids=lambda x: getattr(x, "name", x))
def test_like_predicts_its_own_shape_within_one_percent(model, plan, compressor):
    r = recipe(model)
    exact = measure_budget(r.tensors, plan, compressor, per_tensor=False).headline["bytes_model"]
    h = predict(**r.config, plan=plan, compressor=compressor, like=r).headline
    assert abs(h["bytes_model"] / exact - 1) < 0.01, (h["bytes_model"], exact)
    assert h["payload_bytes"] == measure_budget(r.tensors, plan, "zlib", per_tensor=False).headline["payload_bytes"]
    assert h["bytes_model_low"] < h["bytes_model"] < h["bytes_model_high"] and h["scale"] == "like"


def test_like_grows_with_depth_and_maps_blocks_by_relative_depth(d128):
    sizes = [predict(**{**d128.config, "layers": n}, plan="official-int8", compressor="zlib", like=d128,
                     interval=False).headline["bytes_model"] for n in (2, 3, 5)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3, sizes
    assert [source_name(f"blocks.{i}.mlp.fc.weight", d128, 5) for i in range(5)] == [
        f"blocks.{j}.mlp.fc.weight" for j in (0, 0, 1, 2, 2)]  # round(i * 2 / 4): 0, 0.5 -> 0, 1, 1.5 -> 2, 2


def test_draw_like_keeps_values_and_never_repeats_a_row():
    src = torch.randn(50, 40, generator=torch.Generator().manual_seed(0))
    same = draw_like(src, (50, 40), seed=3)
    assert torch.equal(same.sort(dim=0).values, src.sort(dim=0).values) and not torch.equal(same, src)
    wide = draw_like(src, (120, 60), seed=3)
    assert wide.shape == (120, 60) and len({tuple(r.tolist()) for r in wide}) == 120
    assert set(wide.flatten().tolist()) <= set(src.flatten().tolist())
    kept = draw_like(src, (50, 40), seed=3, keep_order=True)
    assert torch.equal(kept, src)


def test_recipe_table_measures_floor_binding_and_entropy(d128):
    t = recipe_table(d128, quantize_small("int6-floor")).set_index("role")
    # a short run: every block row sits under the 1/31 floor, a quarter of the embedding rows do
    assert t.loc["mlp_in", "floor_bound_frac"] == 1.0 and t.loc["attn_in", "floor_bound_frac"] > 0.99
    assert t.loc["embedding", "floor_bound_frac"] == pytest.approx(251 / 1024)
    assert 3.0 < t.loc["mlp_out", "entropy_bits_per_value"] < t.loc["embedding", "entropy_bits_per_value"] < 6.0
    assert t["floor_bound_frac"].isna().all() == False  # noqa: E712 (pandas bool)
    assert recipe_table(d128, quantize_small("sdclip-int6-int7emb"))["floor_bound_frac"].isna().all()


def test_delta_pairs_the_same_draws(d128):
    r = predict_delta(d128.config, {"layers": 4}, plan="official-int8", compressor="zlib", like=d128)
    h = r.headline
    assert h["delta_params"] == 115_332  # one 128-wide block (10 tensors) and one more U-Net skip
    assert abs(h["delta_bytes_model"] - (h["bytes_model_b"] - h["bytes_model"])) <= 1
    assert h["delta_bytes_model_low"] <= h["delta_bytes_model"] <= h["delta_bytes_model_high"]
    assert int(r.frame["delta_bytes_model"].sum()) == pytest.approx(h["delta_bytes_model"], rel=0.05)
    plan_change = predict_delta(d128.config, None, plan="official-int8", plan_b="fp16-embed", compressor="zlib",
                                like=d128).headline
    assert plan_change["delta_payload_bytes"] == 1024 * 128 * 2 - (1024 * 128 + 1024 * 2)  # fp16 vs int8 + scales
    assert plan_change["delta_params"] == 0 and plan_change["delta_bytes_model"] > 0


def test_delta_with_shipped_statistics_contains_the_difference():
    h = predict_delta({"layers": 4, "dim": 256}, {"mlp_mult": 3}, plan="int6-floor", compressor="zstd").headline
    assert h["delta_bytes_model_low"] <= h["bytes_model_b"] - h["bytes_model"] <= h["delta_bytes_model_high"]
    # per layer: fc and proj gain 256 x 256 int6 values (a byte each), fc 256 more fp16 row scales
    assert h["delta_payload_bytes"] == 4 * (2 * 256 * 256 + 256 * 2)


GOLDEN = {  # (payload bytes, exact zlib bytes) of the d128 fixture, block matrices quantized too
    "int6-floor": (488496, 289334),
    "int6-floor-int8emb": (488496, 325413),
    "int6-floor-fp16emb": (617520, 441916),
    "int6-floor-int8emb-latek": (488496, 325422),
    "sdclip-int6-int7emb": (488496, 252135),
    "sdclip-int6-int7emb-k14": (488496, 256532),
}


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_record_presets_golden_bytes(d128, preset):
    h = measure_budget(d128.tensors, quantize_small(preset), "zlib", per_tensor=False).headline
    assert (h["payload_bytes"], h["bytes_model"]) == GOLDEN[preset]
    assert h["roundtrip_exact"] is True


def test_record_presets_assign_what_the_records_did():
    m = torch.zeros(1536, 512)
    int6 = PRESETS["int6-floor-int8emb"]
    assert int6.scheme_for("blocks.0.mlp.fc.weight", m) == "int6:amax:floor(1)"
    assert int6.scheme_for("tok_emb.weight", m) == "int8_clean_per_row_v1"
    assert PRESETS["int6-floor-fp16emb"].scheme_for("tok_emb.weight", m) == "fp16"
    late = PRESETS["int6-floor-int8emb-latek"]
    assert [late.scheme_for(f"blocks.{i}.attn.c_k.weight", m) for i in (8, 9, 10)] == [
        "int6:amax:floor(1)", "fp16", "fp16"]
    sd = PRESETS["sdclip-int6-int7emb"]
    assert [sd.scheme_for(n, m) for n in ("tok_emb.weight", "blocks.0.mlp.proj.weight", "blocks.0.attn.c_q.weight")] \
        == ["int7:sdclip(15)", "int6:sdclip(12)", "int6:sdclip(13)"]
    assert all(p.description for p in PRESETS.values())


@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_every_new_preset_predicts(preset):
    h = predict(layers=2, dim=128, plan=preset, compressor="zstd", interval=False).headline
    assert h["plan"] == preset and 0 < h["bytes_model"] < h["payload_bytes"]


def _args(argv):
    p = argparse.ArgumentParser()
    predict_commands.register(p.add_subparsers())
    return p.parse_args(["predict", *argv])


def test_cli_like_defaults_to_the_checkpoints_shape(d128, capsys):
    path = str(fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt"))
    assert predict_commands.run_predict(_args(["--like", path, "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 476_812 and out["like"] == path
    assert any(n.startswith("EXACT:") for n in out["notes"]) and any(n.startswith("PREDICTED") for n in out["notes"])
    assert predict_commands.run_predict(_args(["--like", path, "--delta", "layers=4", "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["delta_params"] == 115_332


def test_a_plan_file_works_in_predict_budget_and_compare(tmp_path, d128):
    from pgolf.budget.exact.compare import compare

    path = PRESETS["sdclip-int6-int7emb"].save(tmp_path / "mine.json")
    by_name = predict(layers=2, dim=128, plan="sdclip-int6-int7emb", compressor="zlib", interval=False).headline
    by_file = predict(layers=2, dim=128, plan=str(path), compressor="zlib", interval=False).headline
    assert by_file["bytes_model"] == by_name["bytes_model"] and by_file["plan"] == "sdclip-int6-int7emb"
    exact = measure_budget(d128.tensors, str(path), "zlib", per_tensor=False).headline["bytes_model"]
    assert exact == measure_budget(d128.tensors, "sdclip-int6-int7emb", "zlib", per_tensor=False).headline["bytes_model"]
    frame = compare(d128.tensors, [str(path), "int6-floor-int8emb"], ["zlib"], quiet=True).frame
    assert set(frame["plan"]) == {"sdclip-int6-int7emb", "int6-floor-int8emb"}


def test_a_source_drawn_twice_repeats_no_row(d128):
    """Six blocks from the checkpoint's three: the second use of a block shuffles every row."""
    from pgolf.budget.forecast.like import like_state_dict

    sd, missing = like_state_dict(config_specs(**{**d128.config, "layers": 6}), d128, seed=0)
    assert missing == []
    rows = torch.cat([sd[f"blocks.{i}.mlp.fc.weight"] for i in range(6)])
    assert len({tuple(r.tolist()) for r in rows}) == rows.shape[0]
    a, b = sd["blocks.0.mlp.fc.weight"], sd["blocks.1.mlp.fc.weight"]  # both from checkpoint block 0
    assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
