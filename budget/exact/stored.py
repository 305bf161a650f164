"""What an artifact file already holds: its tensors as stored, its plan, compressor and bytes.

Measuring an artifact under the plan it was built with must not requantize its (already
dequantized) weights: `stored_form` rebuilds the items from the stored int8 values / packed
symbols and scales, and keeps the file's own bytes, so with its own compressor the file's size
IS bytes_model. An official export (a `.ptz`, or pgolf's frame around a torch.save export)
counts as plan official-int8: the baseline's format, whatever its tensors were stored as.

>>> import torch, tempfile, pathlib
>>> from pgolf.budget.exact.build import build_artifact
>>> from pgolf.budget.exact.inputs import load_input
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.pgolf"
>>> _ = path.write_bytes(build_artifact({"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}, "int5", "zstd"))
>>> s = stored_form(load_input(path))
>>> s.plan, s.compressor, len(s.built.blob) == path.stat().st_size
('int5', 'zstd', True)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pgolf.budget.exact import container
from pgolf.budget.exact.build import Built, Item
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.schemes import QTensor, get_scheme

OFFICIAL_PLAN = "official-int8"


@dataclasses.dataclass
class Stored:
    """An artifact's items (quantized as stored), plan and compressor names, and its own bytes."""

    items: list[Item]
    plan: str
    compressor: str
    built: Built


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
        scheme = get_scheme("passthrough" if dtype == t.dtype else {
            torch.float16: "fp16", torch.float32: "fp32", torch.bfloat16: "bf16"}.get(t.dtype, "passthrough"))
        qt = scheme.quantize(t)
        items.append(_export_item(name, QTensor(qt.symbols, None, qt.shape, dtype, scheme.name), seen))
    return items


def _export_item(name: str, qt: QTensor, seen: dict) -> Item:
    scheme = get_scheme(qt.scheme)
    key = (qt.symbols.untyped_storage().data_ptr(), qt.symbols.storage_offset(), qt.shape) if qt.symbols.numel() else None
    if key in seen:
        return Item(name, None, scheme, qt.shape, qt.dtype, tied_to=seen[key])
    if key is not None:
        seen[key] = name
    item = Item(name, None, scheme, qt.shape, qt.dtype, q=qt)
    item.values, item.scales = scheme.pack(qt)
    return item


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


def stored_form(loaded) -> Stored | None:
    """The Stored form of a `readers.LoadedInput` artifact; None for plain weights (.pt, checkpoints)."""
    if loaded.format not in ("official-ptz", "pgolf-artifact"):
        return None
    from pgolf.budget.exact.inputs import resolve_limit, torch_load_bytes
    from pgolf.budget.files.validate import validate_export

    path, limit = Path(loaded.path), resolve_limit(None)
    blob = path.read_bytes()
    try:
        if loaded.format == "official-ptz":
            raw = get_compressor("zlib").decompress(blob, limit)
            return Stored(items_from_export(loaded.export), OFFICIAL_PLAN, "zlib", Built(blob, len(raw), "official-export"))
        kind, spec, body = container.parse_frame(blob)
        raw = get_compressor(spec).decompress(body, limit)
        if kind == container.KIND_TORCH_EXPORT:
            export = validate_export(torch_load_bytes(raw, path, limit), path)
            return Stored(items_from_export(export), OFFICIAL_PLAN, spec, Built(blob, len(raw), "official-export"))
        items = items_from_records(container.decode(raw))
        return Stored(items, container.plan_name(raw), spec, Built(blob, len(raw), "pgolf-container"))
    except ValueError as exc:  # the reader accepted this file a moment ago; say what changed
        raise PgolfInputError(path, f"cannot re-read the stored artifact ({exc})") from None
