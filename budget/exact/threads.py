"""Threads pgolf runs: one intra-op torch thread per caller, and a worker that produces in the background.

>>> list(background(lambda: iter(range(3))))
[0, 1, 2]
"""
from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import torch


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run this thread's torch ops on one intra-op thread, then restore the caller's setting.

    pgolf parallelises across tensors and codecs with its own threads; OpenMP's own threads on
    top of those (or beside other processes) spin against each other: measured here, a
    min/max pass over 17M values took 1.1 s with 2 threads under load and 0.04 s with one.
    The setting is per thread under OpenMP, so only the calling thread is affected.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def background(produce: Callable[[], Iterable], depth: int = 64) -> Iterator:
    """Iterate `produce()` in a worker thread (torch and the codecs release the GIL).

    The worker starts at once, so it runs ahead while the caller prepares to consume; it stops
    when the returned iterator is exhausted, closed or garbage-collected. It may run `depth`
    items ahead: a worker that never waits on a full queue needs no wake-ups, which cost the
    consuming thread ~0.1 ms each on 2 vCPUs (ternary + zlib on 17M: 119 ms with depth 4, 114 ms
    with 64, bare compressor 107 ms). Items held are at most the serialized artifact's bytes.
    """
    box: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def offer(x) -> bool:
        """Put `x` unless the consumer has gone (then never block: the worker must be able to end)."""
        while not stop.is_set():
            try:
                box.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        torch.set_num_threads(1)  # this worker quantizes on one core while the caller compresses
        try:
            for x in produce():
                if not offer(x):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    def drain():
        try:
            while (x := box.get()) is not done:
                if isinstance(x, BaseException):
                    raise x
                yield x
        finally:
            stop.set()
            worker.join(timeout=5)

    worker = threading.Thread(target=run, name="pgolf-quantize", daemon=True)
    worker.start()
    out = drain()
    weakref.finalize(out, stop.set)  # a never-started generator runs no finally
    return out


@contextlib.contextmanager
def cancelling_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when its block raises (Ctrl-C included), cancels what is queued and does
    not wait for what runs: Ctrl-C then ends a command at once, not after every queued compression.

    >>> with cancelling_pool(2) as pool:
    ...     pool.submit(pow, 2, 10).result()
    1024
    """
    pool = ThreadPoolExecutor(workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
