"""Untrusted bytes to Python objects, bounded and one-line on failure: torch.load and zlib.

`torch_load_bytes` only ever runs torch.load(weights_only=True, map_location="cpu"), after checking
a zip's structure, CRC-32s and unpacked size; `decompress_zlib_bounded` refuses a stream whose output
would pass the limit (DEFAULT_LIMIT, or env PGOLF_MAX_DECOMPRESSED) before holding it in memory.

>>> resolve_limit(1000)
1000
"""
from __future__ import annotations

import io
import re
import struct
import warnings
import zipfile
import zlib

import torch

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.validate import env_int, one_line
from pgolf.budget.glossary import CAP_BYTES

DEFAULT_LIMIT = 64 * CAP_BYTES  # 1.024 GB: far above any real artifact, far below a bomb
LIMIT_ENV = "PGOLF_MAX_DECOMPRESSED"
_CHUNK = 1 << 20  # inflate 1 MB at a time when measuring a zlib stream


def resolve_limit(max_decompressed_bytes: int | None) -> int:
    if max_decompressed_bytes is None:
        return env_int(LIMIT_ENV, DEFAULT_LIMIT)
    if int(max_decompressed_bytes) <= 0:
        raise PgolfInputError(None, f"max_decompressed_bytes must be positive, got {max_decompressed_bytes}") from None
    return int(max_decompressed_bytes)


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def is_pickle(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def decompress_zlib_bounded(data: bytes, limit: int, path=None) -> bytes:
    """Inflate a zlib stream, refusing it once the output would pass `limit` bytes.

    A first pass inflates 1 MB at a time and keeps nothing, so a bomb costs time, not memory;
    only a stream known to fit is then inflated into memory.

    >>> decompress_zlib_bounded(zlib.compress(b"x" * 10), limit=100)
    b'xxxxxxxxxx'
    """
    d = zlib.decompressobj()
    total, pending = 0, data
    try:
        while pending and not d.eof:
            total += len(d.decompress(pending, _CHUNK))
            if total > limit:
                raise PgolfInputError(path, f"decompressed size exceeds {limit:,} bytes (decompression bomb? "
                                            f"raise the limit with {LIMIT_ENV})") from None
            pending = d.unconsumed_tail
        if not d.eof:
            total += len(d.flush())
    except zlib.error as exc:
        raise PgolfInputError(path, f"corrupt zlib stream ({one_line(exc)})") from None
    if not d.eof:
        raise PgolfInputError(path, f"truncated zlib stream (ends after {total:,} decompressed bytes)") from None
    if d.unused_data:
        raise PgolfInputError(path, f"{len(d.unused_data):,} unexpected bytes after the end of the zlib stream") from None
    return zlib.decompress(data, bufsize=max(total, 1))


def _check_zip(data: bytes, path, limit: int) -> None:
    """Structure and total unpacked size of a torch zip, before torch touches it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise PgolfInputError(path, f"decompressed size exceeds {limit:,} bytes (zip entries total {total:,})") from None
            if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
                raise PgolfInputError(path, "zip archive without data.pkl: not a torch.save file") from None
            # torch does not check the CRC-32s it writes; without this a flipped bit in a weight loads silently
            bad = zf.testzip()
    except PgolfInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
            zlib.error, NotImplementedError, RuntimeError) as exc:
        raise PgolfInputError(path, f"corrupt or truncated torch zip archive ({one_line(exc, 80)})") from None
    if bad is not None:
        raise PgolfInputError(path, f"corrupt torch zip archive: CRC-32 mismatch in entry {bad[:80]!r}") from None


def _unpickle_problem(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text or "WeightsUnpickler" in text or "Unsupported" in text:
        m = re.search(r"(?:unsupported GLOBAL|Unsupported global:)\s*(?:GLOBAL\s*)?([\w.]+)", text)
        what = f"global {m.group(1)}" if m else one_line(
            next((ln for ln in text.splitlines() if "Unsupported" in ln), "a disallowed pickle opcode"), 80)
        return (f"refused to unpickle {what}: only tensors and plain containers are loaded "
                f"(weights_only=True), never code")
    if "PytorchStreamReader" in text or "zip archive" in text:
        return f"corrupt torch zip archive ({one_line(text, 100)})"
    return f"cannot load torch file: {one_line(f'{type(exc).__name__}: {text}', 160)}"


def torch_load_bytes(data: bytes, path, limit: int):
    """torch.load(weights_only=True, map_location='cpu') of in-memory bytes, errors as one line."""
    if is_zip(data):
        _check_zip(data, path, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol/storage notices would break the one-line rule
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle, zip, EOF and torch errors alike: the file is bad, say how
        raise PgolfInputError(path, _unpickle_problem(exc)) from None
