"""Weight-space metrics: exact values on tiny tensors built here."""
from __future__ import annotations

import json
import math

import pytest
import torch

from pgolf.budget.exact.measure import symbol_stats
from pgolf.budget.quant.schemes import get_scheme
from pgolf.inspect.metrics import error_metrics, frac_clipped, tensor_metrics, weight_metrics


def test_error_metrics_by_hand():
    m = error_metrics(torch.tensor([3.0, -4.0]), torch.tensor([3.0, -3.0]))
    assert m["rel_mse"] == 1 / 25 and m["max_abs_err"] == 1.0
    assert m["sqnr_db"] == pytest.approx(10 * math.log10(25))
    lossless = error_metrics(torch.ones(3), torch.ones(3))
    assert lossless["rel_mse"] == 0.0 and math.isnan(lossless["sqnr_db"])


def test_int4_on_a_grid_is_exact():
    """Values already on the int4 grid of their row (amax clip) reconstruct exactly."""
    w = torch.tensor([[-7.0, -3.0, 0.0, 5.0, 7.0], [0.5, -3.5, 1.0, 2.0, 0.0]])
    row = tensor_metrics("w", w, "int4:amax")
    assert (row["rel_mse"], row["max_abs_err"], row["frac_clipped"]) == (0.0, 0.0, 0.0)
    assert row["levels"] == len(set(get_scheme("int4:amax").quantize(w).symbols.flatten().tolist())) == 8


@pytest.mark.parametrize("spec", ["int6:sdclip(1)", "int6:amax", "ternary", "binary"])
def test_frac_clipped(spec):
    """Counted exactly: values beyond the top level plus half a step of their row or group."""
    g = torch.Generator().manual_seed(0)
    w = torch.empty(1, 1000).uniform_(-1, 1, generator=g)
    w[0, 10], w[0, 20] = 30.0, -30.0
    scheme = get_scheme(spec)
    q = scheme.quantize(w)
    got = frac_clipped(scheme, w, q)
    if spec == "int6:amax":
        assert got == 0.0  # amax never clips
        return
    # one scale per row (intN) or per group of 128 (ternary, binary), spread over its values
    scales = q.scales.float().reshape(-1)
    scale = scales if scales.numel() == 1 else scales.repeat_interleave(128)[:1000]
    top, half = {"int6:sdclip(1)": (31 * scale, scale / 2), "ternary": (scale, scale / 2),
                 "binary": (scale, scale)}[spec]
    expected = int((w.abs() > (top + half) * (1 + 1e-6)).sum()) / 1000
    assert got == expected
    assert got >= 2 / 1000  # the two planted outliers are always cut
    if spec == "int6:sdclip(1)":
        assert got < 0.01   # a 1-std clip of uniform(-1, 1) rows + 31 levels cuts little else


def test_levels_and_entropy_match_the_budget_engine():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    for spec in ("int8", "int5", "ternary", "binary", "fp8_e4m3"):
        row = tensor_metrics("w", w, spec)
        levels, entropy = symbol_stats(get_scheme(spec).quantize(w).symbols)
        assert (row["levels"], row["entropy_bytes"]) == (levels, int(round(entropy)))


def test_precision_orders_the_errors():
    w = torch.randn(128, 512, generator=torch.Generator().manual_seed(2))
    frame = weight_metrics({"w": w}, schemes=["binary", "ternary", "int3", "int4", "int6", "int8", "fp16"])
    assert frame["rel_mse"].is_monotonic_decreasing and frame["rel_mse"].iloc[-1] > 0
    assert frame["sqnr_db"].is_monotonic_increasing
    # int8 on Gaussian rows: ~6 dB per bit, 40+ dB at 8 bits
    assert 38 < frame.set_index("scheme").loc["int8", "sqnr_db"] < 48


def test_plan_rows_follow_the_plans_passthrough_rules():
    sd = {"blocks.0.attn.c_q.weight": torch.randn(300, 300), "blocks.0.attn_scale": torch.ones(300),
          "small.weight": torch.randn(10, 10)}
    frame = weight_metrics(sd, plan="int6").set_index("name")
    assert frame["scheme"].to_dict() == {"blocks.0.attn.c_q.weight": "int6", "blocks.0.attn_scale": "fp32",
                                         "small.weight": "fp16"}
    assert frame.loc["blocks.0.attn_scale", "rel_mse"] == 0.0
    # NaN (lossless SQNR) survives the JSON form as null
    row = json.loads(frame.reset_index().to_json(orient="records"))[1]
    assert row["sqnr_db"] is None
