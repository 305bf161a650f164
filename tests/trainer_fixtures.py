"""Helpers shared by the trainer tests: one prepared corpus per test session, small run configs."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from pgolf.trainer.corpus import prepare_default

SCRIPT = ROOT / "trainer" / "train_gpt.py"

# A CPU config that learns visibly in a few hundred steps and keeps each step cheap.
SMALL_RUN = dict(DEVICE="cpu", NUM_LAYERS="2", MODEL_DIM="64", NUM_HEADS="4", NUM_KV_HEADS="2", MLP_MULT="2",
                 TRAIN_SEQ_LEN="64", TRAIN_BATCH_TOKENS="2048", VAL_TOKENS="16384", VAL_BATCH_SIZE="16384",
                 MAX_WALLCLOCK_SECONDS="0", WARMUP_STEPS="0", SEED="7")
# The one uninterrupted 200-step run of SMALL_RUN (about 30 s of one core) that the trainer tests and
# the --like test on our own recipe share; shared_run builds it once per session under this name.
UNINTERRUPTED_NAME = "trainer-uninterrupted"
UNINTERRUPTED_RUN = {**SMALL_RUN, "ITERATIONS": "200", "WARMDOWN_ITERS": "50", "VAL_LOSS_EVERY": "100",
                     "TRAIN_LOG_EVERY": "10", "CHECKPOINT_EVERY": "100", "RUN_ID": "uninterrupted"}


def session_dir(tmp_path_factory) -> Path:
    """A folder shared by every test and every xdist worker of this session (fresh each session)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def exclusive(lock: Path):
    """One xdist worker at a time: the others wait here and then reuse what the first one built."""
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def session_cache_dir(tmp_path_factory) -> Path:
    return session_dir(tmp_path_factory) / "pgolf-corpus-cache"


def shared_corpus(tmp_path_factory):
    """The embedded default, built from scratch once per session."""
    with exclusive(session_dir(tmp_path_factory) / "pgolf-corpus.lock"):
        return prepare_default(cache_dir=session_cache_dir(tmp_path_factory), quiet=True)


def shared_run(tmp_path_factory, name: str, env: dict[str, str]) -> tuple[Path, dict]:
    """Run train_gpt.py once per session for `name` (OUT_DIR is set here); (out_dir, results)."""
    out = session_dir(tmp_path_factory) / name
    with exclusive(session_dir(tmp_path_factory) / f"{name}.lock"):
        if not (out / "results.json").is_file():
            shutil.rmtree(out, ignore_errors=True)  # a run that died half-way starts over
            run_script({**env, "OUT_DIR": str(out)}, cwd=out.parent)
    return out, json.loads((out / "results.json").read_text())


def run_script(env_overrides: dict[str, str], cwd: Path, timeout: int = 600) -> dict:
    """Run `python trainer/train_gpt.py` with these variables and return its results.json."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    # One thread each: CI has 2 cores and 2 test workers; more threads than cores stalls torch badly.
    env.update(OMP_NUM_THREADS="1", **env_overrides)
    out = subprocess.run([sys.executable, str(SCRIPT)], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads((Path(env_overrides["OUT_DIR"]) / "results.json").read_text())


def loss_lines(log_text: str, after_step: int = 0) -> list[str]:
    """The `step:S/T train_loss:X` and `val_loss` tokens of a log, timing tokens dropped."""
    lines = []
    for line in log_text.splitlines():
        if line.startswith("step:") and ("train_loss:" in line or "val_loss:" in line):
            step = int(line.split()[0].split(":")[1].split("/")[0])
            if step > after_step:
                lines.append(" ".join(t for t in line.split() if not t.startswith(("train_time:", "step_avg:"))))
    return lines
