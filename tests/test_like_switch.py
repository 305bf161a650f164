"""predict --like where draws cross LIKE_EXACT_MAX_BYTES: an exact sub-model keeps the prediction continuous."""
from __future__ import annotations

import pytest

from conftest import fixture_path
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.forecast import like_bytes
from pgolf.budget.forecast.calibration import role_of
from pgolf.budget.forecast.estimate import fit_entry, load_fit
from pgolf.budget.forecast.like import load_recipe
from pgolf.budget.forecast.like_bytes import sub_model, sub_model_bound
from pgolf.budget.forecast.predict import predict
from pgolf.budget.quant.plans import quantize_small


@pytest.fixture(scope="module")
def d128():
    return load_recipe(fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt"))


def _at(monkeypatch, limit, recipe, shape, plan, compressor):
    monkeypatch.setattr(like_bytes, "LIKE_EXACT_MAX_BYTES", limit)
    return predict(**{**recipe.config, **shape}, plan=plan, compressor=compressor, like=recipe)


# (shape change, plan, compressor): a shape the switch matters for (8 x 256, 5.56 MB stored under
# official-int8) and the checkpoint's own shape (488 kB stored, block matrices quantized too)
CASES = [({"layers": 8, "dim": 256}, "official-int8", "zlib"), ({}, quantize_small("int6-floor"), "zstd"),
         ({}, quantize_small("sdclip-int6-int7emb"), "lzma")]


@pytest.mark.parametrize("shape, plan, compressor", CASES, ids=["8x256-zlib", "own-int6-floor-zstd", "own-sdclip-lzma"])
def test_predictions_just_below_and_above_the_switch_meet(d128, monkeypatch, shape, plan, compressor):
    """Below the switch every draw is measured whole; just above (the switch 3% under the draw's
    stored bytes) a sub-model is measured and divided by its share c of the draw's estimate. If the
    estimator errs by at most e (its worst whole-artifact error) on any part, each draw is off by at
    most (1 - c) 2e / (1 - e) of itself, so the means differ by at most that times the largest draw."""
    below = _at(monkeypatch, 1 << 40, d128, shape, plan, compressor)
    stored = below.headline["payload_bytes"]
    above = _at(monkeypatch, int(stored * 0.97), d128, shape, plan, compressor)
    assert below.headline["like_path"] == "exact" and below.headline["measured_share"] == 1.0
    assert above.headline["like_path"] == "sub-model" and 0.9 < above.headline["measured_share"] < 1.0
    assert any("sub-model of its whole tensors" in n for n in above.notes)
    err = fit_entry(load_fit(), compressor)[1]["artifact_rel_err_max"]
    bound = sub_model_bound(above.headline["measured_share"], err) * max(above.variants.values())
    jump = above.headline["bytes_model"] - below.headline["bytes_model"]
    assert abs(jump) <= bound, (jump, bound)
    # the interval widens by the same allowance, so it still holds the exact-path prediction
    assert above.headline["bytes_model_low"] <= below.headline["bytes_model"] <= above.headline["bytes_model_high"]


def test_far_above_the_switch_the_sub_model_tracks_the_exact_draw(d128, monkeypatch):
    """8 x 256 with the switch at 1 MiB: a fifth of the draw measured, the rest priced from it."""
    plan = "official-int8"
    below = _at(monkeypatch, 1 << 40, d128, {"layers": 8, "dim": 256}, plan, "zlib")
    above = _at(monkeypatch, 1 << 20, d128, {"layers": 8, "dim": 256}, plan, "zlib")
    share = above.headline["measured_share"]
    assert 0.15 < share < 0.25
    err = fit_entry(load_fit(), "zlib")[1]["artifact_rel_err_max"]
    bound = sub_model_bound(share, err) * max(above.variants.values())
    assert abs(above.headline["bytes_model"] - below.headline["bytes_model"]) <= bound


def test_with_nothing_measured_the_estimate_stands_with_the_estimators_error(d128, monkeypatch):
    """A switch below every tensor: no sub-model, the draw's estimate as it is, the interval widened by 2e/(1-e)."""
    plan = quantize_small("int6-floor")
    exact = measure_budget(d128.tensors, plan, "zstd", per_tensor=False).headline["bytes_model"]
    h = _at(monkeypatch, 0, d128, {}, plan, "zstd").headline
    err = fit_entry(load_fit(), "zstd")[1]["artifact_rel_err_max"]
    assert h["measured_share"] == 0.0 and h["like_path"] == "sub-model"
    assert abs(h["bytes_model"] / exact - 1) <= err
    assert h["bytes_model_low"] <= exact <= h["bytes_model_high"]


def test_sub_model_keeps_every_role_near_its_share_and_fills_up():
    sizes = {"tok_emb.weight": 262_144}
    for i in range(8):
        sizes |= {f"blocks.{i}.attn.c_q.weight": 65_536, f"blocks.{i}.attn.c_k.weight": 32_768,
                  f"blocks.{i}.mlp.fc.weight": 131_072, f"blocks.{i}.mlp.proj.weight": 131_072}
    total = sum(sizes.values())
    for limit in (total // 4, total // 2, total - 40_000, total):
        chosen = sub_model(sizes, limit)
        used = sum(sizes[n] for n in chosen)
        assert used <= limit and all(sizes[n] > limit - used for n in sizes if n not in chosen)  # filled
        for role in ("attn_in", "mlp_in", "mlp_out"):
            mine = [n for n in sizes if role_of(n) == role]
            share = sum(sizes[n] for n in chosen if n in mine) / sum(sizes[n] for n in mine)
            assert abs(share - limit / total) <= 1 / 8, (limit, role, share)  # one tensor of the role
    blocks = {int(n.split(".")[1]) for n in sub_model(sizes, total // 4) if n.startswith("blocks.")}
    assert min(blocks) == 0 and max(blocks) >= 5  # spread over depth, not the first blocks only
