"""Every plan x compressor pair, measured exactly: a matrix of bytes, bits/param and headroom.

Each plan is quantized and serialized once; each compressor then compresses those bytes in a
thread pool over the cores (the codecs release the GIL) and every artifact is read back and
checked bit for bit, as in `measure_budget`.

>>> import torch
>>> r = compare({"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}, ["int6", "int4"], ["zlib", "none"])
>>> r.frame[["plan", "compressor"]].values.tolist()
[['int6', 'zlib'], ['int6', 'none'], ['int4', 'zlib'], ['int4', 'none']]
"""
from __future__ import annotations

import dataclasses
import math
from concurrent.futures import as_completed

import pandas as pd
from torch import Tensor

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.build import Item, assign, dequantized, package, serialize
from pgolf.budget.exact.decode import DEFAULT_MAX_OUTPUT, Stored, read_artifact, roundtrip_mismatches, stored_form
from pgolf.budget.exact.threads import cancelling_pool, one_torch_thread
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.exact.measure import WORKERS, code_sizes_for, measure_budget
from pgolf.budget.quant.plans import resolve_plan, small_plans
from pgolf.budget.progress import progress
from pgolf.budget.report_base import Report, _frame_text

PAIR_COLUMNS = ("plan", "compressor", "bytes_model", "bits_per_param", "bytes_total", "headroom_bytes",
                "serialized_bytes", "artifact", "roundtrip_exact")
MATRIX_VALUES = ("bytes_model", "bits_per_param", "headroom_bytes")


