"""One exception type for bad input: it names the file and the problem in one line.

>>> str(PgolfInputError("model.ptz", "truncated zlib stream"))
'model.ptz: truncated zlib stream'

The CLI turns it into that line on stderr and exit code 2; every reader raises it instead of
letting a library's own exception (pickle, zlib, safetensors) escape with a traceback.
"""
from __future__ import annotations

import os

EXIT_BAD_INPUT = 2


class PgolfInputError(Exception):
    """Bad input from the user: a file, a flag value or a plan that pgolf cannot use."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")
