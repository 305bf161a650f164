"""`pgolf predict`: bytes of a baseline-family config before training, or the largest that fits.

Flags map one-to-one onto `predict.predict` / `predict.fit_largest` keyword arguments.

    pgolf predict --layers 11 --dim 512 --mlp-mult 3 --plan int6 --compressor zstd
    pgolf predict --fit --max-bytes 15900000 --dimension layers --plan int6 --compressor zstd --json
"""
from __future__ import annotations

import argparse
import json

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count, positive_float
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.forecast.predict import DIMENSIONS, SCALES, fit_largest, predict
from pgolf.budget.report_base import format_value



# Shapes a prediction can price without running out of memory: far above any record's.
MAX_LAYERS = 10_000
MAX_WIDTH = 10_000_000


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predicted artifact bytes of a config (no weights needed)",
                              description="Predict the compressed bytes of a baseline-family model from its shape, "
                                          "a plan and a compressor, with an interval; --fit finds the largest value "
                                          "of one dimension that stays under --max-bytes.")
    p.add_argument("--layers", type=count(maximum=MAX_LAYERS), default=9, help="effective depth (default 9)")
    p.add_argument("--dim", type=count(maximum=MAX_WIDTH), default=512, help="model width (default 512)")
    p.add_argument("--mlp-mult", type=positive_float(maximum=1_000), default=2.0, help="MLP hidden = mult x dim (default 2)")
    p.add_argument("--vocab", type=count(maximum=MAX_WIDTH), default=1024, help="vocabulary size (default 1024)")
    p.add_argument("--heads", type=count(maximum=MAX_WIDTH), default=8, help="attention heads (default 8)")
    p.add_argument("--kv-heads", type=count(maximum=MAX_WIDTH), default=4, help="key/value heads (default 4)")
    p.add_argument("--untied", action="store_true", help="separate lm_head instead of the tied embedding")
    p.add_argument("--unique-layers", type=count(maximum=MAX_LAYERS), default=None,
                   help="depth recurrence: blocks stored (reused to reach --layers)")
    p.add_argument("--bigram-hash", type=count(minimum=0, maximum=MAX_WIDTH), default=0, help="rows of a bigram-hash embedding table (0: none)")
    p.add_argument("--bigram-dim", type=count(maximum=MAX_WIDTH), default=128, help="width of the bigram table (default 128)")
    p.add_argument("--plan", default="official-int8",
                   help=f"preset ({', '.join(PRESETS)}), scheme (int6, fp16, ...) or plan .json file")
    p.add_argument("--compressor", default="zlib", help="zlib | zstd | lzma | brotli, optional +byte-shuffle")
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--code-wrapped", action="store_true", help="count the code's lzma+base85 wrapper instead")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--stats", metavar="FILE", help="weight statistics JSON (default: the shipped calibration)")
    p.add_argument("--scale", choices=SCALES, default="long",
                   help="weight scale: long (a record-length run, no scale floor binds; default) or calibrated "
                        "(our short calibration runs); with long, the interval reaches down to calibrated")
    p.add_argument("--fit", action="store_true", help="find the largest --dimension value that fits --max-bytes")
    p.add_argument("--max-bytes", type=count(), default=None, help="byte budget for --fit (default: --cap)")
    p.add_argument("--dimension", choices=tuple(DIMENSIONS), default="layers", help="dimension --fit searches")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress output (predict shows none)")
    p.set_defaults(handler=run_predict)


def _config(args) -> dict:
    return {"layers": args.layers, "dim": args.dim, "mlp_mult": args.mlp_mult, "vocab": args.vocab,
            "heads": args.heads, "kv_heads": args.kv_heads, "untied": args.untied,
            "unique_layers": args.unique_layers, "bigram_hash": args.bigram_hash, "bigram_dim": args.bigram_dim}


def run_predict(args) -> int:
    from pgolf.budget.forecast.calibration import load_weight_stats

    if args.bigram_hash < 0:
        raise PgolfInputError(None, f"--bigram-hash must be >= 0, got {args.bigram_hash}")
    stats = load_weight_stats(args.stats) if args.stats else None
    kw = dict(plan=args.plan, compressor=args.compressor, code=args.code, cap=args.cap,
              code_wrapped=args.code_wrapped, stats=stats, scale=args.scale)
    try:
        if not args.fit:
            report = predict(**_config(args), **kw)
            print(report.to_json() if args.json else report.to_text())
            return 0
        budget = args.max_bytes or args.cap
        config = {k: v for k, v in _config(args).items() if k != DIMENSIONS[args.dimension][0]}
        value, report = fit_largest(budget, args.dimension, config, **kw)
    except ValueError as exc:  # an impossible shape (heads not dividing the width, ...)
        raise PgolfInputError(None, f"config: {exc}") from None
    answer = {"dimension": args.dimension, "max_bytes": budget, "largest": value}
    if report is None:
        answer["note"] = f"even the smallest {args.dimension} does not fit in {budget:,} bytes"
    if args.json:
        print(json.dumps({**answer, **({"prediction": report.to_dict()} if report else {})}, indent=2))
        return 0
    if report is None:
        print(f"pgolf predict --fit: {answer['note']}")
        return 0
    print(f"largest {args.dimension} that fits {budget:,} bytes (bytes_total_high): {format_value(value)}\n")
    print(report.to_text())
    return 0
