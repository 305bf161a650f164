"""Row/group arithmetic shared by the intN, ternary and binary schemes.

A tensor is viewed as rows (dim 0; 1-D and 0-d tensors are one row), each row cut into groups of
G values (the last one shorter, padded with NaN so reductions ignore it). Every group gets one
fp16 scale. Pure functions on float32 tensors.

>>> layout((1024, 512), 128)
(1024, 512, 128, 4)
>>> x, rows, cols = to_groups(torch.arange(6.0).reshape(2, 3), 2)
>>> x.shape, rows, cols
(torch.Size([4, 2]), 2, 3)
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from pgolf.budget.quant.official import quantile_rows as script_quantile_rows

SCALE_DTYPE = torch.float16
# Scales live in fp16: floor at its smallest subnormal so an all-zero group keeps a finite,
# nonzero scale (its symbols are all 0 anyway), cap at its max so no scale becomes inf.
SCALE_MIN = 2.0 ** -24
SCALE_MAX = 65504.0
_QUANTILE_MAX_NUMEL = 1 << 24  # torch.quantile refuses larger inputs: work in row chunks


def layout(shape: tuple[int, ...], group: int | None) -> tuple[int, int, int, int]:
    """(rows, cols, group size G, groups per row) for a tensor shape."""
    rows = shape[0] if len(shape) >= 2 else 1
    cols = math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape)
    size = cols if group is None else min(group, cols)
    return rows, cols, size, (math.ceil(cols / size) if size else 0)


def to_groups(t32: Tensor, group: int | None) -> tuple[Tensor, int, int]:
    """(rows * groups, G) float32 matrix, NaN-padded; plus rows and cols of the row view."""
    rows, cols, size, ngroups = layout(tuple(t32.shape), group)
    x = t32.reshape(rows, cols)
    if ngroups * size != cols:
        x = torch.nn.functional.pad(x, (0, ngroups * size - cols), value=float("nan"))
    return x.reshape(rows * ngroups, size), rows, cols


def has_padding(x: Tensor) -> bool:
    """Whether `to_groups` padded `x` with NaN (only the last column can hold padding)."""
    return x.numel() > 0 and bool(torch.isnan(x[:, -1]).any())


def quantile_rows(a: Tensor, q: float, ignore_nan: bool = False) -> Tensor:
    """torch.quantile(a, q, dim=1) bit for bit; torch.nanquantile with `ignore_nan`.

    The fast top-k path is the official rule block's own (official.py, verbatim from the script); this
    adds NaN-padded groups and row chunks, since torch.quantile refuses inputs over 2**24 values.
    """
    step = max(1, _QUANTILE_MAX_NUMEL // max(1, a.shape[1]))
    chunks = [a[i:i + step] for i in range(0, a.shape[0], step)]
    if ignore_nan:
        return torch.cat([torch.nanquantile(c, q, dim=1) for c in chunks])
    return torch.cat([script_quantile_rows(c, q) for c in chunks]) if len(chunks) > 1 else script_quantile_rows(a, q)


def clip_values(x: Tensor, rule: str, arg: float | None) -> Tensor:
    """One clip (or absmean scale) per group row of `x`: percentile, amax, sdclip, absmean.

    >>> clip_values(torch.tensor([[1.0, -3.0, float("nan")]]), "amax", None).tolist()
    [3.0]
    """
    if x.numel() == 0:
        return torch.zeros(x.shape[0])
    a = x.abs()
    padded = has_padding(x)
    if rule == "percentile":
        return quantile_rows(a, arg / 100.0, padded) if arg < 100 else torch.nan_to_num(a, nan=0.0).amax(dim=1)
    if rule == "amax":
        return (torch.nan_to_num(a, nan=0.0) if padded else a).amax(dim=1)
    count = (~torch.isnan(x)).sum(dim=1).clamp_min(1) if padded else x.shape[1]
    # float64 sums: a float32 sum depends on the CPU's vector width, and the scale (hence the
    # stored bytes) must not
    total = functools.partial(torch.nansum if padded else torch.sum, dim=1, dtype=torch.float64)
    if rule == "absmean":
        return (total(a) / count).to(x.dtype)
    if rule == "sdclip":
        mean = total(x) / count
        var = total((x - mean[:, None]) ** 2) / ((count - 1).clamp_min(1) if padded else max(1, count - 1))
        return (arg * var.sqrt()).to(x.dtype)
    raise ValueError(f"unknown clip rule {rule!r}")


def quantize_groups(x: Tensor, clip: Tensor, qmax: int, clip_first: bool = True,
                    sign_only: bool = False, floor: float | None = None) -> tuple[Tensor, Tensor]:
    """int8 symbols (same shape as x, pads 0) and fp16 scales for clip/qmax per group row.

    The symbols are computed with the fp16-rounded scale, so dequantization (symbols x stored
    scale) is the best reconstruction the stored scale allows. `floor` raises the scale to at
    least floor/qmax (the records' `clamp_min(1/qmax)` is floor 1); values stay clipped at `clip`.
    """
    # sign_only never divides by the scale, so an all-zero group may keep scale 0 (exact zeros).
    grid = clip if floor is None else clip.clamp_min(floor)
    scale = (grid / qmax).clamp(0.0 if sign_only else SCALE_MIN, SCALE_MAX).to(SCALE_DTYPE)
    x0 = torch.nan_to_num(x, nan=0.0) if has_padding(x) else x
    if sign_only:
        return torch.where(x0 >= 0, 1, -1).to(torch.int8), scale
    # One new tensor, then in place: the same values as clamp(round(clip(x) / s)) with fewer
    # passes over memory (clamp(x, -c, c) equals max(min(x, c), -c) because c >= 0).
    s = scale.float()[:, None]
    q = torch.clamp(x0, -clip[:, None], clip[:, None]).div_(s) if clip_first else x0 / s
    return q.round_().clamp_(-qmax, qmax).to(torch.int8), scale


def dequantize_groups(symbols: Tensor, scales: Tensor, shape: tuple[int, ...], group: int | None) -> Tensor:
    """float32 tensor of `shape`: each group's symbols times its fp16 scale."""
    rows, cols, size, ngroups = layout(tuple(shape), group)
    q = symbols.reshape(rows, cols).float()
    if ngroups * size != cols:
        q = torch.nn.functional.pad(q, (0, ngroups * size - cols))
    out = q.reshape(rows * ngroups, size) * scales.reshape(rows * ngroups, 1).float()
    return out.reshape(rows, ngroups * size)[:, :cols].reshape(shape)
