"""`pgolf data prepare`, `pgolf train` and `pgolf export`: the trainer area's subcommands.

`pgolf train --num-layers 2 --iterations 300` sets NUM_LAYERS=2 ITERATIONS=300 and runs
trainer/train_gpt.py (through torchrun with `--nproc N`), so a flag and its environment variable
are interchangeable; the script stays the single source of truth for what they mean.
`--plan P [--compressor C]` then also exports the final weights under that plan (plan_export.py):
OUT_DIR/final_model.<plan>.<compressor>.ptz, read back, scored, logged. `pgolf export RUN --plan P`
does the same for a finished run (or any checkpoint) without training.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import uuid
from pathlib import Path

import pandas as pd

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.flags import count, finite_float
from pgolf.budget.report_base import Report
from pgolf.trainer.corpus import prepare_default
from pgolf.trainer.train_gpt import OFFICIAL_DATA_PATH, Hyperparameters

SCRIPT = Path(__file__).with_name("train_gpt.py")


class CorpusReport(Report):
    """What `pgolf data prepare` built: where, from what, how big."""

    @classmethod
    def from_info(cls, info) -> "CorpusReport":
        m = info.manifest
        tokens = m["tokens"]["train"] + m["tokens"]["val"]
        headline = {
            "data_path": info.data_path,
            "tokenizer_path": info.tokenizer_path,
            "source": m["source"],
            "python_version": m["python_version"],
            "documents_train": m["documents"]["train"],
            "documents_val": m["documents"]["val"],
            "text_bytes": m["text_bytes"]["total"],
            "tokens_train": m["tokens"]["train"],
            "tokens_val": m["tokens"]["val"],
            "bytes_per_token": m["text_bytes"]["total"] / tokens,
            "text_sha256": m["text_sha256"],
            "tokenizer_sha256": m["tokenizer"]["sha256"],
            "tokenizer_origin": m["tokenizer"]["origin"],
        }
        frame = pd.DataFrame(m["shards"], columns=["file", "split", "documents", "tokens", "bytes", "sha256"])
        return cls(title="embedded default corpus", headline=headline, frame=frame, rows_key="shards")


def run_prepare(args: argparse.Namespace) -> int:
    info = prepare_default(cache_dir=args.out, tokenizer=args.tokenizer, quiet=args.quiet)
    report = CorpusReport.from_info(info)
    print(report.to_json() if args.json else report.to_text())
    return 0


def _bool(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected 0/1/true/false, got {text!r}")
    return value


def train_env(args: argparse.Namespace, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for train_gpt.py: flags override inherited variables, one to one.

    >>> train_env(argparse.Namespace(num_layers=2, tie_embeddings=False), {})["NUM_LAYERS"]
    '2'
    """
    env = dict(os.environ if base_env is None else base_env)
    for f in dataclasses.fields(Hyperparameters):
        value = getattr(args, f.name, None)
        if value is not None:
            env[f.name.upper()] = str(int(value)) if isinstance(value, bool) else str(value)
    return env


def _plan_and_compressor(args: argparse.Namespace):
    """Resolved up front, so a bad --plan/--compressor fails in a second, not after training."""
    from pgolf.budget.files.compressors import get_compressor
    from pgolf.budget.quant.plans import resolve_plan

    plan, comp = resolve_plan(args.plan), get_compressor(args.compressor)
    comp.require()
    return plan, comp


def _print_export(report, args: argparse.Namespace) -> None:
    print(report.to_json() if args.json else report.to_text(max_rows=None))


