"""How far a codec's exact bytes move when the input moves by a few bytes: the floor under any estimate.

    .venv/bin/python benchmarks/codec_stability.py [--cells 6] [--plans official-int8,sdclip-int6-int8emb]
                                                   [--codecs brotli:22,brotli:24,lzma,zstd] [--csv OUT]
    .venv/bin/python benchmarks/codec_stability.py --from-accuracy GRID.csv [--worst 10]   # the estimator's worst

For each model of estimate_accuracy.py's synthetic grid (every `len(grid) / --cells`-th cell) and
plan, or for the estimator's worst cases (`--from-accuracy`), the serialized artifact payload is
compressed whole, less its last 1 and 64 bytes, and less its first 4 and 64 bytes. The spread
(largest over smallest, less one) is how much of an estimate's error the codec itself makes: an
estimate of the whole cannot be closer than that.
`brotli:W` is brotli-11 at window lgwin W (pgolf uses 22, brotli's default and the records' call).

Measured 2026-12-06 (1.6-1.8 MB payloads; spread over the five cuts):
  default (6 cells x 2 plans): brotli:22 mean 0.51 %, max 2.29 % (b1.5-gauss-f0.5-r0-u0.3
    official-int8, 4 bytes less at the start); brotli:24 mean 1.07 %, max 3.59 %; lzma mean 0.035 %,
    max 0.12 %; zstd mean 0.60 %, max 2.18 % (b4-gauss-f0.5-r0-u0.3 sdclip-int6-int8emb, 64 bytes
    less at the start). Cutting the end only, over 40 payloads: brotli:24 up to 2.27 % (one more
    payload: 3.9 %, 1,486,361 B -> 1,428,086 B for one byte less), brotli:22 at most 0.023 %.
  --from-accuracy (the full grid of estimate_accuracy.py, stop 9) --worst 8: brotli mean 1.81 %,
    max 3.86 % (three of its eight worst estimates lie between the sizes the cuts give, two within
    0.2 % of the lower); lzma mean 0.19 %, max 1.00 % (its worst estimate, b2.5-t3-f0-r0-u0
    official-int8); zstd mean 0.06 %, max 0.13 % (its misses are the estimator's); zlib 0.005 %, ans 0.017 %.
"""
from __future__ import annotations

import argparse
import sys

import brotli
import pandas as pd

from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.exact.build import assign, serialize
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.forecast import synthetic
from pgolf.budget.progress import progress
from pgolf.budget.quant.plans import resolve_plan

from estimate_accuracy import grid  # benchmarks/ is on sys.path when this script runs

CUTS = (("whole", 0, 0), ("end-1", 0, 1), ("end-64", 0, 64), ("start-4", 4, 0), ("start-64", 64, 0))


def size_with(codec: str):
    """Compressed length under `codec`: brotli:W (quality 11, window W) or a pgolf compressor spec."""
    if codec.startswith("brotli:"):
        window = int(codec.split(":")[1])
        return lambda data: len(brotli.compress(data, quality=11, lgwin=window))
    comp = get_compressor(codec)
    return lambda data: len(comp.compress(data))


def worst_cases(accuracy_csv: str, worst: int) -> list[tuple[str, str, str]]:
    """(grid model, plan, compressor) of the `worst` largest |error| grid cases of each compressor
    in an estimate_accuracy.py --csv table."""
    frame = pd.read_csv(accuracy_csv)
    frame = frame[frame["model"].str.startswith("grid:")].assign(a=lambda f: f["error_pct"].abs())
    top = frame.sort_values("a", ascending=False).groupby("compressor", sort=False).head(worst)
    return list(zip(top["model"], top["plan"], top["compressor"]))


def run(jobs: list[tuple[str, str, list[str]]], quiet: bool) -> pd.DataFrame:
    """Rows of sizes under each cut for (grid model, plan, codecs) jobs."""
    cells = {f"grid:{c.name}": (i, c) for i, c in enumerate(grid())}
    rows = []
    for model, plan, codecs in progress(jobs, desc="stability", total=len(jobs), quiet=quiet):
        i, cell = cells[model]
        sd = synthetic.model(cell, dim=256, layers=2, vocab=1024, seed=i)
        p = resolve_plan(plan)
        _, raw = serialize(assign(sd, p, check_finite=False), p.name)
        for codec in codecs:
            size_of = size_with(codec)
            sizes = {name: size_of(raw[head:len(raw) - tail]) for name, head, tail in CUTS}
            rows.append({"model": model, "plan": plan, "codec": codec, "payload": len(raw), **sizes,
                         "spread_pct": 100 * (max(sizes.values()) / min(sizes.values()) - 1)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=6, help="grid cells to take, evenly spaced")
    ap.add_argument("--plans", default="official-int8,sdclip-int6-int8emb")
    ap.add_argument("--codecs", default="brotli:22,brotli:24,lzma,zstd")
    ap.add_argument("--from-accuracy", metavar="CSV", help="instead: the worst grid cases of an "
                    "estimate_accuracy.py --csv table, each under its own compressor")
    ap.add_argument("--worst", type=int, default=10, help="with --from-accuracy: cases per compressor")
    ap.add_argument("--csv", help="write the rows here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.from_accuracy:
        jobs = [(m, p, [c]) for m, p, c in worst_cases(args.from_accuracy, args.worst)]
    else:
        cells = grid()
        step = max(1, len(cells) // args.cells)
        jobs = [(f"grid:{c.name}", p, args.codecs.split(",")) for c in cells[::step] for p in args.plans.split(",")]
    frame = run(jobs, args.quiet)
    if args.csv:
        write_text_atomic(args.csv, frame.to_csv(index=False))
    for codec, g in frame.groupby("codec", sort=False):
        print(f"{codec:10s} {len(g):3d} payloads: spread mean {g['spread_pct'].mean():.3f} %, "
              f"max {g['spread_pct'].max():.3f} % ({g.loc[g['spread_pct'].idxmax(), 'model']} "
              f"{g.loc[g['spread_pct'].idxmax(), 'plan']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
