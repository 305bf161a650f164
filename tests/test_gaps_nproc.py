"""`pgolf gaps --nproc 2`: two gloo processes give the numbers of one process bit for bit, and the
cache entries each rank wrote serve a later single-process run without a new evaluation."""
from __future__ import annotations

import contextlib
import io
import json

from conftest import default_sigint, fixture_path
from pgolf.figures.cli import main

TIMINGS = ("proxy_seconds", "evaluations", "eval_seconds", "seconds", "replayed_evaluations", "cache_hits", "nproc")


def gaps(argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_two_processes_bit_identical(tmp_path):
    pt = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    argv = ["gaps", str(pt), "--tokenizer", str(tok), "--tokens", "2048", "--seq-len", "256", "--plan", "int6",
            "--quantize-small", "--quiet", "--json", "--device", "cpu"]
    one = gaps(argv + ["--no-cache"])
    two = gaps(argv + ["--nproc", "2", "--cache-dir", str(tmp_path / "cache")])
    assert two["nproc"] == 2 and "nproc" not in one
    assert two["tensors"] == one["tensors"]  # every per-tensor number, bit for bit
    assert {k: v for k, v in two.items() if k not in TIMINGS} == {k: v for k, v in one.items() if k not in TIMINGS}
    assert two["evaluations"] < one["evaluations"]  # rank 0 ran only its share of the sweep
    again = gaps(argv + ["--cache-dir", str(tmp_path / "cache"), "--no-verify"])
    assert again["tensors"] == one["tensors"]
    # every sweep entry came from the cache, whichever rank wrote it: only the artifact-free run's
    # recordings for the sweeps remain (reference from cache; plan evaluation from cache)
    assert again["replayed_evaluations"] == 0 and again["cache_hits"] >= 2 * one["tensors_changed"] + 2


def test_replay_memory_limit_recomputes_same_numbers():
    """Under --max-replay-bytes the activations are not kept: full evaluations, the same numbers."""
    pt = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    argv = ["gaps", str(pt), "--tokenizer", str(tok), "--tokens", "1024", "--seq-len", "256", "--plan", "int6",
            "--quantize-small", "--quiet", "--json", "--device", "cpu", "--batch-tokens", "256", "--no-cache",
            "--no-proxy", "--no-verify"]
    free = gaps(argv)
    # 4 batches x (2 block outputs + 2 attention outputs) x 256 tokens x 64 dims x 4 bytes
    assert free["replay_bytes"] == 4 * 4 * 256 * 64 * 4 and free["replayed_evaluations"] > 0
    capped = gaps(argv + ["--max-replay-bytes", "100000"])
    assert capped["replay_limit_bytes"] == 100_000 and capped["replayed_evaluations"] == 0
    assert capped["replay_bytes"] <= 100_000
    assert capped["tensors"] == free["tensors"]


def test_interrupt_ends_every_rank_and_keeps_the_cache(tmp_path):
    """SIGINT to `pgolf gaps --nproc 2` mid-sweep: both processes end, the entries written so far stay
    and a rerun reads them instead of evaluating again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    pt = fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    cache = tmp_path / "cache"
    argv = ["gaps", str(pt), "--tokenizer", str(tok), "--tokens", "4096", "--seq-len", "256", "--plan", "int6",
            "--quantize-small", "--quiet", "--json", "--device", "cpu", "--no-proxy", "--no-verify",
            "--cache-dir", str(cache)]
    proc = subprocess.Popen([sys.executable, "-m", "pgolf.figures.cli", *argv, "--nproc", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), preexec_fn=default_sigint)
    deadline = time.time() + 300
    workers: list = []
    while time.time() < deadline and len(list(cache.rglob("*.json"))) < 6:
        workers = workers or psutil.Process(proc.pid).children(recursive=True)
        assert proc.poll() is None, "finished before it could be interrupted"
        time.sleep(0.2)
    assert workers, "no worker process was started"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"worker(s) still running: {[p.pid for p in alive]}"
    kept = len(list(cache.rglob("*.json")))
    assert kept >= 6
    again = gaps(argv)
    fresh = gaps(argv[:-2] + ["--no-cache"])
    # every kept entry is whole (atomic writes) and served: only the rest is evaluated again, plus
    # the reference once more when it was kept (the replay needs its activations recorded); an
    # entry may be read more than once, so hits alone can exceed the files
    assert fresh["evaluations"] - kept <= again["evaluations"] <= fresh["evaluations"] - kept + 1
    assert again["cache_hits"] >= kept


def test_headroom_and_allocate_split_measured_gaps_alike(tmp_path):
    """`headroom` and `allocate` with measured gaps over two processes: the same report as one
    process; with the proxy there is no sweep to split, one process runs and the report says so."""
    pt = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    data = ["--tokenizer", str(tok), "--seq-len", "256", "--quiet", "--json", "--device", "cpu"]
    head = ["headroom", str(pt), "--plan", "int6", "--quantize-small", "--gaps", "measured", "--ladder", "int4,int8",
            "--delta-bytes", "alone", "--tokens", "1024", *data]
    one = gaps(head + ["--no-cache"])
    two = gaps(head + ["--nproc", "2", "--cache-dir", str(tmp_path / "h")])
    assert two.pop("nproc") == 2 and "nproc" not in one
    assert two == one
    alloc = ["allocate", str(pt), "--cap", "200000", "--gaps", "measured", "--candidates", "int4,int8",
             "--select-tokens", "1024", "--report-tokens", "512", *data]
    one = gaps(alloc + ["--no-cache"])
    two = gaps(alloc + ["--nproc", "2", "--cache-dir", str(tmp_path / "a")])
    assert two.pop("nproc") == 2
    assert two == one
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        text = [a if a != "measured" else "proxy" for a in alloc if a != "--json"]
        assert main(text + ["--nproc", "2", "--no-cache"]) == 0
    assert "--nproc 2 splits measured gaps only; with --gaps proxy one process ran" in out.getvalue()
