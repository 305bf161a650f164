"""`pgolf inspect`, `pgolf gaps`, `pgolf headroom`, `pgolf allocate` on the command line.

Flags map onto the keyword arguments of `inspect_summary`, `measure_gaps`, `headroom` and
`allocate`. INPUT is anything `pgolf.budget.exact.inputs.load_input` reads; evaluations build the baseline GPT
family (architecture inferred from the tensors, or a checkpoint's sidecar), or with `--script` the
participant's own `GPT` from their train_gpt.py (`pgolf.trainer.script_model`).

    pgolf inspect final_model.int8.ptz
    pgolf gaps final_model.pt --plan int6 --tokenizer fineweb_1024_bpe.model --tokens 16384
    pgolf headroom runs/x/checkpoints --plan int6 --code train_gpt.py
    pgolf allocate runs/x/checkpoints --cap 15000000 --code train_gpt.py -o plan.json
    pgolf gaps final_model.pt --script train_gpt.py --env NUM_LAYERS=11 --device cuda
    pgolf gaps final_model.pt --target-se 0.0005 --max-tokens 1000000
"""
from __future__ import annotations

import argparse
import os
import sys

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count, positive_float
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant.plans import PRESETS


def _common(p: argparse.ArgumentParser, plan_default: str | None = "official-int8") -> None:
    p.add_argument("input", metavar="INPUT", help="checkpoint (file or folder), .pt, .safetensors, official .ptz "
                                                  "or pgolf artifact")
    if plan_default is not None:
        p.add_argument("--plan", default=plan_default,
                       help=f"preset ({', '.join(PRESETS)}), scheme (int6, fp16, ...) or plan .json "
                            f"(default {plan_default})")
    p.add_argument("--compressor", default="zlib", help="zlib | zstd | lzma | brotli | none, optional :level, "
                                                        "+byte-shuffle (default zlib)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _quantize_small_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize-small", action="store_true",
                   help="also quantize float tensors of <= 65,536 values, which plans otherwise keep as "
                        "official passthrough (control tensors stay fp32); needed for small models")


