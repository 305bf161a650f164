"""Build the real artifact of a plan in memory (decode.py reads any artifact back to tensors).

`build_artifact(sd, plan, compressor)` quantizes every tensor, serializes and compresses:
- plans whose schemes the official export can hold (int8_clean_per_row_v1, float and raw
  passthrough) give the official `torch.save` export dict, byte for byte what the baseline's
  torch.save writes (exportzip.py); with plain zlib-9 the artifact is the baseline's `.ptz`,
  any other compressor gets pgolf's frame (container.py) around it;
- every other plan gives pgolf's tensor container, framed.
`decode.read_artifact(blob)` inverts either. Quantization runs in a worker thread that feeds the
compressor tensor by tensor, so quantizing and compressing overlap.

>>> import torch
>>> from pgolf.budget.exact.decode import read_artifact
>>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
>>> blob = build_artifact(sd, "int6", "zstd")
>>> blob[:5], torch.equal(read_artifact(blob)["w"], fake_quantize(sd, "int6")["w"])
(b'PGOLF', True)
"""
from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from typing import Callable, Collection, Iterable, Iterator

import torch
from torch import Tensor

from pgolf.budget.exact import container

from pgolf.budget.quant import official
from pgolf.budget.files.compressors import Compressor, get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.exportzip import LayoutError, stream_export
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.progress import progress
from pgolf.budget.quant.schemes import (FloatScheme, OfficialInt8Scheme, PassthroughScheme, QTensor, Scheme, all_finite,
                                  get_scheme)
from pgolf.budget.exact.threads import background, one_torch_thread

__all__ = ["Item", "Built", "tie_key", "assign", "quantize_item", "export_holds", "artifact_kind", "export_object",
           "quantized_items", "package", "is_official_zlib", "build", "serialize", "build_artifact", "dequantized",
           "fake_quantize", "matrix_shape"]

MATRIX_MIN_VALUES = 4096  # smaller matrices gain less from grouped tables than their labels and header cost


@dataclasses.dataclass
class Item:
    """One state-dict entry under a plan: the tensor, its scheme, and once quantized its bytes."""

    name: str
    tensor: Tensor | None
    scheme: Scheme
    shape: tuple[int, ...]
    dtype: torch.dtype
    tied_to: str | None = None
    q: QTensor | None = None
    values: bytes = b""
    scales: bytes = b""


@dataclasses.dataclass
class Built:
    """A built artifact: the compressed bytes, the serialized bytes' length, its kind."""

    blob: bytes
    serialized_bytes: int
    kind: str                 # "official-export" | "pgolf-container"
    raw: bytes | None = None  # the serialized bytes, when asked for (benchmarks)


def tie_key(t: Tensor) -> tuple | None:
    """Tensors with equal keys are one tensor stored once (a tie): same storage, offset, view and dtype.

    >>> w = torch.ones(2, 3)
    >>> tie_key(w) == tie_key(w.view(2, 3)), tie_key(w) == tie_key(w.t()), tie_key(torch.ones(0))
    (True, False, None)
    """
    if t.numel() == 0:
        return None
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def _check_tensor(name: str, t: object, finite: bool = True) -> Tensor:
    if not isinstance(t, Tensor):
        raise PgolfInputError(None, f"entry {name!r} is a {type(t).__name__}, not a tensor") from None
    if finite and not all_finite(t):
        t32 = t.detach().float()
        bad = ~torch.isfinite(t32)
        if bool(bad.any()):
            nan = int(torch.isnan(t32).sum())
            raise PgolfInputError(None, f"tensor {name!r} has {nan:,} NaN and {int(bad.sum()) - nan:,} Inf "
                                        f"values; pgolf measures finite weights only (fix or drop that tensor)")
    return t


