"""Shared material for the inspect tests: one small model trained by our trainer per session.

The run (3 blocks x 128, seq 128, 150 steps on the embedded default, ~40 s of one CPU core) is
made once per test session and shared by every xdist worker through a file lock; tests that use
it are marked slow. Test modules import the fixtures by name: `from inspect_fixtures import ...`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from trainer_fixtures import exclusive, session_dir

TRAIN_ENV = dict(DEVICE="cpu", NUM_LAYERS="3", MODEL_DIM="128", NUM_HEADS="4", NUM_KV_HEADS="2", MLP_MULT="2",
                 TRAIN_SEQ_LEN="128", TRAIN_BATCH_TOKENS="2048", ITERATIONS="150", WARMDOWN_ITERS="50",
                 WARMUP_STEPS="0", VAL_TOKENS="4096", VAL_BATCH_SIZE="16384", VAL_LOSS_EVERY="0",
                 TRAIN_LOG_EVERY="50", MAX_WALLCLOCK_SECONDS="0", SEED="11")
SLICE_TOKENS = 4096


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """OUT_DIR of one small training run of trainer/train_gpt.py (checkpoints/ inside)."""
    shared = session_dir(tmp_path_factory)
    out = shared / "inspect-trained-run"
    with exclusive(shared / "inspect-trained-run.lock"):
        if not (out / "results.json").is_file():
            shutil.rmtree(out, ignore_errors=True)  # a run killed half-way starts over
            env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
            env.update(TRAIN_ENV, OUT_DIR=str(out), OMP_NUM_THREADS="1")
            done = subprocess.run([sys.executable, str(ROOT / "trainer" / "train_gpt.py")], env=env, cwd=shared,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def trained(trained_run):
    """(OpenedModel, model, eval slice) of the trained run on the embedded default's val split."""
    from pgolf.inspect.evaluate import load_slice
    from pgolf.inspect.load import build_model, open_model

    opened = open_model(trained_run / "checkpoints")
    model = build_model(opened.state_dict, opened.arch)
    sl = load_slice(tokens=SLICE_TOKENS, seq_len=opened.arch.train_seq_len, quiet=True)
    return opened, model, sl


@pytest.fixture
def one_thread():
    """Evaluate with one thread (2 cores, 2 test workers), restoring the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
