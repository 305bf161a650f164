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

TMP_MARK = ".tmp-"


def temp_name_for(path: str | os.PathLike) -> Path:
    """A temp path next to `path` that no glob for real outputs matches (leading dot, marker)."""
    p = Path(path)
    return p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_litter(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return name.startswith(".") and TMP_MARK in name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path` in one rename."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_for(final)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
