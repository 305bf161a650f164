"""Predict from the user's own recipe: a checkpoint's rows, mapped by role and relative depth onto a new shape.

`pgolf predict --like CHECKPOINT` builds the new config's state dict out of the checkpoint's own
values instead of the shipped statistics: each tensor of the new config takes the checkpoint
tensor of the same name at the same relative depth (block i of L <- block round(i (D-1)/(L-1)) of
D), or of the same role when the name is absent, and `draw_like` resamples it to the new shape
(a seeded row shuffle; rows or columns taken without replacement when fewer are needed, all of
them plus redrawn ones, each with its columns shuffled, when more are). Values keep the
checkpoint's scale, so whatever its recipe did to them (weight decay pushing rows under a scale
floor, tails, untrained embedding rows, row-scale spread) carries over. like_bytes.py prices
the drawn state dicts (measured exactly, or through an exact sub-model when large).

>>> import torch
>>> w = torch.arange(12.0).reshape(3, 4)
>>> draw_like(w, (3, 4), seed=0).sort(dim=0).values.equal(w)
True
"""
from __future__ import annotations

import dataclasses
import math
import re
import zlib as _crc

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.calibration import role_of, tensor_stats
from pgolf.budget.forecast.shapes import TensorSpec, infer_config, synthetic_state_dict
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.quant.schemes import floor_scale

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
LIKE_COLUMNS = ("role", "matrices", "numel", "std", "kurtosis", "row_log_sd", "entropy_bits_per_value",
                "floor_bound_frac")


@dataclasses.dataclass
class Recipe:
    """A checkpoint's float tensors as statistics for `predict(like=...)`."""

    source: str
    tensors: dict[str, Tensor] = dataclasses.field(repr=False)
    config: dict | None = None

    def stored_bytes(self, plan: Plan) -> int:
        """Payload bytes (before compression) of the checkpoint under the plan: exact, no quantizing."""
        from pgolf.budget.exact.build import assign

        return sum(sum(i.scheme.payload_bytes(i.shape, i.dtype)) for i in assign(self.tensors, plan) if i.tied_to is None)

    @property
    def blocks(self) -> int:
        found = [int(m.group(1)) for n in self.tensors if (m := _BLOCK.match(n))]
        return 1 + max(found) if found else 0


def load_recipe(path) -> Recipe:
    """The float tensors of any input pgolf reads (`load_input`), as a Recipe.

    >>> load_recipe("no/such.pt")
    Traceback (most recent call last):
    ...
    pgolf.budget.errors.PgolfInputError: no/such.pt: no such file
    """
    from pgolf.budget.exact.inputs import load_input

    loaded = load_input(path)
    tensors = {n: t for n, t in loaded.state_dict.items() if t.is_floating_point()}
    if not any(role_of(n) and t.ndim == 2 for n, t in tensors.items()):
        raise PgolfInputError(path, "--like: no embedding, attention or MLP matrix of the baseline family's names "
                                    "(tok_emb.weight, blocks.N.attn.c_q.weight, blocks.N.mlp.fc.weight, ...) to take "
                                    "statistics from")
    config = infer_config({n: tuple(t.shape) for n, t in loaded.state_dict.items()})
    return Recipe(str(path), tensors, config)


def _seed(*parts) -> int:
    return _crc.crc32("|".join(map(str, parts)).encode())


def _take(n_src: int, n: int, rng: np.random.Generator, keep_order: bool) -> tuple[np.ndarray, int]:
    """(indices, how many are first uses): every source index once (shuffled unless keep_order),
    then redrawn ones; or a subset when fewer are needed."""
    if n <= n_src:
        idx = rng.choice(n_src, n, replace=False)
        return (np.sort(idx) if keep_order else idx), n
    first = np.arange(n_src) if keep_order else rng.permutation(n_src)
    return np.concatenate([first, rng.integers(0, n_src, n - n_src)]), n_src


