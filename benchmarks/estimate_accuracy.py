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

Measured 2026-12-06 on the shared 2-core VM (stop 8: load 3-5, other sessions running; stop 9:
load 2; wall-clock timings, so speed-ups read low), with our own 300-step 3L d128 CPU run as --checkpoints
(`pgolf train --num-layers 3 --model-dim 128 --num-heads 4 --num-kv-heads 2 --mlp-mult 2
--train-seq-len 64 --train-batch-tokens 2048 --iterations 300 --warmdown-iters 75 --seed 7 --device cpu`,
val_bpb 2.20):
  --quick, stop 8, 133 cases (7 min under load 3-5): median 0.199 %, worst 1.735 % (grid
    b2.5-gauss-f0-r0.3 official-int8 lzma), coverage 99.2 %; zstd official-int8 -0.35 .. +0.12 %
    (3.38 % worst before the pickle head was measured); pgolf checkpoint 12 cases median 0.18 %,
    worst 0.68 %, all inside; 17M lzma 49.4x.
  --quick, stop 9, 133 cases (49 s, idle): median 0.171 %, worst 1.092 % (the same lzma case),
    coverage 99.2 %; pgolf checkpoint median 0.19 %, worst 0.53 %, all inside; 17M lzma 53.3x.
  Full grid, first run (stop 8, brotli at lgwin 24, lzma without its learning cost), 1,622 cases:
    median 0.392 %, worst 3.850 %, coverage 97.7 %, 105 cases over 1.5 % (brotli 35, lzma 41, zstd 27).
  Full grid, stop 9 (brotli at lgwin 22, lzma's learning cost measured on the draws, both refitted),
  the same three runs (the first two side by side: 8.5 min; the third 6.6 min), then ans alone again
  once its table was counted the same way (two runs of six presets side by side, 3.4 min):
    official-int8, int6, ternary, int6-floor (+ 17M): 542 cases, median 0.268 %, worst 2.316 %
      (b1.5-gauss-f0.5-r0-u0.3 int6 zlib); 17M lzma +0.07 % at 51.3x, brotli -0.92 % at 64.2x
      (load 2: the other run beside it; idle, after the lzma dictionary change: 56.7x and 69.6x).
    fp16-embed, int5-mlp-int6-attn, sdclip-int6-int8emb, int6-floor-int8emb: 540 cases, median
      0.370 %, worst 2.465 % (b5.5-t3-f0.5-r0.3-u0.3 int6-floor-int8emb zstd).
    int6-floor-fp16emb, int6-floor-int8emb-latek, sdclip-int6-int7emb, sdclip-int6-int7emb-k14:
      540 cases, median 0.433 %, worst 2.465 %.
    ans, all 324 cases: median 0.376 -> 0.227 %, worst 1.623 -> 1.477 %, coverage 90.1 -> 96.0 %
      (under fp16 embeddings 37-74 % -> 92.6 %; ternary now reads 1.0-1.5 % low).
    All 1,622 (ans from its second run): median 0.308 %, worst 2.465 %, coverage 99.0 %; per codec
      median / worst / coverage: zlib 0.33 / 2.32 / 100 %, zstd 0.48 / 2.47 / 100 %,
      lzma 0.22 / 1.66 / 99.7 %, brotli 0.39 / 2.22 / 99.1 %, ans 0.23 / 1.48 / 96.0 %.
      Fixtures median 0.00 % (d64 exact), worst 1.34 %; our checkpoint median 0.26 %, worst 0.74 %
      (its two ans cases under fp16 embeddings +0.55 %, outside a +-0.28 % interval).
  The worst target is not met: 47 of 1,622 cases exceed 1.5 % (zstd 27, brotli 17, lzma 2, zlib 1).
  What is left is what the codecs do across groups at full length, which a sample does not show:
  zstd-22 codes an int6 group ~10 % worse behind the int8 embedding (all 27 read low; the same pair
  at sample length reads +14 %, and on the fit's models the sample's reading is often absent at
  full length: behind a 64 KiB tail of the int8 group the int5 group of one fit model pays 63 KB,
  behind the whole group nothing), brotli-11 pays up to 1.8 % for holding four groups in one
  stream where each adjacent pair costs < 0.1 % (at sample length it gains 0.3 %). And brotli-11
  itself jumps between two codings 1-4 % apart when the payload starts 4-64 bytes later: over its
  eight worst cases here its own bytes move by 1.8 % on average, up to 3.9 %; lzma's worst case
  moves by 1.0 % (benchmarks/codec_stability.py --from-accuracy).
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