@dataclasses.dataclass(repr=False)
class CompareReport(Report):
    """One row per (plan, compressor); text shows one plan x compressor matrix per value.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> r = compare(sd, ["int6"], ["zlib"])
    >>> type(r).__name__, r.headline["best"]
    ('CompareReport', 'int6 + zlib')
    """

    rows_key: str = "pairs"

    def matrix(self, value: str) -> pd.DataFrame:
        m = self.frame.pivot(index="plan", columns="compressor", values=value)
        return m.loc[list(dict.fromkeys(self.frame["plan"])), list(dict.fromkeys(self.frame["compressor"]))]

    def to_text(self, max_rows: int | None = None) -> str:
        lines = [self.title] + self._headline_lines()
        for value in MATRIX_VALUES:
            text = _frame_text(self.matrix(value).reset_index()).set_index("plan")
            lines += ["", f"{value}:", text.to_string()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _pair(raw: bytes, kind: str, spec: str, expected, as_is: bytes | None, verify: bool,
          matrices=()) -> tuple[bytes, bool | None]:
    comp = get_compressor(spec)
    blob = as_is if as_is is not None else package(raw, kind, comp, matrices)
    if not verify:
        return blob, None
    bad = roundtrip_mismatches(read_artifact(blob, max(DEFAULT_MAX_OUTPUT, 2 * len(raw))), expected)
    if bad:
        raise RuntimeError(f"{spec}: artifact roundtrip is not exact for {len(bad)} tensor(s), first {bad[0]!r}")
    return blob, True


@one_torch_thread()
def compare(sd, plans=("official-int8", "int6"), compressors=("zlib", "zstd"), *, code=None,
            code_wrapped: bool = False, cap: int = CAP_BYTES, verify: bool = True, quiet: bool = True,
            source: str = "", stored: Stored | None = None) -> CompareReport:
    """Measure every plan x compressor pair of `sd` (see module docstring).

    With `stored` (an artifact's stored form, decode.py) its own plan keeps the stored tensors,
    and its own plan + compressor pair is the file itself.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> r = compare(sd, ["int6", "int4"], ["zlib", "none"])
    >>> r.frame[["plan", "compressor"]].values.tolist()
    [['int6', 'zlib'], ['int6', 'none'], ['int4', 'zlib'], ['int4', 'none']]
    """
    plan_objs = [resolve_plan(p) for p in plans]
    names = [p.name for p in plan_objs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PgolfInputError(None, f"two plans are named {twice[0]!r}: give each plan (or plan file's \"name\") "
                                    f"a name of its own")
    comps = [get_compressor(c) for c in compressors]
    for c in comps:
        c.require()
    code_sizes = code_sizes_for(code)
    bytes_code = code_sizes.get("wrapped" if code_wrapped else "raw", 0)
    jobs, rows, params = {}, {}, None
    with cancelling_pool(WORKERS) as pool:  # Ctrl-C: queued pairs never start, running ones are not waited on
        for plan in progress(plan_objs, desc="quantize plans", quiet=quiet):
            own = stored is not None and plan.name == stored.plan
            items: list[Item] = stored.items if own else assign(sd, plan)
            matrices: list[tuple[int, int, int]] = []
            kind, raw = serialize(items, plan.name, matrices=matrices)
            params = sum(math.prod(i.shape) for i in items if not i.tied_to)
            expected = dequantized(items) if verify else None
            for c in comps:
                as_is = stored.built.blob if own and c.name == stored.compressor else None
                fut = pool.submit(_pair, raw, kind, c.name, expected, as_is, verify, matrices)
                jobs[fut] = (plan.name, c.name, len(raw), kind)
        for fut in progress(as_completed(jobs), desc="compress", total=len(jobs), quiet=quiet):
            plan_name, comp_name, nraw, kind = jobs[fut]
            blob, exact = fut.result()
            t = totals(len(blob), bytes_code, params, cap)
            rows[(plan_name, comp_name)] = {
                "plan": plan_name, "compressor": comp_name, "bytes_model": len(blob),
                "bits_per_param": t.bits_per_param, "bytes_total": t.bytes_total, "headroom_bytes": t.headroom_bytes,
                "serialized_bytes": nraw, "artifact": kind, "roundtrip_exact": exact}
    ordered = [rows[(p.name, c.name)] for p in plan_objs for c in comps]
    frame = pd.DataFrame(ordered, columns=list(PAIR_COLUMNS))
    best = frame.loc[frame["bytes_model"].idxmin()]
    head = {"params": params, "bytes_code": bytes_code, "cap": int(cap),
            "best": f"{best['plan']} + {best['compressor']}", "best_bytes_model": int(best["bytes_model"])}
    notes = [] if code_sizes else ["bytes_code = 0: no code file given (--code FILE adds the script's bytes)"]
    title = f"pgolf compare: {source}" if source else "pgolf compare"
    return CompareReport(title=title, headline=head, frame=frame, notes=notes)


def compare_input(loaded, plans=("official-int8", "int6"), compressors=("zlib", "zstd"), **kw) -> CompareReport:
    """`compare` for an inputs.LoadedInput: an artifact's own plan keeps its stored tensors.

    >>> import torch
    >>> from pgolf.budget.exact.build import build_artifact
    >>> from pgolf.budget.exact.inputs import load_bytes
    >>> blob = build_artifact({"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}, "int5", "zstd")
    >>> compare_input(load_bytes(blob, "m.pgolf"), ["int5"], ["zstd"]).frame["bytes_model"].tolist() == [len(blob)]
    True
    """
    kw.setdefault("source", str(loaded.path))
    return compare(loaded.state_dict, plans, compressors, stored=stored_form(loaded.artifact), **kw)


def compressor_frame(sd: dict[str, Tensor], schemes, compressors, quiet: bool = True) -> pd.DataFrame:
    """Per-tensor rows of `measure_budget` for each uniform scheme x compressor (only the tensors
    stored in that scheme): scheme, compressor, compressed_bytes (alone), entropy_bytes.

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> compressor_frame(sd, ["int6"], ["zlib", "lzma"])[["plan", "compressor"]].values.tolist()
    [['int6+small', 'zlib'], ['int6+small', 'lzma']]
    """
    frames = []
    pairs = [(p, c) for p in small_plans(schemes) for c in compressors]
    for plan, comp in progress(pairs, desc="schemes x compressors", quiet=quiet):
        frame = measure_budget(sd, plan, comp).to_dataframe()
        frames.append(frame[frame["scheme"] == plan.default].assign(plan=plan.name, compressor=comp))
    return pd.concat(frames, ignore_index=True)
