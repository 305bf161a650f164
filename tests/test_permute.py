"""Layout transforms: MLP hidden-unit permutations leave the model's loss unchanged; row reorders and
transposes invert exactly; a stored permutation's bytes are counted."""
from __future__ import annotations

import torch

from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
from pgolf.budget.quant.permute import (mlp_pairs, permutation_bytes, permute_mlp, reorder_rows, restore_rows,
                                        transpose)


def _loss(sd, tokens):
    from pgolf.inspect.load import build_model

    model = build_model({k: v.double() if v.is_floating_point() else v for k, v in sd.items()}).double()
    with torch.no_grad():
        return float(model(tokens[:, :-1], tokens[:, 1:]))


def test_mlp_permutation_leaves_the_loss_unchanged():
    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 128), seed=3)
    tokens = torch.randint(0, 128, (2, 33), generator=torch.Generator().manual_seed(0))
    permuted, perms = permute_mlp(sd)
    assert sorted(perms) == ["blocks.0.mlp", "blocks.1.mlp"] == mlp_pairs(sd)
    assert all(not torch.equal(p, torch.arange(p.numel())) for p in perms.values())  # really reordered
    base, same = _loss(sd, tokens), _loss(permuted, tokens)
    assert abs(base - same) <= 1e-12 * abs(base)  # float64: only summation order differs
    broken = dict(permuted)
    broken["blocks.0.mlp.proj.weight"] = sd["blocks.0.mlp.proj.weight"]  # fc permuted alone: not invariant
    assert abs(_loss(broken, tokens) - base) > 1e-6


def test_reorder_rows_and_transpose_invert():
    m = torch.randn(37, 11, generator=torch.Generator().manual_seed(1))
    r, perm = reorder_rows(m)
    assert torch.equal(restore_rows(r, perm), m) and sorted(perm.tolist()) == list(range(37))
    assert torch.all(r.norm(dim=1)[:-1] >= r.norm(dim=1)[1:])
    assert torch.equal(transpose(transpose(m)), m)
    assert permutation_bytes(37) == 28 and permutation_bytes(65536) == 131072
