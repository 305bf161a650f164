"""predict --like on a run of our own recipe: the trainer's short CPU run predicts its own shape."""
from __future__ import annotations

import pytest

from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.forecast.like import load_recipe, recipe_table
from pgolf.budget.forecast.predict import predict
from pgolf.budget.quant.plans import quantize_small
from trainer_fixtures import UNINTERRUPTED_NAME, UNINTERRUPTED_RUN, shared_corpus, shared_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The trainer tests' 200-step 2L x 64 run (built once per session, about 30 s of one core)."""
    info = shared_corpus(tmp_path_factory)
    env = {**UNINTERRUPTED_RUN, "DATA_PATH": info.data_path, "TOKENIZER_PATH": info.tokenizer_path}
    out, _ = shared_run(tmp_path_factory, UNINTERRUPTED_NAME, env)
    return load_recipe(out / "final_model.pt")


CASES = [("official-int8", "zlib"), (quantize_small("int6-floor"), "zstd"),
         (quantize_small("sdclip-int6-int7emb"), "brotli+byte-shuffle"), (quantize_small("int6-floor-fp16emb"), "lzma")]


def test_own_run_config_is_read_back(own):
    assert own.config == {"layers": 2, "dim": 64, "heads": 4, "kv_heads": 2, "mlp_mult": 2.0, "vocab": 1024}


@pytest.mark.parametrize("plan, compressor", CASES, ids=lambda x: getattr(x, "name", x))
def test_own_run_predicts_its_own_shape_within_one_percent(own, plan, compressor):
    exact = measure_budget(own.tensors, plan, compressor, per_tensor=False).headline
    h = predict(**own.config, plan=plan, compressor=compressor, like=own).headline
    assert abs(h["bytes_model"] / exact["bytes_model"] - 1) < 0.01, (h["bytes_model"], exact["bytes_model"])
    assert h["payload_bytes"] == exact["payload_bytes"] and h["like_path"] == "exact"
    assert h["bytes_model_low"] < h["bytes_model"] < h["bytes_model_high"]


def test_own_run_rows_sit_under_the_int6_floor(own):
    """200 steps from a small init: the block matrices never outgrow the records' 1/31 floor, which
    is why a short run's --like under-prices records trained 10^4 steps with floor presets."""
    t = recipe_table(own, quantize_small("int6-floor")).set_index("role")
    assert (t.loc[["attn_in", "attn_out", "mlp_in", "mlp_out"], "floor_bound_frac"] > 0.99).all()
    assert t.loc["embedding", "floor_bound_frac"] < 1.0
