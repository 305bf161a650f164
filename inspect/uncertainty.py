"""Standard errors and 95% intervals of BPB differences, from paired per-window losses.

Two models evaluated on the same slice see the same windows, so their difference is measured
window by window and most of the text's own variance cancels. Evaluation keeps, per *unit*
(one window when `forward(x, y, reduction="none")` is supported, else one batch of windows),
the summed loss in nats and the targets' UTF-8 bytes.

Resampling unit: blocks of consecutive units covering at least `BLOCK_TOKENS` (4,096) target
tokens, but at least MIN_BLOCKS (8) blocks: a shorter slice uses smaller blocks (down to one
unit). Neighbouring windows often continue the same document, so their differences are
correlated, and treating windows as independent understates the error. Measured on the embedded
default (long documentation pages; int4 only-this gaps of a trained 3x128 model, 4 disjoint
slices of 16,384 tokens, median over 19 tensors of the spread across slices / reported SE):
128-token windows 2.02, blocks of 1,024 tokens 1.36, 2,048 1.29, 4,096 1.16. FineWeb's shorter
documents correlate less; the block keeps the error honest on both (tests/test_inspect_uncertainty.py).

Estimator: BPB of a slice is sum(loss) / (ln 2 * sum(bytes)), a ratio. The SE of the difference
of two such ratios on the same bytes uses the delta method over blocks i with loss difference d_i
and bytes b_i: R = sum(d) / sum(b), z_i = (d_i - R b_i) / mean(b), SE = sd(z) / sqrt(n) / ln 2.
The 95% interval is value ± t(0.975, n-1) * SE (Student t: few blocks widen it honestly);
*significant* means the interval excludes zero. A difference that is exactly zero in every window
(a tensor stored bit for bit) has SE 0 and is not significant.

>>> import numpy as np
>>> a, b = np.array([2.0, 2.2, 1.9, 2.1]), np.array([1.9, 2.0, 1.9, 2.0])
>>> iv = paired_interval(a, b, np.full(4, 4.0), block_units=1)
>>> round(iv.value, 5), round(iv.se, 5), iv.n_blocks, iv.significant
(0.03607, 0.01472, 4, False)
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

BLOCK_TOKENS = 4096
MIN_BLOCKS = 8
# two-sided 95% quantiles of Student's t (df 1..30); beyond, the Cornish-Fisher expansion
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
Z975 = 1.959963984540054


def t975(df: int) -> float:
    """Two-sided 95% quantile of Student's t with `df` degrees of freedom (inf when df < 1).

    >>> round(t975(3), 4), round(t975(60), 4), round(t975(10**9), 4)
    (3.1824, 2.0003, 1.96)
    """
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def block_units(seq_len: int, unit_windows: int = 1) -> int:
    """Units per resampling block: enough whole units to cover BLOCK_TOKENS targets.

    >>> block_units(1024), block_units(256), block_units(128, unit_windows=4)
    (4, 16, 8)
    """
    return max(1, math.ceil(BLOCK_TOKENS / (max(1, seq_len) * max(1, unit_windows))))


def block_sums(values, units: int) -> np.ndarray:
    """Sums over consecutive groups of `units` values (the last group may be shorter).

    >>> block_sums([1, 2, 3, 4, 5], 2).tolist()
    [3.0, 7.0, 5.0]
    """
    v = np.asarray(values, dtype=np.float64)
    starts = np.arange(0, v.size, max(1, int(units)))
    return np.add.reduceat(v, starts) if v.size else v


@dataclasses.dataclass(frozen=True)
class Interval:
    """A BPB difference with its standard error and 95% interval."""

    value: float
    se: float
    lo: float
    hi: float
    n_blocks: int

    @property
    def significant(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)

    def columns(self, prefix: str) -> dict:
        """{prefix: value, prefix_se, prefix_lo, prefix_hi, prefix_significant} (the glossary's names)."""
        return {prefix: self.value, f"{prefix}_se": self.se, f"{prefix}_lo": self.lo, f"{prefix}_hi": self.hi,
                f"{prefix}_significant": self.significant}


def ratio_se(num: np.ndarray, den: np.ndarray) -> float:
    """Delta-method SE of sum(num) / sum(den) over independent blocks (NaN with under two blocks).

    >>> ratio_se(np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0]))
    0.0
    """
    n = num.size
    if n < 2:
        return math.nan
    r = num.sum() / den.sum()
    z = (num - r * den) / den.mean()
    return float(math.sqrt(max(z.var(ddof=1), 0.0) / n))


def interval(value: float, se: float, n_blocks: int) -> Interval:
    """value ± t(0.975, n_blocks - 1) * se; with an unknown SE (NaN) the interval is unbounded."""
    if not math.isfinite(se):
        return Interval(value, math.nan, -math.inf, math.inf, n_blocks)
    half = t975(n_blocks - 1) * se if se > 0 else 0.0
    return Interval(value, se, value - half, value + half, n_blocks)


def paired_interval(loss_a, loss_b, unit_bytes, block_units: int, value: float | None = None) -> Interval:
    """BPB(a) - BPB(b) of two evaluations on the same units: per-unit loss sums (nats) and bytes.
    `value` overrides the point estimate (e.g. the headline difference, same number up to rounding)."""
    diff = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    units = min(int(block_units), max(1, diff.size // MIN_BLOCKS))
    d, b = block_sums(diff, units), block_sums(unit_bytes, units)
    if value is None:
        value = float(d.sum() / b.sum() / math.log(2.0))
    if not np.any(d):
        return Interval(float(value), 0.0, float(value), float(value), int(d.size))
    return interval(float(value), ratio_se(d, b) / math.log(2.0), int(d.size))


def bpb_interval(loss, unit_bytes, block_units: int, value: float | None = None) -> Interval:
    """val_bpb of one evaluation with its SE over blocks (the text's own variance: unpaired)."""
    return paired_interval(loss, np.zeros(len(loss)), unit_bytes, block_units, value)


def sum_interval(parts: list[Interval]) -> Interval:
    """A sum of independent differences (SE in quadrature)."""
    se = math.sqrt(sum(p.se ** 2 for p in parts))
    return interval(sum(p.value for p in parts), se, min((p.n_blocks for p in parts), default=0))


def significance_note(n: int, what: str) -> str:
    """One line for reports: how many differences were counted as no gain.

    >>> significance_note(3, "options")
    '3 options within noise (95% interval contains 0) counted as no gain'
    """
    return f"{n:,} {what} within noise (95% interval contains 0) counted as no gain"
