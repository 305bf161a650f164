"""How `--nproc` deals the per-tensor evaluations: every item once, the same deal on every rank,
and by cost the slowest rank stays within one item of the mean."""
from __future__ import annotations

import random

import pytest

from pgolf.inspect.distributed import Ranks


@pytest.mark.parametrize("world", [2, 3, 8])
def test_the_deal_covers_every_item_once_on_every_rank(world):
    rng = random.Random(world)
    todo = sorted(rng.sample(range(500), 113))
    costs = [rng.choice([1.0, 2.5, 4.0, 9.0]) for _ in todo]
    shares = [Ranks(r, world).mine(todo, costs) for r in range(world)]
    assert sorted(i for s in shares for i in s) == todo
    loads = [sum(costs[todo.index(i)] for i in s) for s in shares]
    assert max(loads) <= sum(costs) / world + max(costs)


def test_costs_balance_a_sweep_that_round_robin_does_not():
    """A 9-layer sweep's shape: evaluations restarting early cost most. Round-robin hands rank 0 the
    costlier of each pair; the deal by cost keeps both ranks within 1% of half."""
    costs = [float(c) for c in range(113, 0, -1)]  # early tensors first, as the state dict lists them
    todo = list(range(113))
    total = sum(costs)

    def worst(shares):
        return max(sum(costs[i] for i in s) for s in shares) / total

    assert worst([Ranks(r, 2).mine(todo) for r in range(2)]) > 0.504
    assert worst([Ranks(r, 2).mine(todo, costs) for r in range(2)]) <= 0.5 + 1 / total