@one_torch_thread()
def assign(sd: dict[str, Tensor], plan: str | Plan, check_finite: bool = True) -> list[Item]:
    """One Item per entry: the plan's scheme, tied tensors (same storage and view) marked.

    `check_finite=False` leaves the NaN/Inf check to `quantize_item` (same message), for callers
    that quantize every item anyway: a pass over every value less before compression starts.
    """
    plan = resolve_plan(plan)
    if not isinstance(sd, dict) or not sd:
        raise PgolfInputError(None, "expected a non-empty dict of name -> tensor")
    items, seen = [], {}
    for name, t in sd.items():
        t = _check_tensor(str(name), t, check_finite)
        key = tie_key(t)
        if key is not None and key in seen:
            src = seen[key]
            items.append(Item(str(name), None, src.scheme, src.shape, src.dtype, tied_to=src.name))
            continue
        item = Item(str(name), t, get_scheme(plan.scheme_for(str(name), t)), tuple(t.shape), t.dtype)
        if key is not None:
            seen[key] = item
        items.append(item)
    return _official_ties(items, plan) if artifact_kind(items) == "official-export" else items


def _copies(scheme: Scheme, dtype: torch.dtype) -> bool:
    return isinstance(scheme, OfficialInt8Scheme) or (isinstance(scheme, FloatScheme) and scheme.stored_dtype != dtype)


def _official_ties(items: list[Item], plan: Plan) -> list[Item]:
    """The official export quantizes and casts every name on its own, by its own name's rule, so a
    tied entry gets its own int8 or cast copy (two storages); only an entry passed through uncast
    stays one storage. Deduplicating would report fewer bytes than the baseline's export writes."""
    by_name = {i.name: i for i in items}
    out = []
    for item in items:
        src = by_name.get(item.tied_to) if item.tied_to else None
        if src is not None:
            own = get_scheme(plan.scheme_for(item.name, src.tensor))
            if _copies(own, src.dtype) or _copies(src.scheme, src.dtype):
                item = Item(item.name, src.tensor, own, src.shape, src.dtype)
        out.append(item)
    return out


def quantize_item(item: Item) -> Item:
    if item.tied_to is None and item.q is None:
        try:
            item.q = item.scheme.quantize(item.tensor)  # every scheme refuses NaN/Inf
        except ValueError as exc:
            _check_tensor(item.name, item.tensor)  # the input error naming the tensor, when that was why
            raise PgolfInputError(None, f"tensor {item.name!r} under {item.scheme.name}: {exc}") from None
        item.values, item.scales = item.scheme.pack(item.q)
    return item


def export_holds(schemes: Iterable[Scheme]) -> bool:
    """True when the baseline's export dict can hold every scheme (official int8, a float format, passthrough)."""
    return all(isinstance(s, (OfficialInt8Scheme, FloatScheme, PassthroughScheme)) for s in schemes)


def artifact_kind(items: list[Item]) -> str:
    """'official-export' when the baseline's export dict can hold every item's scheme, else 'pgolf-container'."""
    return "official-export" if export_holds(i.scheme for i in items) else "pgolf-container"


