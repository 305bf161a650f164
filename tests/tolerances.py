"""Tolerances derived from float32 arithmetic, for comparing one quantity computed two ways.

Two float32 computations of the same sum in different orders (batch shapes, kernels, CPUs) agree
only to rounding: for n non-negative terms the worst case is n * u relative (u = 2**-24, the unit
roundoff), and each term computed through a dot product of length k or a log-sum-exp over v
logits carries about (k + v) * u of its own. A tolerance below that holds on one CPU's kernels
and not another's; these bounds hold on any IEEE float32 machine and still catch real mistakes
(a token or a byte miscounted moves a mean by 1/n, far above them).

"""
from __future__ import annotations

UNIT_ROUNDOFF = 2.0 ** -24


def float32_mean_rtol(n_terms: int, inner: int = 0, vocab: int = 0) -> float:
    """Worst-case relative difference of two float32 evaluations of a mean of non-negative terms."""
    return (n_terms + inner + vocab) * UNIT_ROUNDOFF
