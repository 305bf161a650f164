"""The grouped integer schemes: intN (N = 2..8, four clip rules), ternary and binary.

Symbols in [-qmax, qmax] with one fp16 scale per row, or per group of G values along each row
(grouping.py holds the arithmetic). Symmetric ranges, as the records' int6/int5 exports.

>>> IntScheme(nbits=5, clip="sdclip", clip_arg=12.0, storage="packed").name
'int5:sdclip(12):packed'
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pgolf.budget.quant import official
from pgolf.budget.quant.grouping import (SCALE_DTYPE, clip_values, dequantize_groups, layout, quantize_groups,
                                   to_groups)
from pgolf.budget.quant.scheme_base import QTensor, Scheme, _num, _require_finite_float, _storage_words
from pgolf.budget.quant.packing import unpack

DEFAULT_PERCENTILE = official.CLIP_PERCENTILE
CLIP_RULES = ("percentile", "amax", "sdclip", "mse")


class _GroupedScheme(Scheme):
    """Symbols in [-qmax, qmax] with one fp16 scale per group of `group` values along each row."""

    group: int | None

    def scales_bytes(self, shape):
        rows, _, _, ngroups = layout(shape, self.group)
        return 2 * rows * ngroups

    def _unpack_scales(self, scales, shape):
        rows, _, _, ngroups = layout(shape, self.group)
        return unpack(scales, "raw", rows * ngroups, 16, SCALE_DTYPE).reshape(rows, ngroups)

    def _check_symbols(self, symbols):
        if symbols.numel() and int(symbols.abs().max()) > self.qmax:
            raise ValueError(f"{self.name} symbol outside [-{self.qmax}, {self.qmax}]")

    def _check_group_storage(self, storages: tuple[str, ...]) -> None:
        if self.group is not None and (int(self.group) != self.group or self.group < 1):
            raise ValueError(f"group size must be a positive integer, got {self.group}; write e.g. group(128)")
        if self.storage not in storages:
            raise ValueError(f"{type(self).__name__} storage must be one of {', '.join(storages)}, "
                             f"got {self.storage!r}")

    def quantize(self, t: Tensor) -> QTensor:
        _require_finite_float(t)
        shape = tuple(t.shape)
        x, rows, cols = to_groups(t.detach().cpu().float(), self.group)
        _, _, size, ngroups = layout(shape, self.group)
        symbols, scales = self._quantize_groups(x)
        q = symbols.reshape(rows, ngroups * size)[:, :cols].reshape(shape).contiguous()
        return QTensor(q, scales.reshape(rows, ngroups), shape, t.dtype, self.name)

    def dequantize(self, q: QTensor) -> Tensor:
        return dequantize_groups(q.symbols, q.scales, q.shape, self.group).to(q.dtype).contiguous()

    def _group_suffix(self, default: int | None) -> str:
        return "" if self.group == default else f":group({self.group})"


@dataclasses.dataclass(frozen=True)
class IntScheme(_GroupedScheme):
    """intN, N = 2..8: symmetric [-(2^(N-1)-1), 2^(N-1)-1] per row (or group), fp16 scales."""

    nbits: int = 6
    clip: str = "percentile"
    clip_arg: float | None = None
    group: int | None = None
    storage: str = "byte"
    floor: float | None = None  # scale >= floor / qmax, as the records' clamp_min(1/qmax) (floor 1)

    def __post_init__(self):
        if self.clip == "percentile" and self.clip_arg is None:
            object.__setattr__(self, "clip_arg", DEFAULT_PERCENTILE)
        if int(self.nbits) != self.nbits or not 2 <= self.nbits <= 8:
            raise ValueError(f"intN needs N in 2..8, got {self.nbits}; write int2 .. int8 (fp16 for more)")
        if self.clip not in CLIP_RULES:
            raise ValueError(f"unknown clip rule {self.clip!r}; write one of percentile(p), amax, sdclip(k), mse")
        if self.clip == "percentile" and not (self.clip_arg is not None and 0 < self.clip_arg <= 100):
            raise ValueError(f"percentile must be in (0, 100], got {self.clip_arg}; write e.g. percentile(99.9)")
        if self.clip == "sdclip" and not (self.clip_arg is not None and self.clip_arg > 0):
            raise ValueError(f"sdclip needs k > 0, got {self.clip_arg}; write e.g. sdclip(12.85)")
        if self.clip in ("amax", "mse") and self.clip_arg is not None:
            raise ValueError(f"clip rule {self.clip} takes no argument; write {self.clip}")
        if self.floor is not None and not self.floor > 0:
            raise ValueError(f"floor needs c > 0, got {self.floor}; write e.g. floor(1)")
        self._check_group_storage(("byte", "packed"))

    qmax = property(lambda self: (1 << (self.nbits - 1)) - 1)
    symbol_bits = property(lambda self: self.nbits)
    bits = property(lambda self: 8.0 if self.storage == "byte" else float(self.nbits))
    levels = property(lambda self: 2 * self.qmax + 1)

    @property
    def name(self) -> str:
        clip = f":{self.clip}" if self.clip_arg is None else f":{self.clip}({_num(self.clip_arg)})"
        clip = "" if (self.clip, self.clip_arg) == ("percentile", DEFAULT_PERCENTILE) else clip
        floor = "" if self.floor is None else f":floor({_num(self.floor)})"
        return (f"int{self.nbits}{clip}{floor}{self._group_suffix(None)}"
                + (":packed" if self.storage == "packed" else ""))

    @property
    def stores(self) -> str:
        clip = {"percentile": lambda: f"clip at the {_num(self.clip_arg)}th percentile of |w|",
                "amax": lambda: "clip at max |w|", "sdclip": lambda: f"clip at {_num(self.clip_arg)} std",
                "mse": lambda: "clip percentile chosen by least MSE"}[self.clip]()
        where = "per row" if self.group is None else f"per group of {self.group}"
        floor = "" if self.floor is None else f", scale at least {_num(self.floor)}/{self.qmax}"
        return (f"int{self.nbits} in [-{self.qmax}, {self.qmax}], {_storage_words(self.storage, self.nbits)}; "
                f"fp16 scale {where}, {clip}{floor}")

    def _quantize_groups(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.clip != "mse":
            return quantize_groups(x, clip_values(x, self.clip, self.clip_arg), self.qmax, floor=self.floor)
        return _best_mse(x, self.qmax, self.floor)


@dataclasses.dataclass(frozen=True)
class TernaryScheme(_GroupedScheme):
    """{-1, 0, 1} times an fp16 absmean scale per group (BitNet b1.58 style)."""

    group: int | None = 128
    storage: str = "base3"

    def __post_init__(self):
        self._check_group_storage(("base3", "packed", "byte"))

    qmax = 1
    symbol_bits = 2
    levels = 3
    bits = property(lambda self: {"base3": 1.6, "packed": 2.0, "byte": 8.0}[self.storage])
    name = property(lambda self: "ternary" + self._group_suffix(128) + ("" if self.storage == "base3" else f":{self.storage}"))
    stores = property(lambda self: f"{{-1, 0, 1}}, {_storage_words(self.storage, 2)}; fp16 absmean scale "
                      f"per group of {self.group or 'a row'}")

    def _quantize_groups(self, x):
        return quantize_groups(x, clip_values(x, "absmean", None), 1, clip_first=False)


@dataclasses.dataclass(frozen=True)
class BinaryScheme(_GroupedScheme):
    """{-1, 1} (sign, 0 -> +1) times an fp16 absmean scale per group."""

    group: int | None = 128
    storage: str = "bits"

    def __post_init__(self):
        self._check_group_storage(("bits", "byte"))

    qmax = 1
    symbol_bits = 1
    levels = 2
    bits = property(lambda self: 1.0 if self.storage == "bits" else 8.0)
    name = property(lambda self: "binary" + self._group_suffix(128) + ("" if self.storage == "bits" else ":byte"))
    stores = property(lambda self: f"{{-1, 1}}, {_storage_words(self.storage, 1)}; fp16 absmean scale "
                      f"per group of {self.group or 'a row'}")

    def _quantize_groups(self, x):
        return quantize_groups(x, clip_values(x, "absmean", None), 1, sign_only=True)


def _best_mse(x: Tensor, qmax: int, floor: float | None = None) -> tuple[Tensor, Tensor]:
    """Per group, the percentile clip (of a few) with the least squared reconstruction error."""
    best_q = best_s = best_err = None
    for p in MSE_PERCENTILES:
        q, s = quantize_groups(x, clip_values(x, "percentile", p), qmax, floor=floor)
        err = torch.nansum((x - q.float() * s.float()[:, None]) ** 2, dim=1)
        if best_err is None:
            best_q, best_s, best_err = q, s, err
            continue
        better = err < best_err
        best_q = torch.where(better[:, None], q, best_q)
        best_s, best_err = torch.where(better, s, best_s), torch.minimum(err, best_err)
    return best_q, best_s


MSE_PERCENTILES = (99.0, 99.9, 99.99, 99.999, 100.0)
