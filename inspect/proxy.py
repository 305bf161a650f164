"""The cheap gap proxy: a second-order Taylor estimate of each tensor's gap from gradients.

Changing weights by dw raises the mean loss by about g.dw + 0.5 * dw' H dw. The proxy keeps the
diagonal of H, estimated by the empirical Fisher F (squared gradients), plus the first-order
term from the mean gradient g over the same calibration windows:
    proxy_gap_bpb = (sum(g * dw) + 0.5 * sum(F * dw^2)) / ln 2 * tokens/byte.
F comes from gradients of single windows: if per-token gradients were independent, a window of
S tokens has E[g_w^2] = F / S, so F ~= S * mean(g_w^2). `first_order=False` gives the pure
Fisher-weighted squared error (always >= 0). Calibration windows are spread evenly over the
slice; a few of them (forward + backward each) replace one evaluation per tensor, and
`spearman` reports how well the ranking matches the measured gaps.

>>> stats = gradient_stats(model, sl)                                       # doctest: +SKIP
>>> proxy_gaps(stats, sd, fake_quantize(sd, "int6"), sl.tokens_per_byte)["blocks.0.mlp.fc.weight"]  # doctest: +SKIP
0.00123
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from pgolf.inspect.evaluate import EvalSlice, byte_luts_uniform, make_slice  # noqa: F401 (doctest)

MAX_CALIB_TOKENS = 16_384


@dataclasses.dataclass
class GradStats:
    """Per-parameter diagonal empirical Fisher and mean gradient over `windows` calibration windows."""

    fisher: dict[str, Tensor]
    grad: dict[str, Tensor]
    windows: int
    tokens: int


def calibration_windows(sl: EvalSlice, calib_tokens: int | None = None) -> list[int]:
    """Indices of the windows the proxy uses: about `calib_tokens` (default: a quarter of the
    slice, at most 16,384 tokens, at least one window), spread evenly over the slice.

    >>> calibration_windows(make_slice(torch.zeros(801, dtype=torch.long), 100, byte_luts_uniform(2)), 400)
    [0, 2, 4, 6]
    """
    if calib_tokens is None:
        calib_tokens = min(MAX_CALIB_TOKENS, sl.n_tokens // 4)
    k = max(1, min(sl.n_seqs, int(calib_tokens) // sl.seq_len))
    return [int(i) for i in np.linspace(0, sl.n_seqs, k, endpoint=False).astype(int)]


def gradient_stats(model: nn.Module, sl: EvalSlice, calib_tokens: int | None = None,
                   names: set[str] | None = None) -> GradStats:
    """Fisher diagonal (S * mean of squared window gradients) and mean gradient, fp32."""
    params = {n: p for n, p in model.named_parameters() if names is None or n in names}
    windows = calibration_windows(sl, calib_tokens)
    batches = sl.batches(1)
    device = next(iter(model.parameters())).device
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    sq = {n: torch.zeros(p.shape, dtype=torch.float32, device=device) for n, p in params.items()}
    mean = {n: torch.zeros(p.shape, dtype=torch.float32, device=device) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for n, p in model.named_parameters():
            p.requires_grad_(n in params)
        for w in windows:
            x, y = batches[w]
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                model(x.to(device), y.to(device)).backward()
            for n, p in params.items():
                if p.grad is not None:
                    g = p.grad.detach().float()
                    sq[n] += g.square()
                    mean[n] += g
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(was_training)
    k = len(windows)
    return GradStats({n: t.mul_(sl.seq_len / k) for n, t in sq.items()}, {n: t.div_(k) for n, t in mean.items()},
                     k, k * sl.seq_len)


def proxy_gaps(stats: GradStats, sd: dict[str, Tensor], replacements: dict[str, Tensor], tokens_per_byte: float,
               first_order: bool = True) -> dict[str, float]:
    """Predicted BPB gap of replacing each tensor by its replacement alone (only-this).

    >>> s = GradStats({"w": torch.full((2,), 2.0)}, {"w": torch.zeros(2)}, 1, 1)
    >>> round(proxy_gaps(s, {"w": torch.zeros(2)}, {"w": torch.ones(2)}, 1.0)["w"], 6)
    2.88539
    """
    out = {}
    for name, new in replacements.items():
        if name not in stats.fisher:
            continue
        f = stats.fisher[name]
        dw = new.detach().float().to(f.device) - sd[name].detach().float().to(f.device)
        nats = 0.5 * float((f * dw.square()).sum(dtype=torch.float64))
        if first_order:
            nats += float((stats.grad[name] * dw).sum(dtype=torch.float64))
        out[name] = nats / math.log(2.0) * tokens_per_byte
    return out


def spearman(a, b) -> float:
    """Spearman rank correlation (Pearson of average ranks; NaN when undefined).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 45])
    1.0
    """
    a, b = pd.Series(list(a), dtype=float), pd.Series(list(b), dtype=float)
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(a.rank().to_numpy(), b.rank().to_numpy())[0, 1])
