"""`--nproc N`: one gap sweep split across N processes (gloo on the CPU, nccl on CUDA).

The pgolf process is rank 0; it starts ranks 1..N-1 as workers with torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or every rank comes from
`torchrun --nproc_per_node N -m pgolf.figures.cli gaps ...`. Every rank loads the model and the
slice and runs the full evaluations itself (unquantized, plan, artifact, proxy: each needs its own
replay recording); the per-tensor evaluations (only-this, all-but-this) are shared out longest
first (a replay restarting at a late block costs a fraction of a full evaluation), each rank
taking the next from a counter in the process group's store as it comes free, so none waits on
another. Each rank writes the cache entries it computes as it goes (one atomic file each, so an
interrupted run keeps them), and rank 0 gathers the numbers and renders the report. Each
evaluation is computed exactly as in one process, so the numbers are the same bit for bit (on the
CPU, at the same threads per process).

>>> longest_first([5, 6, 7, 8], costs=[1.0, 4.0, 1.0, 2.0])
[6, 8, 5, 7]
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from pgolf.budget.errors import PgolfInputError

WORKER_ARGS = "PGOLF_WORKER_ARGS"
_CURRENT: "Ranks | None" = None


@dataclasses.dataclass
class Ranks:
    """This process's place in the sweep: rank `rank` of `world`."""

    rank: int
    world: int
    workers: list = dataclasses.field(default_factory=list)  # Popen of ranks 1.. when rank 0 started them
    logs: list = dataclasses.field(default_factory=list)
    sweeps: int = 0  # sweeps claimed so far: each has its own shared counter

    def claim(self, order: list[int]) -> Iterator[int]:
        """Items of `order` taken one at a time from a counter every rank shares: a rank that
        finishes early takes the next, so none waits on another. Every call is one sweep with a
        counter of its own (the ranks run the same sweeps in the same order)."""
        import torch.distributed as dist

        store = dist.distributed_c10d._get_default_store()
        self.sweeps += 1
        key = f"pgolf-sweep-{self.sweeps}"
        while (k := store.add(key, 1) - 1) < len(order):
            yield order[k]

    def agree(self, todo: list[int]) -> list[int]:
        """Rank 0's list of evaluations still to do (ranks may read the shared cache at other moments)."""
        import torch.distributed as dist

        box = [todo]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def merge(self, results: list, share: list[int]) -> list:
        """Every rank's results in place of the Nones, whole (per-unit losses too: the paired
        standard errors need them); `share` is what this rank took."""
        import torch.distributed as dist

        mine = {i: results[i] for i in share}
        parts: list = [None] * self.world
        dist.all_gather_object(parts, mine)
        for part in parts:
            for i, r in part.items():
                results[i] = r
        return results


def longest_first(todo: list[int], costs: list[float]) -> list[int]:
    """`todo` by cost, largest first (ties in list order): taken in this order, the last items to
    finish are the short ones, so ranks end together."""
    return [todo[k] for k in sorted(range(len(todo)), key=lambda k: (-costs[k], k))]


def current() -> Ranks | None:
    """The sweep's ranks while a distributed command runs, else None (one process)."""
    return _CURRENT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads(nproc: int) -> int:
    given = os.environ.get("OMP_NUM_THREADS")
    return int(given) if given and given.isdigit() else max(1, (os.cpu_count() or 1) // nproc)


def launch(args, nproc: int) -> Ranks | None:
    """Rank 0's side of `--nproc N`: start ranks 1..N-1 running the same command (None for N=1,
    or when this process already is a rank of an outside torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    if nproc <= 1:
        return None
    threads = _threads(nproc)
    torch.set_num_threads(threads)
    env = dict(os.environ, WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               OMP_NUM_THREADS=str(threads), LOCAL_WORLD_SIZE=str(nproc))
    payload = {k: v for k, v in vars(args).items() if k != "handler"}
    payload["handler_name"] = args.handler.__name__
    env[WORKER_ARGS] = json.dumps(payload)
    ranks = Ranks(0, nproc)
    for r in range(1, nproc):
        log = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen([sys.executable, "-m", "pgolf.inspect.worker"],
                                env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.DEVNULL,
                                stderr=log)
        ranks.workers.append(proc)
        ranks.logs.append(log)
    os.environ.update({k: env[k] for k in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}, RANK="0", LOCAL_RANK="0")
    return ranks


def join(ranks: Ranks | None, device: torch.device) -> None:
    """Join the process group (after the inputs proved usable: a bad input fails every rank alike)."""
    global _CURRENT
    if ranks is None:
        return
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":  # nccl's object collectives stage through the current device: this rank's GPU
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world,
                            timeout=datetime.timedelta(minutes=30))
    _CURRENT = ranks


def finish(ranks: Ranks | None, ok: bool) -> None:
    """Leave the process group; rank 0 waits for its workers (or ends them when it failed)."""
    global _CURRENT
    _CURRENT = None
    if ranks is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    for proc in ranks.workers:
        if not ok:
            proc.terminate()
        try:
            code = proc.wait(timeout=None if ok else 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if ok and code != 0:
            raise RuntimeError(f"a --nproc worker exited with code {code}")
    for log in ranks.logs:
        log.close()
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def check_nproc(nproc: int, n_items: int, path) -> None:
    if nproc > max(1, n_items):
        raise PgolfInputError(path, f"--nproc {nproc} is more processes than the {n_items} tensors the plan "
                                    f"changes; use --nproc {max(1, n_items)} or fewer")
