"""The acceptance rule's arithmetic against scipy.stats on fixed numbers, and `pgolf significance` on the records."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats as st

from conftest import fixture_path
from pgolf.budget.errors import PgolfInputError
from pgolf.figures.cli import main
from pgolf.inspect.significance import betainc, significance, t_sf, welch_test

SP8192 = [2.80405024, 2.80691494, 2.80170263, 2.80406725, 2.80467299]  # the record's five seeds
LONGCTX = [2.03588345, 2.03657529, 2.03823779]
FIXED = [
    (LONGCTX, SP8192), ([1.0, 1.1, 0.9, 1.05], [1.2, 1.4]), ([3.0, 3.0001], [3.1, 3.2, 3.15, 3.3, 3.01, 3.05]),
    ([0.5, 0.52], [0.51, 0.53]),  # an improvement smaller than min_delta: p near 1
]


@pytest.mark.parametrize("cand, base", FIXED)
@pytest.mark.parametrize("delta", [0.0, 0.005, 0.02])
def test_welch_matches_scipy(cand, base, delta):
    r = welch_test(cand, vs=base, min_delta=delta)
    ref = st.ttest_ind(np.array(base) - delta, cand, equal_var=False, alternative="greater")
    assert r["t"] == pytest.approx(float(ref.statistic), rel=1e-12)
    assert r["df"] == pytest.approx(float(ref.df), rel=1e-12)
    assert r["p"] == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300)
    assert r["verdict"] == ("pass" if ref.pvalue < 0.01 else "fail")


@pytest.mark.parametrize("cand", [c for c, _ in FIXED])
@pytest.mark.parametrize("value", [2.0727, 1.3, 0.6])
def test_one_sample_matches_scipy(cand, value):
    r = welch_test(cand, vs_value=value, min_delta=0.005)
    ref = st.ttest_1samp(cand, value - 0.005, alternative="less")
    assert (r["t"], r["df"]) == (pytest.approx(-float(ref.statistic), rel=1e-12), len(cand) - 1)
    assert r["p"] == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("df", [1, 2, 2.7, 4, 9.5, 30, 400])
@pytest.mark.parametrize("t", [-12.0, -1.5, -0.1, 0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
def test_t_tail_and_incomplete_beta(df, t):
    assert t_sf(t, df) == pytest.approx(float(st.t.sf(t, df)), rel=1e-10, abs=1e-300)
    x = df / (df + t * t) if t else 0.37
    assert betainc(df / 2, 0.5, x) == pytest.approx(float(__import__("scipy.special").special.betainc(df / 2, 0.5, x)),
                                                    rel=1e-10)


def test_the_long_context_readme_numbers():
    """Its README: one-sided one-sample t against 1.2193657 (= baseline 1.2243657 - 0.005): t=31.42, df=2, p=0.00051."""
    r = welch_test([1.20576485, 1.20617460, 1.20715923], vs_value=1.2243657, min_delta=0.005)
    assert (round(r["t"], 2), r["df"], round(r["p"], 5), r["verdict"]) == (31.42, 2.0, 0.00051, "pass")
    assert r["std"] == pytest.approx(0.00071667, abs=5e-9)


def test_degenerate_inputs():
    with pytest.raises(PgolfInputError, match="at least two seeds, got 1"):
        welch_test([2.0], vs_value=2.1)
    with pytest.raises(PgolfInputError, match="baseline needs at least two seeds"):
        welch_test([2.0, 2.1], vs=[2.3])
    same = welch_test([2.0, 2.0, 2.0], vs_value=2.1)  # no spread: the sign decides
    assert (same["t"], same["p"], same["verdict"]) == (math.inf, 0.0, "pass")
    assert welch_test([2.0, 2.0], vs_value=2.004)["verdict"] == "fail"


def test_cli_on_the_records(capsys):
    long = fixture_path("records", "2026-03-18_LongContextSeq2048")
    base = fixture_path("records", "2026-03-17_NaiveBaseline")
    sp = fixture_path("records", "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2")
    assert main(["significance", str(long), "--vs", str(base), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n"], out["n_vs"], out["mean_vs"], out["verdict"]) == (3, 1, 2.07269931, "pass")
    assert out["t"] == pytest.approx(44.0871, abs=1e-4) and out["p"] < 0.01
    # SP8192's sliding-window val_loss is per 8192-vocab token: not comparable with the baseline's val_loss ...
    assert main(["significance", str(sp), "--vs-loss", "2.07269931"]) == 1
    assert "verdict: fail" in capsys.readouterr().out
    # ... its val_bpb is, and clears the bar by far
    assert main(["significance", str(sp), "--vs", str(base / "train.log"), "--metric", "val_bpb", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean"] == pytest.approx(np.mean([1.08553523, 1.08664424, 1.0846264, 1.08554182, 1.08577632]), abs=1e-12)
    assert {s["kind"] for s in out["seeds"] if s["role"] == "candidate"} == {"sliding window"}
    # the roundtrip score of each seed instead of the headline sliding one
    report = significance(sorted(sp.glob("*.log")), vs_loss=1.2243657, metric="val_bpb", score="roundtrip")
    assert report.headline["mean"] == pytest.approx(np.mean([1.10238588, 1.10345, 1.10130, 1.10222, 1.10239]),
                                                    abs=1e-5)
