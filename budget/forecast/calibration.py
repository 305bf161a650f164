"""Trained-weight statistics: measure them on checkpoints, summarise per role, sample look-alikes.

What drives the compressed size of a quantized matrix is the distribution of its stored symbols,
which a few numbers per matrix determine: the overall scale (`std`, matters where a grid is
absolute, e.g. the official int8 floor of 1/127), the tail shape of row-standardised values (as
the shape `beta` of a generalised normal fitted to their kurtosis: 2 = Gaussian, 1 = Laplace,
large = uniform) and how much rows differ in scale (`row_log_sd`, the sd of log row RMS).
`summarise` reduces per-matrix rows to per-role medians and ranges; `sample_matrix` draws a
matrix with those statistics, which `pgolf predict` quantizes and estimates.

>>> import torch
>>> row = tensor_stats("blocks.0.mlp.fc.weight", torch.randn(256, 128, generator=torch.Generator().manual_seed(0)))
>>> row["role"], round(row["std"], 1), round(row["kurtosis"], 1)
('mlp_in', 1.0, 2.9)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.errors import PgolfInputError

STATS_FORMAT = "pgolf-weight-stats-v1"
DATA_DIR = Path(__file__).resolve().parent / "data"
MIN_NUMEL = 4096  # smaller matrices give too few values for a tail estimate
ROLES = ("embedding", "attn_in", "attn_out", "mlp_in", "mlp_out", "head")
STAT_NAMES = ("std", "beta", "row_log_sd")
BETA_RANGE = (0.3, 50.0)


def role_of(name: str) -> str | None:
    """Calibration role of a matrix name, None for control tensors and anything unknown.

    >>> role_of("blocks.4.attn.proj.weight"), role_of("blocks.0.attn_scale")
    ('attn_out', None)
    """
    if name.startswith(("tok_emb.", "bigram.embed.")):
        return "embedding"
    if name.startswith("lm_head."):
        return "head"
    if name.endswith(("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "bigram.proj.weight",
                      "embed_proj.weight", "head_proj.weight")):
        return "attn_in"
    if name.endswith("attn.proj.weight"):
        return "attn_out"
    if name.endswith("mlp.fc.weight"):
        return "mlp_in"
    if name.endswith("mlp.proj.weight"):
        return "mlp_out"
    return None


def gn_kurtosis(beta: float) -> float:
    """Kurtosis of a generalised normal with shape beta (3 for beta=2)."""
    lg = math.lgamma
    return math.exp(lg(5 / beta) + lg(1 / beta) - 2 * lg(3 / beta))


def gn_beta_from_kurtosis(kurtosis: float) -> float:
    """The generalised-normal shape with this kurtosis, by bisection on log beta (clamped).

    >>> round(gn_beta_from_kurtosis(3.0), 3), round(gn_beta_from_kurtosis(6.0), 3)
    (2.0, 1.0)
    """
    lo, hi = math.log(BETA_RANGE[0]), math.log(BETA_RANGE[1])
    if kurtosis >= gn_kurtosis(BETA_RANGE[0]):
        return BETA_RANGE[0]
    if kurtosis <= gn_kurtosis(BETA_RANGE[1]):
        return BETA_RANGE[1]
    for _ in range(60):  # kurtosis falls as beta grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gn_kurtosis(math.exp(mid)) > kurtosis else (lo, mid)
    return math.exp((lo + hi) / 2)


def tensor_stats(name: str, t: Tensor) -> dict | None:
    """std, beta and row_log_sd of one matrix, or None when it is not a calibrated matrix."""
    role = role_of(name)
    if role is None or t.ndim != 2 or t.numel() < MIN_NUMEL or not t.is_floating_point():
        return None
    w = t.detach().to(torch.float64)
    row_rms = w.pow(2).mean(dim=1).sqrt()
    live = row_rms > 0
    if not bool(live.any()):
        return None
    z = w[live] / row_rms[live, None]  # row-standardised values
    kurt = float(z.pow(4).mean())
    return {"name": name, "role": role, "rows": int(t.shape[0]), "cols": int(t.shape[1]),
            "std": float(w.pow(2).mean().sqrt()), "kurtosis": kurt, "beta": gn_beta_from_kurtosis(kurt),
            "row_log_sd": float(row_rms[live].log().std()) if int(live.sum()) > 1 else 0.0}


def checkpoint_stats(sd: dict[str, Tensor], source: str) -> pd.DataFrame:
    """One row per calibrated matrix of a state dict, tagged with its source label."""
    rows = [r for name, t in sd.items() if (r := tensor_stats(name, t)) is not None]
    return pd.DataFrame([{"source": source, **r} for r in rows])


def summarise(frame: pd.DataFrame, provenance: dict) -> dict:
    """Per role: the median over sources of each source's median stat, and as its range the
    10th-90th percentile over every calibrated matrix of that role (the versioned JSON)."""
    roles = {}
    per_source = frame.groupby(["role", "source"])[list(STAT_NAMES)].median().reset_index()
    for role, group in per_source.groupby("role"):
        pooled = frame[frame["role"] == role]
        roles[role] = {stat: {"median": float(group[stat].median()), "lo": float(pooled[stat].quantile(0.1)),
                              "hi": float(pooled[stat].quantile(0.9))} for stat in STAT_NAMES}
        for stat in STAT_NAMES:  # the range always holds the median
            r = roles[role][stat]
            r["lo"], r["hi"] = min(r["lo"], r["median"]), max(r["hi"], r["median"])
        roles[role]["sources"] = sorted(group["source"].tolist())
        roles[role]["matrices"] = int(len(pooled))
    return {"format": STATS_FORMAT, "provenance": provenance, "roles": roles}


def save_weight_stats(stats: dict, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(stats, indent=2, sort_keys=True) + "\n")


def load_weight_stats(path: str | Path | None = None) -> dict:
    """The shipped statistics (budget/forecast/data/weight_stats.json) or a file of the same format."""
    if path is None:
        path = DATA_DIR / "weight_stats.json"  # namespace package: importlib.resources cannot see it
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PgolfInputError(where, f"cannot read weight statistics ({exc.__class__.__name__})") from None
    try:
        stats = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PgolfInputError(where, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT or not isinstance(stats.get("roles"), dict):
        raise PgolfInputError(where, f"not a {STATS_FORMAT} file")
    return stats


def role_params(stats: dict, role: str, which: str = "median") -> dict[str, float]:
    """std/beta/row_log_sd for a role; `which` is median, lo or hi. Missing roles borrow a neighbour."""
    fallback = {"head": "embedding", "attn_out": "attn_in", "mlp_out": "mlp_in", "mlp_in": "attn_in",
                "attn_in": "mlp_in", "embedding": "attn_in"}
    roles = stats["roles"]
    while role not in roles:
        role = fallback[role]
    return {stat: roles[role][stat][which] for stat in STAT_NAMES}


def sample_matrix(shape: tuple[int, int], std: float, beta: float, row_log_sd: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A float32 matrix with the given overall RMS, generalised-normal rows of shape beta and
    log-normal row scales of sd row_log_sd.

    >>> m = sample_matrix((400, 300), 0.3, 2.0, 0.1, np.random.default_rng(0))
    >>> m.shape, round(float(np.sqrt((m ** 2).mean())), 2)
    ((400, 300), 0.3)
    """
    rows, cols = shape
    # |x| = G^(1/beta) with G ~ Gamma(1/beta) is generalised normal; unit variance after dividing
    # by sqrt(Gamma(3/beta) / Gamma(1/beta)).
    g = rng.standard_gamma(1.0 / beta, size=(rows, cols))
    unit = math.exp(0.5 * (math.lgamma(3 / beta) - math.lgamma(1 / beta)))
    x = np.power(g, 1.0 / beta) / unit
    x *= np.where(rng.random((rows, cols)) < 0.5, -1.0, 1.0)
    row_scale = np.exp(row_log_sd * rng.standard_normal(rows))
    row_scale /= math.sqrt(float(np.mean(row_scale ** 2))) if rows > 1 else row_scale[0]
    return (x * (std * row_scale)[:, None]).astype(np.float32)


