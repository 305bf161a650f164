"""The artifact as byte streams, for the estimator: each tensor's values and scales under its scheme,
with exact full byte counts, the order-0 entropy and the packed bytes of a sample of its rows.

Per-row and per-group schemes treat rows independently, so sampled rows get exactly the symbols
the full tensor would. Also the order the streams take in the artifact (whole_payload,
first_group_sample) and the official export's opening bytes (export_head), which estimate.py
measures zstd on.

>>> import numpy as np
>>> round(byte_entropy(np.frombuffer(bytes(range(256)) * 64, dtype=np.uint8)), 3)
8.0
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from pgolf.budget.exact.build import artifact_kind, export_object, quantize_item
from pgolf.budget.exact.exportzip import LayoutError, stream_export
from pgolf.budget.exact.measure import tensor_row
from pgolf.budget.forecast import sampled
from pgolf.budget.forecast.rows import anchor_correction
from pgolf.budget.quant.schemes import OfficialInt8Scheme, get_scheme

# Values quantized per tensor at most, rows taken in evenly spaced blocks. Rows differ (a row's
# max sets its grid), so the sampled entropy of a tensor is off by ~0.5 % (1 sd) at 64 rows of
# 512; independent across tensors, it averages down in a whole model.
SAMPLE_VALUES = 1 << 15
SAMPLE_BLOCK_BYTES = 1 << 12


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy in bits per symbol of a histogram."""
    n = float(counts.sum())
    p = counts[counts > 0] / max(n, 1.0)
    return float(-(p * np.log2(p)).sum())


def byte_entropy(data: np.ndarray) -> float:
    """Order-0 entropy of a byte stream in bits per byte (Miller-Madow corrected, at most 8)."""
    if data.size == 0:
        return 0.0
    return _byte_entropy_of(np.bincount(data, minlength=256), data.size)


def _byte_entropy_of(counts: np.ndarray, n: int) -> float:
    # a sample of rows must not read low by (K-1)/(2 n ln 2)
    return min(8.0, _entropy(counts) + (np.count_nonzero(counts) - 1) / (2 * n * math.log(2)))


def storage_class(storage: str, element_size: int) -> str:
    """byte | packed | base3 | bits | raw1 | raw2 | raw4 | raw8 (values): how the compressor sees the
    bytes; scales streams are classes scale2 / scale4."""
    return f"raw{element_size}" if storage == "raw" else storage


@dataclasses.dataclass(frozen=True)
class Stream:
    """One contiguous byte stream of the artifact (a tensor's values or its scales): its full byte
    count, its group (sampled.group_key), the order-0 entropy and the packed bytes of its sample."""

    tensor: str
    part: str
    cls: str
    n_bytes: int
    h: float
    group: str = ""
    sample: bytes = dataclasses.field(default=b"", repr=False, compare=False)
    quantized: bool = False  # a quantized scheme's stream (artifact order puts these first)
    # the sample's bits per byte times this is the full stream's (rows.anchor_correction), +- rel. se
    anchor_factor: float = 1.0
    anchor_rel_se: float = 0.0


