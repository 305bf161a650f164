"""The cheap gap proxy: a second-order Taylor estimate of each tensor's gap from gradients.

Changing weights by dw raises the mean loss by about g.dw + 0.5 * dw' H dw. The proxy keeps the
first-order term from the mean gradient g over the calibration windows, and the diagonal of H
estimated by a diagonal Fisher F:
    proxy_gap_bpb = (sum(g * dw) + 0.5 * sum(F * dw^2)) / ln 2 * tokens/byte.
F is the *true* Fisher (the Gauss-Newton curvature of the cross-entropy): gradients of the loss
against targets sampled from the model's own predictions. Their expectation is zero token by
token and sampled targets are independent, so a batch of T tokens has E[g_b^2] = F / T exactly:
F = mean over batches of T * g_b^2, whatever the batch size. The empirical Fisher (squared
gradients against the real targets) is not used: it adds the squared mean gradient, which on a
model far from its minimum on this data (a checkpoint evaluated on other text) outweighs the
curvature a thousandfold. The sampled targets come from the logits the model hands to
`F.cross_entropy`; a model that computes its loss otherwise falls back to the empirical Fisher of
single windows (F ~= S * mean(g_w^2)), reported as `fisher_kind`. `first_order=False` gives the
pure Fisher-weighted squared error (always >= 0). Calibration windows (the whole slice, at most
16,384 tokens) are spread evenly over the slice; one forward and two backward passes over them
replace one evaluation per tensor, and `spearman` reports how well the ranking matches the
measured gaps.

>>> stats = gradient_stats(model, sl)                                       # doctest: +SKIP
>>> proxy_gaps(stats, sd, fake_quantize(sd, "int6"), sl.tokens_per_byte)["blocks.0.mlp.fc.weight"]  # doctest: +SKIP
0.00123
"""
from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.inspect.evaluate import EvalSlice, byte_luts_uniform, make_slice  # noqa: F401 (doctest)

MAX_CALIB_TOKENS = 16_384
BATCH_TOKENS = 2_048  # calibration batch size for the sampled Fisher (at least MIN_BATCHES batches)
MIN_BATCHES = 8
SAMPLE_SEED = 0  # sampled targets are seeded: the proxy is deterministic