def _target_se(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tokens chosen by the error")
    g.add_argument("--target-se", type=positive_float(), metavar="BPB",
                   help="extend the slice in chunks of --tokens until the whole-model gap's standard error is at "
                        "most this (e.g. 0.0005); chunks are cached, so a rerun or a larger target resumes")
    g.add_argument("--per-tensor-se", action="store_true", help="with --target-se: every tensor's only-this gap too")
    g.add_argument("--max-tokens", type=count(), help="with --target-se: never evaluate more tokens than this")


def _split_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection and held-out report slices")
    g.add_argument("--select-tokens", type=count(), default=32_768,
                   help="choose the plan on the first N validation tokens (default 32,768)")
    g.add_argument("--report-tokens", type=count(minimum=0), default=32_768,
                   help="report the chosen plan on the next N tokens, disjoint from the selection slice "
                        "(default 32,768; 0: report on the selection slice)")


def _data(p: argparse.ArgumentParser, default_tokens: int | None = 65_536) -> None:
    g = p.add_argument_group("evaluation slice")
    g.add_argument("--data", metavar="SHARD_DIR", help="folder of official fineweb_val_*.bin shards "
                                                        "(default: the embedded default's val split)")
    g.add_argument("--tokenizer", metavar="MODEL", help="SentencePiece .model: with --data, the shards' tokenizer; "
                                                         "alone, tokenize the embedded default's val text with it")
    if default_tokens is not None:
        g.add_argument("--tokens", type=count(), default=default_tokens,
                       help=f"evaluate the first N validation tokens, whole windows (default {default_tokens:,})")
    g.add_argument("--seq-len", type=count(), help="window length (default: the checkpoint's "
                                                          "train_seq_len, else 1024)")
    g.add_argument("--calib-tokens", type=count(),
                   help="tokens of the slice the gradient proxy uses (default: the whole slice, at most 16,384)")
    g.add_argument("--cache-dir", metavar="DIR", help="gap cache folder (default $PGOLF_CACHE/gaps or "
                                                       "~/.cache/pgolf/gaps)")
    g.add_argument("--no-cache", action="store_true", help="measure without reading or writing the cache")


SCRIPT_HELP = ("build the model from this train_gpt.py: its GPT, with the constructor's arguments from its "
               "Hyperparameters (self-extracting scripts are unwrapped first). IMPORTING THE SCRIPT RUNS ITS CODE, "
               "as running it would; pgolf never imports a script you did not name here")


def _model_flags(p: argparse.ArgumentParser) -> None:
    """--script/--env/--factory/--device/--batch-tokens: the model that evaluates, and where."""
    g = p.add_argument_group("model and device")
    g.add_argument("--script", metavar="TRAIN_GPT_PY", help=SCRIPT_HELP)
    g.add_argument("--env", metavar="KEY=VALUE", action="append", nargs="+", default=[],
                   help="environment variables set while the script is imported and its model built (a record's "
                        "command line, e.g. --env NUM_LAYERS=11 MODEL_DIM=512); repeatable")
    g.add_argument("--factory", metavar="FILE.py:FUNCTION",
                   help="build the model with FUNCTION(state_dict) -> nn.Module from FILE (imported: runs its code), "
                        "for scripts pgolf cannot build; with --script it is called as FUNCTION(state_dict, module)")
    g.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (cuda when available) | cpu | cuda | cuda:N; on CUDA evaluation runs under bf16 "
                        "autocast like the official evaluation (default auto)")
    g.add_argument("--batch-tokens", type=count(), metavar="N",
                   help="tokens per evaluation batch (default 8,192)")
    g.add_argument("--max-replay-bytes", type=count(), metavar="BYTES",
                   help="most memory the cached block activations may take; above it the sweeps recompute "
                        "with full evaluations (same numbers, slower; default 8,000,000,000)")