def _sample_rows(t: Tensor, sample_values: int | None) -> tuple[Tensor, float, np.ndarray | None]:
    """(rows to quantize, full/sampled ratio, their row indices or None for all): evenly spaced
    blocks of contiguous rows."""
    if sample_values is None or t.ndim < 2 or t.numel() <= sample_values:
        return t, 1.0, None
    rows, cols = t.shape[0], t.numel() // t.shape[0]
    block = max(1, min(rows, SAMPLE_BLOCK_BYTES // max(cols, 1)))
    nblocks = max(1, min(rows // block, sample_values // (block * cols)))
    starts = np.linspace(0, rows - block, nblocks).round().astype(np.int64)
    idx = (starts[:, None] + np.arange(block)[None, :]).reshape(-1)
    return t.index_select(0, torch.from_numpy(idx)), rows / idx.size, idx


def symbol_codes(symbols: Tensor) -> np.ndarray | None:
    """Integer symbols as unsigned codes of their own width (a uint8 / uint16 view, same shape), for
    histograms by bincount; None for wider symbols."""
    if symbols.element_size() > 2 or symbols.is_floating_point():
        return None
    view = torch.uint8 if symbols.element_size() == 1 else torch.int16
    raw = symbols.detach().contiguous().view(view).numpy()
    return raw.view(np.uint8 if symbols.element_size() == 1 else np.uint16)


def symbol_counts(symbols: Tensor, codes: np.ndarray | None = None) -> np.ndarray:
    """Histogram of integer symbols (a bincount of their codes; a sort only for wide symbols)."""
    codes = symbol_codes(symbols) if codes is None else codes
    if codes is not None:
        return np.bincount(codes.reshape(-1))
    return np.unique(symbols.detach().reshape(-1).numpy(), return_counts=True)[1]


def symbol_entropy_bits(symbols: Tensor, counts: np.ndarray | None = None) -> float:
    """Order-0 entropy of integer symbols, total bits (a histogram, no sort).

    >>> symbol_entropy_bits(torch.tensor([-1, 0, 1, 1], dtype=torch.int8))
    6.0
    """
    if symbols.numel() == 0:
        return 0.0
    return _entropy(symbol_counts(symbols) if counts is None else counts) * symbols.numel()


def packed_streams(name: str, scheme, q, values: bytes, scales: bytes, full_values: int, full_scales: int,
                   dtype: torch.dtype | None = None, values_counts: np.ndarray | None = None) -> list[Stream]:
    """Streams of one quantized tensor's packed sample bytes; byte counts are the full tensor's.
    `values_counts`: the histogram of the values' bytes where it is known already (byte storage)."""
    streams = []
    src = str(dtype or q.dtype).removeprefix("torch.")
    for part, blob, full in (("values", values, full_values), ("scales", scales, full_scales)):
        if not full or not blob:
            continue
        if part == "values":
            cls = storage_class(scheme.storage, q.symbols.element_size() if scheme.storage == "raw" else 1)
        else:  # scales (positive, similar, few) compress unlike float values: their own class
            cls = f"scale{q.scales.element_size()}"
        h = _byte_entropy_of(values_counts, len(blob)) if part == "values" and values_counts is not None \
            else byte_entropy(np.frombuffer(blob, dtype=np.uint8))
        key = sampled.group_key(cls, scheme.name, src if part == "values" else "")
        streams.append(Stream(name, part, cls, int(full), h, key, bytes(blob), scheme.kind == "quantized"))
    return streams


def tensor_streams(name: str, t: Tensor, spec: str, sample_values: int | None = SAMPLE_VALUES) -> tuple[dict, list[Stream]]:
    """Exact byte counts and sampled streams of one tensor under one scheme spec."""
    scheme = get_scheme(spec)
    row = tensor_row(name, tuple(t.shape), t.dtype, scheme)
    values_bytes, scales_bytes = row["values_bytes"], row["scales_bytes"]
    if sample_values is not None:
        # wide alphabets (int7/int8: 127-255 levels) need more values before their rare levels show
        sample_values *= max(1, int(getattr(scheme, "levels", 0) or 0) // 64)
    part, ratio, idx = _sample_rows(t, sample_values if scheme.kind == "quantized" else None)
    q = scheme.quantize(part)
    values, scales = scheme.pack(q)
    codes = symbol_codes(q.symbols) if scheme.kind == "quantized" else None
    counts = symbol_counts(q.symbols, codes) if scheme.kind == "quantized" else None
    # byte storage writes each int8 symbol as its byte: the values' byte histogram is the symbols'
    same_bytes = (scheme.storage == "byte" and codes is not None and codes.dtype == np.uint8
                  and len(values) == codes.size)
    streams = packed_streams(name, scheme, q, values, scales, values_bytes, scales_bytes, t.dtype,
                             counts if same_bytes else None)
    factor = 1.0
    if scheme.kind == "quantized":
        if idx is not None and codes is not None:  # rows differ: what their cheap statistics say of the sample
            factor, rel_se = anchor_correction(t, idx, codes, counts)
            streams = [dataclasses.replace(s, anchor_factor=factor, anchor_rel_se=rel_se) if s.part == "values"
                       else s for s in streams]
        entropy_bits = symbol_entropy_bits(q.symbols, counts) * ratio * factor
    else:
        entropy_bits = sum(s.h * s.n_bytes for s in streams if s.part == "values")
    row.update(entropy_bytes=int(round(entropy_bits / 8)), sampled_fraction=1.0 / ratio)
    return row, streams


def whole_payload(streams: list[Stream], kind: str) -> bytes | None:
    """Every stored byte in artifact order when the artifact stores at most WHOLE_MAX_BYTES and the
    streams hold their full bytes, else None. Order: the official export pickles quantized values,
    then scales, then passthrough tensors; pgolf's container puts quantized values, float values, scales.

    >>> s = [Stream("a", "values", "raw2", 2, 0.0, "g", b"ab"), Stream("b", "values", "byte", 1, 0.0, "h", b"q", True)]
    >>> whole_payload(s, "pgolf-container")
    b'qab'
    """
    if sum(s.n_bytes for s in streams) > sampled.WHOLE_MAX_BYTES or any(len(s.sample) != s.n_bytes for s in streams):
        return None
    return b"".join(s.sample for s in sorted(streams, key=lambda s: _artifact_rank(s, kind)))


def _artifact_rank(s: Stream, kind: str) -> int:
    """Where a stream's part sits in the artifact (sort is stable: item order within each part)."""
    later = ("scales", "values") if kind == "official-export" else ("values", "scales")
    return 0 if s.quantized and s.part == "values" else 1 + later.index(s.part)


def export_head(items) -> bytes:
    """The official export's torch.save bytes before its first tensor's data (the zip's first
    header and data.pkl, the pickle naming every tensor), laid out exactly as build writes them,
    without quantizing the int8 tensors; b"" for a pgolf container or an export with no int8 entry.

    >>> from pgolf.budget.exact.build import assign
    >>> head = export_head(assign({"w": torch.ones(300, 300)}, "official-int8"))
    >>> head[:2], b"quantized" in head, len(head) % 64
    (b'PK', True, 0)
    """
    int8 = [i for i in items if i.tied_to is None and isinstance(i.scheme, OfficialInt8Scheme)]
    if artifact_kind(items) != "official-export" or not int8:
        return b""
    for item in items:
        if item.tied_to is None and not isinstance(item.scheme, OfficialInt8Scheme):
            quantize_item(item)  # passthrough casts: the template holds them
    template = export_object(items, placeholders={i.name for i in int8})
    stand_ins = {f"{part}/{i.name}": template[part][i.name] for i in int8 for part in ("quantized", "scales")}
    try:
        _, chunks = stream_export(template, stand_ins, iter(()))
        return bytes(next(iter(chunks)))  # emitted before the first int8 record's data is asked for
    except LayoutError:  # a torch whose zip layout we do not know: no head measured
        return b""


def first_group_sample(streams: list[Stream], kind: str) -> tuple[str, bytes]:
    """(group, its sample bytes in artifact order) of the group whose bytes come first in the artifact.

    >>> s = [Stream("a", "values", "raw2", 2, 0.0, "g", b"ab"), Stream("b", "values", "byte", 1, 0.0, "h", b"q", True)]
    >>> first_group_sample(s, "official-export")
    ('h', b'q')
    """
    if not streams:
        return "", b""
    ordered = sorted(streams, key=lambda s: _artifact_rank(s, kind))
    return ordered[0].group, b"".join(s.sample for s in ordered if s.group == ordered[0].group)