@dataclasses.dataclass
class GradStats:
    """Per-parameter diagonal Fisher and mean gradient over `windows` calibration windows
    (`tokens` tokens); `fisher_kind` is "sampled" (true Fisher) or "empirical" (fallback)."""

    fisher: dict[str, Tensor]
    grad: dict[str, Tensor]
    windows: int
    tokens: int
    fisher_kind: str = "sampled"
    # per calibration batch and tensor: g_b.dw + 0.5 T_b (g_fb^2).dw^2 in nats per token (its mean is
    # the proxy); only for the `deltas` given to gradient_stats; the spread gives the proxy's SE
    batch_terms: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def calibration_windows(sl: EvalSlice, calib_tokens: int | None = None) -> list[int]:
    """Indices of the windows the proxy uses: about `calib_tokens` (default: the whole slice,
    at most 16,384 tokens, at least one window), spread evenly over the slice.

    >>> calibration_windows(make_slice(torch.zeros(801, dtype=torch.long), 100, byte_luts_uniform(2)), 400)
    [0, 2, 4, 6]
    """
    if calib_tokens is None:
        calib_tokens = min(MAX_CALIB_TOKENS, sl.n_tokens)
    k = max(1, min(sl.n_seqs, int(calib_tokens) // sl.seq_len))
    return [int(i) for i in np.linspace(0, sl.n_seqs, k, endpoint=False).astype(int)]


def calibration_batches(windows: list[int], seq_len: int) -> list[list[int]]:
    """Windows grouped into batches of about BATCH_TOKENS tokens, at least MIN_BATCHES of them
    where there are enough windows (the sampled Fisher is unbiased for any batch size; more
    batches, less noise).

    >>> calibration_batches(list(range(16)), 1024)
    [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]]
    """
    size = max(1, min(BATCH_TOKENS // seq_len, len(windows) // MIN_BATCHES))
    return [windows[i:i + size] for i in range(0, len(windows), size)]


class _SampledTargets:
    """While active, `F.cross_entropy` also computes the loss against targets sampled from the
    logits it is given (`sampled`), and counts its calls: the true Fisher needs exactly one."""

    def __init__(self, generator: torch.Generator):
        self.generator, self.sampled, self.calls = generator, None, 0

    @contextlib.contextmanager
    def active(self):
        real = F.cross_entropy

        def cross_entropy(logits, target, *args, **kwargs):
            self.calls += 1
            if logits.dim() == 2 and target.dim() == 1 and target.dtype == torch.long:
                probs = logits.detach().float().softmax(-1)
                drawn = torch.multinomial(probs.cpu(), 1, generator=self.generator).squeeze(-1).to(target.device)
                self.sampled = real(logits, drawn, *args, **kwargs)
            return real(logits, target, *args, **kwargs)

        self.sampled, self.calls = None, 0
        F.cross_entropy = cross_entropy  # the trainer's GPT (and most models) call F.cross_entropy
        try:
            yield self
        finally:
            F.cross_entropy = real


def _grads(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    return {n: p.grad.detach().float() for n, p in params.items() if p.grad is not None}


def gradient_stats(model: nn.Module, sl: EvalSlice, calib_tokens: int | None = None,
                   names: set[str] | None = None, deltas: dict[str, Tensor] | None = None) -> GradStats:
    """Mean gradient (real targets) and diagonal Fisher (sampled targets; see the module doc), fp32;
    with `deltas` (replacement - original per tensor) also each batch's proxy term (batch_terms)."""
    params = {n: p for n, p in model.named_parameters() if names is None or n in names}
    windows = calibration_windows(sl, calib_tokens)
    per_window = sl.batches(1)
    device = next(iter(model.parameters())).device
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    fisher = {n: torch.zeros(p.shape, dtype=torch.float32, device=device) for n, p in params.items()}
    mean = {n: torch.zeros(p.shape, dtype=torch.float32, device=device) for n, p in params.items()}
    sampler = _SampledTargets(torch.Generator().manual_seed(SAMPLE_SEED))
    kind = "sampled"
    dws = {n: d.detach().float().to(device) for n, d in (deltas or {}).items() if n in params}
    terms: dict[str, list[float]] = {n: [] for n in dws}
    first: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for n, p in model.named_parameters():
            p.requires_grad_(n in params)
        batches = calibration_batches(windows, sl.seq_len)
        i = 0
        while i < len(batches):
            group = batches[i]
            x = torch.cat([per_window[w][0] for w in group]).to(device)
            y = torch.cat([per_window[w][1] for w in group]).to(device)
            tokens = y.numel()
            sampling = kind == "sampled"
            model.zero_grad(set_to_none=True)
            with torch.enable_grad(), (sampler.active() if sampling else contextlib.nullcontext()):
                loss = model(x, y)
            if sampling and (sampler.calls != 1 or sampler.sampled is None):
                # the loss does not come from one F.cross_entropy call: empirical Fisher of single
                # windows from here on, computed again from the first window
                kind, batches, i = "empirical", [[w] for w in windows], 0
                for t in (*fisher.values(), *mean.values()):
                    t.zero_()
                terms = {n: [] for n in dws}
                continue
            loss.backward(retain_graph=sampling)
            for n, g in _grads(params).items():
                mean[n] += g * tokens
                if n in dws:
                    first[n] = float((g * dws[n]).sum(dtype=torch.float64))
                if kind == "empirical":
                    fisher[n] += g.square() * tokens
                    if n in dws:
                        terms[n].append(first[n] + 0.5 * tokens * float((g.square() * dws[n].square()).sum(
                            dtype=torch.float64)))
            if sampling:
                model.zero_grad(set_to_none=True)
                sampler.sampled.backward()
                for n, g in _grads(params).items():
                    fisher[n] += g.square() * tokens
                    if n in dws:
                        terms[n].append(first.get(n, 0.0) + 0.5 * tokens * float(
                            (g.square() * dws[n].square()).sum(dtype=torch.float64)))
            sampler.sampled = None
            i += 1
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(was_training)
    total = len(windows) * sl.seq_len
    n_batches = len(batches)
    # sampled: F = mean over batches of T_b * g_b^2; empirical (single windows): S * mean(g_w^2)
    return GradStats({n: t.div_(n_batches) for n, t in fisher.items()}, {n: t.div_(total) for n, t in mean.items()},
                     len(windows), total, kind, terms)


def proxy_se(stats: GradStats, tokens_per_byte: float) -> dict[str, float]:
    """The proxy's own spread: SE (BPB) of the mean of its per-batch terms, per tensor given as
    `deltas`; a spread of a prediction over calibration batches, not a measurement's error.

    >>> s = GradStats({}, {}, 4, 4, batch_terms={"w": [1.0, 2.0, 3.0, 4.0]})
    >>> round(proxy_se(s, 1.0)["w"], 6)
    0.931256
    """
    out = {}
    for n, v in stats.batch_terms.items():
        v = np.asarray(v, dtype=np.float64)
        out[n] = float(v.std(ddof=1) / math.sqrt(v.size)) / math.log(2.0) * tokens_per_byte if v.size > 1 \
            else float("nan")
    return out


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
