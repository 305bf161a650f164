"""Quantization schemes: one frozen dataclass per family, a plain-dict registry, spec strings.

A scheme turns a float tensor into integer `symbols` (plus fp16 `scales`) and back. Bits are
primary: `.bits` is the stored bits per value (storage included, scales excluded) and
`payload_bytes(shape, dtype)` is the one function that derives bytes for (shape, scheme).
This module holds the float, passthrough and official families, the registry and the spec
parser; intN / ternary / binary live in grouped_schemes.py, the base class in scheme_base.py.

Spec strings name variants: `base[:modifier]...`, e.g. `int6`, `int6:sdclip(12.85)`,
`int5:mse:group(64):packed`, `ternary:packed`, `binary:byte`. Modifiers: clip rules
`percentile(p)` (default 99.99984, the official clip), `amax`, `sdclip(k)`, `mse`; `floor(c)` (intN:
scale at least c/qmax, the records' `clamp_min(1/qmax)` is floor(1)); `group(G)`; storages `byte`,
`packed`, `base3`, `bits`.

>>> s = get_scheme("int6:sdclip(12.85)")
>>> s.name, s.bits, s.payload_bytes((512, 512), torch.float32)
('int6:sdclip(12.85)', 8.0, (262144, 1024))
>>> get_scheme("ternary").bits
1.6
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re

import torch
from torch import Tensor

from pgolf.budget.quant import official
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.grouped_schemes import CLIP_RULES, DEFAULT_PERCENTILE, BinaryScheme, IntScheme, TernaryScheme
from pgolf.budget.quant.scheme_base import QTensor, Scheme, _int_view, _require_finite_float, all_finite
from pgolf.budget.quant.packing import unpack

__all__ = ["QTensor", "Scheme", "FloatScheme", "PassthroughScheme", "OfficialInt8Scheme", "IntScheme", "floor_scale",
           "TernaryScheme", "BinaryScheme", "FLOAT_FORMATS", "SCHEMES", "ALIASES", "get_scheme", "all_finite", "CLIP_RULES",
           "DEFAULT_PERCENTILE"]

_FLOATS = {  # name -> (stored dtype, same-size integer view for symbols, bits)
    "fp32": (torch.float32, torch.int32, 32),
    "bf16": (torch.bfloat16, torch.int16, 16),
    "fp16": (torch.float16, torch.int16, 16),
    "fp8_e4m3": (torch.float8_e4m3fn, torch.uint8, 8),
}
FLOAT_FORMATS = {dtype: name for name, (dtype, _, _) in _FLOATS.items()}  # stored dtype -> format name
_FP8_MAX = 448.0  # e4m3fn has no inf: saturate instead of producing NaN


@dataclasses.dataclass(frozen=True)
class FloatScheme(Scheme):
    """Store the values in a narrower float format, restore the original dtype on load."""

    format: str = "fp16"
    storage: str = "raw"
    kind = "float"

    def __post_init__(self):
        if self.format not in _FLOATS:
            raise ValueError(f"unknown float format {self.format!r}; write one of {', '.join(_FLOATS)}")

    name = property(lambda self: self.format)
    stored_dtype = property(lambda self: _FLOATS[self.format][0])
    bits = property(lambda self: float(_FLOATS[self.format][2]))
    levels = None  # every bit pattern of the float format: not a useful count
    stores = property(lambda self: f"values as {_FLOATS[self.format][0]}".replace("torch.", "")
                      + (" (saturating at +-448)" if self.format == "fp8_e4m3" else ""))

    def _symbol_dtype(self, dtype):
        return _FLOATS[self.format][1]

    def quantize(self, t: Tensor) -> QTensor:
        _require_finite_float(t)
        target, view, _ = _FLOATS[self.format]
        src = t.detach().cpu()
        if self.format == "fp8_e4m3":
            src = src.float().clamp(-_FP8_MAX, _FP8_MAX)
        stored = src.to(target).contiguous()
        if self.format != "fp8_e4m3" and not all_finite(stored):  # finite in, inf out (fp16: > 65,504)
            over = int((~torch.isfinite(stored)).sum())
            raise ValueError(f"{over:,} value{'s' if over != 1 else ''} beyond {self.format}'s range (max |w| = {float(src.abs().max()):.6g}) "
                             f"would be stored as inf and the artifact would not score; keep this tensor in a wider "
                             f"format (a plan rule with fp32 or bf16)")
        return QTensor(stored.view(view), None, tuple(t.shape), t.dtype, self.name)

    def dequantize(self, q: QTensor) -> Tensor:
        return q.symbols.view(_FLOATS[self.format][0]).to(q.dtype).reshape(q.shape).contiguous()

    def stored_tensor(self, q: QTensor) -> Tensor:
        return q.symbols.view(_FLOATS[self.format][0])


@dataclasses.dataclass(frozen=True)
class PassthroughScheme(Scheme):
    """Keep the tensor exactly as it is, any dtype (what the official rule does for non-floats)."""

    storage: str = "raw"
    kind = "passthrough"
    name = "passthrough"
    bits = float("nan")
    levels = None
    stores = "the tensor unchanged, in its own dtype"

    def bits_for(self, dtype):
        return float(8 * dtype.itemsize)

    def _symbol_dtype(self, dtype):
        return _int_view(dtype)

    def quantize(self, t: Tensor) -> QTensor:
        if t.dtype == torch.complex32:
            raise ValueError("complex32 is experimental in torch (no equality or NaN check to verify it "
                             "by): save it as complex64")
        if t.is_floating_point():
            _require_finite_float(t)
        src = t.detach().cpu().contiguous()
        if src.ndim == 0 and t.dtype.itemsize != _int_view(t.dtype).itemsize:  # 0-d complex128: view needs a dim
            src = src.reshape(1)
        return QTensor(src.view(_int_view(t.dtype)), None, tuple(t.shape), t.dtype, self.name)

    def dequantize(self, q: QTensor) -> Tensor:
        return q.symbols.view(q.dtype).reshape(q.shape).contiguous()

    def stored_tensor(self, q: QTensor) -> Tensor:
        return q.symbols.view(q.dtype).reshape(q.shape)


@dataclasses.dataclass(frozen=True)
class OfficialInt8Scheme(Scheme):
    """The baseline's int8_clean_per_row_v1 (reuses quant/official.py, bit-exact)."""

    storage: str = "byte"
    name = official.FORMAT_TAG
    bits = 8.0
    symbol_bits = 8
    levels = 255
    stores = "int8 in [-127, 127], fp16 scale per row (clip p99.99984, scale floor 1/127); 0-d fp32 scale if not 2-D"

    def scales_bytes(self, shape):
        return 2 * shape[0] if len(shape) == 2 else 4

    def quantize(self, t: Tensor) -> QTensor:
        _require_finite_float(t)
        q, s = official.quantize_float_tensor(t.detach().cpu())
        if not all_finite(s):  # clip / 127 beyond fp16's 65,504: the official export would store inf
            raise ValueError(f"a row scale beyond fp16's range (max |w| = {float(t.abs().max()):.6g}): the official "
                             f"export would store inf and score NaN; clip the weights or keep this tensor in fp32")
        return QTensor(q, s, tuple(t.shape), t.dtype, self.name)

    def dequantize(self, q: QTensor) -> Tensor:
        """official.dequantize_state_dict_int8 of a one-tensor export."""
        export = {"quantized": {"t": q.symbols.reshape(q.shape)}, "scales": {"t": q.scales},
                  "dtypes": {"t": str(q.dtype).removeprefix("torch.")}, "passthrough": {}}
        return official.dequantize_state_dict_int8(export)["t"]

    def _unpack_scales(self, scales, shape):
        if len(shape) == 2:
            return unpack(scales, "raw", shape[0], 16, torch.float16)
        return unpack(scales, "raw", 1, 32, torch.float32).reshape(())

    def _check_symbols(self, symbols):
        if symbols.numel() and int(symbols.abs().max()) > official.QMAX:
            raise ValueError("int8 symbol -128 outside [-127, 127]")