def run_train(args: argparse.Namespace) -> int:
    import subprocess

    plan_comp = _plan_and_compressor(args) if args.plan else None
    if args.compressor != "zlib" and not args.plan:
        raise PgolfInputError(None, "--compressor applies to the --plan export: give --plan too")
    env = train_env(args)
    try:
        config = Hyperparameters.from_env(env)
    except ValueError as exc:
        raise PgolfInputError(None, str(exc)) from None
    out_dir = Path(config.out_dir) if config.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise PgolfInputError(out_dir, "--out-dir is a file, not a folder")
    if config.resume and config.resume != "latest":
        sidecar = Path(config.resume).with_suffix(".json")
        if not sidecar.is_file() or not sidecar.with_suffix(".safetensors").is_file():
            raise PgolfInputError(config.resume, "--resume needs a checkpoint: step_NNNNNN.safetensors with its "
                                                 ".json sidecar beside it")
    if args.nproc is not None and not (1 <= args.nproc <= 8 and 8 % args.nproc == 0):
        raise PgolfInputError(None, f"--nproc {args.nproc}: must divide 8 (1, 2, 4 or 8), as in the baseline")
    if not config.data_path and not Path(OFFICIAL_DATA_PATH).is_dir():
        info = prepare_default(quiet=args.quiet)
        env["DATA_PATH"] = info.data_path
        env.setdefault("TOKENIZER_PATH", info.tokenizer_path)
    env["RUN_ID"] = config.run_id or uuid.uuid4().hex
    env["OUT_DIR"] = config.out_dir or f"runs/{env['RUN_ID']}"
    cmd = [sys.executable, str(SCRIPT)]
    if args.nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               str(SCRIPT)]
    quiet_child = args.quiet or args.json
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet_child else None, check=False)
    if done.returncode == 0 and plan_comp is not None:
        from pgolf.trainer.plan_export import export_with_plan

        report = export_with_plan(env["OUT_DIR"], *plan_comp, score=True, quiet=args.quiet or args.json)
        if not quiet_child:
            print("\n".join(report.log_lines))
    if done.returncode == 0 and args.json:
        print((Path(env["OUT_DIR"]) / "results.json").read_text(), end="")
    return done.returncode


