"""Train the demo's small model: run trainer/train_gpt.py as a subprocess on the embedded default.

`train_demo(out_dir, config)` runs the script with the config's environment variables (DEVICE=cpu,
OUT_DIR, CHECKPOINT_EVERY ...) and returns a `DemoRun` describing what it wrote: the checkpoints
(safetensors + JSON sidecar), train.log, the official export and results.json.
`demo_run(cache=True)` is the same run trained once per config and script version and reused from
the cache, which the notebooks share.

>>> run = demo_run()                          # doctest: +SKIP
>>> [p.name for p in run.checkpoints][-1], run.results["roundtrip_val_bpb"] < 3     # doctest: +SKIP
('step_000080.safetensors', True)
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.progress import progress
from pgolf.figures.demo.config import QUICK, DemoConfig
from pgolf.trainer.commands import SCRIPT
from pgolf.trainer.corpus import DataInfo, default_cache_dir, prepare_default
from pgolf.trainer.train_gpt import Hyperparameters

_STEP = re.compile(r"^step:(\d+)/(\d+) train_loss:")


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """What one training run left in `out_dir`."""

    out_dir: Path
    config: DemoConfig
    data: DataInfo

    @property
    def checkpoints(self) -> list[Path]:
        """Every step_NNNNNN.safetensors, oldest first."""
        return sorted((self.out_dir / "checkpoints").glob("step_*.safetensors"))

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoints[-1]

    @property
    def log(self) -> Path:
        return self.out_dir / "train.log"

    @property
    def export(self) -> Path:
        return self.out_dir / "final_model.int8.ptz"

    @property
    def results(self) -> dict:
        return json.loads((self.out_dir / "results.json").read_text())

    def complete(self) -> bool:
        return (self.out_dir / "results.json").is_file() and self.log.is_file() and bool(self.checkpoints)


DEMO_MARKER = ".pgolf-demo-run"  # only a folder holding it is ours to replace


def train_demo(out_dir: str | os.PathLike, config: DemoConfig = QUICK, data: DataInfo | None = None,
               quiet: bool = False) -> DemoRun:
    """Train `config` on the embedded default into `out_dir` (a previous demo run there is replaced,
    anything else refused); raises
    RuntimeError with the end of the script's output when it fails."""
    out = Path(out_dir)
    if out.exists() and not (out / DEMO_MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise PgolfInputError(out, "exists and was not written by pgolf demo; move it away or choose another "
                                   "--out (pgolf replaces only its own runs)")
    data = data or prepare_default(quiet=quiet)
    env = dict(os.environ) | config.train_env() | {
        "OUT_DIR": str(out), "RUN_ID": f"demo-{config.name}", "DATA_PATH": data.data_path,
        "TOKENIZER_PATH": data.tokenizer_path, "OMP_NUM_THREADS": str(config.torch_threads()),
    }
    Hyperparameters.from_env(env)  # the script would refuse the same values, later and louder
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("written by pgolf demo; the folder is replaced on the next run\n")
    tail: deque[str] = deque(maxlen=30)
    bar = progress(None, desc=f"train {config.name} model", total=config.iterations, quiet=quiet)
    with subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        try:
            for line in proc.stdout:
                tail.append(line.rstrip())
                m = _STEP.match(line)
                if m:
                    bar.update(int(m.group(1)) - bar.n)
        except BaseException:  # interrupted or failed here: never leave the trainer running alone
            proc.kill()
            raise
        code = proc.wait()
    bar.close()
    run = DemoRun(out, config, data)
    if code != 0 or not run.complete():
        raise RuntimeError(f"trainer/train_gpt.py failed (exit {code}) in {out}:\n" + "\n".join(tail))
    return run


def _cache_key(config: DemoConfig, data: DataInfo) -> str:
    h = hashlib.sha256(SCRIPT.read_bytes())
    h.update(config.digest().encode())
    h.update(data.manifest["text_sha256"].encode() + data.manifest["tokenizer"]["sha256"].encode())
    return h.hexdigest()[:16]


def demo_run(cache: bool = True, config: DemoConfig = QUICK, quiet: bool = True,
             cache_dir: str | os.PathLike | None = None) -> DemoRun:
    """The small model trained on the embedded default, reused from the cache when this config,
    script and dataset were trained before (cache=False always trains, into a temp folder).

    >>> run = demo_run()  # doctest: +SKIP
    >>> run.final_checkpoint.suffix  # doctest: +SKIP
    '.safetensors'
    """
    data = prepare_default(quiet=quiet)
    if not cache:
        return train_demo(Path(tempfile.mkdtemp(prefix="pgolf-demo-")) / "run", config, data, quiet)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "demo"
    final = root / f"{config.name}-{_cache_key(config, data)}"
    run = DemoRun(final, config, data)
    if run.complete():
        return run
    root.mkdir(parents=True, exist_ok=True)
    # One trainer per cache entry: a second caller (another notebook, a parallel test) waits for
    # the first and reuses its run. Training goes to a scratch folder renamed when complete, so a
    # killed run never leaves a half-written entry behind.
    with open(root / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if run.complete():
            return run
        scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
        try:
            train_demo(scratch / "run", config, data, quiet)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(scratch / "run", final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return run


def demo_checkpoint(cache: bool = True, config: DemoConfig = QUICK, quiet: bool = True) -> Path:
    """Path of the demo model's final checkpoint (step_NNNNNN.safetensors with its JSON sidecar).

    >>> demo_checkpoint().name  # doctest: +SKIP
    'step_000200.safetensors'
    """
    return demo_run(cache=cache, config=config, quiet=quiet).final_checkpoint
