"""Scheme building blocks: the stored form of a tensor (QTensor) and the base class of every scheme.

A scheme turns a tensor into integer `symbols` (plus scales) and back; the base class owns
packing through a storage (packing.py) and `payload_bytes(shape, dtype)`, the one function that
derives bytes for (shape, scheme). Families live in schemes.py and grouped_schemes.py.

>>> QTensor(torch.zeros(2, dtype=torch.int8), None, (2,), torch.float32, "int6").shape
(2,)
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pgolf.budget.quant.packing import pack, storage_bytes, unpack

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}  # complex128: two per value


@dataclasses.dataclass(frozen=True)
class QTensor:
    """Stored form of one tensor: integer symbols before packing, scales, original shape/dtype."""

    symbols: Tensor
    scales: Tensor | None
    shape: tuple[int, ...]
    dtype: torch.dtype
    scheme: str


def _require_finite_float(t: Tensor) -> None:
    if not t.is_floating_point():
        raise ValueError(f"expects a float tensor, got {t.dtype}; non-float tensors use 'passthrough'")
    if not all_finite(t):
        raise ValueError("tensor has NaN or Inf values; quantize finite weights only")


def all_finite(t: Tensor) -> bool:
    """True when no value is NaN or +-Inf: one min/max pass (NaN propagates), no mask allocated."""
    if t.numel() == 0 or not t.is_floating_point():
        return True
    t = t.detach()
    lo, hi = torch.aminmax(t.float() if t.element_size() == 1 else t)  # float8 has no aminmax kernel
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _int_view(dtype: torch.dtype) -> torch.dtype:
    return dtype if not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool) else _INT_VIEW[dtype.itemsize]


class Scheme:
    """Shared behaviour: pack/unpack through the storage, payload bytes from the shape."""

    storage: str
    kind = "quantized"  # quantized | float | passthrough

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def bits(self) -> float:
        raise NotImplementedError

    def bits_for(self, dtype: torch.dtype) -> float:
        """Stored bits per value for a tensor of `dtype` (only passthrough depends on it)."""
        return self.bits

    def _nbits(self, dtype: torch.dtype) -> int:
        return int(self.bits_for(dtype)) if self.storage in ("raw", "byte") else self.symbol_bits

    def scales_bytes(self, shape: tuple[int, ...]) -> int:
        return 0

    def payload_bytes(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[int, int]:
        """(values_bytes, scales_bytes) for a tensor of this shape and dtype, padding included."""
        numel = math.prod(shape)
        return storage_bytes(self.storage, numel, self._nbits(dtype)), self.scales_bytes(tuple(shape))

    def pack(self, q: QTensor) -> tuple[bytes, bytes]:
        values = pack(q.symbols, self.storage, self._nbits(q.dtype))
        scales = b"" if q.scales is None else pack(q.scales, "raw", 8 * q.scales.element_size())
        return values, scales

    def unpack(self, values: bytes, scales: bytes, shape: tuple[int, ...], dtype: torch.dtype) -> QTensor:
        shape = tuple(shape)
        nv, ns = self.payload_bytes(shape, dtype)
        if (len(values), len(scales)) != (nv, ns):
            raise ValueError(f"{self.name} {shape} needs {nv:,}+{ns:,} bytes, got {len(values):,}+{len(scales):,}")
        raw_dtype = self._symbol_dtype(dtype) if self.storage == "raw" else None
        per = self._nbits(dtype) // (8 * raw_dtype.itemsize) if raw_dtype is not None else 1  # complex128: 2 int64s
        symbols = unpack(values, self.storage, per * math.prod(shape), self._nbits(dtype) // per, raw_dtype)
        symbols = symbols.reshape(shape) if per == 1 else symbols
        self._check_symbols(symbols)
        return QTensor(symbols, self._unpack_scales(scales, shape), shape, dtype, self.name)

    def _symbol_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.int8

    def _unpack_scales(self, scales: bytes, shape: tuple[int, ...]) -> Tensor | None:
        return None

    def _check_symbols(self, symbols: Tensor) -> None:
        pass


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else repr(float(x))


def _storage_words(storage: str, nbits: int) -> str:
    return {"byte": "one per byte", "packed": f"bit-packed {nbits} bits", "base3": "5 per byte (base 3)",
            "bits": "8 per byte"}[storage]