def _nproc(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=count(), default=1,
                   help="split the per-tensor evaluations over N processes (gloo on CPU, one GPU each with "
                        "--device cuda); numbers identical to one process (default 1)")


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="summary of a model file: params, tensors, dtypes, bytes, headroom",
                              description="Open any model file, infer the baseline architecture, and report "
                                          "parameters, tensors, dtypes, bytes under its format and the headroom.")
    _common(p, plan_default=None)
    p.add_argument("--plan", help="measure bytes under this plan (default: an official .ptz as stored, "
                                  "anything else under official-int8)")
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--schemes", metavar="LIST", help="also list weight-space metrics (rel_mse, sqnr_db, ...) of "
                                                     "every float tensor under each of these schemes")
    p.set_defaults(handler=run_inspect)

    p = subparsers.add_parser("gaps", help="per-tensor quantization gaps in BPB (only-this, all-but-this, proxy)",
                              description="Evaluate the model on a fixed slice unquantized, with the plan, through "
                                          "the real artifact, and with each tensor alone quantized (only-this) or "
                                          "alone kept (all-but-this); cached and resumable.")
    _common(p)
    _quantize_small_flag(p)
    _data(p)
    _model_flags(p)
    _nproc(p)
    p.add_argument("--no-all-but-this", action="store_true", help="skip the all-but-this sweep")
    p.add_argument("--no-proxy", action="store_true", help="skip the gradient proxy")
    p.add_argument("--no-verify", action="store_true", help="skip the evaluation through the real artifact")
    _target_se(p)
    p.set_defaults(handler=run_gaps)

    p = subparsers.add_parser("headroom", help="headroom under the cap and each tensor's exchange rate",
                              description="cap - code - model bytes under the plan, and for each tensor the bytes "
                                          "and BPB of its next step up or down the precision ladder.")
    _common(p)
    _quantize_small_flag(p)
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--cap", type=count(), default=CAP_BYTES, help="artifact cap in bytes (default 16,000,000)")
    p.add_argument("--ladder", default="int4,int5,int6,int8,fp16", help="precision ladder (comma-separated schemes)")
    p.add_argument("--gaps", choices=("proxy", "measured", "none"), default="proxy",
                   help="delta_bpb from the gradient proxy (default), measured only-this gaps, or none")
    p.add_argument("--delta-bytes", choices=("whole", "alone"), default="whole",
                   help="delta_bytes by rebuilding the whole artifact (exact, default) or the tensor alone (fast)")
    _data(p)
    _model_flags(p)
    _nproc(p)
    p.set_defaults(handler=run_headroom)

    p = subparsers.add_parser("allocate", help="choose a scheme per tensor to fit the cap with the least BPB gap",
                              description="Minimise the predicted BPB gap subject to the exact compressed size "
                                          "fitting the cap; the plan is built and measured for real, repaired "
                                          "until it fits, and compared with the uniform plans.")
    _common(p, plan_default=None)
    p.add_argument("--cap", type=count(), required=True, help="artifact cap in bytes")
    p.add_argument("--code", metavar="FILE", help="training script whose bytes count toward the artifact")
    p.add_argument("--code-wrapped", action="store_true", help="count the code's lzma+base85 wrapper instead")
    p.add_argument("--candidates", default="int4,int5,int6,int8,fp16", help="schemes to choose from")
    p.add_argument("--margin", type=count(minimum=0), default=0, help="bytes to keep free below the cap")
    p.add_argument("--base", default="official-int8", help="plan for everything the allocation does not decide")
    p.add_argument("--gaps", choices=("measured", "proxy"), default="proxy",
                   help="predict gaps from the gradient proxy (default, fast) or measured only-this gaps")
    p.add_argument("-o", "--output", metavar="PLAN_JSON", help="write the plan here (pgolf-plan-v1)")
    _data(p, default_tokens=None)
    _split_flags(p)
    _model_flags(p)
    _nproc(p)
    p.set_defaults(handler=run_allocate)


def _split(text: str, flag: str) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not parts:
        raise PgolfInputError(None, f"{flag} is empty: give a comma-separated list of schemes")
    from pgolf.budget.quant.schemes import get_scheme

    for s in parts:
        get_scheme(s)
    return parts


def _print(report, as_json: bool) -> int:
    sys.stdout.write(report.to_json() + "\n" if as_json else report.to_text(max_rows=None) + "\n")
    return 0


def _slice_at(args, seq_len: int, vocab_size: int | None, tokens: int, offset: int = 0):
    from pgolf.inspect.evaluate import load_slice

    return load_slice(args.data, args.tokenizer, tokens, args.seq_len or seq_len, vocab_size, args.quiet,
                      offset=offset)


def _evaluation(args, opened, ranks=None, tokens: int | None = None):
    """(loaded model, slice, cache dir) for the opened input: the built-in baseline family, or the
    participant's model with --script/--factory, on --device; `tokens` overrides --tokens."""
    from pgolf.inspect.gaps import default_cache_dir
    from pgolf.inspect.load import load_model
    from pgolf.trainer.devices import batch_seqs_for, resolve_device

    device = args.device
    if ranks is not None and resolve_device(device).type == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', ranks.rank)}"  # one GPU per rank
    lm = load_model(args.input, script=args.script, env=[e for group in args.env for e in group],
                    factory=args.factory, device=device, opened=opened)
    sl = _slice_at(args, lm.seq_len, lm.vocab_size, tokens or args.tokens)
    lm.batch_seqs = batch_seqs_for(args.batch_tokens, sl.seq_len)
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return lm, sl, cache


