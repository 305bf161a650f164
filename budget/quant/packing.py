"""How quantized symbols are laid out in bytes: the storages a scheme can choose.

- `byte`:   one value per byte, two's-complement int8 (what the records ship).
- `packed`: N bits per value, offset to unsigned (symbol + qmax), little-endian bit stream.
- `base3`:  five trits per byte, t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4 with t = symbol + 1 (ternary).
- `bits`:   one bit per value, 1 for +1 and 0 for -1, little-endian bit order (binary).
- `raw`:    the stored dtype's own little-endian bytes (float passthrough).

Bits are primary: `storage_bytes(storage, numel, nbits)` derives the byte count and is the one
place that knows it; `pack` / `unpack` produce and check exactly that many bytes.

>>> pack(torch.tensor([-1, 0, 1, 1, -1], dtype=torch.int8), "base3", 2)   # 0 + 1*3 + 2*9 + 2*27 + 0*81
b'K'
>>> unpack(b'K', "base3", 5, 2).tolist()
[-1, 0, 1, 1, -1]
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

STORAGES: dict[str, str] = {
    "byte": "one value per byte (int8)",
    "packed": "N bits per value, bit-packed little-endian",
    "base3": "five ternary digits per byte (3^5 = 243 <= 256)",
    "bits": "one bit per value (binary)",
    "raw": "the stored float dtype's own bytes",
}
_TRIT_WEIGHTS = np.array([1, 3, 9, 27, 81], dtype=np.uint16)


def storage_bytes(storage: str, numel: int, nbits: int) -> int:
    """Bytes that `numel` symbols of `nbits` bits take in `storage` (padding included).

    >>> storage_bytes("packed", 10, 6), storage_bytes("base3", 11, 2), storage_bytes("bits", 9, 1)
    (8, 3, 2)
    """
    if storage == "byte":
        return numel
    if storage == "packed":
        return math.ceil(numel * nbits / 8)
    if storage == "base3":
        return math.ceil(numel / 5)
    if storage == "bits":
        return math.ceil(numel / 8)
    if storage == "raw":
        return numel * nbits // 8
    raise ValueError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")


def _offset(nbits: int) -> int:
    # Symmetric symbols [-(2^(N-1)-1), 2^(N-1)-1] map to [0, 2^N - 2]; binary {-1, 1} uses 1 bit.
    return (1 << (nbits - 1)) - 1 if nbits > 1 else 0


def _pack_bits(u: np.ndarray, nbits: int) -> bytes:
    """Little-endian bit stream of unsigned values < 2^nbits, 8 values per nbits bytes."""
    n = u.size
    if nbits == 8:
        return u.astype(np.uint8).tobytes()
    groups = np.zeros((math.ceil(n / 8), 8), dtype=np.uint64)
    groups.reshape(-1)[:n] = u
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(nbits)
    word = np.bitwise_or.reduce(groups << shifts, axis=1)  # 8 values -> one 8*nbits-bit word
    packed = word.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :nbits]
    return packed.reshape(-1)[: math.ceil(n * nbits / 8)].tobytes()


def _unpack_bits(data: bytes, nbits: int, n: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if nbits == 8:
        return raw.copy()
    ngroups = math.ceil(n / 8)
    padded = np.zeros(ngroups * nbits, dtype=np.uint8)
    padded[: raw.size] = raw
    words = np.zeros((ngroups, 8), dtype=np.uint8)
    words[:, :nbits] = padded.reshape(ngroups, nbits)
    word = words.view("<u8").reshape(ngroups, 1)
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(nbits)
    values = (word >> shifts) & np.uint64((1 << nbits) - 1)
    return values.reshape(-1)[:n].astype(np.uint8)


def pack(symbols: Tensor, storage: str, nbits: int) -> bytes:
    """Bytes of integer `symbols` (any shape, row-major) in `storage`; `nbits` = bits per value."""
    flat = symbols.detach().reshape(-1)
    if storage == "raw":
        return flat.contiguous().view(torch.uint8).numpy().tobytes()
    if storage == "byte" and flat.dtype == torch.int8:
        return flat.contiguous().numpy().tobytes()
    s = flat.to(torch.int16).numpy()
    if storage == "byte":
        return s.astype(np.int8).tobytes()
    if storage == "packed":
        return _pack_bits((s + _offset(nbits)).astype(np.uint8), nbits)
    if storage == "bits":
        return np.packbits(s > 0, bitorder="little").tobytes()
    if storage == "base3":  # uint8 arithmetic (242 fits): twice as fast as a uint16 matmul
        trits = np.zeros(math.ceil(s.size / 5) * 5, dtype=np.uint8)
        np.add(s, 1, out=trits[: s.size], casting="unsafe")
        trits = trits.reshape(-1, 5)
        out = trits[:, 4] * np.uint8(81)
        for k, weight in ((3, 27), (2, 9), (1, 3)):
            out += trits[:, k] * np.uint8(weight)
        out += trits[:, 0]
        return out.tobytes()
    raise ValueError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")


def unpack(data: bytes, storage: str, numel: int, nbits: int, raw_dtype: torch.dtype | None = None) -> Tensor:
    """Inverse of `pack`: int8 symbols (or `raw_dtype` values for `raw`); ValueError on bad bytes."""
    want = storage_bytes(storage, numel, nbits)
    if len(data) != want:
        raise ValueError(f"{storage} storage of {numel:,} values needs {want:,} bytes, got {len(data):,}")
    if storage == "raw":
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        return buf.view(raw_dtype)
    raw = np.frombuffer(data, dtype=np.uint8)
    if storage == "byte":
        sym = raw.view(np.int8).astype(np.int16)
    elif storage == "packed":
        sym = _unpack_bits(data, nbits, numel).astype(np.int16) - _offset(nbits)
    elif storage == "bits":
        sym = np.unpackbits(raw, bitorder="little")[:numel].astype(np.int16) * 2 - 1
    elif storage == "base3":
        if raw.size and int(raw.max()) > 242:
            raise ValueError(f"corrupt base-3 byte {int(raw.max())} (five trits fit in 0..242)")
        digits = (raw[:, None].astype(np.uint16) // _TRIT_WEIGHTS) % 3
        sym = digits.reshape(-1)[:numel].astype(np.int16) - 1
    else:
        raise ValueError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    return torch.from_numpy(sym.astype(np.int8))