def run_export(args: argparse.Namespace) -> int:
    from pgolf.trainer.plan_export import export_with_plan

    plan, comp = _plan_and_compressor(args)
    code = None
    if args.code:
        from pgolf.budget.files.codebytes import read_code

        code = len(read_code(args.code))
    spliced = None
    if args.emit_script:
        from pgolf.budget.files.codebytes import read_code
        from pgolf.budget.exact.decoder import decoder_source, splice_decoder
        from pgolf.trainer.plan_export import open_source

        script, sd = read_code(args.emit_script), open_source(args.input).state_dict
        splice_decoder(script, decoder_source(plan, comp, sd))  # a script that cannot take it fails before any output

        def code(artifact: bytes) -> int:  # the decoder holds only what the built artifact uses (best's codecs)
            nonlocal spliced
            spliced = splice_decoder(script, decoder_source(plan, comp, sd, artifact))
            return len(spliced)
    report = export_with_plan(args.input, plan, comp, output=args.output, score=args.score, data_path=args.data,
                              tokenizer_path=args.tokenizer, device=args.device, code_bytes=code,
                              log=not args.no_log, quiet=args.quiet, script=args.script,
                              env=[e for group in args.env for e in group], factory=args.factory)
    if spliced is not None:
        from pgolf.budget.atomic import write_bytes_atomic

        target = Path(report.headline["artifact_path"]).with_name(Path(args.emit_script).name)
        if target.resolve() == Path(args.emit_script).resolve():
            target = target.with_name(f"{target.stem}.with_decoder{target.suffix}")
        write_bytes_atomic(target, spliced)
        report.headline["script_path"] = str(target)
        report.notes.append(f"{target}: the script with the decoder spliced in, {len(spliced):,} bytes; counted "
                            f"total with the artifact {report.headline['bytes_total']:,} bytes")
    _print_export(report, args)
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="prepare training/evaluation data (the embedded default corpus)")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(handler=lambda args: data.print_help(sys.stderr) or 2)
    prep = data_sub.add_parser("prepare", help="build and cache the embedded default corpus, print its provenance",
                               description=__doc__.splitlines()[0])
    prep.add_argument("--tokenizer", metavar="MODEL", help="tokenize with this SentencePiece model instead of "
                      "training a 1024-piece BPE (e.g. the challenge's fineweb_1024_bpe.model)")
    prep.add_argument("--out", metavar="DIR", help="cache folder (default: $PGOLF_CACHE or ~/.cache/pgolf)")
    prep.add_argument("--json", action="store_true", help="print the report as JSON")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    prep.set_defaults(handler=run_prepare)

    train = subparsers.add_parser(
        "train", help="train the baseline GPT (runs trainer/train_gpt.py; flags = its environment variables)",
        description="Each flag sets the environment variable of the same name (--num-layers -> NUM_LAYERS); "
                    "unset flags keep the inherited environment, then the official defaults.")
    defaults = Hyperparameters()
    for f in dataclasses.fields(Hyperparameters):
        kind = type(f.default)
        train.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar=f.name.upper(),
                           type=_bool if kind is bool else finite_float() if kind is float else kind,
                           help=f"{f.name.upper()} (default: {getattr(defaults, f.name)!r})")
    train.add_argument("--nproc", type=count(maximum=1024), default=None, help="processes per node: runs torchrun --nproc_per_node N")
    train.add_argument("--plan", metavar="PLAN", help="also export the final weights under PLAN (preset, scheme or "
                       "plan .json) to OUT_DIR/final_model.<plan>.<compressor>.ptz, read back and scored")
    train.add_argument("--compressor", default="zlib", metavar="C", help="compressor of the --plan export "
                       "(zlib | zstd | lzma | brotli | none, optional :level/+transform; default zlib)")
    train.add_argument("--json", action="store_true", help="print OUT_DIR/results.json at the end (no live log)")
    train.add_argument("--quiet", action="store_true", help="no console log (OUT_DIR/train.log is still written)")
    train.set_defaults(handler=run_train)

    exp = subparsers.add_parser(
        "export", help="export a run's final weights under a plan: exact artifact, read back, scored, logged",
        description="Build the exact artifact of INPUT's weights under --plan and --compressor, write it "
                    "atomically (default: RUN/final_model.<plan>.<compressor>.ptz, or beside a file INPUT), read "
                    "it back from disk and score the dequantized weights on the run's validation data with "
                    "train_gpt.py's own model and val_bpb code. A run folder's train.log and results.json get "
                    "the official-style lines (Serialized model / Total submission size / final_*_roundtrip_exact).")
    exp.add_argument("input", metavar="INPUT", help="run folder (OUT_DIR of pgolf train), a checkpoint "
                     "(step_NNNNNN.safetensors/.json) or any model file pgolf reads (.pt, .safetensors, .ptz)")
    exp.add_argument("--plan", required=True, metavar="PLAN", help="preset, scheme (int6, fp16, ...) or plan .json "
                     "(e.g. from pgolf allocate)")
    exp.add_argument("--compressor", default="zlib", metavar="C", help="zlib | zstd | lzma | brotli | none, optional "
                     ":level and +byte-shuffle/+transpose (default zlib)")
    exp.add_argument("-o", "--output", metavar="FILE", help="artifact path (default: see above)")
    exp.add_argument("--score", action=argparse.BooleanOptionalAction, default=None,
                     help="evaluate val_bpb of the read-back weights (default: when INPUT carries its run config)")
    exp.add_argument("--data", metavar="DIR", help="validation shards folder (default: the run's DATA_PATH)")
    exp.add_argument("--tokenizer", metavar="MODEL", help="SentencePiece model (default: a lone .model beside --data, "
                     "else the run's TOKENIZER_PATH)")
    exp.add_argument("--device", metavar="DEVICE", help="evaluation device: auto | cpu | cuda | cuda:N "
                     "(default: the run's DEVICE; with --script, auto)")
    exp.add_argument("--script", metavar="TRAIN_GPT_PY", help="score with the participant's own GPT built from this "
                     "train_gpt.py (its Hyperparameters give the constructor's arguments; self-extracting scripts are "
                     "unwrapped). IMPORTING THE SCRIPT RUNS ITS CODE, as running it would; pgolf never imports a "
                     "script you did not name here. Its shipped bytes count as the code unless --code is given")
    exp.add_argument("--env", metavar="KEY=VALUE", action="append", nargs="+", default=[],
                     help="environment variables set while the script is imported and its model built; repeatable")
    exp.add_argument("--factory", metavar="FILE.py:FUNCTION", help="build the model with FUNCTION(state_dict) -> "
                     "nn.Module from FILE (imported: runs its code)")
    exp.add_argument("--code", metavar="FILE", help="count this script's bytes (default: the run's own code_bytes)")
    exp.add_argument("--emit-script", metavar="SCRIPT", help="also write SCRIPT with the artifact's decoder spliced in "
                     "(pgolf_load(path) -> state dict) beside the artifact; its bytes are the counted code bytes")
    exp.add_argument("--no-log", action="store_true", help="leave the run's train.log and results.json unchanged")
    exp.add_argument("--json", action="store_true", help="print the report as JSON")
    exp.add_argument("--quiet", action="store_true", help="no progress bars")
    exp.set_defaults(handler=run_export)
