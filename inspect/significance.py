"""The challenge's acceptance rule as a test: do the seeds beat a baseline by at least min_delta at p < 0.01?

One-sided Welch t-test of H1: mean(baseline) - mean(candidate) > min_delta (lower loss is better).
Against a single baseline value (`--vs-loss X`, a record's published number) the baseline has no
spread and the test is the one-sample t-test of the candidate against X - min_delta, df = n - 1.
The Student t tail is computed here with the regularized incomplete beta function (math only), so
scipy stays a test-only dependency.

>>> r = welch_test([1.20576485, 1.20617460, 1.20715923], vs_value=1.2243657, min_delta=0.005)
>>> round(r["t"], 2), r["df"], round(r["p"], 5), r["verdict"]
(31.42, 2.0, 0.00051, 'pass')
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.report_base import Report
from pgolf.trainer.logs import describe_score, parse_log_summary

ALPHA = 0.01
MIN_DELTA = 0.005  # nats, the challenge's margin over the current record
SCORES = ("score", "roundtrip", "sliding", "ttt")


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), to double precision."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b). betainc(1, 1, 0.25) -> 0.25."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional). t_sf(0, 3) -> 0.5."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    mean = math.fsum(xs) / n
    return mean, math.fsum((x - mean) ** 2 for x in xs) / (n - 1)


def welch_test(candidate: Sequence[float], vs: Sequence[float] | None = None, vs_value: float | None = None,
               min_delta: float = MIN_DELTA, alpha: float = ALPHA) -> dict[str, Any]:
    """One-sided test that mean(vs) - mean(candidate) > min_delta: {t, df, p, improvement, verdict, ...}.

    `vs`: the baseline's seeds (Welch); `vs_value`: one published baseline number (one-sample).
    Fewer than two candidate seeds -> PgolfInputError (no spread, no test).
    """
    if len(candidate) < 2:
        raise PgolfInputError(None, f"significance needs at least two seeds, got {len(candidate)}")
    c_mean, c_var = _mean_var(candidate)
    if vs_value is not None:
        b_mean, se2, df = float(vs_value), c_var / len(candidate), float(len(candidate) - 1)
        b_std, n_b = 0.0, 1
    else:
        if vs is None or len(vs) < 2:
            raise PgolfInputError(None, f"the baseline needs at least two seeds for Welch's test, got "
                                        f"{0 if vs is None else len(vs)} (give --vs-loss X for one number)")
        b_mean, b_var = _mean_var(vs)
        a, b = c_var / len(candidate), b_var / len(vs)
        se2 = a + b
        df = se2 ** 2 / (a ** 2 / (len(candidate) - 1) + b ** 2 / (len(vs) - 1)) if se2 > 0 else float("inf")
        b_std, n_b = math.sqrt(b_var), len(vs)
    improvement = b_mean - c_mean
    margin = improvement - min_delta
    if se2 > 0:
        t = margin / math.sqrt(se2)
    else:  # identical seeds: the sign alone decides
        t = math.inf if margin > 0 else -math.inf
    p = t_sf(t, df) if math.isfinite(df) else 0.5 * math.erfc(t / math.sqrt(2.0))
    return {"n": len(candidate), "mean": c_mean, "std": math.sqrt(c_var), "n_vs": n_b, "mean_vs": b_mean,
            "std_vs": b_std, "improvement": improvement, "min_delta": min_delta, "t": t, "df": df, "p": p,
            "alpha": alpha, "verdict": "pass" if p < alpha else "fail"}


def log_scores(paths: Sequence[str | os.PathLike], score: str = "score") -> pd.DataFrame:
    """One row per log: source, kind, stride, val_loss, val_bpb of the chosen score.

    score: 'score' (each log's headline score, whatever its kind) or a kind: 'roundtrip', 'sliding', 'ttt'.
    A log without that score -> PgolfInputError naming it.
    """
    rows = []
    for path in paths:
        s = parse_log_summary(path)
        if score == "score":
            if s["score_kind"] is None:
                raise PgolfInputError(path, "no final score of the quantized model (no roundtrip, sliding or TTT line)")
            row = {"kind": describe_score(s), "val_loss": s["val_loss_score"], "val_bpb": s["val_bpb_score"]}
        else:
            found = [x for x in s["scores"] if x["kind"] == score and x["repeat_of"] is None]
            if not found:
                raise PgolfInputError(path, f"no {score} score in this log")
            last = found[-1]
            row = {"kind": describe_score({"score_kind": score, "score_stride": last["stride"]}),
                   "val_loss": last["val_loss"], "val_bpb": last["val_bpb"]}
        rows.append({"source": str(path), **row})
    return pd.DataFrame(rows, columns=["source", "kind", "val_loss", "val_bpb"])


@dataclasses.dataclass(repr=False)
class SignificanceReport(Report):
    """The test's numbers as the headline, one row per seed (candidate and baseline logs)."""

    rows_key: str = "seeds"


def significance(logs: Sequence[str | os.PathLike], vs: Sequence[str | os.PathLike] | None = None,
                 vs_loss: float | None = None, min_delta: float = MIN_DELTA, metric: str = "val_loss",
                 score: str = "score", alpha: float = ALPHA) -> SignificanceReport:
    """Read the candidate's (and the baseline's) logs and run `welch_test` on `metric`."""
    if (vs is None) == (vs_loss is None):
        raise PgolfInputError(None, "give the baseline as --vs LOG... or --vs-loss X (one of them)")
    if len(logs) < 2:
        raise PgolfInputError(logs[0] if logs else None,
                              f"significance needs at least two seeds' logs, got {len(logs)}")
    cand = log_scores(logs, score)
    if any(v is None for v in cand[metric]):
        bad = cand.loc[cand[metric].isna(), "source"].iloc[0]
        raise PgolfInputError(bad, f"its score line has no {metric}")
    base = log_scores(vs, score) if vs is not None else None
    if base is not None and len(base) == 1:  # one baseline run: its number is the baseline
        vs_loss = float(base[metric].iloc[0])
    result = welch_test(list(cand[metric]), None if base is None or len(base) == 1 else list(base[metric]),
                        vs_loss, min_delta, alpha)
    frame = pd.concat([cand.assign(role="candidate")] + ([] if base is None else [base.assign(role="baseline")]),
                      ignore_index=True)[["role", "source", "kind", "val_loss", "val_bpb"]]
    head = {"metric": metric, **result,
            "test": "one-sample t (baseline is one number)" if result["n_vs"] == 1 else "Welch two-sample t",
            "kinds": ", ".join(dict.fromkeys(frame["kind"]))}
    notes = [f"H1: baseline - candidate > {min_delta:g} ({metric}, lower is better); pass when p < {alpha:g}"]
    if metric == "val_loss":
        notes.append("val_loss is nats per token: across different tokenizers compare val_bpb (--metric val_bpb)")
    if frame["kind"].nunique() > 1:
        notes.append("the logs' scores are of different kinds: compare like with like (--score)")
    return SignificanceReport(title="pgolf significance", headline=head, frame=frame, notes=notes)


def record_logs(folder: str | os.PathLike) -> list[Path]:
    """A record folder's training logs: every *.log, sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        raise PgolfInputError(p, "not a folder")
    return sorted(x for x in p.glob("*.log") if x.is_file())
