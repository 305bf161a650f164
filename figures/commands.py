"""`pgolf plot KIND INPUT... -o DIR`: one figure as DIR/<kind>.png, .svg and .csv (the plotted rows).

    pgolf plot headroom compare.json -o figs/
    pgolf plot training-curve runs/demo/train.log record/train.log -o figs/ --x tokens
"""
from __future__ import annotations

import argparse
import json

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count
from pgolf.figures.kinds import KINDS

# Flags that map one-to-one onto keyword options of the plot's frame function.
OPTION_FLAGS = {
    "x": "x", "y": "y", "cap": "cap", "group": "group", "depth": "depth", "top": "top", "column": "column",
    "relative": "relative", "budget_bytes": "budget_bytes", "metrics": "metrics",
}


def _epilog() -> str:
    lines = ["kinds and the columns their input needs:"]
    lines += [f"  {name:<15} {info.needs} (options: {', '.join('--' + o.replace('_', '-') for o in info.options)})"
              for name, info in KINDS.items()]
    lines += ["", "INPUT: a CSV, or a pgolf --json output (rows under \"tensors\" or a top-level list);",
              "for training-curve, training logs (ours or the official records'), several overlaid."]
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="draw a figure: PNG + SVG + the CSV of exactly the plotted rows",
        description="Draw one pgolf figure from a CSV, a pgolf --json output or training logs.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=tuple(KINDS), metavar="KIND", help="which figure (see below)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="CSV / JSON table(s), or log file(s)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for <kind>.png/.svg/.csv")
    p.add_argument("--title", help="replace the automatic title")
    p.add_argument("--x", help="headroom: bytes_total | headroom_bytes; training-curve: step | tokens")
    p.add_argument("--y", help="headroom: the BPB column (default val_bpb)")
    p.add_argument("--cap", type=count(), help="headroom: cap in bytes (default: the data's cap column or 16,000,000)")
    p.add_argument("--group", choices=("tensor", "module"), help="tensor-bytes: one bar per tensor or module")
    p.add_argument("--depth", type=count(maximum=100), help="tensor-bytes --group module: name components kept (default 3)")
    p.add_argument("--top", type=count(), help="tensor-bytes / quant-gap / exchange-rate / squeeze: rows shown")
    p.add_argument("--column", help="quant-gap: the gap column (default gap_only_this_bpb)")
    p.add_argument("--relative", choices=("ratio", "bytes"), help="compressors: ratio or bytes over the floor")
    p.add_argument("--budget-bytes", type=count(), help="exchange-rate: bytes to allocate greedily (default 100,000)")
    p.add_argument("--metrics", type=lambda s: tuple(m for m in s.split(",") if m),
                   help="training-curve: comma-separated, from train_loss,val_loss,val_bpb (default all)")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from pgolf.figures.export import export_plot
    from pgolf.figures.inputs import load_plot_input

    options = {opt: getattr(args, flag) for flag, opt in OPTION_FLAGS.items() if getattr(args, flag) is not None}
    data = load_plot_input(args.kind, args.inputs)
    try:
        paths = export_plot(args.kind, data, args.out, title=args.title, **options)
    except PgolfInputError as exc:
        if exc.path is not None:
            raise
        raise PgolfInputError(", ".join(args.inputs), exc.problem) from None
    if args.json:
        print(json.dumps({"kind": args.kind, **{fmt: str(path) for fmt, path in paths.items()}}, indent=2))
    elif not args.quiet:
        for fmt, path in paths.items():
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
