"""Fast estimate vs exact bytes, every preset x compressor, on checkpoints we can measure.

    .venv/bin/python benchmarks/estimate_accuracy.py [--checkpoints CKPT ...] [--no-baseline] [--csv OUT.csv]

Models: the fixtures' final_model.pt (real participant weights), any pgolf checkpoints given, and a
seeded baseline-shaped 17M-parameter model (synthetic_state_dict: trained-like, NOT trained; the
one at full size, where speed matters). For each model x preset x compressor it times the exact
path (`build_artifact`: quantize, serialize, compress, len) and the estimate (`estimate_budget`),
both from the same state dict in the same run, and prints the relative error and the speed ratio.
Mode `whole`: an artifact of at most 256 KiB stored bytes, which the estimate compresses entirely
(all stored bytes as one stream, container fitted); `sampled`: the ~1 % sample, scaled up.
Targets (issue 6): median |error| <= 0.5 %, worst <= 1.5 %, estimate >= 50x faster for lzma and brotli.
"""
from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from pgolf.budget.exact.build import build_artifact
from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.forecast.estimate import estimate_budget, load_fit
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.progress import progress
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

from fit_estimator import stats_sources  # benchmarks/ is on sys.path when this script runs

COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "brotli+byte-shuffle")


def models(checkpoints: list[str], baseline: bool) -> list[tuple[str, dict]]:
    out = stats_sources(checkpoints)  # the fixtures' .pt and the given checkpoints, as the fit reads them
    if baseline:
        out.append(("synthetic:baseline-9x512", synthetic_state_dict(baseline_specs(), seed=0)))
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def run(checkpoints: list[str], baseline: bool, plans: list[str], compressors: list[str], quiet: bool,
        baseline_plans: list[str] | None = None) -> pd.DataFrame:
    fit = load_fit()
    rows = []
    jobs = [(m, sd, p, c) for m, sd in models(checkpoints, baseline)
            for p in (baseline_plans or plans if m.startswith("synthetic:baseline") else plans) for c in compressors]
    for model, sd, plan, comp in progress(jobs, desc="accuracy", total=len(jobs), quiet=quiet):
        exact, t_exact = timed(lambda: len(build_artifact(sd, plan, comp)))
        report, t_est = timed(lambda: estimate_budget(sd, plan, comp, fit=fit))
        est = report.headline["bytes_model"]
        mode = "whole" if "(a small artifact)" in report.notes[0] else "sampled"
        rows.append({"model": model, "plan": plan, "compressor": comp, "mode": mode, "exact_bytes": exact,
                     "estimate_bytes": est,
                     "error_pct": 100.0 * (est - exact) / exact, "exact_s": t_exact, "estimate_s": t_est,
                     "speedup": t_exact / t_est})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> list[str]:
    err = frame["error_pct"].abs()
    lines = [f"all {len(frame)} cases: median |error| {err.median():.3f} %, worst {err.max():.3f} % "
             f"({frame.loc[err.idxmax(), 'model']} {frame.loc[err.idxmax(), 'plan']} "
             f"{frame.loc[err.idxmax(), 'compressor']}); targets 0.5 % / 1.5 %"]
    for mode, g in frame.groupby("mode", sort=False):  # whole: small artifacts, all stored bytes compressed
        e = g["error_pct"].abs()
        lines.append(f"  {mode} ({len(g)} cases): median |error| {e.median():.3f} %, worst {e.max():.3f} %")
    for model, g in frame.groupby("model", sort=False):
        e = g["error_pct"].abs()
        lines.append(f"  {model}: median |error| {e.median():.3f} %, worst {e.max():.3f} %")
    for comp, g in frame.groupby("compressor", sort=False):
        e = g["error_pct"].abs()
        speed = g["exact_s"].sum() / g["estimate_s"].sum()
        lines.append(f"  {comp}: median |error| {e.median():.3f} %, worst {e.max():.3f} %, "
                     f"total time exact {g['exact_s'].sum():.1f} s / estimate {g['estimate_s'].sum():.2f} s = {speed:.1f}x")
    big = frame[frame["model"].str.startswith("synthetic:baseline")]
    for comp in ("lzma", "brotli", "brotli+byte-shuffle"):
        g = big[big["compressor"] == comp]
        if len(g):
            lines.append(f"17M baseline, {comp}: speedup median {g['speedup'].median():.1f}x, "
                         f"min {g['speedup'].min():.1f}x (target >= 50x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="*", default=[], help="pgolf checkpoints (.safetensors) to score too")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 17M-parameter synthetic baseline")
    ap.add_argument("--plans", default=",".join(PRESETS))
    ap.add_argument("--compressors", default=",".join(COMPRESSORS))
    ap.add_argument("--baseline-plans", default="official-int8,int6",
                    help="presets for the 17M model (exact brotli-11 on it takes minutes per case on 2 cores)")
    ap.add_argument("--csv", help="also write the table here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    frame = run(args.checkpoints, not args.no_baseline, args.plans.split(","), args.compressors.split(","), args.quiet,
                args.baseline_plans.split(","))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(frame.to_string(index=False, formatters={"exact_bytes": "{:,}".format, "estimate_bytes": "{:,}".format,
                                                       "error_pct": "{:+.3f}".format, "exact_s": "{:.2f}".format,
                                                       "estimate_s": "{:.3f}".format, "speedup": "{:.1f}".format}))
    print("\n".join(summary(frame)))
    if args.csv:
        write_text_atomic(args.csv, frame.to_csv(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
