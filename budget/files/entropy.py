"""Order-0 entropy coding of byte symbols: a stored frequency table plus an ANS stream.

`encode(symbols)` -> bytes holding the table (its bytes counted) and the coded stream;
`decode(blob)` inverts it. The coder is constriction's `AnsCoder` (32-bit words, 64-bit state,
24-bit precision); `decode_numpy` reads the same stream with numpy and Python integers only, the
fallback a submission can ship when constriction is not installed. Both give identical symbols.
`compress_segments` / `decompress_segments` are the `ans` compressor's stream: segments cut where
the byte statistics change, each one table + ANS stream + a CRC-32 of its bytes.

Format (little-endian): u32 n symbols; u8 k-1 (symbols present); the present symbols as k bytes
(k <= 32) or a 256-bit bitmap; k LEB128 zigzag differences of consecutive frequencies (summing to
2**TABLE_BITS; smooth histograms give one-byte differences); u32 word count; the words.

>>> import numpy as np
>>> s = np.frombuffer(b"abracadabra" * 20, np.uint8)
>>> blob = encode(s)
>>> bool((decode_numpy(blob) == s).all()), round(entropy_bits(s) / 8), len(blob)
(True, 56, 85)
"""
from __future__ import annotations

import importlib
import struct
import zlib

import numpy as np

try:
    _cs = importlib.import_module("constriction")
    CONSTRICTION_REASON = ""
except ImportError as exc:  # listed as unavailable with the reason, never a crash
    _cs = None
    CONSTRICTION_REASON = f"python package 'constriction' is not importable ({exc}); pip install constriction"

ANS_BLOCK = 1 << 16  # segments of the `ans` compressor start as blocks of this many bytes
PRECISION = 24   # constriction's default model precision (AnsCoder: u32 words, u64 state)
TABLE_BITS = 16  # frequencies are quantized to 1/2**16 before scaling to 2**24: shorter tables


def counts(symbols: np.ndarray) -> np.ndarray:
    """256 counts of uint8 symbols."""
    return np.bincount(np.asarray(symbols, np.uint8).reshape(-1), minlength=256)


def entropy_bits(symbols_or_counts: np.ndarray) -> float:
    """Order-0 floor in bits: n * H(p) of the empirical distribution (float64).

    >>> entropy_bits(np.array([0, 0, 1, 1], np.uint8))
    4.0
    """
    c = np.asarray(symbols_or_counts)
    c = c if c.ndim == 1 and c.size == 256 and c.dtype.kind in "iu" and c.dtype != np.uint8 else counts(c)
    c = c[c > 0].astype(np.float64)
    n = c.sum()
    return float(-(c * np.log2(c / n)).sum()) if n else 0.0


