"""`pgolf predict`: bytes of a baseline-family config before training, or the largest that fits.

Flags map one-to-one onto `predict.predict` / `predict.fit_largest` / `predict.predict_delta`
keyword arguments. Shape flags left out take the defaults (the baseline's 9 x 512), or with
--like the checkpoint's own shape when it is of the baseline family.

    pgolf predict --layers 11 --dim 512 --mlp-mult 3 --plan int6 --compressor zstd
    pgolf predict --fit --max-bytes 15900000 --dimension layers --plan int6 --compressor zstd --json
    pgolf predict --like run/final_model.pt --layers 11 --plan int6-floor-int8emb --compressor zstd
    pgolf predict --like run/final_model.pt --delta layers=11 --delta mlp-mult=3 --plan int6-floor
    pgolf predict --delta-plan sdclip-int6-int7emb --plan int6-floor-int8emb --compressor brotli
"""
from __future__ import annotations

import argparse
import json

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count, positive_float
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant.plans import PRESETS, resolve_plan
from pgolf.budget.forecast.predict import DIMENSIONS, SCALES, fit_largest, predict, predict_delta
from pgolf.budget.report_base import format_value



# Shapes a prediction can price without running out of memory: far above any record's.
MAX_LAYERS = 10_000
MAX_WIDTH = 10_000_000
DEFAULTS = {"layers": 9, "dim": 512, "mlp_mult": 2.0, "vocab": 1024, "heads": 8, "kv_heads": 4, "untied": False,
            "unique_layers": None, "bigram_hash": 0, "bigram_dim": 128}
# shape flag -> (config key, parser): the flags --delta KEY=VALUE can change
SHAPE_FLAGS = {"layers": ("layers", count(maximum=MAX_LAYERS)), "dim": ("dim", count(maximum=MAX_WIDTH)),
               "mlp-mult": ("mlp_mult", positive_float(maximum=1_000)), "vocab": ("vocab", count(maximum=MAX_WIDTH)),
               "heads": ("heads", count(maximum=MAX_WIDTH)), "kv-heads": ("kv_heads", count(maximum=MAX_WIDTH)),
               "unique-layers": ("unique_layers", count(maximum=MAX_LAYERS)),
               "bigram-hash": ("bigram_hash", count(minimum=0, maximum=MAX_WIDTH)),
               "bigram-dim": ("bigram_dim", count(maximum=MAX_WIDTH))}


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predicted artifact bytes of a config (no weights needed)",
                              description="Predict the compressed bytes of a baseline-family model from its shape, "
                                          "a plan and a compressor, with an interval; --like prices it with a "
                                          "checkpoint's own values, --delta prints the change between two configs or "
                                          "plans, --fit finds the largest value of one dimension under --max-bytes.")
    p.add_argument("--layers", type=SHAPE_FLAGS["layers"][1], default=None, help="effective depth (default 9)")
    p.add_argument("--dim", type=SHAPE_FLAGS["dim"][1], default=None, help="model width (default 512)")
    p.add_argument("--mlp-mult", type=SHAPE_FLAGS["mlp-mult"][1], default=None, help="MLP hidden = mult x dim (default 2)")
    p.add_argument("--vocab", type=SHAPE_FLAGS["vocab"][1], default=None, help="vocabulary size (default 1024)")
    p.add_argument("--heads", type=SHAPE_FLAGS["heads"][1], default=None, help="attention heads (default 8)")
    p.add_argument("--kv-heads", type=SHAPE_FLAGS["kv-heads"][1], default=None, help="key/value heads (default 4)")
    p.add_argument("--untied", action="store_true", default=None, help="separate lm_head instead of the tied embedding")
    p.add_argument("--unique-layers", type=SHAPE_FLAGS["unique-layers"][1], default=None,
                   help="depth recurrence: blocks stored (reused to reach --layers)")
    p.add_argument("--bigram-hash", type=SHAPE_FLAGS["bigram-hash"][1], default=None, help="rows of a bigram-hash embedding table (0: none)")
    p.add_argument("--bigram-dim", type=SHAPE_FLAGS["bigram-dim"][1], default=None, help="width of the bigram table (default 128)")
    p.add_argument("--plan", default="official-int8",
                   help=f"preset ({', '.join(PRESETS)}), scheme (int6, fp16, ...) or plan .json file")
    p.add_argument("--compressor", default="zlib", help="zlib | zstd | lzma | brotli, optional +byte-shuffle")
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--code-wrapped", action="store_true", help="count the code's lzma+base85 wrapper instead")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--stats", metavar="FILE", help="weight statistics JSON (default: the shipped calibration)")
    p.add_argument("--like", metavar="CHECKPOINT",
                   help="price the config with this model's own values (any input pgolf reads: .pt, .safetensors, "
                        "checkpoint folder, .ptz artifact), e.g. a short run of your recipe")
    p.add_argument("--delta", metavar="FLAG=VALUE", action="append", default=[],
                   help="print the change in bytes when this shape flag changes (repeatable: --delta layers=11 "
                        f"--delta mlp-mult=3; flags: {', '.join(SHAPE_FLAGS)})")
    p.add_argument("--delta-plan", metavar="PLAN", help="print the change in bytes from --plan to this plan")
    p.add_argument("--scale", choices=SCALES, default=None,
                   help="weight scale: long (a record-length run, no scale floor binds; default) or calibrated "
                        "(our short calibration runs); with long, the interval reaches down to calibrated")
    p.add_argument("--fit", action="store_true", help="find the largest --dimension value that fits --max-bytes")
    p.add_argument("--max-bytes", type=count(), default=None, help="byte budget for --fit (default: --cap)")
    p.add_argument("--dimension", choices=tuple(DIMENSIONS), default="layers", help="dimension --fit searches")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress output (predict shows none)")
    p.set_defaults(handler=run_predict)


