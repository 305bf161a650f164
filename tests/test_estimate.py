"""The fast estimate: entropy features, and estimate vs the measuring twin on small seeded models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pgolf.budget.artifact import build_artifact
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.estimate import (FIT_FORMAT, byte_stats, estimate_budget, load_fit, symbol_entropy_bits,
                                   tensor_streams)
from pgolf.budget.shapes import baseline_specs, synthetic_state_dict

SMALL = dict(num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=512)


@pytest.fixture(scope="module")
def small_models():
    return {seed: synthetic_state_dict(baseline_specs(**SMALL), seed=seed) for seed in (3, 4)}


def test_byte_stats_extremes():
    uniform = np.frombuffer(bytes(range(256)) * 128, dtype=np.uint8)
    constant = np.zeros(50_000, dtype=np.uint8)
    assert byte_stats(uniform)["h"] == pytest.approx(8.0)
    assert byte_stats(constant) == {"h": 0.0, "d2": 0.0, "dl": 0.0, "dlane": 0.0}
    # two lanes, each constant, mixed: 1 bit per byte pooled (+ Miller-Madow 1/(2 n ln 2)), 0 per lane
    lanes = np.tile(np.array([0, 255], dtype=np.uint8), 4096)
    s = byte_stats(lanes, lanes=2)
    assert s["h"] == pytest.approx(1.0 + 1 / (2 * 8192 * np.log(2)))
    assert s["dlane"] == pytest.approx(s["h"])


def test_symbol_entropy_bits_golden():
    assert symbol_entropy_bits(torch.tensor([-1, 0, 1, 1], dtype=torch.int8)) == pytest.approx(6.0)
    assert symbol_entropy_bits(torch.zeros(10, dtype=torch.int8)) == 0.0


def test_sampled_rows_get_the_full_tensors_symbols():
    t = torch.randn(4096, 512, generator=torch.Generator().manual_seed(0))
    row_full, _ = tensor_streams("w", t, "int6", sample_values=None)
    row_sampled, streams = tensor_streams("w", t, "int6")
    assert row_sampled["sampled_fraction"] < 0.1
    assert row_sampled["values_bytes"] == row_full["values_bytes"] == 4096 * 512
    assert row_sampled["scales_bytes"] == 2 * 4096
    assert streams[0].n_bytes == 4096 * 512
    # row-sampling noise: ~0.35 % (1 sd) at 128 of 4,096 rows
    assert abs(row_sampled["entropy_bytes"] / row_full["entropy_bytes"] - 1) < 0.012


@pytest.mark.parametrize("compressor", ["zlib", "zstd"])
@pytest.mark.parametrize("plan", ["official-int8", "int6", "sdclip-int6-int8emb", "ternary"])
def test_estimate_within_bound_of_measured(small_models, plan, compressor):
    # The measuring twin: the real artifact's length. Bound: 2 % on ~1 M-parameter seeded models.
    for sd in small_models.values():
        exact = len(build_artifact(sd, plan, compressor))
        est = estimate_budget(sd, plan, compressor).headline["bytes_model"]
        assert abs(est - exact) / exact < 0.02, (plan, compressor, est, exact)


def test_report_says_what_is_estimated(small_models):
    r = estimate_budget(small_models[3], "int6", "zstd")
    h = r.headline
    assert h["estimated"] is True
    assert h["params"] == sum(t.numel() for t in small_models[3].values())
    assert h["bytes_model_low"] <= h["bytes_model"] <= h["bytes_model_high"]
    assert h["headroom_bytes"] == h["cap"] - h["bytes_total"]
    assert any(n.startswith("ESTIMATED") for n in r.notes) and any(n.startswith("MEASURED") for n in r.notes)
    assert r.frame["compressed_bytes"].sum() <= h["bytes_model"]
    assert json.loads(r.to_json())["estimated"] is True


def test_tied_tensors_counted_once():
    w = torch.randn(512, 256, generator=torch.Generator().manual_seed(1))
    one = estimate_budget({"a": w}, "int6", "zstd").headline
    two = estimate_budget({"a": w, "b": w}, "int6", "zstd").headline
    assert two["params"] == one["params"] and two["payload_bytes"] == one["payload_bytes"]


def test_bad_fit_file_is_refused(tmp_path):
    bad = tmp_path / "fit.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(PgolfInputError, match="not a " + FIT_FORMAT):
        load_fit(bad)
    bad.write_text("{not json")
    with pytest.raises(PgolfInputError, match="cannot read"):
        load_fit(bad)


def test_shipped_fit_has_provenance():
    fit = load_fit()
    assert fit["format"] == FIT_FORMAT
    assert {"zlib", "zstd", "lzma", "brotli"} <= set(fit["compressors"])
    assert fit["provenance"]["script"] == "benchmarks/fit_estimator.py"