def quantize_table(c: np.ndarray, bits: int = TABLE_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(present symbols, frequencies >= 1 summing to 2**bits) from 256 counts.

    >>> quantize_table(np.bincount([1, 1, 1, 7], minlength=256), 4)
    (array([1, 7], dtype=uint8), array([12,  4]))
    """
    present = np.flatnonzero(c).astype(np.uint8)
    total = 1 << bits
    if present.size == 0:
        return present, np.zeros(0, np.int64)
    cc = c[present].astype(np.float64)
    f = np.maximum(1, np.floor(cc * total / cc.sum() + 0.5)).astype(np.int64)
    while f.sum() != total:  # fix rounding on the symbols that lose least per unit moved
        diff = total - int(f.sum())
        if diff > 0:
            f[np.argmax(cc / f)] += 1
        else:
            ok = f > 1
            i = np.flatnonzero(ok)[np.argmin((cc / f)[ok])]
            f[i] -= 1
    return present, f


def _leb(values) -> bytes:
    out = bytearray()
    for v in values:
        v = int(v)
        while True:
            out.append((v & 127) | (128 if v > 127 else 0))
            v >>= 7
            if not v:
                break
    return bytes(out)


def read_leb(data: bytes, pos: int) -> tuple[int, int]:
    """One LEB128 value at `pos` and the position after it (IndexError past the end)."""
    v = shift = 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 127) << shift
        shift += 7
        if b < 128:
            return v, pos


def _table(present: np.ndarray, f: np.ndarray) -> bytes:
    k = present.size
    if k > 32:
        head = np.packbits(np.isin(np.arange(256), present).astype(np.uint8), bitorder="little").tobytes()
    else:
        head = present.tobytes()
    d = np.diff(f, prepend=0).tolist()
    return bytes([k - 1]) + head + _leb(2 * v if v >= 0 else -2 * v - 1 for v in d)


def table_bytes(c: np.ndarray) -> int:
    """Bytes the stored table of these 256 counts takes (without the n and word-count fields)."""
    present, f = quantize_table(c)
    return len(_table(present, f)) if present.size else 0


def encode(symbols: np.ndarray) -> bytes:
    """The table and ANS stream of uint8 `symbols` (constriction required)."""
    if _cs is None:
        raise RuntimeError(CONSTRICTION_REASON)
    s = np.ascontiguousarray(symbols, np.uint8).reshape(-1)
    present, f = quantize_table(counts(s))
    head = struct.pack("<I", s.size)
    if s.size == 0:
        return head
    table = _table(present, f)
    if present.size == 1:
        return head + table
    index = np.zeros(256, np.int32)
    index[present] = np.arange(present.size, dtype=np.int32)
    probs = (f << (PRECISION - TABLE_BITS)).astype(np.float64) / (1 << PRECISION)
    model = _cs.stream.model.Categorical(probs, perfect=True)
    coder = _cs.stream.stack.AnsCoder()
    coder.encode_reverse(index[s], model)
    words = coder.get_compressed()
    return head + table + struct.pack("<I", words.size) + words.astype("<u4").tobytes()


def _parse(blob: bytes):
    (n,) = struct.unpack_from("<I", blob, 0)
    if n == 0:
        return n, None, None, None
    k = blob[4] + 1
    if k > 32:
        bits = np.unpackbits(np.frombuffer(blob, np.uint8, 32, 5), bitorder="little")
        present, pos = np.flatnonzero(bits).astype(np.uint8), 37
        if present.size != k:
            raise ValueError("corrupt ans table")
    else:
        present, pos = np.frombuffer(blob, np.uint8, k, 5), 5 + k
    f, acc = [], 0
    for _ in range(k):
        v, pos = read_leb(blob, pos)
        acc += (v >> 1) ^ -(v & 1)
        f.append(acc)
    f = np.array(f, np.int64)
    if k > 1 and f.sum() != 1 << TABLE_BITS or (f < 1).any():
        raise ValueError("corrupt ans table")
    if k == 1:
        return n, present, f, np.zeros(0, np.uint32)
    (m,) = struct.unpack_from("<I", blob, pos)
    words = np.frombuffer(blob, "<u4", m, pos + 4)
    if pos + 4 + 4 * m != len(blob):
        raise ValueError("ans stream length does not match its header")
    return n, present, f, words


def decode(blob: bytes) -> np.ndarray:
    """Symbols of `encode`'s output: constriction when importable, else `decode_numpy`."""
    if _cs is None:
        return decode_numpy(blob)
    n, present, f, words = _parse(blob)
    if n == 0:
        return np.zeros(0, np.uint8)
    if present.size == 1:
        return np.full(n, present[0], np.uint8)
    probs = (f << (PRECISION - TABLE_BITS)).astype(np.float64) / (1 << PRECISION)
    coder = _cs.stream.stack.AnsCoder(np.array(words, np.uint32))
    idx = coder.decode(_cs.stream.model.Categorical(probs, perfect=True), n)
    return present[idx]


def decode_numpy(blob: bytes) -> np.ndarray:
    """`decode` with numpy and Python integers only (slow: about a microsecond per symbol)."""
    n, present, f, words = _parse(blob)
    if n == 0:
        return np.zeros(0, np.uint8)
    if present.size == 1:
        return np.full(n, present[0], np.uint8)
    shift = PRECISION - TABLE_BITS
    lookup = np.repeat(np.arange(present.size), f).tolist()
    fs = (f << shift).tolist()
    cum = (np.concatenate([[0], np.cumsum(f)[:-1]]) << shift).tolist()
    w = words.tolist()
    i = len(w)
    x, i = (w[i - 1] << 32 | w[i - 2], i - 2) if i >= 2 else (w[0] if w else 0, 0)
    out = [0] * n
    mask, low = (1 << PRECISION) - 1, 1 << 32
    for j in range(n):
        q = x & mask
        s = lookup[q >> shift]
        out[j] = s
        x = (x >> PRECISION) * fs[s] + q - cum[s]
        if x < low and i:
            i -= 1
            x = x << 32 | w[i]
    return present[np.array(out, np.int64)]


def _segment_cost(c: np.ndarray) -> float:
    k = int((c > 0).sum())
    return entropy_bits(c) / 8 + 1 + 3 * k


def ans_segments(data: bytes) -> list[int]:
    """Segment lengths for `ans`: 64 KiB blocks, each merged into the previous segment when one
    table codes both smaller (estimated: floor plus table bytes).

    >>> ans_segments(bytes(100_000) + bytes(range(256)) * 400)
    [65536, 65536, 71328]
    """
    arr = np.frombuffer(data, np.uint8)
    lengths: list[int] = []
    current = None
    for start in range(0, arr.size, ANS_BLOCK):
        block = arr[start:start + ANS_BLOCK]
        c = counts(block)
        if current is not None and _segment_cost(current + c) <= _segment_cost(current) + _segment_cost(c):
            current += c
            lengths[-1] += block.size
        else:
            current = c
            lengths.append(block.size)
    return lengths


def compress_segments(data: bytes) -> bytes:
    """u32 segment count; per segment u32 length, u32 CRC-32 of its bytes, `encode`'s stream."""
    arr = np.frombuffer(data, np.uint8)
    parts, pos = [], 0
    for n in ans_segments(data):
        blob = encode(arr[pos:pos + n])  # ANS has no check of its own: a CRC-32 per segment
        parts.append(struct.pack("<II", len(blob), zlib.crc32(arr[pos:pos + n])) + blob)
        pos += n
    return struct.pack("<I", len(parts)) + b"".join(parts)


def decompress_segments(data: bytes, limit: int) -> bytes:
    """Inverse of `compress_segments`; ValueError past `limit` bytes (checked before decoding) or if corrupt."""
    try:
        (k,) = struct.unpack_from("<I", data, 0)
        pos, blobs, total = 4, [], 0
        for _ in range(k):
            m, crc = struct.unpack_from("<II", data, pos)
            blob = data[pos + 8:pos + 8 + m]
            if len(blob) != m:
                raise ValueError("truncated ans stream")
            total += struct.unpack_from("<I", blob, 0)[0]
            if total > limit:
                raise ValueError(f"decompressed size exceeds limit of {limit} bytes")
            blobs.append((blob, crc))
            pos += 8 + m
    except struct.error:
        raise ValueError("truncated ans stream") from None
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the ans stream")
    out = []
    for blob, crc in blobs:
        try:
            part = decode(blob).tobytes()
        except (IndexError, struct.error, ValueError) as exc:
            raise ValueError(f"corrupt ans stream ({exc if isinstance(exc, ValueError) else type(exc).__name__})") from None
        if zlib.crc32(part) != crc:
            raise ValueError("corrupt ans stream (CRC-32 mismatch)")
        out.append(part)
    return b"".join(out)
