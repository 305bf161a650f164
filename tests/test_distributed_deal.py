"""How `--nproc` shares the per-tensor evaluations out: longest first, each rank taking the next
from a counter in the process group's store, so every item is evaluated exactly once whichever
rank comes free first."""
from __future__ import annotations

import itertools
import random

import pytest
import torch.distributed as dist

from pgolf.inspect.distributed import Ranks, longest_first


@pytest.fixture
def group():
    """A one-process gloo group: its store is the counter two Ranks objects share here."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_longest_first_is_by_cost_then_list_order():
    assert longest_first([10, 11, 12, 13, 14], [2.0, 9.0, 2.0, 0.5, 9.0]) == [11, 14, 10, 12, 13]


def test_ranks_take_every_item_exactly_once_at_any_speed(group):
    rng = random.Random(0)
    order = longest_first(list(range(113)), [rng.random() for _ in range(113)])
    ranks = [Ranks(r, 3) for r in range(3)]
    for sweep in range(2):  # each sweep has a counter of its own
        takers = [r.claim(order) for r in ranks]
        taken: list[list[int]] = [[], [], []]
        live = set(range(3))
        for r in itertools.cycle(range(3)):  # rank 0 three times as fast as rank 2
            if not live:
                break
            if r in live:
                for _ in range(3 - r):
                    item = next(takers[r], None)
                    if item is None:
                        live.discard(r)
                        break
                    taken[r].append(item)
        assert sorted(i for t in taken for i in t) == sorted(order)
        assert len(taken[0]) > len(taken[1]) > len(taken[2])  # the faster a rank, the more it takes
        assert taken[0][0] == order[0]  # the costliest first
