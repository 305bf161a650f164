"""Kill a real writer with SIGKILL at random moments: outputs are always whole, litter is never read.

The writer subprocess writes what the trainer writes, through pgolf.budget.atomic: a checkpoint
(step_N.safetensors of the fixture's weights, then its step_N.json sidecar with the weights'
sha256; the sidecar last, so it marks a complete step), removes the step before the previous
one, and rewrites plan.json in place. After every kill, the folder must load as the newest
complete checkpoint, no older than the last step the writer reported finished, whose weights
match its sidecar; every file is either whole or recognised temp litter.
"""
from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bad_inputs import fixture_sd
from pgolf.budget.atomic import is_temp_litter
from pgolf.budget.exact.inputs import load_input, read_json

TRIALS = 50
VARIANTS = 3
STEP_FILE = re.compile(r"step_(\d{6})\.(safetensors|json)")

WRITER = r"""
import hashlib, json, sys
from pathlib import Path
from pgolf.budget.atomic import write_bytes_atomic, write_text_atomic

folder, step = Path(sys.argv[1]), int(sys.argv[2])
variants = [Path(p).read_bytes() for p in sys.argv[3:]]
shas = [hashlib.sha256(v).hexdigest() for v in variants]
print("ready", flush=True)
while True:
    step += 1
    k = step % len(variants)
    stem = folder / f"step_{step:06d}"
    write_bytes_atomic(stem.with_suffix(".safetensors"), variants[k])
    side = {"format": "pgolf-checkpoint-v1", "config": {}, "step": step, "variant": k, "weights_sha256": shas[k]}
    write_text_atomic(stem.with_suffix(".json"), json.dumps(side))
    old = folder / f"step_{step - 2:06d}"
    old.with_suffix(".json").unlink(missing_ok=True)  # sidecar first: a half-removed step is incomplete, not corrupt
    old.with_suffix(".safetensors").unlink(missing_ok=True)
    write_text_atomic(folder / "plan.json", json.dumps({"format": "pgolf-plan-v1", "rules": [], "step": step}))
    # one string, one write: under PYTHONUNBUFFERED each print argument is written on its own,
    # and a kill between them once left a bare "done" line
    print(f"done {step}", flush=True)
"""


def make_variants(folder: Path) -> list[Path]:
    sd = fixture_sd()
    paths = []
    for k in range(VARIANTS):
        sd["variant"] = torch.tensor(k)
        path = folder / f"variant{k}.bin"
        path.write_bytes(st_save(sd, metadata={"format": "pgolf-checkpoint-v1"}))
        paths.append(path)
    return paths


def check_folder(ck: Path, last_done: int) -> int:
    """Assert the folder's invariants after a kill; returns how many litter files it holds."""
    loaded = load_input(ck)  # newest complete step; raises on any sha mismatch or corrupt file
    step = loaded.metadata["step"]
    assert step >= last_done, f"newest complete step {step} is older than finished step {last_done}"
    assert int(loaded.state_dict["variant"]) == loaded.metadata["variant"] == step % VARIANTS
    plan = read_json(ck / "plan.json", "pgolf-plan-v1", ("rules",))
    assert plan["step"] >= last_done
    litter = 0
    for p in ck.iterdir():
        if is_temp_litter(p):
            litter += 1
            continue
        assert p.name == "plan.json" or STEP_FILE.fullmatch(p.name), p.name
        if p.suffix == ".safetensors":
            st_load(p.read_bytes())  # whole, even when its sidecar was not written yet
        else:
            json.loads(p.read_text())
    return litter


@pytest.mark.slow
def test_sigkill_writer_never_leaves_a_broken_output(tmp_path, record_property):
    variants = make_variants(tmp_path)
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    rng = random.Random(20240520)
    trials_with_litter, finished_steps, litter, start = 0, 0, 0, time.perf_counter()
    for trial in range(TRIALS):
        first_step = trial * 1000
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ck), str(first_step), *map(str, variants)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        if trial == 0:  # the first trial waits for one finished step, so the folder always has one
            assert proc.stdout.readline().startswith("done")
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        done = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done")]
        finished_steps += len(done)
        last_done = max(done, default=0)
        before, litter = litter, check_folder(ck, last_done)
        trials_with_litter += litter > before
    elapsed = time.perf_counter() - start
    record_property("summary", f"atomic writes: {TRIALS} SIGKILL trials in {elapsed:.1f} s: {finished_steps} steps "
                               f"finished, {trials_with_litter} kills landed mid-write (new temp litter), every "
                               f"output whole, no litter read as output")
    assert finished_steps > TRIALS  # the kills landed while the writer was busy writing
    assert trials_with_litter > 0  # and some landed mid-write, the case this test is about
