"""Seeded weight matrices with chosen statistics: the estimator's test grid.

Knobs, each measured back by `measure`: `bits`, the order-0 entropy of the stored symbols per
value under a reference `scheme` (1 to the scheme's ceiling); `df`, the Student-t degrees of
freedom of the bulk (3 heavy .. inf Gaussian); `floor_frac`, the fraction of rows whose scale
floor binds (official int8: scale >= 1/127; intN:floor(c)); `row_spread`, the log-sd of
per-row scale factors; `untrained_frac`, embedding-like rows left at a small init std.

How the target is hit: a row's symbols depend only on its values over its quantization step.
A floor row has the fixed step floor/qmax, so its entropy follows its std; a free row's step
follows its clip (its largest |w|), so its entropy follows one planted outlier m times the row's
std. Both are solved by bisection on a pilot (`solve`), so every row lands on the same symbol
distribution and the matrix's entropy is the target. Trained matrices look like this: a few
large entries per row set the free rows' grid (2-3 bits per value in the participants'
official-int8 exports) and most rows of small weights sit under the official floor.

>>> m = matrix((64, 256), bits=3.0, df=float("inf"), floor_frac=0.5, seed=0)
>>> r = measure(m)
>>> abs(r["bits"] - 3.0) < 0.15, abs(r["floor_frac"] - 0.5) < 0.05
(True, True)
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from pgolf.budget.quant.schemes import floor_scale, get_scheme

REFERENCE_SCHEME = "official-int8"
PILOT_ROWS = 64
_BISECT_STEPS = 40
# floor rows are clamped just under the floor value (the clip where scale = floor): it binds for certain
_FLOOR_CLAMP = 0.98


def _bulk(rng: np.random.Generator, shape: tuple[int, int], df: float) -> np.ndarray:
    """Unit-variance Student-t (Gaussian at df = inf) draws, float64."""
    if math.isinf(df):
        return rng.standard_normal(shape)
    x = rng.standard_t(df, shape)
    return x / math.sqrt(df / (df - 2)) if df > 2 else x


def _rows(z: np.ndarray, std: float, outlier: float, signs: np.ndarray, cols_at: np.ndarray) -> np.ndarray:
    """std * z with one entry per row replaced by +-outlier * std (outlier 0: none)."""
    out = std * z
    if outlier > 0:
        rows = np.arange(z.shape[0])
        out[rows, cols_at] = signs * outlier * std
    return out


def symbol_bits(w: np.ndarray, scheme) -> float:
    """Order-0 entropy of the symbols `scheme` stores for `w`, bits per value (float64)."""
    q = scheme.quantize(torch.from_numpy(np.ascontiguousarray(w, np.float32)))
    counts = np.unique(q.symbols.numpy(), return_counts=True)[1].astype(np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _bisect(f, lo: float, hi: float, target: float, increasing: bool) -> float:
    """x in [lo, hi] (geometric) where f(x) = target, for a monotone f."""
    for _ in range(_BISECT_STEPS):
        mid = math.sqrt(lo * hi)
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


@dataclasses.dataclass(frozen=True)
class Solved:
    """Row parameters that give `bits` under a scheme: floor rows' std, free rows' outlier."""

    floor_std: float | None
    outlier: float
    free_std: float
    ceiling: float  # the most bits a free row reaches (no outlier)


def solve(bits: float, df: float, cols: int, scheme_spec: str = REFERENCE_SCHEME, seed: int = 0) -> Solved:
    """Bisect floor-row std and free-row outlier so a pilot of PILOT_ROWS rows has `bits`.

    Raises ValueError when `bits` is above what the scheme reaches on this bulk (its ceiling).
    """
    scheme = get_scheme(scheme_spec)
    rng = np.random.default_rng(seed)
    z = _bulk(rng, (PILOT_ROWS, cols), df)
    signs = rng.choice([-1.0, 1.0], PILOT_ROWS)
    at = rng.integers(0, cols, PILOT_ROWS)
    fs = floor_scale(scheme)
    qmax = getattr(scheme, "qmax", 127)
    # free rows: std well above the floor so their clip never binds it
    free_std = 1.0 if fs is None else 4.0 * fs * qmax
    ceiling = symbol_bits(_rows(z, free_std, 0.0, signs, at), scheme)
    if bits > ceiling - 0.02:
        raise ValueError(f"{bits} bits is above what {scheme.name} stores for this bulk (df {df}, {cols} columns): "
                         f"at most {ceiling:.2f}")
    outlier = _bisect(lambda m: symbol_bits(_rows(z, free_std, m, signs, at), scheme), 1.0, 1e7, bits, False)
    floor_std = None
    if fs is not None:
        limit = _FLOOR_CLAMP * fs * qmax
        floor_std = _bisect(lambda s: symbol_bits(np.clip(s * z, -limit, limit), scheme), 1e-6, limit / 3, bits, True)
    return Solved(floor_std, outlier, free_std, ceiling)


def matrix(shape: tuple[int, int], bits: float, df: float = float("inf"), floor_frac: float = 0.0,
           row_spread: float = 0.0, untrained_frac: float = 0.0, untrained_std: float = 0.005,
           scheme: str = REFERENCE_SCHEME, seed: int = 0, solved: Solved | None = None) -> Tensor:
    """A float32 (rows, cols) matrix whose stored symbols under `scheme` have about `bits` bits each.

    `floor_frac` of the rows (first chosen at random) sit under the scale floor; it must be 0 for a
    scheme without one. `row_spread` multiplies each row by exp(N(0, row_spread)) (free rows'
    symbols are scale-free; floor rows' entropy moves with it). `untrained_frac` of the rows are
    N(0, untrained_std) as an embedding's never-seen tokens keep their init.
    """
    rows, cols = shape
    sch = get_scheme(scheme)
    if floor_frac > 0 and floor_scale(sch) is None:
        raise ValueError(f"{sch.name} has no scale floor: floor_frac must be 0")
    if not 0 <= floor_frac <= 1 or not 0 <= untrained_frac <= 1:
        raise ValueError("floor_frac and untrained_frac are fractions in [0, 1]")
    s = solved or solve(bits, df, cols, scheme, seed)
    rng = np.random.default_rng(seed + 1)
    z = _bulk(rng, shape, df)
    signs = rng.choice([-1.0, 1.0], rows)
    at = rng.integers(0, cols, rows)
    n_floor = int(round(floor_frac * rows))
    is_floor = np.zeros(rows, bool)
    is_floor[rng.permutation(rows)[:n_floor]] = True
    w = _rows(z, s.free_std, s.outlier, signs, at)
    if row_spread > 0:
        w *= np.exp(rng.normal(0.0, row_spread, rows))[:, None]
    if n_floor:
        limit = _FLOOR_CLAMP * floor_scale(sch) * getattr(sch, "qmax", 127)
        spread = np.exp(rng.normal(0.0, row_spread, n_floor))[:, None] if row_spread > 0 else 1.0
        w[is_floor] = np.clip(s.floor_std * spread * z[is_floor], -limit, limit)
    n_untrained = int(round(untrained_frac * rows))
    if n_untrained:
        w[rng.permutation(rows)[:n_untrained]] = untrained_std * rng.standard_normal((n_untrained, cols))
    return torch.from_numpy(w.astype(np.float32))


def measure(w: Tensor, scheme: str = REFERENCE_SCHEME) -> dict:
    """{'bits': order-0 entropy of the stored symbols per value, 'floor_frac': rows at the floor scale}."""
    sch = get_scheme(scheme)
    q = sch.quantize(w)
    counts = np.unique(q.symbols.numpy(), return_counts=True)[1].astype(np.float64)
    p = counts / counts.sum()
    fs = floor_scale(sch)
    at_floor = float("nan")
    if fs is not None and q.scales is not None and q.scales.numel() == w.shape[0]:  # one scale per row
        at_floor = float((q.scales.reshape(-1).float() <= torch.tensor(fs, dtype=torch.float16).float()).float().mean())
    return {"bits": float(-(p * np.log2(p)).sum()), "floor_frac": at_floor}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid cell: the knobs of every matrix of a synthetic model."""

    bits: float
    df: float = float("inf")
    floor_frac: float = 0.0
    row_spread: float = 0.0
    untrained_frac: float = 0.0

    @property
    def name(self) -> str:
        df = "gauss" if math.isinf(self.df) else f"t{self.df:g}"
        return (f"b{self.bits:g}-{df}-f{self.floor_frac:g}-r{self.row_spread:g}-u{self.untrained_frac:g}")


def model(cell: Cell, dim: int = 128, layers: int = 2, vocab: int = 1024, mlp_mult: int = 2,
          seed: int = 0) -> dict[str, Tensor]:
    """A baseline-named state dict (tok_emb, blocks' attention and MLP matrices, control vectors)
    whose matrices all follow `cell`; the embedding alone gets the untrained rows.

    >>> sd = model(Cell(2.5, floor_frac=1.0), dim=64, layers=1, vocab=256)
    >>> sorted(sd)[:2], tuple(sd["tok_emb.weight"].shape)
    (['blocks.0.attn.c_k.weight', 'blocks.0.attn.c_q.weight'], (256, 64))
    """
    kv = dim // 2
    shapes = {"tok_emb.weight": (vocab, dim)}
    for i in range(layers):
        p = f"blocks.{i}."
        shapes.update({p + "attn.c_q.weight": (dim, dim), p + "attn.c_k.weight": (kv, dim),
                       p + "attn.c_v.weight": (kv, dim), p + "attn.proj.weight": (dim, dim),
                       p + "mlp.fc.weight": (mlp_mult * dim, dim), p + "mlp.proj.weight": (dim, mlp_mult * dim)})
    solved = {}
    sd: dict[str, Tensor] = {}
    for k, (name, shape) in enumerate(shapes.items()):
        cols = shape[1]
        if cols not in solved:
            solved[cols] = solve(cell.bits, cell.df, cols, seed=seed)
        untrained = cell.untrained_frac if name.startswith("tok_emb") else 0.0
        sd[name] = matrix(shape, cell.bits, cell.df, cell.floor_frac, cell.row_spread, untrained,
                          seed=seed * 1000 + 7 * k, solved=solved[cols])
    rng = np.random.default_rng(seed)
    for i in range(layers):
        p = f"blocks.{i}."
        sd[p + "attn_scale"] = torch.from_numpy(rng.normal(1.0, 0.1, dim).astype(np.float32))
        sd[p + "mlp_scale"] = torch.from_numpy(rng.normal(1.0, 0.1, dim).astype(np.float32))
    return sd