def floor_scale(scheme: Scheme) -> float | None:
    """The smallest per-row scale `scheme` stores, before fp16 rounding: the official 1/127, an intN
    `floor(k)` as k/qmax; None without a floor.

    >>> round(floor_scale(get_scheme("official-int8")) * 127, 6), floor_scale(get_scheme("int6"))
    (1.0, None)
    """
    if isinstance(scheme, OfficialInt8Scheme):
        return 1.0 / official.QMAX  # the rule block clamps scales at 1/127
    floor = getattr(scheme, "floor", None)
    return None if floor is None else floor / scheme.qmax


# --- spec strings ------------------------------------------------------------------------------
ALIASES = {"official-int8": official.FORMAT_TAG, "int8_official": official.FORMAT_TAG}
_MOD_RE = re.compile(r"^([a-z0-9_]+)(?:\(\s*([0-9.eE+-]+)\s*\))?$")


def _parse_mods(base: str, mods: list[str]) -> dict:
    kw: dict = {}
    for mod in mods:
        m = _MOD_RE.match(mod.strip())
        if not m:
            raise ValueError(f"cannot read modifier {mod!r}; write e.g. sdclip(12.85), group(128), packed")
        word, arg = m.group(1), m.group(2)
        value = None if arg is None else float(arg)
        if value is not None and not (math.isfinite(value) and abs(value) < 2**31):
            raise ValueError(f"modifier {mod!r}: the value must be a finite number below 2**31")
        if word in CLIP_RULES and base.startswith("int"):
            kw["clip"], kw["clip_arg"] = word, value
        elif word == "floor" and base.startswith("int"):
            if value is None:
                raise ValueError("floor needs a value; write floor(1) for scale >= 1/qmax")
            kw["floor"] = value
        elif word == "group":
            if value is None:
                raise ValueError("group needs a size; write group(128)")
            kw["group"] = int(value) if value.is_integer() else value
        elif word in ("byte", "packed", "base3", "bits") and arg is None:
            kw["storage"] = word
        else:
            raise ValueError(f"modifier {mod!r} does not apply to {base}")
    return kw


