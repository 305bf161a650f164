"""The sampled rows' correction (budget/forecast/rows.py): a sample of rows stands for its tensor."""
import math

import numpy as np
import pytest
import torch

from pgolf.budget.forecast import sampled, synthetic
from pgolf.budget.forecast.rows import anchor_correction, row_code_bits, row_statistics
from pgolf.budget.forecast.streams import _sample_rows, byte_entropy, symbol_codes, symbol_counts, tensor_streams
from pgolf.budget.quant.schemes import get_scheme

# a grid cell of the accuracy benchmark: half the rows at the int8 floor, 30 % left at init
MIXED = synthetic.Cell(1.5, math.inf, 0.5, 0.0, 0.3)


@pytest.fixture(scope="module")
def mixed_model():
    return synthetic.model(MIXED, dim=256, layers=2, vocab=1024, seed=4)


def _correction(t: torch.Tensor, scheme: str = "int6", values: int = 1 << 15):
    part, _, idx = _sample_rows(t, values)
    symbols = get_scheme(scheme).quantize(part).symbols
    codes = symbol_codes(symbols)
    return anchor_correction(t, idx, codes, symbol_counts(symbols, codes))


@pytest.mark.parametrize("name", ["tok_emb.weight", "blocks.1.mlp.proj.weight"])
def test_mixed_rows_sampled_entropy_is_corrected_to_the_full_tensors(mixed_model, name):
    # 128 sampled rows of this mix read 5-7 % low; the row statistics bring them within 0.5 %
    row, streams = tensor_streams(name, mixed_model[name], "int6")
    full, _ = tensor_streams(name, mixed_model[name], "int6", None)
    values = next(s for s in streams if s.part == "values")
    plain = row["entropy_bytes"] / values.anchor_factor
    assert abs(plain / full["entropy_bytes"] - 1) > 0.04
    assert abs(row["entropy_bytes"] / full["entropy_bytes"] - 1) < 0.005
    assert 0.0 < values.anchor_rel_se < 0.005


def test_alike_rows_are_left_alone():
    t = torch.randn(1024, 512, generator=torch.Generator().manual_seed(1))
    factor, rel_se = _correction(t)
    assert abs(factor - 1) < 0.003 and 0 < rel_se < 0.003


def test_rows_with_equal_statistics_fall_back_to_the_plain_mean():
    base = torch.linspace(-1, 1, 256)
    perm = torch.Generator().manual_seed(2)
    t = torch.stack([base[torch.randperm(256, generator=perm)] for _ in range(1024)])  # same rms and max
    factor, rel_se = _correction(t)
    assert factor == 1.0 and math.isfinite(rel_se)


def test_zero_rows_keep_the_statistics_finite_and_are_weighed_as_the_tensor():
    t = torch.randn(1024, 256, generator=torch.Generator().manual_seed(3))
    t[::3] = 0.0  # the sampled blocks hold 3/8 zero rows where the tensor has 1/3
    assert np.isfinite(row_statistics(t)).all()
    part, _, idx = _sample_rows(t, 1 << 15)
    scheme = get_scheme("int6")
    sample, every = (symbol_codes(scheme.quantize(x).symbols) for x in (part, t))
    counts = np.bincount(sample.reshape(-1))
    truth = row_code_bits(every, counts).mean() / row_code_bits(sample, counts).mean()
    factor, rel_se = anchor_correction(t, idx, sample, counts)
    assert truth > 1.03 and factor == pytest.approx(truth, rel=0.005) and 0 < rel_se < 0.01


def _two_kinds():
    """Rows 0..511 wide, 512..1023 narrow (their symbols all 0 under one absmax scale)."""
    g = torch.Generator().manual_seed(5)
    t = torch.randn(1024, 256, generator=g) * torch.where(torch.arange(1024) < 512, 1.0, 1e-3)[:, None]
    return t, torch.round(t / t.abs().amax() * 31).to(torch.int8).numpy().view(np.uint8)


def test_an_uneven_sample_of_two_kinds_is_weighed_as_the_tensor():
    t, q = _two_kinds()
    idx = np.r_[0:96, 512:544]  # 3 : 1 where the tensor has 1 : 1
    counts = np.bincount(q[idx].reshape(-1))
    factor, rel_se = anchor_correction(t, idx, q[idx], counts)
    truth = row_code_bits(q, counts).mean() / row_code_bits(q[idx], counts).mean()
    assert truth < 0.85  # the sample reads high by a fifth
    assert factor == pytest.approx(truth, rel=0.02) and rel_se < 0.02


def test_a_sample_that_never_saw_a_kind_of_row_does_not_extrapolate():
    t, q = _two_kinds()
    idx = np.arange(0, 512, 4)  # wide rows only
    factor, rel_se = anchor_correction(t, idx, q[idx], np.bincount(q[idx].reshape(-1)))
    assert factor == 1.0 and rel_se >= 0.3  # declined, and counted as uncertainty


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_row_statistics_of_every_float_dtype(dtype):
    t = torch.tensor([[0.5, -2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]).to(dtype)
    x = row_statistics(t)
    assert x[0].tolist() == pytest.approx([math.log2(math.sqrt(5.25 / 4)), 1.0])
    assert x[1].tolist() == pytest.approx([math.log2(2.0 * 1e-6)] * 2)  # floored under the largest


def test_row_code_bits_strided_counts_every_nth_value():
    codes = np.array([[0, 1, 0, 1], [1, 1, 1, 1]], np.uint8)
    counts = np.array([2, 6])
    assert row_code_bits(codes, counts, 2).tolist() == pytest.approx([2 * 2.0, 2 * math.log2(8 / 6)])  # 0, 0 / 1, 1


def test_group_sd_carries_the_row_sampling_error():
    blob = bytes(np.random.default_rng(0).integers(0, 64, 40_000, dtype=np.uint8))
    streams = [sampled.StreamSample(400_000, blob, 1.02, 0.01)]
    draws = [blob[i::4] for i in range(4)]
    size_of = lambda d: len(d) * 3 // 4  # noqa: E731  (a codec at 6 bits per byte)
    e = sampled.estimate_group(draws, 400_000, streams, size_of, 0, 1 << 14, bytes)
    assert e.rows_sd == pytest.approx(e.estimate * 0.01, rel=1e-6)
    assert e.sd >= e.rows_sd > 0
    plain = sampled.estimate_group(draws, 400_000, [(400_000, blob)], size_of, 0, 1 << 14, bytes)
    assert e.estimate == pytest.approx(plain.estimate * 1.02, rel=1e-9) and plain.rows_sd == 0.0


def test_byte_storage_entropy_from_the_symbols_histogram_is_the_bytes_entropy(mixed_model):
    _, streams = tensor_streams("tok_emb.weight", mixed_model["tok_emb.weight"], "int6")
    values = next(s for s in streams if s.part == "values")
    assert values.h == byte_entropy(np.frombuffer(values.sample, np.uint8))
