"""The exact byte budget: per-tensor rows and the real artifact's compressed size, with headroom.

`measure_budget(sd, plan, compressor, code, cap)` quantizes, builds the real artifact in memory
(build.py), compresses it whole, reads it back and checks that every tensor decodes bit for
bit to the in-memory `fake_quantize`; the totals are that artifact's length plus the code bytes.
Each row also gives the tensor's payload compressed alone, its distinct levels and the order-0
entropy of its stored symbols (a floor no symbol-by-symbol coder can beat).

>>> import torch
>>> r = measure_budget({"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}, "int6", "zlib")
>>> r.headline["params"], r.headline["plan"], int(r.frame.loc[0, "levels"]), r.headline["roundtrip_exact"]
(70000, 'int6', 63, True)
"""
from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import Future

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pgolf.budget.exact.build import Built, Item, assign, build, dequantized, matrix_shape, quantize_item
from pgolf.budget.exact.decode import DEFAULT_MAX_OUTPUT, read_artifact, roundtrip_mismatches, stored_form
from pgolf.budget.exact.threads import cancelling_pool, one_torch_thread
from pgolf.budget.files.codebytes import code_bytes
from pgolf.budget.files.compressors import Compressor, get_compressor
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.quant.plans import Plan, quantize_small, resolve_plan
from pgolf.budget.report_base import Report

__all__ = ["measure_budget", "measure_input", "measure_items", "tensor_table", "tensor_row", "rows_frame", "BudgetReport",
           "symbol_stats", "code_sizes_for", "half_fp16_cap", "ROW_COLUMNS"]

ROW_COLUMNS = ("name", "shape", "numel", "dtype", "scheme", "storage", "kind", "bits_per_value", "values_bytes",
               "scales_bytes", "payload_bytes", "levels", "entropy_bytes", "compressed_bytes", "tied_to")
WORKERS = os.cpu_count() or 1


@dataclasses.dataclass(repr=False)
class BudgetReport(Report):
    """Headline totals (params ... headroom_bytes, then details) and one row per tensor.

    `artifact` holds the measured artifact's bytes (not rendered), e.g. to write it to a file.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> r = measure_budget(sd, "int6", "zlib")
    >>> type(r).__name__, r.to_dataframe().loc[0, "scheme"]
    ('BudgetReport', 'int6')
    """

    artifact: bytes | None = dataclasses.field(default=None, repr=False)


def symbol_stats(symbols: Tensor) -> tuple[int, float]:
    """(distinct levels, order-0 entropy in bytes, unrounded) of stored symbols.

    >>> symbol_stats(torch.tensor([1, 1, -1, 0], dtype=torch.int8))
    (3, 0.75)
    """
    flat = symbols.reshape(-1)
    if flat.numel() == 0:
        return 0, 0.0
    if flat.element_size() == 1:
        counts = np.bincount(flat.view(torch.uint8).numpy(), minlength=256)
    elif flat.element_size() == 2:
        counts = np.bincount(flat.view(torch.int16).numpy().view(np.uint16), minlength=65536)
    else:
        counts = np.unique(flat.numpy(), return_counts=True)[1]
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    bits = n * math.log2(n) - float((counts * np.log2(counts)).sum())
    return int(counts.size), max(0.0, float(bits)) / 8


def tensor_row(name: str, shape: tuple[int, ...], dtype: torch.dtype, scheme, tied: bool = False) -> dict:
    """The columns every per-tensor row starts with; a tied entry stores no bytes of its own.

    >>> from pgolf.budget.quant.schemes import get_scheme
    >>> tensor_row("w", (4, 8), torch.float32, get_scheme("int8"))["payload_bytes"]
    40
    """
    nv, ns = (0, 0) if tied else scheme.payload_bytes(tuple(shape), dtype)
    return {"name": name, "shape": tuple(shape), "numel": math.prod(shape), "dtype": str(dtype).removeprefix("torch."),
            "scheme": scheme.name, "storage": scheme.storage, "values_bytes": int(nv), "scales_bytes": int(ns),
            "payload_bytes": int(nv + ns)}


def _row(item: Item, src: Item, compressed: int | None) -> dict:
    tied = item.tied_to is not None
    levels, entropy = (0, 0.0) if tied else symbol_stats(src.q.symbols)
    return {**tensor_row(item.name, item.shape, item.dtype, src.scheme, tied),
            "kind": "quantized" if src.scheme.kind == "quantized" else "passthrough",
            "bits_per_value": src.scheme.bits_for(src.dtype), "levels": levels, "entropy_bytes": int(round(entropy)),
            "compressed_bytes": 0 if tied else (compressed if compressed is not None else -1),
            "tied_to": item.tied_to or ""}


