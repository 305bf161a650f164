"""The one decoder of every artifact kind, and the bitwise comparison of what it gives back.

`decode_artifact(blob, path)` reads pgolf's framed artifacts (container.py: a tensor container or
a torch.save export) and the baseline's plain zlib `.ptz` once: the dequantized tensors, plus what
`stored_form` needs to rebuild the items as stored (the int8 values / packed symbols and scales,
never requantized) with the file's own bytes, so measured with its own compressor the file's size
IS bytes_model. An official export counts as plan official-int8, whatever its tensors were stored
as. Every problem is one `PgolfInputError` naming the file; decompression is bounded.

>>> import torch
>>> from pgolf.budget.exact.build import build_artifact
>>> blob = build_artifact({"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}, "int5", "zstd")
>>> d = decode_artifact(blob, "m.pgolf")
>>> s = stored_form(d)
>>> s.plan, s.compressor, s.built.blob == blob, d.state_dict["w"].shape
('int5', 'zstd', True, torch.Size([100, 700]))
>>> bits_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
False
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import torch
from torch import Tensor

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact import container
from pgolf.budget.exact.build import Built, Item, dequantized, tie_key
from pgolf.budget.exact.threads import one_torch_thread
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.files.safeload import decompress_zlib_bounded, is_zip, torch_load_bytes
from pgolf.budget.files.validate import MAX_DENSE_BYTES, one_line, validate_export
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant import official
from pgolf.budget.quant.schemes import FLOAT_FORMATS, QTensor, get_scheme

DEFAULT_MAX_OUTPUT = 4 * CAP_BYTES
OFFICIAL_PLAN = "official-int8"


@dataclasses.dataclass(frozen=True)
class Decoded:
    """An artifact read once: its dequantized tensors and the stored form's ingredients."""

    state_dict: dict[str, Tensor]
    kind: str          # "official-export" | "pgolf-container"
    compressor: str    # the compressor spec that inflates the body ("zlib" for a .ptz)
    built: Built       # the file's own bytes and its serialized length
    plan: str
    export: dict | None = dataclasses.field(default=None, repr=False)
    items: list[Item] | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class Stored:
    """An artifact's items (quantized as stored), plan and compressor names, and its own bytes."""

    items: list[Item]
    plan: str
    compressor: str
    built: Built


def _export_item(name: str, qt: QTensor, seen: dict) -> Item:
    scheme = get_scheme(qt.scheme)
    key = tie_key(qt.symbols)
    if key in seen:
        return Item(name, None, scheme, qt.shape, qt.dtype, tied_to=seen[key])
    if key is not None:
        seen[key] = name
    item = Item(name, None, scheme, qt.shape, qt.dtype, q=qt)
    item.values, item.scales = scheme.pack(qt)
    return item


def items_from_export(export: dict) -> list[Item]:
    """Items holding an official export's stored tensors as they are (no requantization)."""
    orig = export.get("passthrough_orig_dtypes", {})
    items, seen = [], {}
    for name, q in export["quantized"].items():
        dtype = getattr(torch, export["dtypes"][name])
        qt = QTensor(q, export["scales"][name], tuple(q.shape), dtype, get_scheme(OFFICIAL_PLAN).name)
        items.append(_export_item(name, qt, seen))
    for name, t in export["passthrough"].items():
        dtype = getattr(torch, orig[name]) if isinstance(orig.get(name), str) else t.dtype
        scheme = get_scheme("passthrough" if dtype == t.dtype else FLOAT_FORMATS.get(t.dtype, "passthrough"))
        qt = scheme.quantize(t)
        items.append(_export_item(name, QTensor(qt.symbols, None, qt.shape, dtype, scheme.name), seen))
    return items


def items_from_records(records: list[container.Record]) -> list[Item]:
    """Items of a decoded pgolf container, symbols unpacked from the stored bytes."""
    items, by_name = [], {}
    for rec in records:
        if rec.tied_to:
            src = by_name[rec.tied_to]
            item = Item(rec.name, None, src.scheme, rec.shape, rec.dtype, tied_to=rec.tied_to)
        else:
            scheme = get_scheme(rec.scheme)
            q = scheme.unpack(rec.values, rec.scales, rec.shape, rec.dtype)
            item = Item(rec.name, None, scheme, rec.shape, rec.dtype, q=q, values=rec.values, scales=rec.scales)
        by_name[rec.name] = item
        items.append(item)
    return items


def _check_decoded_size(sizes: Iterable[tuple[tuple[int, ...], torch.dtype]], path) -> None:
    """Refuse before materialising: a few stored bytes can declare gigabytes of tensors (2**28
    binary values, int8 values declared float64)."""
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in sizes)
    if total > MAX_DENSE_BYTES:
        raise PgolfInputError(path, f"the artifact's tensors would take {total:,} bytes decoded, over the "
                                    f"{MAX_DENSE_BYTES:,}-byte limit") from None


