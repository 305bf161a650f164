"""`pgolf squeeze`: the best lossless coding per tensor, floors and every codec side by side.

    pgolf squeeze final_model.pt --plan int6
    pgolf squeeze --baseline --plan official-int8 --codecs zlib,ans --json
"""
from __future__ import annotations

import sys

from pgolf.budget.commands import _add_input, _state_source, _with_path
from pgolf.budget.errors import PgolfInputError


def register(subparsers) -> None:
    from pgolf.budget.exact.squeeze import DEFAULT_CODECS

    p = subparsers.add_parser("squeeze", help="per tensor: order-0 and conditional floors, bytes under every codec",
                              description="Quantize under a plan and measure each tensor's stored values: H(q), "
                                          "H(q|row group), H(q|column group), the exact bytes under each codec "
                                          "(order-0 ANS table included), the best choice, totals and the net "
                                          "saving over brotli-11 + byte-shuffle after the decoder's code bytes.")
    _add_input(p)
    p.add_argument("--plan", default="official-int8", help="preset, scheme or plan .json (default official-int8)")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS),
                   help=f"comma-separated, from {', '.join(DEFAULT_CODECS)} (default: all)")
    p.add_argument("--layout", default="as-is", choices=("as-is", "transpose", "sorted-rows"),
                   help="symbol layout before coding: sorted-rows adds the stored permutation's bytes")
    p.add_argument("--permute-mlp", action="store_true",
                   help="first reorder MLP hidden units (fc rows with proj columns): free, the model is invariant")
    p.add_argument("--permute-heads", action="store_true",
                   help="first reorder attention heads (c_q/c_k/c_v row blocks, q_gain, proj column blocks): free")
    p.add_argument("--markdown", action="store_true", help="print markdown instead of text")
    p.set_defaults(handler=run_squeeze)


def run_squeeze(args) -> int:
    from pgolf.budget.exact.squeeze import squeeze

    sd, _, source = _state_source(args)
    codecs = tuple(c.strip() for c in args.codecs.split(",") if c.strip())
    try:
        report = squeeze(sd, args.plan, codecs, quiet=args.quiet, source=source, layout=args.layout,
                         permute_mlp=args.permute_mlp, permute_heads=args.permute_heads)
    except PgolfInputError as exc:
        raise _with_path(exc, args.input) from None
    text = report.to_json() if args.json else report.to_markdown() if args.markdown else report.to_text(max_rows=None)
    sys.stdout.write(text + "\n")
    return 0