def _placeholder(item: Item, q: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Uninitialised values and scales shaped as the official function stored the specimen's `q` and
    `s` (a scale per row where its scale has a rank), at the item's shape: only their layout is used."""
    return torch.empty(item.shape, dtype=q.dtype), torch.empty(item.shape[:s.ndim], dtype=s.dtype)


@functools.lru_cache(maxsize=8)
def _official_layout(entries: tuple[tuple[str, torch.dtype, int | None], ...]) -> dict:
    """official.quantize_state_dict_int8 of specimens: (name, dtype, rank) is an int8 entry of that
    dtype and rank (a zero tensor just over the passthrough limit; a 0-d one takes the not-2-D branch
    at rank 1), (name, dtype, None) any other entry (an empty tensor, which the passthrough rule
    casts and records). Every entry is the official function's own, down to which records are
    distinct objects, so torch.save pickles it alike. Cached with its tensors emptied (their dtype
    and rank are what is used): compare builds one model many times, and quantizing an int8
    specimen takes ~0.5 ms."""
    def specimen(dtype: torch.dtype, rank: int | None) -> Tensor:
        if rank is None:
            return torch.empty(0, dtype=dtype)
        return torch.zeros((1,) * (rank - 1) + (official.INT8_KEEP_FLOAT_MAX_NUMEL + 1,), dtype=dtype)

    def emptied(v: object) -> object:
        return v.new_empty((0,) * v.ndim) if isinstance(v, Tensor) else v

    obj, _ = official.quantize_state_dict_int8({name: specimen(dtype, rank) for name, dtype, rank in entries})
    return {key: {n: emptied(v) for n, v in part.items()} if isinstance(part, dict) else part
            for key, part in obj.items()}


def export_object(items: list[Item], placeholders: Collection[str] = ()) -> dict:
    """The official export dict of `items`, laid out by official.quantize_state_dict_int8 itself.

    That function lays out specimens of the items (`_official_layout`), so keys, their order and
    every record are the official function's; then the specimens' tensors are swapped for the
    items' own. int8 items named in `placeholders` (and entries tied to them) get uninitialised
    tensors of the right shapes instead of their values: a layout only. The names are fixed up
    front, not read off `item.q`, because a worker may be quantizing those items meanwhile: a tie
    seen half-quantized would get two storages.
    A plan may store a float format the official rule would not (fp32, bf16 or fp8 by a rule):
    the original dtype is then recorded wherever the stored one differs, so the official
    dequantizer restores it.
    """
    by_name = {i.name: i for i in items}
    int8 = {i.name for i in items if isinstance(by_name[i.tied_to or i.name].scheme, OfficialInt8Scheme)}
    layout = _official_layout(tuple((i.name, i.dtype, max(len(i.shape), 1) if i.name in int8 else None)
                                    for i in items))
    obj = {key: dict(part) if isinstance(part, dict) else part for key, part in layout.items()}
    stand_in: dict[str, tuple[Tensor, Tensor]] = {}
    own_format = set()
    for item in items:
        src = by_name[item.tied_to] if item.tied_to else item
        if isinstance(src.scheme, OfficialInt8Scheme):
            if src.name in placeholders:
                if src.name not in stand_in:
                    stand_in[src.name] = _placeholder(src, obj["quantized"][item.name], obj["scales"][item.name])
                q, s = stand_in[src.name]
            else:
                q, s = src.q.symbols, src.q.scales
            obj["quantized"][item.name], obj["scales"][item.name] = q, s  # tied: the same objects, stored once
            continue
        stored = src.scheme.stored_tensor(src.q).reshape(src.shape)
        if stored.dtype != obj["passthrough"][item.name].dtype:
            own_format.add(item.name)
        obj["passthrough"][item.name] = stored
    if own_format:  # the original dtype recorded where a plan's own format changed it, in item order
        recorded, orig = obj.pop("passthrough_orig_dtypes", {}), {}
        for i in items:
            if i.name in own_format and obj["passthrough"][i.name].dtype != i.dtype:
                orig[i.name] = str(i.dtype).removeprefix("torch.")
            elif i.name in recorded and i.name not in own_format:
                orig[i.name] = recorded[i.name]
        if orig:
            obj["passthrough_orig_dtypes"] = orig
    return obj


def _export_chunks(items: list[Item], quiet: bool, on_item) -> tuple[int, Iterable[bytes]]:
    """(length, chunks) of the export's torch.save bytes, int8 tensors quantized while streaming."""
    later = [i for i in items if i.tied_to is None and i.q is None and isinstance(i.scheme, OfficialInt8Scheme)]
    deferred = {id(i) for i in later}
    for item in items:
        if item.tied_to is None and id(item) not in deferred:
            quantize_item(item)  # passthrough casts: cheap, and the template needs them
            if on_item is not None:
                on_item(item)

    def real():  # in the worker: packed bytes and their CRCs, so the compressing thread only compresses
        for item in quantized_items(later, quiet, on_item, in_background=False):
            for part, data in (("quantized", item.values), ("scales", item.scales)):
                yield f"{part}/{item.name}", data, zlib.crc32(data)

    stream = background(real)  # starts quantizing while the template is laid out
    template = export_object(items, placeholders={i.name for i in later})
    stand_ins = {f"{part}/{i.name}": template[part][i.name] for i in later for part in ("quantized", "scales")}
    try:
        return stream_export(template, stand_ins, stream)
    except LayoutError:  # a torch whose zip layout we do not know: quantize first, then torch.save
        for _ in stream:
            pass
        raw = official.serialize_export(export_object(items))
        return len(raw), [raw]


def quantized_items(items: list[Item], quiet: bool = True, on_item: Callable[[Item], None] | None = None,
                    in_background: bool = True) -> Iterator[Item]:
    """Quantize and pack each item in order (in a worker thread), yielding each when ready."""
    def produce():
        for item in progress(items, desc="quantize", total=len(items), quiet=quiet):
            quantize_item(item)
            if on_item is not None:
                on_item(item)
            yield item
    return background(produce) if in_background else produce()


def _container_chunks(items: list[Item], plan_name: str, quiet: bool, on_item) -> tuple[int, Iterator[bytes]]:
    rows, total = [], 0
    for i in items:
        nv, ns = (0, 0) if i.tied_to else i.scheme.payload_bytes(i.shape, i.dtype)
        rows.append(container.header_row(i.name, i.shape, i.dtype, i.scheme.name, nv, ns, i.tied_to))
        total += nv + ns
    trailer = container.encode_trailer(rows, plan_name)  # known up front, written after the data

    def chunks():
        # container.py's order: quantized values, then float values, then every scale, each in item
        # order; quantizing in the values' order lets the first chunk go out before any float cast
        own = [i for i in items if i.tied_to is None]
        in_values_order = [i for i in own if i.scheme.kind == "quantized"] + \
            [i for i in own if i.scheme.kind != "quantized"]
        for item in quantized_items(in_values_order, quiet, on_item):
            yield item.values
        for item in own:
            yield item.scales
        yield trailer
    return total + len(trailer), chunks()


def package(raw: bytes, kind: str, compressor: str | Compressor, matrices=()) -> bytes:
    """Compress serialized bytes into the artifact (see `_wrap`); `matrices` as Compressor.compress takes them."""
    comp = get_compressor(compressor)
    return _wrap(comp.compress(raw, matrices), kind, comp)


def matrix_shape(item: Item) -> tuple[int, int] | None:
    """(rows, cols) of a quantized item whose values are one byte per symbol (dims past the first
    flattened), None otherwise: the matrices `ans:rowG` / `ans:colG` and `best` code by class.

    >>> it = quantize_item(assign({"w": torch.ones(256, 512)}, "int6")[0])
    >>> matrix_shape(it), matrix_shape(quantize_item(assign({"w": torch.ones(64, 128)}, "fp16")[0]))
    ((256, 512), None)
    """
    if item.tied_to or item.scheme.kind != "quantized" or len(item.shape) < 2 or not item.shape[0]:
        return None
    rows = item.shape[0]
    cols = len(item.values) // rows
    return (rows, cols) if rows * cols == len(item.values) == math.prod(item.shape) >= MATRIX_MIN_VALUES else None


def _tracked(chunks: Iterable[bytes], items: list[Item], found: list) -> Iterator[bytes]:
    """The chunks unchanged; (offset, rows, cols) appended to `found` for each chunk that is an
    item's values (the same object: both layouts hand out item.values as one chunk)."""
    pos = 0
    for chunk in chunks:
        if chunk:
            item = next((i for i in items if i.values is chunk), None)
            shape = matrix_shape(item) if item is not None else None
            if shape:
                found.append((pos, *shape))
        pos += len(chunk)
        yield chunk


def _wrap(body: bytes, kind: str, comp: Compressor) -> bytes:
    """A plain zlib-9 official export stays the baseline's `.ptz`; everything else gets pgolf's
    frame naming its payload kind and compressor."""
    if kind == "official-export" and is_official_zlib(comp):
        return body
    frame_kind = container.KIND_TORCH_EXPORT if kind == "official-export" else container.KIND_CONTAINER
    return container.frame(frame_kind, comp.name, body)


def is_official_zlib(comp: Compressor) -> bool:
    """True for the baseline's own compression of the export (zlib at its level, no transforms)."""
    return comp.codec == "zlib" and comp.level == official.ZLIB_LEVEL and not comp.transforms


@one_torch_thread()
def build(items: list[Item], plan_name: str, compressor: str | Compressor = "zlib", quiet: bool = True,
          on_item: Callable[[Item], None] | None = None, keep_raw: bool = False) -> Built:
    """Quantize, serialize and compress `items` (from `assign`) into the artifact's bytes."""
    comp = get_compressor(compressor)
    comp.require()
    kind = artifact_kind(items)
    if kind == "official-export":
        size, chunks = _export_chunks(items, quiet, on_item)
    else:
        size, chunks = _container_chunks(items, plan_name, quiet, on_item)
    matrices: list[tuple[int, int, int]] = []
    if comp.uses_matrices:
        chunks = _tracked(chunks, items, matrices)
    if keep_raw:
        raw = b"".join(chunks)
        return Built(package(raw, kind, comp, matrices), size, kind, raw)
    if comp.transforms:
        return Built(package(b"".join(chunks), kind, comp), size, kind)
    body = comp.compress_chunks(chunks, size, matrices)  # quantizing (worker thread) and compressing overlap
    return Built(_wrap(body, kind, comp), size, kind)


@one_torch_thread()
def serialize(items: list[Item], plan_name: str, quiet: bool = True,
              matrices: list | None = None) -> tuple[str, bytes]:
    """(artifact kind, serialized bytes before compression) of quantized-or-not items; a list given
    as `matrices` receives the (offset, rows, cols) that `package` passes on to the compressor."""
    kind = artifact_kind(items)
    chunker = _export_chunks(items, quiet, None) if kind == "official-export" else \
        _container_chunks(items, plan_name, quiet, None)
    chunks = chunker[1] if matrices is None else _tracked(chunker[1], items, matrices)
    return kind, b"".join(chunks)


@one_torch_thread()
def build_artifact(sd: dict[str, Tensor], plan: str | Plan = "official-int8", compressor: str | Compressor = "zlib",
                   quiet: bool = True) -> bytes:
    """The exact artifact bytes of `sd` under `plan` and `compressor`.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> build_artifact(sd, "int6", "zstd")[:5], build_artifact(sd, "official-int8", "zlib")[:1]
    (b'PGOLF', b'x')
    """
    plan = resolve_plan(plan)
    return build(assign(sd, plan, check_finite=False), plan.name, compressor, quiet).blob


def dequantized(items: list[Item]) -> dict[str, Tensor]:
    """Dequantized tensors of quantized items (tied entries share one tensor)."""
    out: dict[str, Tensor] = {}
    for item in items:
        out[item.name] = out[item.tied_to] if item.tied_to else item.scheme.dequantize(item.q)
    return out


@one_torch_thread()
def fake_quantize(sd: dict[str, Tensor], plan: str | Plan = "official-int8") -> dict[str, Tensor]:
    """quantize -> dequantize in memory: what the artifact decodes to, in the input's dtypes.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> w = fake_quantize(sd, "int6")["w"]
    >>> w.dtype, w[0].unique().numel() <= 63
    (torch.float32, True)
    """
    items = assign(sd, plan)
    for item in items:
        quantize_item(item)
    return dequantized(items)
