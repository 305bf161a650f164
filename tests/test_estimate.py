"""The fast estimate: sampling, the sample codec, and estimate vs the measuring twin on seeded models."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from pgolf.budget.forecast import sampled
from pgolf.budget.exact.build import build_artifact
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.estimate import (FIT_FORMAT, Stream, byte_entropy, estimate_budget, estimate_streams, load_fit,
                                   sampling_settings, symbol_entropy_bits, tensor_streams, whole_payload)
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

SMALL = dict(num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=512)
TINY = dict(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=512)  # < 256 KiB stored


@pytest.fixture(scope="module")
def small_models():
    return {seed: synthetic_state_dict(baseline_specs(**SMALL), seed=seed) for seed in (3, 4)}


def test_byte_entropy_extremes():
    assert byte_entropy(np.frombuffer(bytes(range(256)) * 128, dtype=np.uint8)) == pytest.approx(8.0)
    assert byte_entropy(np.zeros(50_000, dtype=np.uint8)) == 0.0
    # two equally likely values: 1 bit per byte plus Miller-Madow's (K-1)/(2 n ln 2)
    assert byte_entropy(np.tile(np.array([0, 255], dtype=np.uint8), 4096)) == pytest.approx(1 + 1 / (2 * 8192 * math.log(2)))


def test_symbol_entropy_bits_golden():
    assert symbol_entropy_bits(torch.tensor([-1, 0, 1, 1], dtype=torch.int8)) == pytest.approx(6.0)
    assert symbol_entropy_bits(torch.zeros(10, dtype=torch.int8)) == 0.0


def test_sampled_rows_get_the_full_tensors_symbols():
    t = torch.randn(4096, 512, generator=torch.Generator().manual_seed(0))
    row_full, full = tensor_streams("w", t, "int6", sample_values=None)
    row_sampled, streams = tensor_streams("w", t, "int6")
    assert row_sampled["sampled_fraction"] < 0.1
    assert row_sampled["values_bytes"] == row_full["values_bytes"] == 4096 * 512
    assert row_sampled["scales_bytes"] == 2 * 4096
    assert streams[0].n_bytes == 4096 * 512 and len(streams[0].sample) == 32 * 1024 == len(full[0].sample) // 64
    assert streams[0].group == full[0].group == "byte|int6|float32" and streams[1].group == "scale2|int6|"
    # row-sampling noise: ~0.35 % (1 sd) at 128 of 4,096 rows
    assert abs(row_sampled["entropy_bytes"] / row_full["entropy_bytes"] - 1) < 0.012


def test_sample_plan_takes_evenly_spaced_pieces_of_every_stream():
    a, b = bytes(range(256)) * 400, bytes(range(255, -1, -1)) * 400  # 102,400 bytes each
    plan = sampled.sample_plan({"g": [(1_000_000, a), (1_000_000, b)], "tiny": [(3_000, b"x" * 3_000)]}, 34_000_000)
    (g, blob, full), (t, tiny, tiny_full) = plan
    # budget 262,144 bytes (the cap); this group's share, 2e6/34e6 of it, is under 32,768: 16,384 per stream
    assert (g, full, len(blob)) == ("g", 2_000_000, 32_768)
    starts = [0, 6_758, 13_516, 20_274, 27_032, 33_792, 40_550, 47_308, 54_066, 60_824, 67_584, 74_342, 81_100,
              87_858, 94_616, 101_376]  # 16 pieces of 1,024 bytes, (102,400 - 1,024) / 15 apart, even offsets
    assert blob[:16_384] == b"".join(a[s:s + 1_024] for s in starts)
    assert blob[16_384:] == b"".join(b[s:s + 1_024] for s in starts)
    assert (t, tiny_full, tiny) == ("tiny", 3_000, b"x" * 3_000)  # small groups: every byte
    assert sampled.sample_budget(1_000) == 131_072 and sampled.sample_budget(10**9) == 262_144


def test_scaled_bytes_golden():
    assert sampled.scaled_bytes(1_000, 1_000, 1_000, {"alpha": 0.5, "beta": 9.0}) == 1_000  # r = 1: as measured
    assert sampled.scaled_bytes(1_000, 1_000, 8_000, None) == 8_000
    # r = 8: 1,000 x 8 x (1 - 0.01 x 3) - 20 x 7
    assert sampled.scaled_bytes(1_000, 1_000, 8_000, {"alpha": -0.01, "beta": 20.0}) == pytest.approx(7_620.0)


@pytest.mark.parametrize("compressor", ["zlib", "zstd", "brotli", "brotli+byte-shuffle", "zstd:19", "lzma", "lzma:6"])
def test_sample_codec_is_the_real_codec(compressor):
    rng = np.random.default_rng(1)
    for n in (2_000, 90_000):
        data = (rng.standard_normal(n) * 4).round().astype(np.int8).tobytes()
        real, sample = len(get_compressor(compressor).compress(data)), sampled.sample_codec(compressor, n)(data)
        if compressor.startswith("lzma"):  # the same LZMA2 data, without the .xz header, index and footer
            assert 48 <= real - sample <= 72
        else:
            assert real == sample


@pytest.mark.parametrize("compressor", ["zlib", "zstd"])
@pytest.mark.parametrize("plan", ["official-int8", "int6", "sdclip-int6-int8emb", "ternary", "fp16-embed"])
def test_estimate_within_bound_of_measured(small_models, plan, compressor):
    # The measuring twin: the real artifact's length, on ~1 M-parameter seeded models.
    for sd in small_models.values():
        exact = len(build_artifact(sd, plan, compressor))
        est = estimate_budget(sd, plan, compressor).headline["bytes_model"]
        assert abs(est - exact) / exact < 0.01, (plan, compressor, est, exact)


@pytest.mark.slow
@pytest.mark.parametrize("compressor", ["lzma", "brotli"])
def test_estimate_within_bound_of_measured_slow_codecs(small_models, compressor):
    sd = small_models[3]
    for plan in ("int6", "official-int8"):
        exact = len(build_artifact(sd, plan, compressor))
        est = estimate_budget(sd, plan, compressor).headline["bytes_model"]
        assert abs(est - exact) / exact < 0.01, (plan, compressor, est, exact)


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
    assert two["bytes_model"] - one["bytes_model"] < 100  # a header row, no data


def test_bad_fit_file_is_refused(tmp_path):
    bad = tmp_path / "fit.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(PgolfInputError, match="not a " + FIT_FORMAT):
        load_fit(bad)
    bad.write_text(json.dumps({"format": FIT_FORMAT, "compressors": {}, "sampling": {"fraction": 0.5}}))
    with pytest.raises(PgolfInputError, match="other sampling settings"):
        load_fit(bad)
    bad.write_text("{not json")
    with pytest.raises(PgolfInputError, match="cannot read"):
        load_fit(bad)


def test_shipped_fit_has_provenance():
    fit = load_fit()
    assert fit["format"] == FIT_FORMAT and fit["sampling"] == sampling_settings()
    assert {"zlib", "zstd", "lzma", "brotli", "brotli+byte-shuffle"} <= set(fit["compressors"])
    assert fit["provenance"]["script"] == "benchmarks/fit_estimator.py"
    for comp in fit["compressors"].values():  # small corrections: the sample does the work
        assert all(abs(c["alpha"]) < 0.05 for c in comp["classes"].values())
        assert comp["artifact_rel_err_median"] < 0.005 and comp["artifact_rel_err_max"] < 0.03
        assert "official-export" in comp["overhead_whole"]  # small artifacts: a container fit of their own


def test_whole_payload_is_every_stored_byte_in_artifact_order():
    q = Stream("a", "values", "byte", 3, 1.0, "g", b"qqq", True)
    qs = Stream("a", "scales", "scale2", 2, 1.0, "s", b"ss", True)
    f = Stream("b", "values", "raw2", 4, 1.0, "r", b"ffff")
    assert whole_payload([q, qs, f], "official-export") == b"qqqssffff"  # quantized, scales, passthrough
    assert whole_payload([f, q, qs], "pgolf-container") == b"qqqffffss"  # quantized, floats, scales
    assert whole_payload([dataclasses.replace(f, n_bytes=400)], "pgolf-container") is None  # a sample, not all
    big = sampled.WHOLE_MAX_BYTES + 2
    assert whole_payload([Stream("c", "values", "raw2", big, 1.0, "r", bytes(big))], "pgolf-container") is None


@pytest.mark.parametrize("plan", ["official-int8", "int6"])
def test_small_artifact_is_compressed_whole(plan):
    # a 2-layer d64 model stores under 256 KiB: every row quantized, every byte compressed once
    sd = synthetic_state_dict(baseline_specs(**TINY), seed=5)
    frame, streams, kind, _ = estimate_streams(sd, plan)
    assert (frame["sampled_fraction"] == 1.0).all()
    blob = whole_payload(streams, kind)
    assert blob is not None and len(blob) == frame["payload_bytes"].sum() <= sampled.WHOLE_MAX_BYTES
    # measured: zlib +0.007 %, zstd +0.74 % (zstd's cost of the zip headers between tensors varies most)
    for compressor, bound in (("zlib", 0.002), ("zstd", 0.01)):
        exact = len(build_artifact(sd, plan, compressor))
        r = estimate_budget(sd, plan, compressor)
        est = r.headline["bytes_model"]
        assert abs(est - exact) / exact < bound, (plan, compressor, est, exact)
        assert "stored bytes (a small artifact)" in r.notes[0]
