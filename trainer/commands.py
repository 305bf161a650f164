"""`pgolf data prepare` and `pgolf train`: the trainer area's subcommands.

`pgolf train --num-layers 2 --iterations 300` sets NUM_LAYERS=2 ITERATIONS=300 and runs
trainer/train_gpt.py (through torchrun with `--nproc N`), so a flag and its environment variable
are interchangeable; the script stays the single source of truth for what they mean.
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
from pgolf.budget.report import Report
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


def run_train(args: argparse.Namespace) -> int:
    import subprocess

    env = train_env(args)
    try:
        config = Hyperparameters.from_env(env)
    except ValueError as exc:
        raise PgolfInputError(None, str(exc)) from None
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
    if done.returncode == 0 and args.json:
        print((Path(env["OUT_DIR"]) / "results.json").read_text(), end="")
    return done.returncode


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
                           type=_bool if kind is bool else kind,
                           help=f"{f.name.upper()} (default: {getattr(defaults, f.name)!r})")
    train.add_argument("--nproc", type=int, default=None, help="processes per node: runs torchrun --nproc_per_node N")
    train.add_argument("--json", action="store_true", help="print OUT_DIR/results.json at the end (no live log)")
    train.add_argument("--quiet", action="store_true", help="no console log (OUT_DIR/train.log is still written)")
    train.set_defaults(handler=run_train)
