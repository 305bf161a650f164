"""Conditional order-0 ANS: one table per class of rows or columns of an int8 symbol matrix.

Classes: rows (axis 0) or columns (axis 1) ranked by mean |q| and cut into `groups` equal-count
classes; the labels are stored at ceil(log2 groups) bits each, then one `entropy.encode` stream
per class (its table counted). `decode_grouped(blob, shape)` inverts it bit for bit.

>>> import numpy as np
>>> q = np.repeat(np.array([[0, 1, 0, -1], [9, -9, 7, -7]], np.int8), 50, axis=0)
>>> blob = encode_grouped(q, 0, 2)
>>> bool((decode_grouped(blob, q.shape) == q).all()), len(blob) < len(encode_grouped(q, 0, 1))
(True, True)
"""
from __future__ import annotations

import math
import struct

import numpy as np

from pgolf.budget.files import entropy


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
    """The int8 matrix of `encode_grouped`."""
    axis, groups = blob[0], blob[1]
    n = shape[axis]
    b = _bits(groups)
    nbytes = math.ceil(n * b / 8)
    bits = np.unpackbits(np.frombuffer(blob, np.uint8, nbytes, 2), bitorder="little")[:n * b].reshape(n, b)
    label = (bits.astype(np.int64) << np.arange(b)).sum(1) if b else np.zeros(n, np.int64)
    out = np.empty(shape, np.uint8)
    pos = 2 + nbytes
    for g in range(groups):
        (m,) = struct.unpack_from("<I", blob, pos)
        part = entropy.decode(blob[pos + 4:pos + 4 + m])
        pos += 4 + m
        if axis == 0:
            out[label == g] = part.reshape(-1, shape[1])
        else:
            out[:, label == g] = part.reshape(shape[0], -1)
    return out.view(np.int8)
