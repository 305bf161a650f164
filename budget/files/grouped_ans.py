"""Conditional order-0 ANS: one table per class of rows or columns of an int8 symbol matrix.

Classes: rows (axis 0) or columns (axis 1) ranked by mean |q| and cut into `groups` equal-count
classes; the labels are stored at ceil(log2 groups) bits each, then one `entropy.encode` stream
per class (its table counted). `decode_grouped(blob, shape)` inverts it bit for bit.
`encode_matrix` adds the shape and a CRC-32 (a matrix blob that needs nothing else to decode);
`compress_shaped(data, matrices, axis, groups)` is the `ans:row16` / `ans:col16` compressor's
stream: the matrices at known offsets of `data` coded by class, the bytes between them by `ans`.

>>> import numpy as np
>>> q = np.repeat(np.array([[0, 1, 0, -1], [9, -9, 7, -7]], np.int8), 50, axis=0)
>>> blob = encode_grouped(q, 0, 2)
>>> bool((decode_grouped(blob, q.shape) == q).all()), len(blob) < len(encode_grouped(q, 0, 1))
(True, True)
>>> data = b"head" + q.tobytes() + b"tail"
>>> decompress_shaped(compress_shaped(data, [(4, 100, 4)], 0, 2), len(data)) == data
True
"""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from pgolf.budget.files import entropy

MAX_GROUPS = 64


def classes(sym: np.ndarray, axis: int, groups: int) -> np.ndarray:
    """Class label per row (axis 0) or column (axis 1): equal-count classes by mean |q|."""
    mag = np.abs(sym.astype(np.int16)).mean(axis=1 - axis)
    order = np.argsort(mag, kind="stable")
    label = np.empty(order.size, np.int64)
    label[order] = np.arange(order.size) * groups // max(order.size, 1)
    return label


def _bits(groups: int) -> int:
    return max(1, math.ceil(math.log2(groups))) if groups > 1 else 0


def encode_grouped(sym: np.ndarray, axis: int, groups: int) -> bytes:
    """u8 axis, u8 groups, packed labels, then per class: u32 length + entropy.encode stream."""
    label = classes(sym, axis, groups)
    b = _bits(groups)
    packed = np.packbits(((label[:, None] >> np.arange(b)) & 1).astype(np.uint8).reshape(-1),
                         bitorder="little").tobytes() if b else b""
    out = [bytes([axis, groups]), packed]
    u = sym.view(np.uint8)
    for g in range(groups):
        part = u[label == g] if axis == 0 else u[:, label == g]
        blob = entropy.encode(np.ascontiguousarray(part).reshape(-1))
        out.append(struct.pack("<I", len(blob)) + blob)
    return b"".join(out)


