"""`pgolf demo [--out DIR] [--quick] [--cap N]`: the main job on the embedded default (see run.py).

    pgolf demo                      # runs/demo/: report.md, report.html, figures/, train/ (~10 min)
    pgolf demo --quick --out /tmp/d # the CI-sized run (under two minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import json

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count
from pgolf.budget.report_base import format_value

SUMMARY_KEYS = ("model", "params", "steps", "val_bpb", "official_int8_roundtrip_val_bpb", "cap", "cap_rule",
                "best_plan_under_cap", "allocated_bytes_model", "allocated_val_bpb", "allocated_vs_unquantized")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: train a small model, measure budgets and gaps, draw every figure, write a report",
        description="Prepare the embedded default data, train a small model on the CPU, measure every plan x "
                    "compressor, per-tensor gaps, headroom and an allocation under a cap, draw all figures and "
                    "write report.md, a self-contained report.html and report.json into --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="tiny model, few steps, two compressors (CI-sized)")
    p.add_argument("--cap", type=count(), metavar="N",
                   help="byte cap for headroom and allocation (default: half the model's fp16 artifact bytes)")
    p.add_argument("--json", action="store_true", help="print the headline and written paths as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars or training log")
    p.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from pgolf.figures.demo.run import run_demo

    if args.cap is not None and args.cap <= 0:
        raise PgolfInputError(None, f"--cap {args.cap}: must be a positive number of bytes")
    result = run_demo(args.out, quick=args.quick, cap=args.cap, quiet=args.quiet or args.json)
    head = result.report.headline
    if args.json:
        print(json.dumps({"headline": head, "paths": {k: str(v) for k, v in result.paths.items()},
                          "seconds": result.seconds}, indent=2, default=str))
        return 0
    print(f"pgolf demo ({'quick' if args.quick else 'full'}) finished in {sum(result.seconds.values()):,.0f} s")
    print(f"cap used: {head['cap']:,} bytes ({head['cap_rule']})")
    for key in SUMMARY_KEYS:
        if key not in ("cap", "cap_rule"):
            print(f"  {key}: {format_value(head[key])}")
    print("wrote:")
    for key in ("report_md", "report_html", "report_json", "plan", "figures", "train_log"):
        print(f"  {result.paths[key]}")
    return 0
