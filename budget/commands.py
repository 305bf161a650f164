"""`pgolf budget`, `pgolf compare`, `pgolf schemes`: the budget engine on the command line.

Flags map one-to-one onto `measure_budget` / `compare` keyword arguments. INPUT is any file
`exact.inputs.load_input` reads (checkpoint, .pt, .safetensors, official .ptz, pgolf artifact);
`--baseline` measures a seeded baseline-shaped model (9x512, vocab 1024) instead.

    pgolf budget --baseline
    pgolf budget final_model.int8.ptz --json
    pgolf compare final_model.pt --plans official-int8,int6 --compressors zlib,zstd,brotli+byte-shuffle
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import pandas as pd

from pgolf.budget.atomic import refuse_overwriting, write_bytes_atomic
from pgolf.budget.files.compressors import COMPRESSORS, TRANSFORM_DEFAULTS, get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant.plans import PRESETS, resolve_plan
from pgolf.budget.report_base import Report, _frame_text, _jsonable
from pgolf.budget.quant.schemes import SCHEMES


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="checkpoint, .pt state dict, .safetensors, official .ptz or pgolf artifact")
    p.add_argument("--baseline", action="store_true",
                   help="measure a seeded baseline-shaped model (9 layers x 512, vocab 1024) instead of INPUT")
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--code-wrapped", action="store_true",
                   help="count the code's lzma+base85 self-extracting wrapper instead of its raw bytes")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    p = subparsers.add_parser("budget", help="exact artifact bytes and headroom under a plan and compressor",
                              description="Quantize, build the real artifact in memory, compress it, read it back "
                                          "(bit-exact check) and report bytes per tensor and in total.")
    _add_input(p)
    p.add_argument("--plan", default=None,
                   help=f"preset ({', '.join(PRESETS)}), scheme (int6, fp16, ...) or plan .json file; default: "
                        f"an artifact's own plan, else official-int8")
    p.add_argument("--compressor", default=None,
                   help="zlib | zstd | lzma | brotli | ans | zpaq | best | none, optional :level and +byte-shuffle / +transpose; "
                        "default: an artifact's own compressor, else zlib")
    p.add_argument("--no-per-tensor", action="store_true",
                   help="skip compressing each tensor alone (faster with slow compressors)")
    p.add_argument("--write-artifact", metavar="PATH", help="also write the built artifact to PATH")
    p.add_argument("--decoder-included", action="store_true",
                   help="the --code script already reads this artifact: add no decoder bytes (found by itself "
                        "when the script holds `pgolf decoder`'s text)")
    p.add_argument("--estimate", action="store_true",
                   help="fast estimate: compress 4 disjoint draws of a ~1%% sample, scale them by the exact ratio of "
                        "entropies and report their mean with an interval from their spread (reports label each "
                        "number exact or estimated; an artifact storing at most 256 KiB is built and reported "
                        "exact); measure without it")
    p.set_defaults(handler=run_budget)

    p = subparsers.add_parser("compare", help="measure every plan x compressor pair and print the matrix",
                              description="Exact artifact bytes, bits/param and headroom for each plan x "
                                          "compressor pair, compressed in parallel over the cores.")
    _add_input(p)
    p.add_argument("--plans", default="official-int8,int6", help="comma-separated plans (presets, schemes, .json)")
    p.add_argument("--compressors", default="zlib,zstd", help="comma-separated compressors")
    p.set_defaults(handler=run_compare)

    p = subparsers.add_parser("schemes", help="list quantization schemes, plan presets and compressors",
                              description="Every scheme with its stored bits per value and what it stores; the "
                                          "plan presets; the compressors and whether they are available.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=run_schemes)


def _state_source(args):
    """(state dict, LoadedInput or None, source label) from INPUT or --baseline."""
    if args.baseline and args.input:
        raise PgolfInputError(None, "give either INPUT or --baseline, not both")
    if args.baseline:
        from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

        return synthetic_state_dict(baseline_specs(), seed=0), None, "baseline-shaped 9x512 vocab-1024 (seed 0)"
    if not args.input:
        raise PgolfInputError(None, "no INPUT given: pass a model file, or --baseline for a baseline-shaped model")
    from pgolf.budget.exact.inputs import load_input

    loaded = load_input(args.input)
    return loaded.state_dict, loaded, str(args.input)


def _with_path(exc: PgolfInputError, path) -> PgolfInputError:
    return exc if exc.path is not None or path is None else PgolfInputError(path, exc.problem)


def _print(report: Report, as_json: bool) -> None:
    sys.stdout.write(report.to_json() + "\n" if as_json else report.to_text(max_rows=None) + "\n")


def run_budget(args) -> int:
    from pgolf.budget.exact.measure import measure_budget, measure_input

    plan = None if args.plan is None else resolve_plan(args.plan)
    comp = None if args.compressor is None else get_compressor(args.compressor)
    if comp is not None:
        comp.require()
    kw = dict(code=args.code, code_wrapped=args.code_wrapped, cap=args.cap, per_tensor=not args.no_per_tensor,
              quiet=args.quiet)
    if args.code:
        from pgolf.budget.files.codebytes import code_bytes

        kw["code"] = code_bytes(args.code)
    if args.write_artifact:  # refused before any work, not after
        refuse_overwriting(args.write_artifact, args.input, args.code, args.plan if args.plan and
                           args.plan.endswith(".json") else None, what="an input file")
    sd, loaded, source = _state_source(args)
    if args.estimate:
        from pgolf.budget.forecast.estimate import estimate_budget

        if args.write_artifact:
            raise PgolfInputError(None, "--write-artifact needs a measured artifact: drop --estimate")
        state = loaded.state_dict if loaded is not None else sd
        report = estimate_budget(state, plan or "official-int8", args.compressor or "zlib", code=kw["code"],
                                 cap=args.cap, code_wrapped=args.code_wrapped, quiet=args.quiet, source=source)
        _print(report, args.json)
        return 0
    try:
        report = (measure_input(loaded, plan, comp, **kw) if loaded is not None
                  else measure_budget(sd, plan or "official-int8", comp or "zlib", source=source, **kw))
        if args.write_artifact:
            write_bytes_atomic(args.write_artifact, report.artifact)
    except PgolfInputError as exc:
        raise _with_path(exc, args.input) from None
    if args.code and not args.decoder_included:
        from pgolf.budget.files.codebytes import read_code, unwrap_source
        from pgolf.budget.exact.decoder import count_decoder

        shipped = read_code(args.code)
        inner = unwrap_source(shipped, args.code)
        count_decoder(report, inner.source if inner is not None else shipped)
    _print(report, args.json)
    return 0


def _split(text: str, what: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise PgolfInputError(None, f"--{what} is empty: give a comma-separated list")
    return list(dict.fromkeys(parts))


def run_compare(args) -> int:
    from pgolf.budget.exact.compare import compare, compare_input

    plans = [resolve_plan(p) for p in _split(args.plans, "plans")]
    comps = [get_compressor(c) for c in _split(args.compressors, "compressors")]
    for c in comps:
        c.require()
    kw = dict(code=args.code, code_wrapped=args.code_wrapped, cap=args.cap, quiet=args.quiet)
    if args.code:
        from pgolf.budget.files.codebytes import code_bytes

        kw["code"] = code_bytes(args.code)
    sd, loaded, source = _state_source(args)
    try:
        report = (compare_input(loaded, plans, comps, **kw) if loaded is not None
                  else compare(sd, plans, comps, source=source, **kw))
    except PgolfInputError as exc:
        raise _with_path(exc, args.input) from None
    _print(report, args.json)
    return 0


@dataclasses.dataclass(repr=False)
class SchemesReport(Report):
    """Schemes (the frame), plus plan presets and compressors as extra tables."""

    tables: dict = dataclasses.field(default_factory=dict)
    rows_key: str = "schemes"

    def to_dict(self) -> dict:
        out = super().to_dict()
        for key, frame in self.tables.items():
            out[key] = [_jsonable(r) for r in frame.to_dict(orient="records")]
        return out

    def to_text(self, max_rows: int | None = None) -> str:
        parts = [super().to_text(max_rows)]
        for key, frame in self.tables.items():
            parts += ["", f"{key}:", _frame_text(frame).to_string(index=False)]
        return "\n".join(parts)


def schemes_report() -> SchemesReport:
    """What `pgolf schemes` prints: every scheme, preset and compressor."""
    schemes = pd.DataFrame([{"scheme": name, "bits_per_value": s.bits, "levels": s.levels, "storage": s.storage,
                             "stores": s.stores} for name, s in SCHEMES.items()])
    presets = pd.DataFrame([{"plan": name, "default": p.default,
                             "rules": "; ".join(f"{pat} -> {spec}" for pat, spec in p.rules),
                             "description": p.description} for name, p in PRESETS.items()])
    comps = pd.DataFrame([{"compressor": name, "level": "" if c.level is None else str(c.level),
                           "available": c.available, "reason": c.reason} for name, c in COMPRESSORS.items()])
    notes = ["bits_per_value: stored bits per value, scales excluded (passthrough: the dtype's bits)",
             "variants: int6:sdclip(12.85), int5:mse:group(64):packed, int4:amax:packed, ternary:packed, binary:byte; "
             "clip rules percentile(p) amax sdclip(k) mse; group(G); storages byte packed base3 bits",
             f"compressor spec: name[:level][+transform], transforms {', '.join(TRANSFORM_DEFAULTS)} "
             f"(e.g. brotli+byte-shuffle, zstd:19, lzma:9e, zlib+transpose(1024))"]
    return SchemesReport(title="pgolf schemes", headline={}, frame=schemes, notes=notes,
                         tables={"plans": presets, "compressors": comps})


def run_schemes(args) -> int:
    report = schemes_report()
    sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n" if args.json else report.to_text() + "\n")
    return 0