def decode_grouped(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The int8 matrix of `encode_grouped`; ValueError if the blob does not fit the shape."""
    axis, groups = blob[0], blob[1]
    if axis > 1 or not 1 <= groups <= MAX_GROUPS:
        raise ValueError("corrupt grouped ans header")
    n = shape[axis]
    b = _bits(groups)
    nbytes = math.ceil(n * b / 8)
    bits = np.unpackbits(np.frombuffer(blob, np.uint8, nbytes, 2), bitorder="little")[:n * b].reshape(n, b)
    label = (bits.astype(np.int64) << np.arange(b)).sum(1) if b else np.zeros(n, np.int64)
    if label.size and label.max() >= groups:
        raise ValueError("grouped ans label past its class count")
    out = np.empty(shape, np.uint8)
    pos = 2 + nbytes
    for g in range(groups):
        (m,) = struct.unpack_from("<I", blob, pos)
        part = entropy.decode(blob[pos + 4:pos + 4 + m])
        pos += 4 + m
        k = int((label == g).sum())
        if part.size != k * shape[1 - axis]:
            raise ValueError("grouped ans class does not match its labels")
        if axis == 0:
            out[label == g] = part.reshape(k, shape[1])
        else:
            out[:, label == g] = part.reshape(shape[0], k)
    if pos != len(blob):
        raise ValueError("grouped ans stream length does not match its header")
    return out.view(np.int8)


def _leb(v: int) -> bytes:
    return entropy._leb([v])


def encode_matrix(mat: np.ndarray, axis: int, groups: int) -> bytes:
    """LEB128 rows, LEB128 cols, u32 CRC-32 of the bytes, `encode_grouped`'s blob.

    >>> m = np.arange(64, dtype=np.int8).reshape(8, 8) % 5
    >>> decode_matrix(encode_matrix(m, 1, 4), 64) == m.tobytes()
    True
    """
    rows, cols = mat.shape
    return _leb(rows) + _leb(cols) + struct.pack("<I", zlib.crc32(mat.tobytes())) + encode_grouped(mat, axis, groups)


def decode_matrix(blob: bytes, limit: int) -> bytes:
    """The matrix bytes of `encode_matrix`; ValueError past `limit` bytes (checked first) or if corrupt."""
    try:
        rows, pos = entropy.read_leb(blob, 0)
        cols, pos = entropy.read_leb(blob, pos)
        if rows * cols > limit:
            raise ValueError(f"decompressed size exceeds limit of {limit} bytes")
        (crc,) = struct.unpack_from("<I", blob, pos)
        out = decode_grouped(blob[pos + 4:], (rows, cols)).tobytes()
    except (IndexError, struct.error):
        raise ValueError("truncated grouped ans stream") from None
    if zlib.crc32(out) != crc:
        raise ValueError("corrupt grouped ans stream (CRC-32 mismatch)")
    return out


def clean_matrices(matrices, size: int) -> list[tuple[int, int, int]]:
    """(offset, rows, cols) sorted, inside `size` bytes, without overlaps or empty matrices."""
    out, end = [], 0
    for off, rows, cols in sorted((int(o), int(r), int(c)) for o, r, c in matrices):
        if rows > 0 and cols > 0 and off >= end and off + rows * cols <= size:
            out.append((off, rows, cols))
            end = off + rows * cols
    return out


def compress_shaped(data: bytes, matrices, axis: int, groups: int) -> bytes:
    """u8 axis, u8 groups, u32 count; per matrix LEB128 gap (bytes since the previous matrix);
    u32 length + `ans` stream of the bytes outside the matrices; per matrix u32 length + `encode_matrix`."""
    arr = np.frombuffer(data, np.uint8)
    mats = clean_matrices(matrices, arr.size)
    head, gaps, blobs, end = [bytes([axis, groups]), struct.pack("<I", len(mats))], [], [], 0
    for off, rows, cols in mats:
        head.append(_leb(off - end))
        gaps.append(arr[end:off].tobytes())
        blob = encode_matrix(arr[off:off + rows * cols].view(np.int8).reshape(rows, cols), axis, groups)
        blobs.append(struct.pack("<I", len(blob)) + blob)
        end = off + rows * cols
    gaps.append(arr[end:].tobytes())
    rest = entropy.compress_segments(b"".join(gaps))
    return b"".join(head) + struct.pack("<I", len(rest)) + rest + b"".join(blobs)


def decompress_shaped(data: bytes, limit: int) -> bytes:
    """Inverse of `compress_shaped`; ValueError past `limit` bytes or if corrupt."""
    try:
        (k,) = struct.unpack_from("<I", data, 2)
        pos, offsets = 6, []
        for _ in range(k):
            gap, pos = entropy.read_leb(data, pos)
            offsets.append(gap)
        (m,) = struct.unpack_from("<I", data, pos)
        rest = entropy.decompress_segments(data[pos + 4:pos + 4 + m], limit)
        pos += 4 + m
        out, at, total = [], 0, len(rest)
        for gap in offsets:
            (m,) = struct.unpack_from("<I", data, pos)
            blob = data[pos + 4:pos + 4 + m]
            if len(blob) != m:
                raise ValueError("truncated grouped ans stream")
            mat = decode_matrix(blob, limit - total)
            total += len(mat)
            out += [rest[at:at + gap], mat]
            at += gap
            pos += 4 + m
    except (IndexError, struct.error):
        raise ValueError("truncated grouped ans stream") from None
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the grouped ans stream")
    if at > len(rest):
        raise ValueError("corrupt grouped ans stream (gaps longer than the data between matrices)")
    out.append(rest[at:])
    return b"".join(out)
