"""The best lossless coding per tensor: order-0 and conditional floors next to every codec's exact bytes.

`squeeze(sd, plan)` quantizes like `build_artifact` and, per tensor, measures its stored values
(the symbols an artifact compresses): H(q) (the order-0 floor), H(q | row group) and
H(q | column group) (rows or columns in 16 magnitude classes by mean |q|; the class labels'
own cost not included, so a floor below H(q) says structure exists before paying for it), then
the exact bytes of those values under zlib-9, zstd-22, lzma-9e, brotli-11 + byte-shuffle, order-0
ANS (files/entropy.py: table included) and zpaq when installed. Scales are left out: every coding
of the symbols stores them alike.

Layouts (quant/permute.py), applied to each 2-D one-byte symbol matrix before coding: `as-is`,
`transpose`, `sorted-rows` (rows by mean |q|, the permutation's bytes added to every codec's);
`permute_mlp=True` / `permute_heads=True` first reorder the MLP hidden units / attention heads,
free since the model is invariant to both.

>>> import torch
>>> sd = {"w": torch.randn(256, 300, generator=torch.Generator().manual_seed(0))}
>>> r = squeeze(sd, "int6", codecs=("zlib", "ans"))
>>> row = r.frame.iloc[0]
>>> row.best_codec, bool(row.ans_bytes < row.zlib_bytes), bool(row.entropy_bytes < row.ans_bytes < row.entropy_bytes * 1.01)
('ans', True, True)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from torch import Tensor

from pgolf.budget.exact.build import assign, quantize_item
from pgolf.budget.exact.decoder import decoder_source
from pgolf.budget.files import entropy
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.files.grouped_ans import classes
from pgolf.budget.progress import progress
from pgolf.budget.quant.permute import permutation_bytes, permute_heads as _permute_heads, permute_mlp as _permute_mlp
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.report_base import Report

# frame column -> compressor spec ("ans": one order-0 table for the whole tensor)
CODEC_COLUMNS = {"zlib": "zlib_bytes", "zstd": "zstd_bytes", "lzma": "lzma_bytes",
                 "brotli+byte-shuffle": "brotli_shuffle_bytes", "ans": "ans_bytes", "zpaq": "zpaq_bytes",
                 "ans:row16": "ans_row16_bytes", "ans:col16": "ans_col16_bytes"}
# one table per class of 16 row / column classes (files/grouped_ans.py), shape and labels counted
GROUPED = {"ans:row16": 0, "ans:col16": 1}
DEFAULT_CODECS = tuple(CODEC_COLUMNS)
REFERENCE = "brotli+byte-shuffle"
GROUPS = 16
LAYOUTS = ("as-is", "transpose", "sorted-rows")


def _laid_out(mat: np.ndarray | None, values: bytes, layout: str) -> tuple[bytes, int]:
    """(the values in `layout`, bytes of side information it needs)."""
    if mat is None or layout == "as-is":
        return values, 0
    if layout == "transpose":
        return np.ascontiguousarray(mat.T).tobytes(), 0
    order = np.argsort(-np.abs(mat.astype(np.int16)).mean(axis=1), kind="stable")
    return np.ascontiguousarray(mat[order]).tobytes(), permutation_bytes(mat.shape[0])


def conditional_floor_bytes(sym: np.ndarray, axis: int, groups: int = GROUPS) -> float:
    """Bytes of sum_g n_g H(q | group g), rows (axis 0) or columns (axis 1) of the int8 matrix `sym`
    put in `groups` equal-count classes by mean |q|.

    >>> q = np.array([[0, 0, 0, 0], [5, -5, 5, -5]], np.int8)
    >>> conditional_floor_bytes(q, 0, 2), entropy.entropy_bits(q.view(np.uint8)) / 8
    (0.5, 1.5)
    """
    label = classes(sym, axis, groups)
    u = sym.view(np.uint8)
    bits = 0.0
    for g in np.unique(label):
        part = u[label == g] if axis == 0 else u[:, label == g]
        bits += entropy.entropy_bits(entropy.counts(part))
    return bits / 8


@dataclasses.dataclass(repr=False)
class SqueezeReport(Report):
    """Per tensor floors and codec bytes; headline totals, the best choice, its decoder's code bytes.

    >>> import torch
    >>> r = squeeze({"w": torch.randn(128, 256)}, "int6", codecs=("zlib", "ans"))
    >>> type(r).__name__, r.headline["best_bytes"] == int(r.frame["best_bytes"].sum())
    ('SqueezeReport', True)
    """

    title: str = "pgolf squeeze"


def _symbols_matrix(item) -> np.ndarray | None:
    """The stored int8 symbols as (rows, cols) when one byte stores one value of a 2-D+ tensor."""
    if item.scheme.kind != "quantized" or len(item.shape) < 2 or len(item.values) != int(np.prod(item.shape)):
        return None
    return np.frombuffer(item.values, np.int8).reshape(item.shape[0], -1)


def _row(item, comps: dict[str, object], layout: str = "as-is") -> dict:
    values = item.values
    c = entropy.counts(np.frombuffer(values, np.uint8))
    row = {"name": item.name, "shape": item.shape, "scheme": item.scheme.name, "values_bytes": len(values),
           "entropy_bytes": entropy.entropy_bits(c) / 8}
    mat = _symbols_matrix(item)
    row["entropy_row_group_bytes"] = conditional_floor_bytes(mat, 0) if mat is not None else float("nan")
    row["entropy_col_group_bytes"] = conditional_floor_bytes(mat, 1) if mat is not None else float("nan")
    row["ans_table_bytes"] = entropy.table_bytes(c) if values else 0
    values, side = _laid_out(mat, values, layout)
    for spec, comp in comps.items():
        if spec in GROUPED:  # the compressor's own stream with this tensor as its one matrix
            row[CODEC_COLUMNS[spec]] = float("nan") if mat is None or comp is None else \
                len(comp.compress(values, [(0, *(mat.shape[::-1] if layout == "transpose" else mat.shape))])) + side
        elif comp is None:
            row[CODEC_COLUMNS[spec]] = float("nan")
        elif spec == "ans":
            row["ans_bytes"] = len(entropy.encode(np.frombuffer(values, np.uint8))) + side
        else:
            row[CODEC_COLUMNS[spec]] = len(comp.compress(values)) + side
    measured = {s: row[CODEC_COLUMNS[s]] for s, comp in comps.items() if comp is not None and row[CODEC_COLUMNS[s]] >= 0}
    best = min(measured, key=lambda s: (measured[s], s))
    row["best_codec"], row["best_bytes"] = best, int(measured[best])
    return row


def squeeze(sd: dict[str, Tensor], plan: str | Plan = "official-int8", codecs=DEFAULT_CODECS,
            quiet: bool = True, source: str = "", layout: str = "as-is", permute_mlp: bool = False,
            permute_heads: bool = False) -> SqueezeReport:
    """Floors and exact bytes per tensor under each codec (unavailable ones are NaN and noted).

    `codecs`: names from CODEC_COLUMNS; `layout`: one of LAYOUTS, applied to every symbol matrix.

    >>> import torch, pgolf as pg
    >>> g = torch.Generator().manual_seed(0)
    >>> sd = {"fc.weight": torch.randn(256, 320, generator=g) * torch.linspace(0.1, 3, 320)}
    >>> r = pg.squeeze(sd, "int6", codecs=("brotli+byte-shuffle", "ans", "ans:col16"))
    >>> row = r.frame.iloc[0]
    >>> row.best_codec, bool(row.entropy_col_group_bytes < row.ans_col16_bytes < min(row.ans_bytes, row.brotli_shuffle_bytes))
    ('ans:col16', True)
    """
    plan = resolve_plan(plan)
    if layout not in LAYOUTS:
        from pgolf.budget.errors import PgolfInputError

        raise PgolfInputError(None, f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if permute_mlp:
        sd = _permute_mlp(sd)[0]
    if permute_heads:
        sd = _permute_heads(sd)[0]
    unknown = [c for c in codecs if c not in CODEC_COLUMNS]
    if unknown:
        from pgolf.budget.errors import PgolfInputError

        raise PgolfInputError(None, f"squeeze codecs are {', '.join(CODEC_COLUMNS)}; not {', '.join(unknown)}")
    comps, notes = {}, []
    for spec in codecs:
        comp = get_compressor(spec)
        comps[spec] = comp if comp.available else None
        if not comp.available:
            notes.append(f"{spec} not measured: {comp.reason}")
    items = [i for i in assign(sd, plan, check_finite=False) if i.tied_to is None]
    rows = [_row(quantize_item(i), comps, layout) for i in progress(items, desc="squeeze", total=len(items), quiet=quiet)]
    frame = pd.DataFrame(rows)
    layout_name = layout + (" + permute-mlp" if permute_mlp else "") + (" + permute-heads" if permute_heads else "")
    head = {"source": source, "plan": plan.name, "layout": layout_name, "params": int(sum(np.prod(i.shape) for i in items)),
            "entropy_bytes": round(float(frame["entropy_bytes"].sum()), 1),
            # tensors without a conditional floor (not 2-D one-byte symbols) count their order-0 floor
            "entropy_row_group_bytes": round(float(frame["entropy_row_group_bytes"].fillna(frame["entropy_bytes"]).sum()), 1),
            "entropy_col_group_bytes": round(float(frame["entropy_col_group_bytes"].fillna(frame["entropy_bytes"]).sum()), 1)}
    for spec, comp in comps.items():
        if comp is not None:  # grouped ANS: tensors without a symbol matrix count their plain ANS bytes
            col = frame[CODEC_COLUMNS[spec]]
            head[CODEC_COLUMNS[spec]] = int(col.fillna(frame["ans_bytes"]).sum() if spec in GROUPED and
                                            "ans_bytes" in frame else col.sum())
    head["best_bytes"] = int(frame["best_bytes"].sum())
    head["bytes_code_decoder"] = _decoder_cost(sd, plan, set(frame["best_codec"]))
    if REFERENCE in comps and comps[REFERENCE] is not None:
        head["net_saving_bytes"] = head["brotli_shuffle_bytes"] - head["best_bytes"] - head["bytes_code_decoder"]
    notes.append("bytes are the stored values (symbols) of each tensor coded alone; scales excluded; floors of "
                 f"row/column groups: {GROUPS} magnitude classes, their labels not counted")
    notes.append("best_bytes mixes codecs per tensor (a measurement); `--compressor best` builds a real artifact "
                 "choosing per segment among ans, zstd, lzma, brotli, brotli + byte-shuffle, and per matrix a "
                 "row/column-class table")
    return SqueezeReport(headline=head, frame=frame, notes=notes)


def _decoder_cost(sd, plan: Plan, chosen: set[str]) -> int:
    """Code bytes the chosen codecs add to the emitted decoder over the brotli one (0 when brotli only)."""
    base = len(decoder_source(plan, "brotli", sd).encode())
    if chosen & set(GROUPED):  # one grouped decoder reads both kinds and holds plain ans's code
        chosen = (chosen - set(GROUPED) - {"ans"}) | {min(chosen & set(GROUPED))}
    extra = [len(decoder_source(plan, c, sd).encode()) - base for c in chosen
             if c != REFERENCE and get_compressor(c).codec != "brotli"]
    return max(0, sum(extra))
