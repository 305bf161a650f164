"""pgolf's artifact container: a small frame around a compressed payload, versioned.

Plans the official export cannot express (int6, ternary, ...) are stored in pgolf's own tensor
container; every artifact except the plain official `.ptz` (official-int8 + zlib, raw zlib of
the torch.save bytes, exactly what the baseline writes) carries the frame, so any artifact names
its compressor and can be read back without being told.

Frame (uncompressed, 8 + L bytes, then the payload)::

    offset  size  field
    0       5     magic b"PGOLF"
    5       1     frame version, 2 (version 1, an older pgolf's container with its header
                  before the data, is refused with a one-line message: rebuild the artifact)
    6       1     payload kind: 0 = pgolf tensor container, 1 = official torch.save export dict
    7       1     L, length of the compressor spec
    8       L     compressor spec, ASCII, e.g. b"brotli+byte-shuffle" (see compressors.py)
    8+L     ...   the payload compressed by that compressor, to the end of the artifact

Tensor container (payload kind 0, after decompression), V + S data bytes then an H-byte trailer::

    0       V     the values bytes (the scheme's storage) of every tensor not tied to an
                  earlier one: first those of quantized schemes (intN, ternary, binary), then
                  those of float and passthrough schemes, each in state-dict order
    V       S     their scales bytes (raw fp16/fp32), in state-dict order
    V+S     H     header, UTF-8 JSON: {"format": "pgolf-container-v2", "plan": name,
                  "fields": [...], "tensors": [[name, shape, dtype, scheme, values_bytes,
                  scales_bytes, tied_to], ...]} in state-dict order
    V+S+H   4     H, header length, uint32 little-endian (the last 4 bytes)

Layout for the compressor: block codecs adapt to what they see, so a JSON header in front of
the weights cost zstd-22 2.7 % on a 17 M-parameter int6 model (it trails now), and short runs of
other data between quantized tensors (scales, fp32 control tensors) cost it up to 5 % more
(measured: 8 KB of fp32 controls between an int8 embedding and int6 matrices, +84 KB). All
multi-byte numbers are little-endian. A tied tensor (same storage as an earlier one) has no
data: it is restored from the tensor named in `tied_to`.

>>> blob = frame(KIND_CONTAINER, "zstd", b"...")
>>> blob[:8], parse_frame(blob)
(b'PGOLF\\x02\\x00\\x04', (0, 'zstd', b'...'))
"""
from __future__ import annotations

import json
import struct
from typing import NamedTuple

import torch

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.schemes import get_scheme

MAGIC = b"PGOLF"
FRAME_VERSION = 2
KIND_CONTAINER = 0
KIND_TORCH_EXPORT = 1
CONTAINER_FORMAT = "pgolf-container-v2"
FIELDS = ("name", "shape", "dtype", "scheme", "values_bytes", "scales_bytes", "tied_to")
MAX_HEADER_BYTES = 64 * 1_000_000
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn, torch.int8, torch.uint8,
    torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128)}


class Record(NamedTuple):
    """One tensor of the container: its header fields and (when not tied) its bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    scheme: str
    values: bytes
    scales: bytes
    tied_to: str | None


def is_artifact(data: bytes) -> bool:
    """True when `data` starts with pgolf's frame (any version; parse_frame checks the rest)."""
    return bytes(data[:5]) == MAGIC


def frame(kind: int, compressor: str, payload: bytes) -> bytes:
    return frame_header(kind, compressor) + payload


def frame_header(kind: int, compressor: str) -> bytes:
    spec = compressor.encode("ascii")
    if len(spec) > 255:
        raise ValueError(f"compressor spec longer than 255 bytes: {compressor[:40]}...")
    return MAGIC + bytes((FRAME_VERSION, kind, len(spec))) + spec


def parse_frame(blob: bytes) -> tuple[int, str, bytes]:
    """(payload kind, compressor spec, compressed payload); ValueError on a bad frame."""
    if not is_artifact(blob):
        raise ValueError("not a pgolf artifact (no PGOLF magic)")
    if len(blob) < 8:
        raise ValueError(f"truncated pgolf frame ({len(blob)} bytes)")
    version, kind, n = blob[5], blob[6], blob[7]
    if version == 1:
        raise ValueError("pgolf frame version 1 (an older pgolf's layout, header before the data) is no longer "
                         f"read; rebuild the artifact with this pgolf (frame version {FRAME_VERSION})")
    if version != FRAME_VERSION:
        raise ValueError(f"pgolf frame version {version} is not supported (this pgolf reads version {FRAME_VERSION})")
    if kind not in (KIND_CONTAINER, KIND_TORCH_EXPORT):
        raise ValueError(f"unknown pgolf payload kind {kind}")
    if len(blob) < 8 + n:
        raise ValueError("truncated pgolf frame: compressor spec cut off")
    try:
        spec = bytes(blob[8:8 + n]).decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("pgolf frame: compressor spec is not ASCII") from None
    return kind, spec, bytes(blob[8 + n:])


