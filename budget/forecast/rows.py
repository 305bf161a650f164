"""How much a sample of rows under- or over-states its tensor's bits: a regression estimator on cheap row statistics.

The estimator quantizes a sample of each large tensor's rows (streams._sample_rows). Rows can
differ a lot: rows at a scale floor, an embedding's never-trained rows, rows with one outlier.
With 128 sampled rows, the sample's mean bits per row can then be several percent off the
tensor's. The draws do not show this error, because every draw comes from the same sampled rows.

Two statistics are cheap for every row and predict its bits: log2 of its RMS (the grid step
against the values) and log2 of its largest |value| (what an absmax scale divides by). The
sampled rows give each row's code length y under the sample's own symbol histogram. An ordinary
least-squares fit of y on the two statistics is then evaluated at the mean over *all* rows
(the classic regression estimator of survey sampling):

    y_all = mean(y_s) + (mean(X_all) - mean(X_s)) . beta

Where the statistics explain nothing, beta is about 0 and this is the plain sample mean. Its
standard error comes from the residuals: the mean's, s / sqrt(n) * sqrt(1 - n / N), and the
slopes' at the shift. A line is not trusted beyond the sample: where the rows' mean statistics
lie outside the sampled rows' range, the sample never saw what pulls them there, and the
correction is declined (factor 1) and counted as uncertainty instead.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> t = torch.randn(400, 64, generator=g) * torch.where(torch.arange(400) < 200, 1.0, 0.01)[:, None]
>>> q = torch.round(t / t.abs().amax() * 31).to(torch.int8).numpy().view(np.uint8)
>>> idx = np.r_[0:60, 200:220]  # 3 wide rows sampled per narrow one; the tensor has 1 : 1
>>> f, se = anchor_correction(t, idx, q[idx], np.bincount(q[idx].reshape(-1)))
>>> bool(f < 0.9), bool(0 < se < 0.05)
(True, True)
>>> anchor_correction(t, np.arange(40), q[:40], np.bincount(q[:40].reshape(-1)))[0]  # only wide rows seen
1.0
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FACTOR_RANGE = (0.5, 2.0)  # a correction outside this says the fit broke, not the sample
MIN_ROWS = 8              # fewer sampled rows than this: no fit, no correction
CODE_VALUES = 128         # values per row counted for its code length


def row_statistics(t: Tensor) -> np.ndarray:
    """(rows, 2): log2 RMS and log2 max |value| of each row of `t` (floored a millionth under the
    largest, so all-zero rows stay finite). Three reductions over the tensor, no copy of it for fp32."""
    rows = t.detach().reshape(t.shape[0], -1)
    if rows.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        rows = rows.float()  # float8 and integers have no norm kernel
    wide = torch.float64 if rows.dtype == torch.float64 else torch.float32
    norm = torch.linalg.vector_norm(rows, dim=1, dtype=wide) * (1.0 / max(rows.shape[1], 1) ** 0.5)
    amax = torch.maximum(rows.amax(dim=1), rows.amin(dim=1).neg()).float()  # no |t| copy
    x = torch.stack([norm, amax], dim=1)
    return x.clamp_min_(max(float(x.max()) * 1e-6, 1e-30)).log2_().double().numpy()


def row_code_bits(codes: np.ndarray, counts: np.ndarray, stride: int = 1) -> np.ndarray:
    """Each row's code length in bits under the order-0 histogram `counts` of all the rows together
    (`codes`: one row of unsigned symbol codes per row), counted on every `stride`-th value.

    >>> [round(float(b), 3) for b in row_code_bits(np.array([[0, 0], [0, 1]], np.uint8), np.array([3, 1]))]
    [0.83, 2.415]
    """
    cost = -np.log2(np.maximum(counts, 1).astype(np.float64) / max(int(counts.sum()), 1))
    return cost[codes[:, ::stride]].sum(axis=1)


def anchor_correction(t: Tensor, idx: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """(factor, relative standard error): the factor turns the sampled rows' mean bits per row into
    the regression estimate for all rows of `t`; `idx` are the sampled rows, `codes` their
    quantized symbols as unsigned codes (streams.symbol_codes), `counts` the codes' histogram.
    (1.0, 0.0) where nothing is sampled."""
    n, total = len(idx), t.shape[0]
    if t.ndim < 2 or n < MIN_ROWS or n >= total or codes.size % n:
        return 1.0, 0.0
    cols = codes.size // n
    # a row's share of its tensor's bits needs ~128 of its values, not all: the cost is per value
    y = row_code_bits(codes.reshape(n, cols), counts, max(1, cols // CODE_VALUES))
    mean_y = float(y.mean())
    if mean_y <= 0:
        return 1.0, 0.0
    x_all = row_statistics(t)
    x_s = x_all[idx]
    mean_all, mean_s = x_all.mean(axis=0), x_s.mean(axis=0)
    d = x_s - mean_s  # centred: the intercept is mean_y, the slopes a 2 x 2 solve
    (a, b), (_, c) = d.T @ d
    r0, r1 = d.T @ (y - mean_y)
    det = a * c - b * b
    if not det > 1e-12 * max(a * c, 1e-300):  # rows alike in a statistic (or NaN): the plain mean
        return 1.0, float(y.std(ddof=1) / np.sqrt(n) * np.sqrt(1.0 - n / total)) / mean_y
    slope = np.array([c * r0 - b * r1, a * r1 - b * r0]) / det
    shift = mean_all - mean_s
    estimate = mean_y + float(shift @ slope)
    resid = y - mean_y - d @ slope
    s2 = float(resid @ resid) / max(n - 3, 1)
    # the mean's variance plus the slopes' at the shift ((D'D)^-1 = [[c, -b], [-b, a]] / det)
    quad = c * shift[0] ** 2 - 2 * b * shift[0] * shift[1] + a * shift[1] ** 2
    var = s2 / n * (1.0 - n / total) + s2 * quad / det
    factor = min(max(estimate / mean_y, FACTOR_RANGE[0]), FACTOR_RANGE[1])
    if ((mean_all < x_s.min(axis=0)) | (mean_all > x_s.max(axis=0))).any():
        # the rows' mean lies outside what the sample holds: a line would extrapolate, so the
        # correction is declined and its size counted as the uncertainty
        return 1.0, abs(factor - 1.0) + float(np.sqrt(var)) / mean_y
    return factor, float(np.sqrt(var)) / (mean_y * factor)
