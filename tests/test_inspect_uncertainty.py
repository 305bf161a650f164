"""The reported standard errors: exact on hand-made numbers, honest on a trained model.

Calibration: the only-this gap of every tensor measured on 4 disjoint validation slices of equal
size; if the paired, blocked SE is right, the spread of a tensor's gap across slices (standard
deviation) matches the SE each slice reports. Over tensors the median ratio must lie in
[0.67, 1.5] (with 4 slices one ratio is noisy, the median over ~20 tensors is not).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from inspect_fixtures import one_thread, trained, trained_run  # noqa: F401 (fixtures)
from pgolf.inspect.evaluate import EvalResult, combine, load_slice
from pgolf.inspect.uncertainty import block_units, paired_interval, t975

CALIBRATION_SLICES = 4
CALIBRATION_TOKENS = 16_384  # per slice: 4 x 16,384 = 65,536 of the embedded default's 69,471 val tokens


def test_paired_se_by_hand():
    """16 units in blocks of 2: the delta-method SE of the ratio, by hand; a block size that would
    leave fewer than MIN_BLOCKS blocks shrinks."""
    rng = np.random.default_rng(0)
    b = rng.uniform(0.8, 1.2, 16)
    a = b + rng.normal(0.05, 0.05, 16)
    nbytes = rng.uniform(3.0, 5.0, 16)
    iv = paired_interval(a, b, nbytes, block_units=2)
    d, nb = (a - b).reshape(8, 2).sum(1), nbytes.reshape(8, 2).sum(1)
    r = d.sum() / nb.sum()
    z = (d - r * nb) / nb.mean()
    se = math.sqrt(z.var(ddof=1) / 8) / math.log(2)
    assert iv.n_blocks == 8 and iv.value == pytest.approx(r / math.log(2), rel=1e-12)
    assert iv.se == pytest.approx(se, rel=1e-12)
    assert iv.hi - iv.value == pytest.approx(t975(7) * se, rel=1e-12)
    assert iv.significant == (iv.lo > 0 or iv.hi < 0)
    assert paired_interval(a, b, nbytes, block_units=4).n_blocks == 8  # 16 units / 4 = 4 blocks < MIN_BLOCKS


def test_identical_evaluations_differ_by_exactly_nothing():
    r = EvalResult(2.0, 1.0, 8, 8.0, (4.0, 4.0, 4.0, 4.0), (2.0, 2.0, 2.0, 2.0), 1, 2)
    iv = r.minus(r)
    assert (iv.value, iv.se, iv.lo, iv.hi, iv.significant) == (0.0, 0.0, 0.0, 0.0, False)


def test_chunks_combine_into_one_slice(one_thread):
    """Two consecutive chunks evaluated apart give the numbers of the one slice that spans them."""
    import torch
    from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
    from pgolf.inspect.evaluate import byte_luts_uniform, evaluate_bpb, make_slice
    from pgolf.inspect.load import build_model

    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 256), seed=4)
    model = build_model(sd)
    tokens = torch.randint(0, 256, (16 * 32 + 1,), generator=torch.Generator().manual_seed(2))
    luts = byte_luts_uniform(256)
    whole = evaluate_bpb(model, make_slice(tokens, 32, luts), 4)
    parts = combine([evaluate_bpb(model, make_slice(tokens, 32, luts, 256, offset=o), 4) for o in (0, 256)])
    assert parts.unit_loss == whole.unit_loss and parts.tokens == whole.tokens == 512
    assert parts.val_bpb == pytest.approx(whole.val_bpb, rel=1e-12)
    assert block_units(32) == 128 and len(whole.unit_loss) == 16


@pytest.mark.slow
def test_reported_se_matches_the_spread_across_disjoint_slices(trained, one_thread):
    from pgolf.inspect.gaps import measure_gaps
    from pgolf.budget.quant.plans import quantize_small

    opened, model, _ = trained
    gaps, ses = [], []
    for k in range(CALIBRATION_SLICES):
        sl = load_slice(tokens=CALIBRATION_TOKENS, seq_len=opened.arch.train_seq_len, quiet=True,
                        offset=k * CALIBRATION_TOKENS)
        assert sl.n_tokens == CALIBRATION_TOKENS
        frame = measure_gaps(model, quantize_small("int4"), sl, sd=opened.state_dict, all_but_this=False,
                             proxy=False, verify=False, quiet=True).frame.set_index("name")
        changed = frame[frame["gap_only_this_bpb_se"] > 0]
        gaps.append(changed["gap_only_this_bpb"])
        ses.append(changed["gap_only_this_bpb_se"])
    gaps, ses = np.array(gaps), np.array(ses)  # [slices, tensors]
    assert gaps.shape == (CALIBRATION_SLICES, 19)
    ratio = gaps.std(axis=0, ddof=1) / ses.mean(axis=0)
    median = float(np.median(ratio))
    print(f"calibration: median over {ratio.size} tensors of std across {CALIBRATION_SLICES} slices / mean SE "
          f"= {median:.3f} (quartiles {np.percentile(ratio, 25):.2f} .. {np.percentile(ratio, 75):.2f})")
    assert 0.67 <= median <= 1.5
