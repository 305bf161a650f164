"""benchmarks/fp16_models.py, the fp16 adaptive-model measurement behind `squeeze.py --fp16-models`:
its range coder and shipped decoder roundtrip exactly and land on the ideal code length."""
from __future__ import annotations

import importlib.util

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from conftest import ROOT, fixture_path
from pgolf.budget.exact.build import assign, quantize_item

_spec = importlib.util.spec_from_file_location("fp16_models", ROOT / "benchmarks" / "fp16_models.py")
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)


def fixture_mats(name: str = "sp1024-2L-d64") -> list[np.ndarray]:
    sd = torch.load(fixture_path("artifacts", name, "final_model.pt"), weights_only=True, map_location="cpu")
    items = [i for i in assign(sd, "official-int8") if i.tied_to is None and i.scheme.name == "fp16"]
    return [np.frombuffer(quantize_item(i).values, np.uint16).reshape(i.shape[0], -1) for i in items]


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3),
       seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([1, 7, 65535]))
def test_range_coder_roundtrips_any_fp16_bits(shapes, seed, spread):
    rng = np.random.default_rng(seed)
    base = int(rng.integers(0, 65536))
    mats = [((base + rng.integers(0, spread + 1, s)) % 65536).astype(np.uint16) for s in shapes]
    blob = fm.encode(mats)
    assert fm.decode(blob, [m.size for m in mats]) == b"".join(m.tobytes() for m in mats)


def test_coded_bytes_meet_the_ideal_length_and_constant_data_costs_little():
    ones = np.full((64, 64), 0x3C00, np.uint16)
    # 8 KiB raw; each certain bit still pays -log2(1 - 32/65536) (the probability floor): 5.8 bytes
    assert fm.ideal_bytes([ones], "order0") <= len(fm.encode([ones])) < 64
    noise = np.random.default_rng(0).integers(0, 65536, (64, 64)).astype(np.uint16)
    assert 8192 <= fm.ideal_bytes([noise], "order0") < 8192 * 1.03  # no model beats random bits; adapting costs
    assert 8192 <= fm.ideal_bytes([noise], "order0, lo raw") < 4096 + 4096 * 1.03
    for config in fm.CONFIGS:  # a causal model under 8190 bytes here would have a chance below 2**-16 (Kraft)
        assert 8190 < fm.ideal_bytes([noise], config) < 8192 * 1.1, config  # up to 33 contexts to learn


def test_fixture_order0_coder_within_8_bytes_of_its_ideal_and_near_brotli():
    mats = fixture_mats()
    raw = b"".join(m.tobytes() for m in mats)
    blob = fm.encode(mats)
    ideal = fm.ideal_bytes(mats, "order0")
    assert fm.decode(blob, [m.size for m in mats]) == raw
    assert ideal <= len(blob) <= ideal * 1.0005 + 8
    assert len(blob) == 115_119  # measured 2026-12-06; brotli-11 + byte-shuffle of the same bytes: 115,210
