"""Layout transforms before coding: free permutations the model is invariant to, paid row reorders, transpose.

- `permute_mlp(sd)`: in each block, the MLP's hidden units reordered (rows of `mlp.fc.weight`
  with the columns of `mlp.proj.weight`): relu(x W1^T)^2 W2^T is unchanged by any permutation
  of the hidden units applied to both, so this costs no bytes. The order sorts units by the
  L2 norm of their fc row, so units of similar scale sit side by side.
- `permute_heads(sd)`: in each attention, kv heads reordered (row blocks of c_k, c_v) with their
  query groups, and query heads within each group (row blocks of c_q, entries of q_gain, column
  blocks of proj): attention per head and its output concatenation commute with both, so free too.
- `reorder_rows(m)`: any matrix's rows sorted by a key; the model is not invariant, so the
  permutation must be stored: `permutation_bytes` counts it (ceil(log2 rows) bits per row).
- `transpose`: columns become rows (for codecs with context, neighbours change).

>>> import torch
>>> sd = {"b.mlp.fc.weight": torch.tensor([[1., 0], [3, 0], [2, 0]]), "b.mlp.proj.weight": torch.eye(2, 3)}
>>> out, perms = permute_mlp(sd)
>>> perms["b.mlp"].tolist(), out["b.mlp.fc.weight"][:, 0].tolist(), out["b.mlp.proj.weight"][0].tolist()
([1, 2, 0], [3.0, 2.0, 1.0], [0.0, 0.0, 1.0])
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

FC, PROJ = ".fc.weight", ".proj.weight"


def mlp_pairs(sd: dict[str, Tensor]) -> list[str]:
    """Prefixes `X` with both `X.fc.weight` and `X.proj.weight` whose hidden sizes agree (X ends in mlp)."""
    out = []
    for name in sd:
        if name.endswith(FC) and name[:-len(FC)].endswith("mlp"):
            prefix = name[:-len(FC)]
            fc, proj = sd[name], sd.get(prefix + PROJ)
            if proj is not None and fc.ndim == 2 and proj.ndim == 2 and fc.shape[0] == proj.shape[1]:
                out.append(prefix)
    return out


def hidden_order(fc: Tensor) -> Tensor:
    """Hidden units by descending L2 norm of their fc row (ties by index): a deterministic order."""
    norms = fc.detach().double().norm(dim=1)
    return torch.argsort(-norms, stable=True)


def permute_mlp(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(a new state dict with every MLP's hidden units reordered, prefix -> permutation applied)."""
    out, perms = dict(sd), {}
    for prefix in mlp_pairs(sd):
        perm = hidden_order(sd[prefix + FC])
        out[prefix + FC] = sd[prefix + FC][perm].contiguous()
        out[prefix + PROJ] = sd[prefix + PROJ][:, perm].contiguous()
        perms[prefix] = perm
    return out, perms


def _blocks(n_blocks: int, size: int, order: Tensor) -> Tensor:
    """Row indices that reorder `n_blocks` blocks of `size` rows by `order`."""
    return (order[:, None] * size + torch.arange(size)[None, :]).reshape(-1)


def permute_heads(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(a new state dict with attention heads reordered, prefix -> query-head permutation applied).

    kv heads by descending c_k block norm, then query heads within each group by c_q block norm;
    query head h reads kv head h // (heads / kv_heads), which the order keeps.
    """
    out, perms = dict(sd), {}
    for name in sd:
        if not name.endswith(".q_gain"):
            continue
        prefix = name[:-len("q_gain")]
        keys = {k: prefix + k for k in ("c_q.weight", "c_k.weight", "c_v.weight", "proj.weight")}
        if not all(k in sd for k in keys.values()):
            continue
        heads = sd[name].numel()
        q = sd[keys["c_q.weight"]]
        hd = q.shape[0] // heads
        kv = sd[keys["c_k.weight"]].shape[0] // hd
        if hd * heads != q.shape[0] or not kv or heads % kv:
            continue
        r = heads // kv
        k_norm = sd[keys["c_k.weight"]].detach().double().reshape(kv, -1).norm(dim=1)
        q_norm = q.detach().double().reshape(heads, -1).norm(dim=1).reshape(kv, r)
        kv_order = torch.argsort(-k_norm, stable=True)
        q_order = torch.cat([g * r + torch.argsort(-q_norm[g], stable=True) for g in kv_order.tolist()])
        q_rows, kv_rows = _blocks(heads, hd, q_order), _blocks(kv, hd, kv_order)
        out[keys["c_q.weight"]] = q[q_rows].contiguous()
        out[keys["c_k.weight"]] = sd[keys["c_k.weight"]][kv_rows].contiguous()
        out[keys["c_v.weight"]] = sd[keys["c_v.weight"]][kv_rows].contiguous()
        out[keys["proj.weight"]] = sd[keys["proj.weight"]][:, q_rows].contiguous()
        out[name] = sd[name][q_order].contiguous()
        perms[prefix.rstrip(".")] = q_order
    return out, perms


def reorder_rows(m: Tensor, key: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(rows sorted by `key`, default their L2 norm descending; the permutation): m[perm] is returned.

    >>> m = torch.tensor([[0., 1], [5, 5], [2, 0]])
    >>> r, perm = reorder_rows(m)
    >>> perm.tolist(), torch.equal(restore_rows(r, perm), m)
    ([1, 2, 0], True)
    """
    key = m.detach().double().norm(dim=1) if key is None else key
    perm = torch.argsort(-key, stable=True)
    return m[perm].contiguous(), perm


def restore_rows(m: Tensor, perm: Tensor) -> Tensor:
    """Inverse of `reorder_rows`: the original row order."""
    out = torch.empty_like(m)
    out[perm] = m
    return out


def permutation_bytes(rows: int) -> int:
    """Bytes of a stored permutation of `rows` rows packed at ceil(log2 rows) bits each.

    >>> permutation_bytes(512), permutation_bytes(1)
    (576, 0)
    """
    return math.ceil(rows * math.ceil(math.log2(rows)) / 8) if rows > 1 else 0


def transpose(m: Tensor) -> Tensor:
    """Columns as rows (2-D), contiguous."""
    return m.t().contiguous()