def _config(args, like=None) -> dict:
    """Defaults, then the --like checkpoint's own shape, then the flags given."""
    config = {**DEFAULTS, **((like.config or {}) if like is not None else {})}
    for key in DEFAULTS:
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    return config


def parse_delta(items: list[str]) -> dict:
    """{config key: value} from --delta FLAG=VALUE items; PgolfInputError on anything else.

    >>> parse_delta(["layers=11", "mlp-mult=3"])
    {'layers': 11, 'mlp_mult': 3.0}
    """
    change = {}
    for item in items:
        flag, sep, text = item.partition("=")
        flag = flag.strip().removeprefix("--")
        if not sep or flag not in SHAPE_FLAGS:
            raise PgolfInputError(None, f"--delta {item!r}: write FLAG=VALUE with FLAG one of {', '.join(SHAPE_FLAGS)}")
        key, parse = SHAPE_FLAGS[flag]
        try:
            change[key] = parse(text)
        except argparse.ArgumentTypeError as exc:
            raise PgolfInputError(None, f"--delta {item!r}: {exc}") from None
    return change


def _json(report) -> str:
    """The report's JSON: numbers, `exactness` and `interval` of each, and the notes saying where they come from."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False)


def run_predict(args) -> int:
    from pgolf.budget.forecast.calibration import load_weight_stats
    from pgolf.budget.forecast.like import load_recipe

    if args.like and (args.stats or args.scale):
        raise PgolfInputError(args.like, f"--like takes the statistics and the scale from this checkpoint; "
                                         f"drop {'--stats' if args.stats else '--scale'}")
    delta = parse_delta(args.delta)
    if args.fit and (delta or args.delta_plan):
        raise PgolfInputError(None, "--fit and --delta/--delta-plan do not combine: ask one question at a time")
    plan_b = resolve_plan(args.delta_plan) if args.delta_plan else None
    stats = load_weight_stats(args.stats) if args.stats else None
    like = load_recipe(args.like) if args.like else None
    kw = dict(plan=args.plan, compressor=args.compressor, code=args.code, cap=args.cap,
              code_wrapped=args.code_wrapped, stats=stats, scale=args.scale or "long", like=like)
    config = _config(args, like)
    try:
        if delta or plan_b is not None:
            kw.pop("cap"), kw.pop("code"), kw.pop("code_wrapped")
            report = predict_delta(config, delta, plan_b=plan_b, **kw)
            print(_json(report) if args.json else report.to_text())
            return 0
        if not args.fit:
            report = predict(**config, **kw)
            print(_json(report) if args.json else report.to_text())
            return 0
        budget = args.max_bytes or args.cap
        config = {k: v for k, v in config.items() if k != DIMENSIONS[args.dimension][0]}
        value, report = fit_largest(budget, args.dimension, config, **kw)
    except ValueError as exc:  # an impossible shape (heads not dividing the width, ...)
        raise PgolfInputError(None, f"config: {exc}") from None
    answer = {"dimension": args.dimension, "max_bytes": budget, "largest": value}
    if report is None:
        answer["note"] = f"even the smallest {args.dimension} does not fit in {budget:,} bytes"
    if args.json:
        print(json.dumps({**answer, **({"prediction": report.to_dict()} if report else {})}, indent=2, allow_nan=False))
        return 0
    if report is None:
        print(f"pgolf predict --fit: {answer['note']}")
        return 0
    print(f"largest {args.dimension} that fits {budget:,} bytes (bytes_total_high): {format_value(value)}\n")
    print(report.to_text())
    return 0
