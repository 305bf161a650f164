"""Layout transforms: MLP hidden-unit permutations leave the model's loss unchanged; row reorders and
transposes invert exactly; a stored permutation's bytes are counted."""
from __future__ import annotations

import torch

from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
from pgolf.budget.quant.permute import (mlp_pairs, permutation_bytes, permute_heads, permute_mlp, reorder_rows,
                                        restore_rows, transpose)


# GPT.forward casts activations to float32 (fp32 runs), so permuting sums changes the loss at float32
# rounding: eps 6e-8 times a few hundred accumulated terms ~ 1e-5 relative. Measured: 8e-8 when
# invariant; a wrong permutation moved it by 4e-4 (q_gain) and 9e-2 (proj).
TOL = 1e-5


def _loss(sd, tokens):
    from pgolf.inspect.load import build_model

    model = build_model(sd)
    with torch.no_grad():
        return float(model(tokens[:, :-1], tokens[:, 1:]))


def test_mlp_permutation_leaves_the_loss_unchanged():
    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 128), seed=3)
    tokens = torch.randint(0, 128, (2, 33), generator=torch.Generator().manual_seed(0))
    permuted, perms = permute_mlp(sd)
    assert sorted(perms) == ["blocks.0.mlp", "blocks.1.mlp"] == mlp_pairs(sd)
    assert all(not torch.equal(p, torch.arange(p.numel())) for p in perms.values())  # really reordered
    base, same = _loss(sd, tokens), _loss(permuted, tokens)
    assert abs(base - same) <= TOL * abs(base)
    broken = dict(permuted)
    broken["blocks.0.mlp.proj.weight"] = sd["blocks.0.mlp.proj.weight"]  # fc permuted alone: not invariant
    assert abs(_loss(broken, tokens) - base) > 10 * TOL * abs(base)


def test_reorder_rows_and_transpose_invert():
    m = torch.randn(37, 11, generator=torch.Generator().manual_seed(1))
    r, perm = reorder_rows(m)
    assert torch.equal(restore_rows(r, perm), m) and sorted(perm.tolist()) == list(range(37))
    assert torch.all(r.norm(dim=1)[:-1] >= r.norm(dim=1)[1:])
    assert torch.equal(transpose(transpose(m)), m)
    assert permutation_bytes(37) == 28 and permutation_bytes(65536) == 131072


def test_head_permutation_leaves_the_loss_unchanged():
    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 128), seed=5)  # 4 query heads, 2 kv heads
    g = torch.Generator().manual_seed(2)
    for name in list(sd):  # distinct gains per head, or a wrong gain order would go unseen
        if name.endswith("q_gain"):
            sd[name] = torch.rand(sd[name].shape, generator=g) + 0.5
    tokens = torch.randint(0, 128, (2, 33), generator=torch.Generator().manual_seed(0))
    permuted, perms = permute_heads(sd)
    assert sorted(perms) == ["blocks.0.attn", "blocks.1.attn"]
    assert any(not torch.equal(p, torch.arange(4)) for p in perms.values())
    for p in perms.values():  # query head h stays with kv head h // 2
        assert sorted(p.tolist()) == [0, 1, 2, 3]
        assert p[0] // 2 == p[1] // 2 and p[2] // 2 == p[3] // 2
    both, _ = permute_mlp(permuted)
    base = _loss(sd, tokens)
    assert abs(_loss(both, tokens) - base) <= TOL * abs(base)
    broken = dict(permuted)
    for name in perms:
        broken[name + ".q_gain"] = sd[name + ".q_gain"]  # gains left in the old order: not invariant
    assert abs(_loss(broken, tokens) - base) > 10 * TOL * abs(base)
