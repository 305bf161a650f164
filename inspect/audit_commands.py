"""`pgolf audit`, `pgolf significance`, `pgolf wrap`: a reviewer's checks and the smallest shipped code.

    pgolf audit records/2026-04-05_SP8192... --vs-loss 2.07269931 --format markdown
    pgolf audit records/2026-03-18_LongContextSeq2048 --vs records/2026-03-17_NaiveBaseline
    pgolf significance run1.log run2.log run3.log --vs-loss 2.0727 --min-delta 0.005
    pgolf wrap train_gpt.py -o train_gpt_wrapped.py

audit and significance exit 0 when every check passes, 1 when one fails, 2 on unreadable input.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

from pgolf.budget.atomic import write_bytes_atomic
from pgolf.budget.files.codebytes import read_code
from pgolf.budget.exact import container
from pgolf.budget.exact.decoder import best_ids_of, decoder_source
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.files.validate import MAX_DENSE_BYTES, one_line, read_file_bytes
from pgolf.budget.files.wrap import smallest_wrapper
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.exact.inputs import load_input
from pgolf.inspect.audit import audit
from pgolf.inspect.significance import ALPHA, MIN_DELTA, SCORES, record_logs, significance

FORMATS = ("text", "markdown", "html", "json")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (default text)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of stdout")


def _baseline_flags(p: argparse.ArgumentParser, vs_help: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--vs", nargs="+", metavar="PATH", help=vs_help)
    g.add_argument("--vs-loss", type=_float, metavar="X", help="the baseline as one number (a record's val_loss)")
    p.add_argument("--min-delta", type=_float, default=MIN_DELTA,
                   help=f"improvement the test must show, in the metric's units (default {MIN_DELTA} nats)")
    p.add_argument("--metric", choices=("val_loss", "val_bpb"), default="val_loss",
                   help="val_loss (nats per token, the challenge's rule; default) or val_bpb (across tokenizers)")


def register(subparsers) -> None:
    p = subparsers.add_parser("audit", help="a reviewer's checklist for a record folder",
                              description="Check a record folder (submission.json, train_gpt.py as shipped, the "
                                          "logs, the artifact if present): counted bytes under the decimal cap, "
                                          "submission.json against the logs, BPB byte accounting, significance.")
    p.add_argument("record", metavar="RECORD_DIR")
    _baseline_flags(p, "baseline record folder (its logs' scores)")
    p.add_argument("--tokenizer", metavar="MODEL", help="the record's SentencePiece .model (for --check-bpb-luts)")
    p.add_argument("--check-bpb-luts", action="store_true",
                   help="import the script (not run its main) and compare its BPB byte tables with the official ones")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _output_flags(p)
    p.set_defaults(handler=run_audit)

    p = subparsers.add_parser("significance", help="the challenge's rule: beat a baseline by min-delta at p < 0.01",
                              description="One-sided Welch t-test over the seeds' final scores that the "
                                          "improvement over the baseline is at least --min-delta.")
    p.add_argument("logs", nargs="+", metavar="LOG", help="training logs (or record folders) of the candidate's seeds")
    _baseline_flags(p, "the baseline's logs (or record folders)")
    p.add_argument("--score", choices=SCORES, default="score",
                   help="each log's headline score (default) or its last score of one kind")
    _output_flags(p)
    p.set_defaults(handler=run_significance)

    p = subparsers.add_parser("wrap", help="the smallest self-extracting train_gpt.py that still runs",
                              description="Compress the script and choose the encoding of the payload that costs "
                                          "the fewest UTF-8 bytes; the wrapper is read back and must equal the "
                                          "input byte for byte.")
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="where to write the wrapped script")
    p.add_argument("--json", action="store_true", help="print the sizes as JSON")
    p.set_defaults(handler=run_wrap)

    p = subparsers.add_parser("decoder", help="the smallest Python that reads a plan's artifacts (its bytes count)",
                              description="Write a self-contained load(path) -> state dict for artifacts of this "
                                          "plan and compressor (standard library, torch, numpy and the "
                                          "compressor's module only), with only the formats the plan uses.")
    p.add_argument("--plan", required=True, help="preset, scheme or plan .json")
    p.add_argument("--compressor", default="zlib", help="compressor spec (default zlib)")
    p.add_argument("--model", metavar="INPUT", help="the model the artifact is built from: only its tensors' schemes")
    p.add_argument("--artifact", metavar="FILE", help="a built artifact of this plan and compressor: for best, only "
                                                       "the codecs its segments use")
    p.add_argument("-o", "--output", metavar="FILE", help="write the decoder here (default: print it)")
    p.set_defaults(handler=run_decoder)


def _emit(report, args) -> None:
    fmt = "json" if args.json else args.format
    if fmt == "json":
        text = report.to_json() + "\n"
    elif fmt == "markdown":
        text = report.to_markdown()
    elif fmt == "html":
        text = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(report.title)}</title>"
                f"</head><body>\n{report._repr_html_()}\n</body></html>\n")
    else:
        text = report.to_text(max_rows=None) + "\n"
    if args.output:
        write_bytes_atomic(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def _expand(paths: list[str]) -> list[Path]:
    """Logs as given; a folder stands for its *.log files."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            logs = record_logs(p)
            if not logs:
                raise PgolfInputError(p, "no training logs (*.log) in the folder")
            out += logs
        else:
            out.append(p)
    return out


