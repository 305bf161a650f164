"""The fast estimate against its measuring twin where the fit never looked: a small synthetic grid
(budget/forecast/synthetic.py, seeds and knob values apart from the fit's) and real participants'
weights (../shared/fixtures/artifacts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.budget.exact.build import build_artifact
from pgolf.budget.forecast import synthetic
from pgolf.budget.forecast.estimate import estimate_budget

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "artifacts"
INF = float("inf")
# measured on these 24 cases: median 0.47 %, worst 1.76 % (lzma, 2.5 bits, half the rows on the floor),
# all inside (before zstd's pickle head was measured and lzma's history had its 1 / h term: 0.67 %, 2.15 %)
MEDIAN_BOUND, WORST_BOUND, COVERAGE_BOUND = 0.008, 0.025, 0.95
FIXTURE_BOUND = 0.02
# low bits with the floor binding everywhere (the participants' regime), heavy tails, no floor, high bits
CELLS = [synthetic.Cell(1.5, 3.0, 1.0, 0.0, 0.3), synthetic.Cell(2.5, INF, 0.5, 0.3, 0.0),
         synthetic.Cell(4.0, 3.0, 0.0, 0.0, 0.0), synthetic.Cell(6.0, INF, 1.0, 0.3, 0.3)]


def _cases(sd, plans, compressors):
    out = []
    for plan in plans:
        for comp in compressors:
            exact = len(build_artifact(sd, plan, comp))
            h = estimate_budget(sd, plan, comp).headline
            out.append((plan, comp, exact, h["bytes_model"], h["bytes_model_low"], h["bytes_model_high"]))
    return out


@pytest.fixture(scope="module")
def grid_cases():
    cases = []
    for i, cell in enumerate(CELLS):
        # ~360 KB stored under official int8: sampled, not compressed whole
        sd = synthetic.model(cell, dim=128, layers=1, vocab=1024, seed=50 + i)
        cases += [(cell.name, *c) for c in _cases(sd, ("official-int8", "int6"), ("zlib", "zstd", "lzma"))]
    return cases


def test_grid_errors_and_coverage(grid_cases):
    err = np.array([abs(est - exact) / exact for _, _, _, exact, est, _, _ in grid_cases])
    inside = np.array([lo <= exact <= hi for _, _, _, exact, _, lo, hi in grid_cases])
    detail = [(c[:3], round(100 * e, 2)) for c, e in zip(grid_cases, err)]
    assert len(grid_cases) == 24
    assert np.median(err) < MEDIAN_BOUND and err.max() < WORST_BOUND, detail
    assert inside.mean() >= COVERAGE_BOUND, [d for d, ok in zip(detail, inside) if not ok]


def _fixture(model):
    path = FIXTURES / model / "final_model.pt"
    if not path.exists():
        pytest.skip(f"{path} absent (real participant weights live in ../shared/fixtures)")
    return torch.load(path, weights_only=True, map_location="cpu")


def test_sampled_fixture_inside_its_interval():
    # 828 KB stored: the draws are scaled up. Measured: +0.1 % .. +1.2 %, all inside.
    for plan, comp, exact, est, lo, hi in _cases(_fixture("sp1024-3L-d128"), ("official-int8", "int6"),
                                                 ("zlib", "zstd", "lzma", "ans")):
        assert lo <= exact <= hi, (plan, comp, exact, est, lo, hi)
        assert abs(est - exact) / exact < FIXTURE_BOUND, (plan, comp, exact, est)


def test_small_fixture_is_measured_exactly():
    # 215 KB stored: the estimate builds the artifact (about one sample's cost), so its number is the
    # exact one, labelled so, with no interval to miss (it used to compress the stored bytes whole and
    # estimate the container: within 0.18 %, yet outside its narrow interval for zlib and brotli)
    for plan, comp, exact, est, lo, hi in _cases(_fixture("sp1024-2L-d64"), ("official-int8", "int6"),
                                                 ("zlib", "zstd", "lzma", "brotli", "ans")):
        assert est == lo == hi == exact, (plan, comp, exact, est)


@pytest.fixture(scope="module")
def trained_d128(tmp_path_factory):
    """Our own trainer's weights: a seeded 3-layer d128 CPU run of 40 steps (~20 s of one core),
    large enough (477 K parameters) for the estimate to sample it."""
    from trainer_fixtures import SMALL_RUN, shared_corpus, shared_run
    info = shared_corpus(tmp_path_factory)
    env = {**SMALL_RUN, "NUM_LAYERS": "3", "MODEL_DIM": "128", "ITERATIONS": "40", "WARMDOWN_ITERS": "10",
           "VAL_LOSS_EVERY": "40", "TRAIN_LOG_EVERY": "40", "CHECKPOINT_EVERY": "0",
           "DATA_PATH": info.data_path, "TOKENIZER_PATH": info.tokenizer_path, "RUN_ID": "estimator-d128"}
    out, _ = shared_run(tmp_path_factory, "estimator-d128", env)
    return torch.load(out / "final_model.pt", weights_only=True, map_location="cpu")


def test_own_trained_checkpoint_inside_its_interval(trained_d128):
    # measured: official-int8 zlib +0.15 %, zstd -0.41 %, lzma -0.02 %; int6 -0.14 %, +0.27 %, -0.02 %;
    # all inside (zstd's interval is the widest, +-6-7 %: its container term scatters most on the fit)
    cases = _cases(trained_d128, ("official-int8", "int6"), ("zlib", "zstd", "lzma"))
    # sampled, not built whole: int8 stores at least a byte per value
    assert sum(t.numel() for t in trained_d128.values()) > 262_144
    for plan, comp, exact, est, lo, hi in cases:
        assert lo <= exact <= hi, (plan, comp, exact, est, lo, hi)
        assert lo < hi and abs(est - exact) / exact < FIXTURE_BOUND, (plan, comp, exact, est)
