"""Code bytes: the script's own length, and the length of a self-extracting lzma+base85 wrapper.

The challenge counts the UTF-8 bytes of the training script. Late records ship the script as a
one-line wrapper that decompresses and executes itself; `wrap_source` builds exactly such a
wrapper (lzma preset 9|extreme in the compact .lzma "alone" format, base85 in a string
literal; base85's alphabet has no quote or backslash), and tests run it.

>>> src = b"print('hello from inside')\\n" * 40
>>> sizes = code_sizes(src)
>>> sizes["raw"], sizes["wrapped"] < sizes["raw"]
(1080, True)
"""
from __future__ import annotations

import base64
import lzma
import os
from pathlib import Path

from pgolf.budget.errors import PgolfInputError

MAX_CODE_BYTES = 100_000_000
_FILTERS = [{"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME}]


def wrap_source(source: bytes) -> str:
    """Python source that runs `source`: exec(lzma.decompress(base64.b85decode("...")))."""
    packed = lzma.compress(source, format=lzma.FORMAT_ALONE, filters=_FILTERS)
    text = base64.b85encode(packed).decode("ascii")
    return f'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{text}")))\n'


def code_sizes(source: bytes) -> dict[str, int]:
    """{"raw": UTF-8 bytes of the source, "wrapped": bytes of its self-extracting wrapper}."""
    return {"raw": len(source), "wrapped": len(wrap_source(source).encode("ascii"))}


def read_code(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise PgolfInputError(p, "code path is not a file")
        if size > MAX_CODE_BYTES:
            raise PgolfInputError(p, f"code file is {size:,} bytes; over the {MAX_CODE_BYTES:,}-byte reading limit")
        data = p.read_bytes()
    except OSError as exc:
        raise PgolfInputError(p, f"cannot read code file ({exc.strerror or exc})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PgolfInputError(p, f"code file is not UTF-8 text (byte {exc.start})") from None
    return data


def code_bytes(path: str | os.PathLike) -> dict[str, int]:
    """code_sizes of a file: {"raw": ..., "wrapped": ...}."""
    return code_sizes(read_code(path))
