"""Fast estimate vs exact bytes, every preset x compressor, on a synthetic grid and real weights.

    .venv/bin/python benchmarks/estimate_accuracy.py --quick            # a few minutes on 2 cores
    .venv/bin/python benchmarks/estimate_accuracy.py [--checkpoints CKPT ...] [--no-baseline] [--csv OUT.csv]

Models: the synthetic grid (budget/forecast/synthetic.py: every cell of bits per stored value under
official int8 x tail x floor-binding fraction, with row spread and untrained embedding rows
alternating; seeds 0..; the estimator's fit used other knob values and seeds 100 and up), the
fixtures' final_model.pt (real participant weights), any pgolf checkpoints given, and a seeded
baseline-shaped 17M-parameter model (trained-like, NOT trained; where speed matters). For each
model x preset x compressor it times the exact path (`build_artifact`: quantize, serialize,
compress, len) and the estimate (`estimate_budget`), both from the same state dict in the same
run, and prints the relative error, whether the exact bytes lie inside the printed interval, and
the speed ratio. Mode `exact`: an artifact of at most 256 KiB stored bytes, built for real (the
estimate is the exact number, labelled measured); `sampled`: the draws, scaled by their entropy anchor.
Targets (issue 21): median |error| <= 0.5 %, worst <= 1.5 %, coverage >= 95 %, estimate >= 50x
faster for lzma and brotli on the 17M model.

Measured on the shared 2-core VM (wall-clock timings: speed-ups read low under load), with our
own 300-step 3L d128 CPU run as --checkpoints (`pgolf train --num-layers 3 --model-dim 128
--num-heads 4 --num-kv-heads 2 --mlp-mult 2 --train-seq-len 64 --train-batch-tokens 2048
--iterations 300 --warmdown-iters 75 --seed 7 --device cpu`, val_bpb 2.20).

Full grid, stop 10 (sampled rows corrected by their row statistics, rows.py; every compressor
refitted, ans on every fit model, brotli on 49 groups instead of 16), 1,622 cases, run as three
parts of four presets (the first two side by side: 7.8 min; the third 8.3 min beside a refit),
then brotli alone again after its refit (two runs of six presets side by side, 7.9 min):
  all: median 0.255 %, worst 2.404 %, coverage 99.75 %; 37 cases over 1.5 % (zstd 28, brotli 7,
    lzma 1, zlib 1). Per codec, median / worst / coverage: zlib 0.23 / 1.70 / 100 %, zstd
    0.31 / 2.40 / 100 %, lzma 0.22 / 1.67 / 99.7 %, brotli 0.25 / 1.89 / 100 %, ans 0.26 / 1.34 / 99.1 %.
  official-int8, int6, ternary, int6-floor (+ 17M): 542 cases, median 0.220 %, worst 2.298 %
    (b4-t3-f0.5-r0.3-u0.3 official-int8 zstd); 17M lzma +0.09 % at 51.8x (load 2), brotli -1.61 %
    at 69.2x (its history factor extrapolated past the fit's largest model, 1.3 M parameters).
  fp16-embed, int5-mlp-int6-attn, sdclip-int6-int8emb, int6-floor-int8emb: 540 cases, median
    0.266 %, worst 2.404 % (b5.5-t3-f0-r0-u0 int5-mlp-int6-attn zstd).
  int6-floor-fp16emb, int6-floor-int8emb-latek, sdclip-int6-int7emb, sdclip-int6-int7emb-k14:
    540 cases, median 0.290 %, worst 2.354 %.
  Fixtures median 0.01 % (d64 exact), worst 1.11 %; our checkpoint median 0.25 %, worst 0.50 %;
    both 100 % inside.
--quick, stop 10, 133 cases (about a minute, idle): median 0.183 %, worst 1.117 % (grid
b2.5-gauss-f0-r0.3-u0 official-int8 lzma), coverage 100 %; pgolf checkpoint median 0.24 %, worst
0.47 %; 17M lzma 54.8x (idle, alone: 54.7x and 67.3x, the exact side moving 6.6 .. 9.0 s).
Earlier: --quick stop 9, median 0.171 %, worst 1.092 %, coverage 99.2 %. Full grids: stop 8,
1,622 cases, median 0.392 %, worst 3.850 %, coverage 97.7 %, 105 over 1.5 %; stop 9 (brotli at
lgwin 22, the learning cost of lzma and ans measured), median 0.308 %, worst 2.465 %, coverage
99.0 %, 47 over 1.5 %.

The worst target is not met, and what is left is the codecs' own behaviour at full length, which
no sample shows. All 28 zstd cases read low (1.5-2.4 %): behind the int8 embedding zstd-22's
optimal parser keeps the previous group's prices and codes the next int6/int5 group as short
matches, ~10 % worse to the group's end (at sample length the same pair reads differently; on the
fit's models a sample's reading is often absent at full length). A cheaper zstd over the whole
payload does not reproduce it: on 96 grid payloads, btultra2 with search_log 1-2 and small
tables lands -1.9 .. +2.0 % from zstd-22 at 2.7x its speed, -2.9 .. +2.7 % at 4.1x. brotli-11
jumps between two codings 1-4 % apart when the payload starts a few bytes later
(benchmarks/codec_stability.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd

from pgolf.budget.exact.build import build_artifact
from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.forecast.estimate import estimate_budget, load_fit
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.progress import progress
from pgolf.budget.forecast import synthetic
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

from fit_estimator import stats_sources  # benchmarks/ is on sys.path when this script runs

COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "ans")
QUICK_COMPRESSORS = ("zlib", "zstd", "lzma", "ans")
QUICK_PLANS = ("official-int8", "int6", "ternary")
INF = float("inf")


def grid(quick: bool = False) -> list[synthetic.Cell]:
    """The test grid: bits x tail x floor fraction (bits 6 needs lighter tails than t3 under int8);
    row spread 0 / 0.3 and untrained rows 0 / 0.3 alternate. Quick: eight cells of it."""
    cells = []
    for bits in (1.5, 2.5, 4.0, 6.0):
        for df in (3.0, INF):
            for floor in (0.0, 0.5, 1.0):
                i = len(cells)
                cells.append(synthetic.Cell(min(bits, 5.5) if df == 3.0 else bits, df, floor,
                                            0.3 if i % 2 else 0.0, 0.3 if i % 3 == 1 else 0.0))
    return cells[::3] if quick else cells


def models(checkpoints: list[str], baseline: bool, quick: bool = False, with_grid: bool = True
           ) -> list[tuple[str, dict]]:
    out = [(f"grid:{c.name}", synthetic.model(c, dim=256, layers=2, vocab=1024, seed=i))
           for i, c in enumerate(grid(quick))] if with_grid else []
    out += stats_sources(checkpoints)  # the fixtures' .pt and the given checkpoints, as the fit reads them
    if baseline:
        out.append(("synthetic:baseline-9x512", synthetic_state_dict(baseline_specs(), seed=0)))
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def run(checkpoints: list[str], baseline: bool, plans: list[str], compressors: list[str], quiet: bool,
        baseline_plans: list[str] | None = None, baseline_compressors: list[str] | None = None,
        quick: bool = False, with_grid: bool = True) -> pd.DataFrame:
    fit = load_fit()
    rows = []
    jobs = [(m, sd, p, c) for m, sd in models(checkpoints, baseline, quick, with_grid)
            for p in (baseline_plans or plans if m.startswith("synthetic:baseline") else plans)
            for c in (baseline_compressors or compressors if m.startswith("synthetic:baseline") else compressors)]
    for model, sd, plan, comp in progress(jobs, desc="accuracy", total=len(jobs), quiet=quiet):
        exact, t_exact = timed(lambda: len(build_artifact(sd, plan, comp)))
        report, t_est = timed(lambda: estimate_budget(sd, plan, comp, fit=fit))
        h = report.headline
        est = h["bytes_model"]
        mode = "exact" if h.get("bytes_model_measured") else "sampled"
        rows.append({"model": model, "plan": plan, "compressor": comp, "mode": mode, "exact_bytes": exact,
                     "estimate_bytes": est, "low": h["bytes_model_low"], "high": h["bytes_model_high"],
                     "inside": bool(h["bytes_model_low"] <= exact <= h["bytes_model_high"]),
                     "error_pct": 100.0 * (est - exact) / exact, "exact_s": t_exact, "estimate_s": t_est,
                     "speedup": t_exact / t_est})
    return pd.DataFrame(rows)


def _line(label: str, g: pd.DataFrame) -> str:
    e = g["error_pct"].abs()
    return (f"{label} ({len(g)} cases): median |error| {e.median():.3f} %, worst {e.max():.3f} %, "
            f"coverage {100 * g['inside'].mean():.1f} %")


def summary(frame: pd.DataFrame) -> list[str]:
    err = frame["error_pct"].abs()
    lines = [_line("all", frame) + f" (worst: {frame.loc[err.idxmax(), 'model']} {frame.loc[err.idxmax(), 'plan']} "
             f"{frame.loc[err.idxmax(), 'compressor']}); targets 0.5 % / 1.5 % / 95 %"]
    kind = frame["model"].str.split(":").str[0]
    for k, g in frame.groupby(kind, sort=False):  # grid, fixture, pgolf, synthetic (17M)
        lines.append("  " + _line(k, g))
    for mode, g in frame.groupby("mode", sort=False):  # exact: small artifacts, built for real
        lines.append("  " + _line(mode, g))
    for plan, g in frame.groupby("plan", sort=False):
        lines.append("  " + _line(plan, g))
    for comp, g in frame.groupby("compressor", sort=False):
        speed = g["exact_s"].sum() / g["estimate_s"].sum()
        lines.append("  " + _line(comp, g) + f", time exact {g['exact_s'].sum():.1f} s / estimate "
                     f"{g['estimate_s'].sum():.2f} s = {speed:.1f}x")
    fx = frame[kind == "fixture"]
    for r in fx.itertuples():
        lines.append(f"  fixture {r.model} {r.plan} {r.compressor}: exact {r.exact_bytes:,}, estimate "
                     f"{r.estimate_bytes:,} ({r.error_pct:+.2f} %), interval {r.low:,} .. {r.high:,}: "
                     f"{'inside' if r.inside else 'OUTSIDE'}")
    big = frame[frame["model"].str.startswith("synthetic:baseline")]
    for comp in ("lzma", "brotli"):
        g = big[big["compressor"] == comp]
        if len(g):
            lines.append(f"17M baseline, {comp}: speedup median {g['speedup'].median():.1f}x, "
                         f"min {g['speedup'].min():.1f}x (target >= 50x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="8 grid cells x official-int8/int6/ternary x zlib/zstd/lzma/ans, fixtures, 17M lzma only")
    ap.add_argument("--no-grid", action="store_true", help="skip the synthetic grid")
    ap.add_argument("--checkpoints", nargs="*", default=[], help="pgolf checkpoints (.safetensors) to score too")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 17M-parameter synthetic baseline")
    ap.add_argument("--plans", help=f"presets (default: all; --quick: {','.join(QUICK_PLANS)})")
    ap.add_argument("--compressors", help=f"default: {','.join(COMPRESSORS)} (--quick: {','.join(QUICK_COMPRESSORS)})")
    ap.add_argument("--baseline-plans", default="official-int8,int6",
                    help="presets for the 17M model (exact brotli-11 on it takes minutes per case on 2 cores)")
    ap.add_argument("--csv", help="also write the table here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--baseline-compressors", default="lzma,brotli",
                    help="compressors for the 17M model (--quick: lzma)")
    args = ap.parse_args(argv)
    plans = args.plans.split(",") if args.plans else list(QUICK_PLANS if args.quick else PRESETS)
    comps = args.compressors.split(",") if args.compressors else list(QUICK_COMPRESSORS if args.quick else COMPRESSORS)
    base_comps = ["lzma"] if args.quick else args.baseline_compressors.split(",")
    base_plans = ["official-int8"] if args.quick else args.baseline_plans.split(",")
    frame = run(args.checkpoints, not args.no_baseline, plans, comps, args.quiet, base_plans, base_comps,
                args.quick, not args.no_grid)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(frame.to_string(index=False, formatters={"exact_bytes": "{:,}".format, "estimate_bytes": "{:,}".format,
                                                       "error_pct": "{:+.3f}".format, "exact_s": "{:.2f}".format,
                                                       "estimate_s": "{:.3f}".format, "speedup": "{:.1f}".format,
                                                       "low": "{:,}".format, "high": "{:,}".format}))
    print("\n".join(summary(frame)))
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
          + f" on {os.cpu_count()} CPUs (timings are wall-clock, shared machine)")
    if args.csv:
        write_text_atomic(args.csv, frame.to_csv(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
