"""The gradient proxy's statistics against quantities computed exactly, on small seeded models."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inspect_fixtures import one_thread  # noqa: F401 (fixture)
from pgolf.inspect.evaluate import byte_luts_uniform, make_slice
from pgolf.inspect.proxy import calibration_batches, calibration_windows, gradient_stats, proxy_gaps

VOCAB, DIM, SEQ = 32, 16, 32


class SoftmaxRegression(torch.nn.Module):
    """Logits = W h(x) with fixed features h: its true Fisher has a closed form. `scale` makes it
    confidently wrong on random targets (the case where the empirical Fisher is far off)."""

    def __init__(self, scale: float, loss: str = "cross_entropy"):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.feat = torch.nn.Parameter(torch.randn(VOCAB, DIM, generator=g), requires_grad=False)
        self.out = torch.nn.Linear(DIM, VOCAB, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(torch.randn(VOCAB, DIM, generator=g) * scale)
        self.loss = loss

    def forward(self, x, y):
        logits = self.out(self.feat[x]).flatten(0, 1)
        if self.loss == "cross_entropy":
            return F.cross_entropy(logits, y.flatten())
        return -logits.log_softmax(-1).gather(1, y.flatten()[:, None]).mean()  # no F.cross_entropy call


def _slice(windows: int = 64):
    tokens = torch.randint(0, VOCAB, (windows * SEQ + 1,), generator=torch.Generator().manual_seed(0))
    return make_slice(tokens, SEQ, byte_luts_uniform(VOCAB))


def _exact_true_fisher(model, sl) -> torch.Tensor:
    """F[v, d] = mean over tokens of p_v (1 - p_v) h_d^2 (the variance of the sampled-target gradient)."""
    h = model.feat[sl.tokens[:-1]].detach()
    p = model.out(h).softmax(-1).detach()
    return ((p * (1 - p)).T @ h.square()) / h.shape[0]


def _mean_loss_gradient_float64(model, x, y) -> torch.Tensor:
    model64 = SoftmaxRegression(scale=0.0, loss=model.loss).double()
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    model64(x, y).backward()
    return model64.out.weight.grad


def test_sampled_fisher_matches_the_exact_true_fisher(one_thread, monkeypatch):
    """Unbiased: averaged over 8 sampling seeds the estimate meets the closed form within a few
    percent (one seed: within ~15%, 8 batches of sampled targets)."""
    from pgolf.inspect import proxy

    model = SoftmaxRegression(scale=1.5)
    sl = _slice()
    exact = _exact_true_fisher(model, sl)
    dw = torch.randn(VOCAB, DIM, generator=torch.Generator().manual_seed(5)) * 0.01
    estimates = []
    for seed in range(8):
        monkeypatch.setattr(proxy, "SAMPLE_SEED", seed)
        stats = gradient_stats(model, sl)
        assert stats.fisher_kind == "sampled" and stats.tokens == sl.n_tokens == 2048 and stats.windows == 64
        estimates.append(stats.fisher["out.weight"])
        assert 0.7 < float((estimates[-1] * dw.square()).sum() / (exact * dw.square()).sum()) < 1.4
    est = torch.stack(estimates).mean(0)
    ratio = float((est * dw.square()).sum() / (exact * dw.square()).sum())
    assert 0.95 < ratio < 1.05, ratio
    assert float(torch.corrcoef(torch.stack([est.flatten(), exact.flatten()]))[0, 1]) > 0.95
    # the empirical Fisher of this confidently wrong model is many times larger: the sampled one
    # is what a model far from its minimum needs
    empirical = gradient_stats(SoftmaxRegression(scale=1.5, loss="log_softmax"), sl)
    assert empirical.fisher_kind == "empirical"
    assert float(empirical.fisher["out.weight"].sum()) > 3 * float(exact.sum())
    # F.cross_entropy is the real one again, and the model's flags are untouched
    assert F.cross_entropy is torch.nn.functional.cross_entropy and F.cross_entropy.__module__ == "torch.nn.functional"
    assert model.out.weight.requires_grad and not model.feat.requires_grad and model.out.weight.grad is None


def test_mean_gradient_is_the_slice_gradient_and_empirical_fallback_by_hand(one_thread):
    model = SoftmaxRegression(scale=0.5, loss="log_softmax")
    sl = _slice(windows=16)
    stats = gradient_stats(model, sl)
    assert stats.fisher_kind == "empirical" and stats.windows == 16
    # the mean gradient over all windows is the gradient of the slice's mean loss: the same sum of
    # N per-token terms, in float32 and in another order, so both sides are held to the float64
    # gradient within float32's worst-case summation error, N * u * sum|term| / N per element
    x, y = sl.batches(sl.n_seqs)[0]
    exact = _mean_loss_gradient_float64(model, x, y)
    h = model.feat[x].detach().double().flatten(0, 1)                      # (N, DIM)
    p = (h @ model.out.weight.detach().double().T).softmax(-1)             # (N, VOCAB)
    residual = (p - F.one_hot(y.flatten(), VOCAB).double()).abs()
    n_terms = h.shape[0]
    bound = 2 * n_terms * 2.0 ** -24 * (residual.T @ h.abs()) / n_terms    # (VOCAB, DIM)
    model.zero_grad()
    model(x, y).backward()
    for got in (stats.grad["out.weight"], model.out.weight.grad):
        excess = (got.double() - exact).abs() - bound
        assert float(excess.max()) <= 0, float(excess.max())
    # and the bound is tight enough to catch a mean divided by 15 windows instead of 16
    assert float(((stats.grad["out.weight"].double() * 16 / 15 - exact).abs() - bound).max()) > 0
    # empirical fallback: S * mean over single windows of the squared window gradient. Both sides
    # square the same single-window gradients; only the order of 16 non-negative terms differs,
    # whose relative error is at most 16 u (~1e-6), well inside rtol
    squares = []
    for xw, yw in sl.batches(1):
        model.zero_grad()
        model(xw, yw).backward()
        squares.append(model.out.weight.grad.square() * SEQ)
    model.zero_grad()
    torch.testing.assert_close(stats.fisher["out.weight"], torch.stack(squares).mean(0), rtol=1e-5, atol=1e-10)


def test_proxy_is_deterministic_and_second_order_exact_for_a_quadratic(one_thread):
    model = SoftmaxRegression(scale=1.0)
    sl = _slice(windows=16)
    a, b = gradient_stats(model, sl), gradient_stats(model, sl)
    assert torch.equal(a.fisher["out.weight"], b.fisher["out.weight"]) and torch.equal(a.grad["out.weight"],
                                                                                       b.grad["out.weight"])
    w = model.out.weight.detach()
    new = w + 0.01
    got = proxy_gaps(a, {"out.weight": w}, {"out.weight": new}, tokens_per_byte=1.0)["out.weight"]
    dw = new - w
    first = float((a.grad["out.weight"] * dw).sum(dtype=torch.float64))
    second = 0.5 * float((a.fisher["out.weight"] * dw.square()).sum(dtype=torch.float64))
    assert got == pytest.approx((first + second) / math.log(2.0), rel=1e-12)
    only_fisher = proxy_gaps(a, {"out.weight": w}, {"out.weight": new}, 1.0, first_order=False)["out.weight"]
    assert only_fisher > 0


@pytest.mark.parametrize("windows, seq_len, calib, sizes", [
    (64, 32, None, [8] * 8),          # whole slice, 8 batches of 256 tokens
    (64, 1024, None, [2] * 8),        # capped at 16,384 tokens: 16 windows, 2 per batch
    (64, 32, 256, [1] * 8),           # a few windows: one per batch
    (4, 32, None, [1] * 4),
])
def test_calibration_windows_and_batches(windows, seq_len, calib, sizes):
    sl = make_slice(torch.zeros(windows * seq_len + 1, dtype=torch.long), seq_len, byte_luts_uniform(2))
    chosen = calibration_windows(sl, calib)
    batches = calibration_batches(chosen, seq_len)
    assert [len(b) for b in batches] == sizes
    assert [w for b in batches for w in b] == chosen == sorted(set(chosen))


@pytest.mark.parametrize("loss", ["cross_entropy", "manual"])  # sampled Fisher, and the empirical fallback
def test_proxy_spread_is_the_se_of_its_per_batch_terms(one_thread, loss):
    """With equal batches the proxy is the mean of its per-batch terms; its SE is their spread."""
    import math

    import numpy as np

    from pgolf.inspect.proxy import gradient_stats, proxy_gaps, proxy_se

    model = SoftmaxRegression(scale=1.5, loss=loss)
    sl = _slice()
    w = model.out.weight.detach().clone()
    new = w + torch.randn(w.shape, generator=torch.Generator().manual_seed(6)) * 0.05
    stats = gradient_stats(model, sl, names={"out.weight"}, deltas={"out.weight": new - w})
    terms = stats.batch_terms["out.weight"]
    assert len(terms) == (8 if loss == "cross_entropy" else 64)
    nats = proxy_gaps(stats, {"out.weight": w}, {"out.weight": new}, 1.0)["out.weight"] * math.log(2)
    assert sum(terms) / len(terms) == pytest.approx(nats, rel=1e-5)
    se = proxy_se(stats, 1.0)["out.weight"]
    assert se == pytest.approx(float(np.std(terms, ddof=1)) / math.sqrt(len(terms)) / math.log(2), rel=1e-12)
    assert 0 < se < abs(nats)