def header_row(name: str, shape, dtype: torch.dtype, scheme: str, values_bytes: int, scales_bytes: int,
               tied_to: str | None) -> list:
    """One header entry, in FIELDS order."""
    return [name, list(shape), str(dtype).removeprefix("torch."), scheme, values_bytes, scales_bytes, tied_to]


def encode_trailer(rows: list[list], plan: str) -> bytes:
    """The JSON header and its 4-byte length, written after the data (sizes come from the rows)."""
    text = json.dumps({"format": CONTAINER_FORMAT, "plan": plan, "fields": list(FIELDS), "tensors": rows},
                      separators=(",", ":"))
    head = text.encode("utf-8")
    return head + struct.pack("<I", len(head))


def _header(raw: bytes) -> tuple[dict, int]:
    """(parsed JSON header, length D of the data section before it); ValueError if it is not a v2 trailer."""
    if len(raw) < 4:
        raise ValueError("truncated pgolf container: no header length")
    (n,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if n > min(MAX_HEADER_BYTES, len(raw) - 4):
        raise ValueError(f"pgolf container header length {n:,} exceeds the data ({len(raw) - 4:,} bytes)")
    end = len(raw) - 4 - n
    try:
        head = json.loads(raw[end:len(raw) - 4].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"pgolf container header is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(head, dict) or head.get("format") != CONTAINER_FORMAT:
        got = head.get("format") if isinstance(head, dict) else type(head).__name__
        raise ValueError(f"pgolf container format is {got!r}, expected {CONTAINER_FORMAT!r}")
    if head.get("fields") != list(FIELDS) or not isinstance(head.get("tensors"), list):
        raise ValueError("pgolf container header lacks the v2 fields/tensors lists")
    if not isinstance(head.get("plan"), str):
        raise ValueError("pgolf container header has no plan name")
    return head, end


def plan_name(raw: bytes) -> str:
    """The plan name a decompressed container records."""
    return _header(raw)[0]["plan"]


def decode(raw: bytes) -> list[Record]:
    """Records of a decompressed container; ValueError naming the first inconsistency."""
    head, end = _header(raw)
    rows, seen = [], {}
    for row in head["tensors"]:  # every row checked before any byte is read
        rec, nv, ns = _check_row(row, seen)
        seen[rec.name] = rec
        rows.append((rec, nv, ns))
    values_total = sum(nv for _, nv, _ in rows)
    total = values_total + sum(ns for _, _, ns in rows)
    if total > end:
        raise ValueError(f"pgolf container data cut off: the header lists {total:,} bytes of tensor data, "
                         f"{end:,} are there")
    if total < end:
        raise ValueError(f"pgolf container has {end - total:,} bytes between the last tensor and the header")
    data, starts, pos = memoryview(raw), {}, 0
    for quantized in (True, False):  # values: quantized schemes first, then the rest, in row order
        for rec, nv, _ in rows:
            if rec.tied_to is None and (get_scheme(rec.scheme).kind == "quantized") == quantized:
                starts[rec.name] = pos
                pos += nv
    records, spos = [], values_total
    for rec, nv, ns in rows:
        if rec.tied_to is None:
            vpos = starts[rec.name]
            rec = rec._replace(values=bytes(data[vpos:vpos + nv]), scales=bytes(data[spos:spos + ns]))
            spos += ns
        records.append(rec)
    return records


def _check_row(row, seen: dict) -> tuple[Record, int, int]:
    """(record without its bytes, values bytes, scales bytes) of one header row, checked."""
    if not (isinstance(row, list) and len(row) == len(FIELDS)):
        raise ValueError(f"pgolf container tensor entry is not a {len(FIELDS)}-field list")
    name, shape, dtype_name, spec, nv, ns, tied = row
    if not isinstance(name, str) or name in seen:
        raise ValueError(f"pgolf container tensor name {str(name)[:60]!r} is not a new string")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ValueError(f"tensor {name!r}: shape {str(shape)[:60]} is not a list of sizes")
    if dtype_name not in DTYPES:
        raise ValueError(f"tensor {name!r}: dtype {str(dtype_name)[:30]!r} is not one of {', '.join(DTYPES)}")
    if not isinstance(spec, str):
        raise ValueError(f"tensor {name!r}: scheme is not a string")
    try:
        scheme = get_scheme(spec)
    except PgolfInputError as exc:
        raise ValueError(f"tensor {name!r}: {exc.problem}") from None
    dtype = DTYPES[dtype_name]
    if tied is not None:
        src = seen.get(tied)
        if src is None or src.shape != tuple(shape) or src.dtype != dtype:
            raise ValueError(f"tensor {name!r} is tied to {str(tied)[:60]!r}, which is no earlier tensor of its shape")
        return Record(name, tuple(shape), dtype, src.scheme, b"", b"", tied), 0, 0
    want = scheme.payload_bytes(tuple(shape), dtype)
    if [nv, ns] != list(want):
        raise ValueError(f"tensor {name!r}: {spec} {tuple(shape)} takes {want[0]:,}+{want[1]:,} bytes, "
                         f"header says {nv}+{ns}")
    return Record(name, tuple(shape), dtype, scheme.name, b"", b"", None), want[0], want[1]
