"""The grid generator: its knobs hit their targets, measured back on the stored symbols."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgolf.budget.forecast import synthetic

INF = float("inf")


@pytest.mark.parametrize("bits", [1.0, 2.5, 4.0, 6.0])
@pytest.mark.parametrize("df", [3.0, INF])
@pytest.mark.parametrize("floor_frac", [0.0, 0.5, 1.0])
def test_bits_and_floor_fraction_hit_their_targets(bits, df, floor_frac):
    if df == 3.0 and bits == 6.0:
        with pytest.raises(ValueError, match="at most 5.9"):  # heavy tails cap what int8 stores
            synthetic.matrix((256, 512), bits, df, floor_frac, seed=2)
        return
    m = synthetic.matrix((256, 512), bits, df, floor_frac, seed=2)
    got = synthetic.measure(m)
    # measured 512 x 512: within 0.02 bits (the pilot is 64 rows, the matrix other draws)
    assert abs(got["bits"] - bits) < 0.06, got
    assert got["floor_frac"] == pytest.approx(round(floor_frac * 256) / 256), got


def test_other_schemes_and_no_floor():
    m = synthetic.matrix((128, 256), 3.0, 5.0, 0.5, scheme="int6:floor(1)", seed=1)
    got = synthetic.measure(m, "int6:floor(1)")
    assert abs(got["bits"] - 3.0) < 0.06 and got["floor_frac"] == pytest.approx(0.5)
    m = synthetic.matrix((128, 256), 3.0, 5.0, 0.0, scheme="int6", seed=1)
    got = synthetic.measure(m, "int6")
    assert abs(got["bits"] - 3.0) < 0.06 and math.isnan(got["floor_frac"])
    with pytest.raises(ValueError, match="no scale floor"):
        synthetic.matrix((8, 64), 3.0, floor_frac=0.5, scheme="int6")


def test_tail_index_orders_kurtosis():
    # the tail knob is monotone: heavier tails (lower df), higher kurtosis of the bulk
    kurt = []
    for df in (3.0, 5.0, 10.0, INF):
        w = synthetic.matrix((256, 512), 3.0, df, 1.0, seed=4).double()
        z = (w - w.mean(dim=1, keepdim=True)) / w.std(dim=1, keepdim=True)
        kurt.append(float((z ** 4).mean()))
    assert kurt == sorted(kurt, reverse=True) and kurt[-1] == pytest.approx(3.0, abs=0.1), kurt


def test_row_spread_and_untrained_rows():
    base = synthetic.matrix((256, 256), 2.5, INF, 1.0, seed=3)
    spread = synthetic.matrix((256, 256), 2.5, INF, 1.0, row_spread=0.5, seed=3)
    row_sd = lambda w: float(np.log(w.std(dim=1).numpy()).std())  # noqa: E731
    assert row_sd(base) < 0.1 and 0.4 < row_sd(spread) < 0.6
    emb = synthetic.matrix((1000, 64), 4.0, INF, 0.0, untrained_frac=0.3, seed=5)
    small = (emb.std(dim=1) < 0.01).float().mean().item()  # rows left at N(0, 0.005)
    assert small == pytest.approx(0.3, abs=0.001)


def test_model_is_seeded_and_shaped():
    cell = synthetic.Cell(2.5, 4.0, 0.5, 0.1, 0.2)
    a, b = synthetic.model(cell, dim=64, layers=1, vocab=256, seed=1), synthetic.model(cell, dim=64, layers=1, vocab=256, seed=1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["blocks.0.mlp.fc.weight"].shape == (128, 64) and a["tok_emb.weight"].shape == (256, 64)
    assert cell.name == "b2.5-t4-f0.5-r0.1-u0.2"
    got = synthetic.measure(a["blocks.0.mlp.fc.weight"])
    assert abs(got["bits"] - 2.5) < 0.15 and got["floor_frac"] == pytest.approx(0.5)