def _official(blob: bytes, raw: bytes, spec: str, path, limit: int) -> Decoded:
    export = validate_export(torch_load_bytes(raw, path, limit), path)
    orig = export.get("passthrough_orig_dtypes", {})
    _check_decoded_size([(tuple(q.shape), getattr(torch, export["dtypes"][n])) for n, q in export["quantized"].items()]
                        + [(tuple(t.shape), getattr(torch, orig[n]) if isinstance(orig.get(n), str) else t.dtype)
                           for n, t in export["passthrough"].items()], path)
    try:
        sd = official.dequantize_state_dict_int8(export)
    except Exception as exc:  # validated above; a residual mismatch still must not escape
        raise PgolfInputError(path, f"cannot dequantize the int8 export ({one_line(exc, 120)})") from None
    return Decoded(sd, "official-export", spec, Built(blob, len(raw), "official-export"), OFFICIAL_PLAN, export=export)


def _container(blob: bytes, raw: bytes, spec: str, path) -> Decoded:
    records = container.decode(raw)
    _check_decoded_size([(tuple(r.shape), r.dtype) for r in records if not r.tied_to], path)
    items = items_from_records(records)
    built = Built(blob, len(raw), "pgolf-container")
    return Decoded(dequantized(items), "pgolf-container", spec, built, container.plan_name(raw), items=items)


@one_torch_thread()
def decode_artifact(blob: bytes, path=None, max_output_bytes: int = DEFAULT_MAX_OUTPUT) -> Decoded:
    """Decode a pgolf-framed artifact or an official zlib `.ptz`; bad bytes raise one PgolfInputError."""
    blob = bytes(blob)
    try:
        if container.is_artifact(blob):
            kind, spec, body = container.parse_frame(blob)
            comp = get_compressor(spec)
            comp.require()
            raw = comp.decompress(body, max_output_bytes)
            if kind == container.KIND_CONTAINER:
                return _container(blob, raw, spec, path)
            return _official(blob, raw, spec, path, max_output_bytes)
        if blob[:1] == b"\x78":  # zlib header byte: the baseline's .ptz
            raw = decompress_zlib_bounded(blob, max_output_bytes, path)
            if not (is_zip(raw) or raw[:1] == b"\x80"):
                raise PgolfInputError(path, f"zlib stream does not hold a torch.save file (first bytes "
                                            f"{raw[:8].hex(' ') or 'none'})") from None
            return _official(blob, raw, "zlib", path, max_output_bytes)
    except ValueError as exc:  # the frame, container and codecs state their problem in one line
        raise PgolfInputError(path, one_line(exc)) from None
    raise PgolfInputError(path, f"unknown artifact format (first bytes {blob[:8].hex(' ') or 'none'}): expected "
                                f"pgolf's PGOLF frame or an official zlib .ptz") from None


def read_artifact(blob: bytes, max_output_bytes: int = DEFAULT_MAX_OUTPUT) -> dict[str, Tensor]:
    """Dequantized tensors of an artifact (pgolf-framed, or an official zlib `.ptz`).

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> from pgolf.budget.exact.build import build_artifact
    >>> read_artifact(build_artifact(sd, "int6", "zstd"))["w"].shape
    torch.Size([100, 700])
    """
    return decode_artifact(blob, None, max_output_bytes).state_dict


def stored_form(decoded: Decoded | None) -> Stored | None:
    """The Stored form of a decoded artifact (`LoadedInput.artifact`); None for plain weights."""
    if decoded is None:
        return None
    items = decoded.items if decoded.items is not None else items_from_export(decoded.export)
    return Stored(items, decoded.plan, decoded.compressor, decoded.built)


def bits_equal(a: Tensor, b: Tensor) -> bool:
    """Bitwise equality; a wider decoded dtype counts when the cast back is exact (fp32 controls)."""
    if a.shape != b.shape:
        return False
    if a.dtype != b.dtype:
        narrowed = a.to(b.dtype)
        if not torch.equal(narrowed.to(a.dtype).reshape(-1).view(torch.uint8), a.reshape(-1).view(torch.uint8)):
            return False
        a = narrowed
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def roundtrip_mismatches(decoded: dict[str, Tensor], expected: dict[str, Tensor]) -> list[str]:
    """Names whose decoded tensor is missing, extra or not bitwise equal to the expected one."""
    names = list(dict.fromkeys(list(expected) + list(decoded)))
    return [n for n in names if n not in decoded or n not in expected or not bits_equal(decoded[n], expected[n])]