def _model_notes(report, args, lm, sl, val_bpb: float) -> None:
    """Where the model came from, whether the slice suits it, whether the script counts bytes alike."""
    from pgolf.inspect import slice_checks

    report.headline.update(lm.headline())
    if lm.device.type == "cuda":  # the base reports describe the CPU run
        report.notes = [n for n in report.notes if not n.startswith("evaluated in fp32 on CPU")]
        report.notes.append(f"evaluated on {lm.device} under bf16 autocast, as the official scorer does")
    notes = lm.notes()
    notes.append(slice_checks.off_distribution_note(slice_checks.slice_loss(val_bpb, sl), lm.vocab_size))
    if lm.module is not None:
        tok = slice_checks.slice_tokenizer(args.data, args.tokenizer, quiet=True)
        counted = slice_checks.script_byte_count(lm.module, sl, tok, lm.vocab_size or 0)
        notes.append(slice_checks.byte_accounting_note(counted, sl))
    report.notes.extend(n for n in notes if n)


def _code(args):
    """--code, else the --script itself: its shipped bytes count toward the artifact."""
    return args.code or getattr(args, "script", None)


def _next_chunk(args, lm, first):
    """Chunk k of the --target-se extension: the next --tokens after k chunks (None past the data)."""
    def chunk(k: int):
        try:
            sl = _slice_at(args, first.seq_len, lm.vocab_size, first.n_tokens, offset=first.offset + k * first.n_tokens)
        except PgolfInputError:
            return None
        return sl if sl.n_tokens == first.n_tokens else None
    return chunk


def _plan(args):
    from pgolf.budget.quant.plans import resolve_plan
    from pgolf.budget.quant.plans import quantize_small

    plan = resolve_plan(args.plan)
    return quantize_small(plan) if getattr(args, "quantize_small", False) else plan


def run_inspect(args) -> int:
    from pgolf.inspect.load import open_model
    from pgolf.inspect.load import inspect_summary

    opened = open_model(args.input)
    schemes = _split(args.schemes, "--schemes") if args.schemes else None
    report = inspect_summary(opened, plan=args.plan, compressor=args.compressor, code=args.code, cap=args.cap,
                             schemes=schemes, quiet=args.quiet)
    return _print(report, args.json)


def _ranked(args, opened, plan, evaluate):
    """Run `evaluate(ranks) -> (report, lm, sl)` on --nproc processes: rank 0 is this one and gets
    the report (with `nproc` in its headline); another rank gets None, its work merged into rank 0's.
    Only measured gaps are split: with --gaps proxy or none one process runs, and the report says so."""
    from pgolf.budget.exact.build import fake_quantize
    from pgolf.inspect import distributed
    from pgolf.inspect.gaps import changed_tensors

    asked = getattr(args, "nproc", 1) or 1
    gaps = getattr(args, "gaps", "measured")
    nproc = asked if gaps == "measured" else 1
    if nproc > 1:  # before any process starts
        sd = opened.state_dict
        distributed.check_nproc(nproc, len(changed_tensors(sd, fake_quantize(sd, plan))), args.input)
    ranks = distributed.launch(args, nproc)
    ok = False
    try:
        report, lm, sl = evaluate(ranks)
        ok = True
    finally:
        distributed.finish(ranks, ok)
    if ranks is not None:
        if ranks.rank != 0:
            return None
        report.headline["nproc"] = ranks.world
    if asked > nproc:
        report.notes.append(f"--nproc {asked} splits measured gaps only; with --gaps {gaps} one process ran")
    return report, lm, sl


def run_gaps(args) -> int:
    from pgolf.inspect import distributed
    from pgolf.inspect.gaps import measure_gaps
    from pgolf.inspect.load import open_model

    plan = _plan(args)
    opened = open_model(args.input)

    def evaluate(ranks):
        lm, sl, cache = _evaluation(args, opened, ranks)
        distributed.join(ranks, lm.device)
        report = measure_gaps(lm.model, plan, sl, sd=lm.state_dict, compressor=args.compressor,
                              all_but_this=not args.no_all_but_this, proxy=not args.no_proxy,
                              verify=not args.no_verify, cache_dir=cache, quiet=args.quiet,
                              calib_tokens=args.calib_tokens, source=str(args.input), batch_seqs=lm.batch_seqs,
                              max_replay_bytes=args.max_replay_bytes, target_se=args.target_se,
                              per_tensor_se=args.per_tensor_se, next_chunk=_next_chunk(args, lm, sl),
                              max_tokens=args.max_tokens)
        return report, lm, sl

    done = _ranked(args, opened, plan, evaluate)
    if done is None:
        return 0
    report, lm, sl = done
    _model_notes(report, args, lm, sl, report.headline["val_bpb_full"])
    return _print(report, args.json)


