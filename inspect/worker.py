"""A rank of `pgolf gaps --nproc N` started by `distributed.launch`: `python -m pgolf.inspect.worker`.

It lives apart from `distributed` because it calls the command handlers, which use `distributed`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from pgolf.budget.errors import PgolfInputError
from pgolf.inspect import commands
from pgolf.inspect.distributed import WORKER_ARGS


def worker_main() -> int:
    """The same command as rank 0, stdout discarded, errors as one line."""
    payload = json.loads(os.environ[WORKER_ARGS])
    handler = getattr(commands, payload.pop("handler_name"))
    args = argparse.Namespace(**payload)
    args.quiet = True
    try:
        return int(handler(args) or 0)
    except PgolfInputError as exc:
        print(f"pgolf: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(worker_main())
