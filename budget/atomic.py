"""Atomic file output: write to a temp name in the same folder, fsync, then rename.

A reader never sees a half-written file; a writer killed at any moment leaves the previous file
intact plus, at worst, a `.<name>.tmp-<pid>-<hex>` file that no reader mistakes for output.

>>> write_bytes_atomic("plan.json", b"{}")   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from pgolf.budget.errors import PgolfInputError

TMP_MARK = ".tmp-"


def temp_name_for(path: str | os.PathLike) -> Path:
    """A temp path next to `path` that no glob for real outputs matches (leading dot, marker)."""
    p = Path(path)
    return p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_litter(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return name.startswith(".") and TMP_MARK in name


def refuse_overwriting(output: str | os.PathLike, *inputs: str | os.PathLike | None, what: str = "the input") -> None:
    """Raise when `output` is one of `inputs` (through links too): pgolf never writes over what it reads.

    >>> refuse_overwriting("a.ptz", "a.pt")
    >>> refuse_overwriting("a.pt", "./a.pt")
    Traceback (most recent call last):
    ...
    pgolf.budget.errors.PgolfInputError: a.pt: output would overwrite the input; choose another output path
    """
    out = Path(output).resolve()
    for p in inputs:
        if p is not None and Path(p).resolve() == out:
            raise PgolfInputError(output, f"output would overwrite {what}; choose another output path")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path` in one rename.

    A symbolic link is written through (its target is replaced, the link stays); a path that
    exists and is not a regular file is refused; an unwritable place is one PgolfInputError line.
    """
    final = Path(path)
    if final.is_symlink():
        final = final.resolve()
    if final.exists() and not final.is_file():
        raise PgolfInputError(path, "output path exists and is not a regular file")
    tmp = temp_name_for(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        raise PgolfInputError(path, f"cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