def run_headroom(args) -> int:
    from pgolf.inspect import distributed
    from pgolf.inspect.headroom import GapOracle, headroom
    from pgolf.inspect.load import open_model

    plan, ladder = _plan(args), _split(args.ladder, "--ladder")
    opened = open_model(args.input)

    def evaluate(ranks):
        oracle, sd, lm, sl = None, opened.state_dict, None, None
        if args.gaps != "none":
            lm, sl, cache = _evaluation(args, opened, ranks)
            distributed.join(ranks, lm.device)
            sd = lm.state_dict
            oracle = GapOracle(lm.model, sd, sl, args.gaps, cache, args.quiet, args.calib_tokens, lm.batch_seqs,
                               args.max_replay_bytes)
        report = headroom(sd, plan, compressor=args.compressor, code=_code(args), cap=args.cap,
                          oracle=oracle, ladder=ladder, delta_bytes=args.delta_bytes,
                          quiet=args.quiet, source=str(args.input))
        return report, lm, (sl, oracle)

    done = _ranked(args, opened, plan, evaluate)
    if done is None:
        return 0
    report, lm, (sl, oracle) = done
    if lm is not None:
        _model_notes(report, args, lm, sl, oracle.reference_bpb)
    return _print(report, args.json)


def run_allocate(args) -> int:
    from pgolf.inspect import distributed
    from pgolf.inspect.allocate import CapTooSmall, allocate
    from pgolf.inspect.headroom import GapOracle
    from pgolf.inspect.load import open_model

    from pgolf.budget.quant.plans import resolve_plan
    from pgolf.inspect.gaps import GapSweep

    candidates, base = _split(args.candidates, "--candidates"), resolve_plan(args.base)
    opened = open_model(args.input)

    def evaluate(ranks):
        lm, sl, cache = _evaluation(args, opened, ranks, tokens=args.select_tokens)
        distributed.join(ranks, lm.device)
        held = None
        if args.report_tokens:
            held_slice = _slice_at(args, sl.seq_len, lm.vocab_size, args.report_tokens, offset=sl.offset + sl.n_tokens)
            held = GapSweep(lm.model, lm.state_dict, held_slice, cache, args.quiet, lm.batch_seqs,
                            args.max_replay_bytes)
        oracle = GapOracle(lm.model, lm.state_dict, sl, args.gaps, cache, args.quiet, args.calib_tokens,
                           lm.batch_seqs, args.max_replay_bytes)
        try:
            report = allocate(lm.state_dict, args.cap, oracle=oracle, code=_code(args),
                              code_wrapped=args.code_wrapped, candidates=candidates, margin=args.margin,
                              report=held, compressor=args.compressor, base=base, quiet=args.quiet,
                              source=str(args.input))
        except CapTooSmall as exc:  # the API's message names no flag; here the flags are ours to advise
            raise PgolfInputError(None, f"{exc.problem}; raise --cap, lower --margin, or add a smaller scheme "
                                        f"(int3, int2, ternary) to --candidates") from None
        return report, lm, (sl, oracle)

    done = _ranked(args, opened, base, evaluate)
    if done is None:
        return 0
    report, lm, (sl, oracle) = done
    if args.output:
        report.plan.save(args.output)
        report.notes.append(f"plan written to {args.output}")
    _model_notes(report, args, lm, sl, oracle.reference_bpb)
    return _print(report, args.json)
