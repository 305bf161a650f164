"""The `pgolf` command: one subcommand per capability, each registered by its own area.

Each area's `commands.py` has `register(subparsers)` adding its subcommands; a subcommand's
handler takes the parsed args and returns an exit code. Bad input (`PgolfInputError`) becomes
one line on stderr and exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading

from pgolf.budget.errors import EXIT_BAD_INPUT, PgolfInputError

# Lowest layer first; figures (this area) is the top and may call into all of them.
COMMAND_MODULES = (
    "pgolf.budget.commands",
    "pgolf.budget.predict_commands",
    "pgolf.budget.squeeze_commands",
    "pgolf.trainer.commands",
    "pgolf.inspect.commands",
    "pgolf.inspect.audit_commands",
    "pgolf.figures.commands",
    "pgolf.figures.demo.commands",
)


def _load_command_modules():
    for name in COMMAND_MODULES:
        yield importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgolf",
        description="Byte budgets, quantization gaps and headroom for Parameter Golf artifacts.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _load_command_modules():
        module.register(sub)
    return parser


def _exit_now_if_busy(code: int) -> None:
    """After Ctrl-C, end the process now if worker threads are still inside uninterruptible work
    (a compressor in C): the interpreter would otherwise wait for them at exit, for minutes."""
    me = threading.current_thread()
    if any(t is not me and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # PYTHONIOENCODING=ascii and a non-ASCII path: escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(handler(args) or 0)
    except PgolfInputError as exc:
        if args.debug:
            raise
        print(f"pgolf: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("pgolf: interrupted", file=sys.stderr)
        _exit_now_if_busy(130)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