def run_audit(args) -> int:
    if args.check_bpb_luts and not args.tokenizer:
        raise PgolfInputError(None, "--check-bpb-luts needs --tokenizer MODEL (the record's tokenizer)")
    if args.vs is not None and len(args.vs) != 1:
        raise PgolfInputError(None, "audit --vs takes one baseline record folder")
    report = audit(args.record, vs=args.vs[0] if args.vs else None, vs_loss=args.vs_loss, min_delta=args.min_delta,
                   tokenizer=args.tokenizer, check_luts=args.check_bpb_luts, cap=args.cap, metric=args.metric,
                   quiet=args.quiet)
    _emit(report, args)
    return report.exit_code


def run_significance(args) -> int:
    if args.vs is None and args.vs_loss is None:
        raise PgolfInputError(None, "give the baseline: --vs LOG... or --vs-loss X")
    report = significance(_expand(args.logs), vs=_expand(args.vs) if args.vs else None, vs_loss=args.vs_loss,
                          min_delta=args.min_delta, metric=args.metric, score=args.score, alpha=ALPHA)
    _emit(report, args)
    return 0 if report.headline["verdict"] == "pass" else 1


def run_wrap(args) -> int:
    source = read_code(args.script)
    if not source.strip():
        raise PgolfInputError(args.script, "nothing to wrap: the script is empty")
    result = smallest_wrapper(source)
    write_bytes_atomic(args.output, result.text.encode("utf-8"))
    sizes = {"input_bytes": len(source), "wrapped_bytes": result.size, "encoding": result.encoding,
             "lzma_base85_bytes": result.sizes["lzma+base85"], "saving_vs_lzma_base85": result.sizes["lzma+base85"]
             - result.size, "candidates": result.sizes}
    if args.json:
        sys.stdout.write(json.dumps(sizes, indent=2) + "\n")
    else:
        lines = [f"{args.script}: {len(source):,} bytes -> {args.output}: {result.size:,} bytes ({result.encoding})",
                 f"the records' lzma+base85 wrapper: {sizes['lzma_base85_bytes']:,} bytes; saving "
                 f"{sizes['saving_vs_lzma_base85']:,} bytes"]
        lines += [f"  {name}: {size:,}" for name, size in sorted(result.sizes.items(), key=lambda kv: kv[1])]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def run_decoder(args) -> int:
    sd = load_input(args.model).state_dict if args.model else None
    artifact = None
    if args.artifact:
        artifact = read_file_bytes(args.artifact, MAX_DENSE_BYTES)
        try:
            _, spec, _ = container.parse_frame(artifact)  # the baseline's .ptz needs no decoder: refused too
            best_ids_of(artifact)
        except ValueError as exc:
            raise PgolfInputError(args.artifact, one_line(exc)) from None
        if get_compressor(spec).name != get_compressor(args.compressor).name:
            raise PgolfInputError(args.artifact, f"built with compressor {spec}, not {args.compressor}")
    source = decoder_source(args.plan, args.compressor, sd, artifact)
    if not source:
        sys.stdout.write(f"{args.plan} + {args.compressor}: the baseline's own .ptz: no decoder needed (0 bytes); "
                         f"its script's dequantize_state_dict_int8 reads it\n")
        return 0
    if args.output:
        write_bytes_atomic(args.output, source.encode("utf-8"))
        sys.stdout.write(f"{args.output}: {len(source.encode()):,} bytes of decoder for {args.plan} + "
                         f"{args.compressor}; load(path) -> state dict\n")
    else:
        sys.stdout.write(source)
    return 0