def draw_like(src: Tensor, shape: tuple[int, ...], seed: int, keep_order: bool = False, reuse: bool = False) -> Tensor:
    """A tensor of `shape` made of `src`'s values: rows (dim 0) shuffled, subset or redrawn; columns
    subset or redrawn. Redrawn rows get their columns shuffled, so no row repeats byte for byte
    (a repeat would hand the codec a match no trained model has); `reuse` (a source already drawn
    for another tensor) shuffles the columns of every row. `keep_order` keeps row order
    (embeddings: row i is token i, frequent tokens first).

    >>> draw_like(torch.ones(2, 3), (4, 5), seed=1).shape
    torch.Size([4, 5])
    """
    rng = np.random.default_rng(seed)
    if len(shape) == 0 or src.ndim == 0:
        return src.reshape(-1)[:1].reshape(()).expand(shape).clone() if src.numel() else torch.zeros(shape)
    s2 = src.reshape(src.shape[0], -1) if src.ndim >= 2 else src.reshape(1, -1)
    rows, cols = (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else (1, shape[0])
    r_idx, fresh = _take(s2.shape[0], rows, rng, keep_order or s2.shape[0] == 1)
    c_idx, _ = _take(s2.shape[1], cols, rng, keep_order=True)
    out = s2[torch.from_numpy(r_idx)][:, torch.from_numpy(c_idx)].clone()
    fresh = 0 if reuse else fresh
    if fresh < rows:
        perm = torch.from_numpy(np.argsort(rng.random((rows - fresh, cols)), axis=1))
        out[fresh:] = torch.gather(out[fresh:], 1, perm)
    return out.reshape(shape).contiguous()


def source_name(name: str, recipe: Recipe, blocks: int) -> str | None:
    """The checkpoint tensor a new tensor takes its values from: the same name at the same relative
    depth, else the first of the same role at that depth, else None.

    >>> r = Recipe("x", {f"blocks.{i}.mlp.fc.weight": torch.zeros(2, 2) for i in range(3)})
    >>> [source_name(f"blocks.{i}.mlp.fc.weight", r, 5) for i in (0, 2, 4)]
    ['blocks.0.mlp.fc.weight', 'blocks.1.mlp.fc.weight', 'blocks.2.mlp.fc.weight']
    """
    m = _BLOCK.match(name)
    prefix = ""
    if m and recipe.blocks:
        i = int(m.group(1))
        j = round(i * (recipe.blocks - 1) / (blocks - 1)) if blocks > 1 else 0
        name, prefix = f"blocks.{j}.{m.group(2)}", f"blocks.{j}."
    if name in recipe.tensors:
        return name
    role = role_of(name)
    if role is None:
        return None
    same = [n for n in recipe.tensors if role_of(n) == role and recipe.tensors[n].ndim == 2]
    at_depth = [n for n in same if prefix and n.startswith(prefix)]
    return (at_depth or same or [None])[0]


def like_state_dict(specs: list[TensorSpec], recipe: Recipe, seed: int = 0) -> tuple[dict[str, Tensor], list[str]]:
    """(state dict of `specs` drawn from the recipe, names with no counterpart: default synthetic values)."""
    blocks = 1 + max((int(m.group(1)) for s in specs if (m := _BLOCK.match(s.name))), default=0)
    missing = [s for s in specs if source_name(s.name, recipe, blocks) is None]
    fallback = synthetic_state_dict(missing, seed=seed) if missing else {}
    out, uses = {}, {}
    for spec in specs:
        src = source_name(spec.name, recipe, blocks)
        if src is None:
            out[spec.name] = fallback[spec.name]
            continue
        uses[src] = uses.get(src, 0) + 1
        t = draw_like(recipe.tensors[src], spec.shape, _seed(spec.name, seed),
                      keep_order=role_of(src) in ("embedding", "head"), reuse=uses[src] > 1)
        out[spec.name] = t  # the checkpoint's dtype: a bf16-trained tensor stored as fp16 keeps zero low bits
    return out, [s.name for s in missing]


def recipe_table(recipe: Recipe, plan: str | Plan) -> pd.DataFrame:
    """Per role of the checkpoint under the plan: matrices, values, std, kurtosis (tails),
    row_log_sd (row-scale spread), entropy_bits_per_value of the stored symbols and
    floor_bound_frac (rows whose scale sits at the scheme's floor; NaN where the scheme has none).

    >>> t = recipe_table(Recipe("x", {"blocks.0.mlp.fc.weight": torch.full((300, 300), 0.01)}), "int6-floor")
    >>> t.loc[0, "role"], float(t.loc[0, "floor_bound_frac"])
    ('mlp_in', 1.0)
    """
    from pgolf.budget.exact.build import assign, quantize_item
    from pgolf.budget.exact.measure import symbol_stats

    plan = resolve_plan(plan)
    per_role: dict[str, dict] = {}
    for item in assign({n: t for n, t in recipe.tensors.items() if role_of(n) and t.ndim == 2}, plan):
        if item.tied_to is not None:
            continue
        stats = tensor_stats(item.name, item.tensor) or {}
        q = quantize_item(item).q
        acc = per_role.setdefault(role_of(item.name), {"matrices": 0, "numel": 0, "bits": 0.0, "bound": 0,
                                                       "rows": 0, "floored": False, "stats": []})
        acc["matrices"] += 1
        acc["numel"] += item.tensor.numel()
        acc["stats"].append(stats)
        if item.scheme.kind == "quantized":
            acc["bits"] += 8 * symbol_stats(q.symbols)[1]
            floor = floor_scale(item.scheme)
            if floor is not None and q.scales is not None and q.scales.ndim:
                floor = float(torch.tensor(floor).half().float())  # as stored
                acc["floored"] = True
                acc["bound"] += int((q.scales.float() <= floor).sum())
                acc["rows"] += int(q.scales.numel())
        else:
            acc["bits"] += float("nan")
    rows = []
    for role, acc in per_role.items():
        st = [s for s in acc["stats"] if s]
        med = (lambda k: float(np.median([s[k] for s in st])) if st else float("nan"))
        rows.append({"role": role, "matrices": acc["matrices"], "numel": acc["numel"], "std": med("std"),
                     "kurtosis": med("kurtosis"), "row_log_sd": med("row_log_sd"),
                     "entropy_bits_per_value": acc["bits"] / max(acc["numel"], 1),
                     "floor_bound_frac": acc["bound"] / acc["rows"] if acc["floored"] and acc["rows"] else float("nan")})
    return pd.DataFrame(rows, columns=list(LIKE_COLUMNS))