def rows_frame(items: list[Item], compressed: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per item (quantized), columns ROW_COLUMNS; compressed_bytes -1 where not measured."""
    by_name = {i.name: i for i in items}
    rows = [_row(i, by_name[i.tied_to] if i.tied_to else i, (compressed or {}).get(i.name)) for i in items]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def _compress_alone(comp: Compressor, item: Item) -> int:
    shape = matrix_shape(item)
    return len(comp.compress(item.values + item.scales, [(0, *shape)] if shape else ()))


@one_torch_thread()
def tensor_table(sd: dict[str, Tensor], plan: str | Plan = "official-int8",
                 compressor: str | Compressor = "zlib") -> pd.DataFrame:
    """Per-tensor rows (ROW_COLUMNS) of `sd` under `plan`, each payload compressed alone."""
    comp = get_compressor(compressor)
    items = [quantize_item(i) for i in assign(sd, plan)]
    with cancelling_pool(WORKERS) as pool:
        sizes = dict(zip([i.name for i in items if not i.tied_to],
                         pool.map(lambda i: _compress_alone(comp, i), [i for i in items if not i.tied_to])))
    return rows_frame(items, sizes)


def code_sizes_for(code) -> dict[str, int]:
    if code is None:
        return {}
    if isinstance(code, dict):
        return {k: int(code[k]) for k in ("raw", "wrapped", "inner", "self_logged") if k in code}
    return code_bytes(code)


@one_torch_thread()
def measure_items(items: list[Item], plan_name: str, compressor: str | Compressor = "zlib", *, code=None,
                  code_wrapped: bool = False, cap: int = CAP_BYTES, per_tensor: bool = True, verify: bool = True,
                  quiet: bool = True, source: str = "", built: Built | None = None) -> BudgetReport:
    """The budget of items from `assign` or `items_from_export`; `built` skips building (an as-is file)."""
    comp = get_compressor(compressor)
    comp.require()
    futures: dict[str, Future] = {}
    with cancelling_pool(WORKERS) as pool:
        def submit(item: Item) -> None:
            if per_tensor and item.tied_to is None:
                futures[item.name] = pool.submit(_compress_alone, comp, item)
        if built is None:
            built = build(items, plan_name, comp, quiet, on_item=submit)
        else:
            for item in items:
                submit(item)
        compressed = {n: f.result() for n, f in futures.items()}
    exact = None
    if verify:
        limit = max(DEFAULT_MAX_OUTPUT, 2 * built.serialized_bytes)
        bad = roundtrip_mismatches(read_artifact(built.blob, limit), dequantized(items))
        if bad:  # a pgolf bug, never bad input: say exactly where
            raise RuntimeError(f"artifact roundtrip is not exact for {len(bad)} tensor(s), first {bad[0]!r}")
        exact = True
    frame = rows_frame(items, compressed if per_tensor else None)
    return _report(frame, plan_name, comp, built, code_sizes_for(code), code_wrapped, cap, exact, source)


def _report(frame, plan_name, comp, built, code, code_wrapped, cap, exact, source) -> BudgetReport:
    params = int(frame.loc[frame["tied_to"] == "", "numel"].sum())
    bytes_code = code.get("wrapped" if code_wrapped else "raw", 0)
    bytes_model = len(built.blob)
    t = totals(bytes_model, bytes_code, params, cap)
    head = {"params": params, "plan": plan_name, "compressor": comp.name, "bytes_model": bytes_model,
            "bytes_code": bytes_code, "bytes_total": t.bytes_total, "cap": int(cap),
            "headroom_bytes": t.headroom_bytes, "bits_per_param": t.bits_per_param,
            "payload_bytes": int(frame["payload_bytes"].sum()), "serialized_bytes": built.serialized_bytes,
            "artifact": built.kind, "roundtrip_exact": exact}
    if code:
        head.update(bytes_code_raw=code["raw"], bytes_code_wrapped=code["wrapped"])
        if "inner" in code:  # the script ships wrapped: counted as shipped, its source is larger
            head["bytes_code_inner"] = code["inner"]
    notes = []
    if not code:
        notes.append("bytes_code = 0: no code file given (--code FILE adds the script's bytes)")
    elif "inner" in code:
        notes.append(f"the code is a self-extracting wrapper: counted as shipped ({code['raw']:,} bytes), "
                     f"{code['inner']:,} bytes of source inside")
    if "self_logged" in code:
        head["bytes_code_self_logged"] = code["self_logged"]
        notes.append(f"the code has CRLF line ends: counted as shipped ({code['raw']:,} bytes); the script's own "
                     f"`Code size:` line will log {code['self_logged']:,} (it reads text with universal newlines)")
    if head["headroom_bytes"] < 0:
        notes.append(f"over the cap by {-head['headroom_bytes']:,} bytes")
    tied = frame.loc[frame["tied_to"] != "", ["name", "tied_to"]]
    if len(tied):
        pairs = ", ".join(f"{n} = {t}" for n, t in list(zip(tied["name"], tied["tied_to"]))[:3])
        notes.append(f"tied tensors stored once (a pgolf container choice; the official export writes each name): "
                     f"{pairs}{' ...' if len(tied) > 3 else ''}")
    measured = frame["compressed_bytes"] >= 0
    if not measured.all():
        notes.append("compressed_bytes = -1: per-tensor compression skipped (per_tensor=False / --no-per-tensor)")
    elif len(frame):
        notes.append(f"compressed_bytes: each tensor's payload compressed alone with {comp.name}; "
                     f"their sum is {int(frame['compressed_bytes'].sum()):,} vs {bytes_model:,} for the whole artifact")
    title = f"pgolf budget: {source}" if source else "pgolf budget"
    return BudgetReport(title=title, headline=head, frame=frame, notes=notes, artifact=built.blob)


@one_torch_thread()
def measure_budget(sd: dict[str, Tensor], plan: str | Plan = "official-int8", compressor: str | Compressor = "zlib",
                   code=None, cap: int = CAP_BYTES, *, code_wrapped: bool = False, per_tensor: bool = True,
                   verify: bool = True, quiet: bool = True, source: str = "") -> BudgetReport:
    """Exact artifact bytes of `sd` under `plan` + `compressor`, code bytes, headroom under `cap`.

    `code`: a script path (or {"raw", "wrapped"} sizes); `code_wrapped` counts its lzma+base85
    wrapper instead of its raw bytes. `per_tensor=False` skips compressing each tensor alone.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> r = measure_budget(sd, "int6", "zlib")
    >>> r.headline["params"], r.headline["roundtrip_exact"]
    (70000, True)
    """
    plan = resolve_plan(plan)
    return measure_items(assign(sd, plan), plan.name, compressor, code=code, code_wrapped=code_wrapped, cap=cap,
                         per_tensor=per_tensor, verify=verify, quiet=quiet, source=source)


def measure_input(loaded, plan: str | Plan | None = None, compressor: str | Compressor | None = None,
                  **kw) -> BudgetReport:
    """Budget of an `inputs.LoadedInput`. An artifact measured under its own plan keeps its stored
    tensors (no requantization), and with its own compressor its file bytes ARE bytes_model;
    `None` means "as stored" (official-int8 + zlib for plain weights).

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> import tempfile, pathlib
    >>> from pgolf.budget.exact.build import build_artifact
    >>> from pgolf.budget.exact.inputs import load_input
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.pgolf"
    >>> _ = path.write_bytes(build_artifact(sd, "int5", "zstd"))
    >>> measure_input(load_input(path)).headline["bytes_model"] == path.stat().st_size
    True
    """
    stored = stored_form(loaded.artifact)
    plan = resolve_plan(plan if plan is not None else stored.plan if stored else "official-int8")
    comp = get_compressor(compressor if compressor is not None else stored.compressor if stored else "zlib")
    kw.setdefault("source", str(loaded.path))
    if stored is None or plan.name != stored.plan:
        return measure_budget(loaded.state_dict, plan, comp, **kw)
    built = stored.built if comp.name == stored.compressor else None
    return measure_items(stored.items, plan.name, comp, built=built, **kw)


def half_fp16_cap(sd: dict[str, Tensor], compressor: str = "zlib") -> tuple[int, int]:
    """(cap, fp16 bytes): half the exact artifact bytes of the model stored all in fp16 (control
    tensors fp32) with `compressor`: full precision cannot fit, 8 bits per weight only just.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> cap, fp16 = half_fp16_cap(sd)
    >>> cap == fp16 // 2 > 0
    True
    """
    fp16 = measure_budget(sd, quantize_small("fp16"), compressor, per_tensor=False).headline["bytes_model"]
    return int(fp16) // 2, int(fp16)