@functools.lru_cache(maxsize=512)
def get_scheme(spec: str) -> Scheme:
    """The scheme a spec string names (see the module docstring); PgolfInputError if it names none.

    >>> get_scheme("int5:mse:group(64):packed").name
    'int5:mse:group(64):packed'
    """
    if isinstance(spec, Scheme):
        return spec
    text = str(spec).strip()
    base, *mods = text.split(":")
    base = ALIASES.get(base, base)
    try:
        if base in SCHEMES and not mods:
            return SCHEMES[base]
        kw = _parse_mods(base, mods)
        if re.fullmatch(r"int[0-9]+", base):
            return IntScheme(nbits=int(base[3:]), **kw)
        if base == "ternary":
            return TernaryScheme(**kw)
        if base == "binary":
            return BinaryScheme(**kw)
        if base in SCHEMES:
            raise ValueError(f"{base} takes no modifiers")
    except (ValueError, TypeError) as exc:
        raise PgolfInputError(None, f"scheme {text!r}: {exc}") from None
    raise PgolfInputError(None, f"unknown scheme {text!r}; choose one of {', '.join(SCHEMES)} "
                                f"(with modifiers such as int6:sdclip(12.85); see `pgolf schemes`)")


SCHEMES: dict[str, Scheme] = {
    **{name: FloatScheme(name) for name in _FLOATS},
    "passthrough": PassthroughScheme(),
    official.FORMAT_TAG: OfficialInt8Scheme(),
    **{f"int{n}": IntScheme(nbits=n) for n in range(2, 9)},
    "ternary": TernaryScheme(),
    "binary": BinaryScheme(),
}