# --- fitting the estimator's correction (benchmarks/fit_estimator.py drives these) ---------------
OVERHEAD_RIDGE = 0.01  # relative to the data's own scale
CORRECTION_RIDGE = 1e-3  # pulls alpha and beta toward "no correction" where a class has little data


def fit_corrections(frame: pd.DataFrame) -> dict:
    """Per storage class: alpha and beta of sampled.scaled_bytes, by ridge least squares of the
    relative error of C r against the group compressed whole (rows: compressed, sample, full, exact)."""
    out = {}
    for cls, group in frame.groupby("cls"):
        r = group["full"].to_numpy(float) / group["sample"].to_numpy(float)
        scaled = group["compressed"].to_numpy(float) * r
        exact = group["exact"].to_numpy(float)
        live = r > 1.0
        # exact / scaled - 1 = alpha log2 r - beta (r - 1) / scaled, weighted by sqrt(size)
        x = np.stack([np.log2(r), -(r - 1) / scaled], axis=1)[live]
        y = (exact / scaled - 1)[live]
        w = np.sqrt(exact[live])
        if len(y) >= 2:
            scale = np.sqrt((x ** 2).mean(axis=0)) + 1e-12
            xs = x / scale * w[:, None]
            a = xs.T @ xs
            alpha, beta = np.linalg.solve(a + CORRECTION_RIDGE * np.trace(a) / 2 * np.eye(2), xs.T @ (y * w)) / scale
        else:
            alpha = beta = 0.0
        est = np.where(r > 1.0, scaled * (1 + alpha * np.log2(np.maximum(r, 1.0))) - beta * (r - 1), scaled)
        rel = np.abs(est - exact) / exact
        out[cls] = {"alpha": float(alpha), "beta": float(beta), "n": int(len(group)),
                    "rel_err_median": float(np.median(rel)), "rel_err_max": float(rel.max())}
    return out


def fit_overhead(rows: list[dict]) -> dict:
    """Per artifact kind: ridge least squares of (measured - streams estimate) / measured on
    [1, n_streams] / measured."""
    out = {}
    frame = pd.DataFrame(rows)
    for kind, group in frame.groupby("kind"):
        # relative residuals: small models, where overhead is a large share, count as much as big ones
        w = 1.0 / group["exact"].to_numpy(dtype=float)
        x = np.stack([np.ones(len(group)), group["n_streams"].to_numpy(dtype=float)], axis=1) * w[:, None]
        y = group["residual"].to_numpy(dtype=float) * w
        # ridge toward no overhead: a handful of artifacts must not buy wild constants
        scale = np.sqrt((x ** 2).mean(axis=0))
        xs = x / scale
        a = xs.T @ xs
        c0, c1 = np.linalg.solve(a + OVERHEAD_RIDGE * np.trace(a) / 2 * np.eye(2), xs.T @ y) / scale
        out[kind] = {"c0": float(c0), "c1": float(c1), "n": int(len(group))}
    return out
