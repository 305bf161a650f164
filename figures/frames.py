"""Turn whatever a user holds (a DataFrame, a Report, a report's JSON dict, rows) into the frame a
plot needs, and say clearly which columns are missing.

A Report's headline numbers (plan, compressor, cap, ...) become constant columns where the frame
lacks them, so a budget report's per-tensor rows still know their plan.

>>> as_frame({"plan": "int6", "tensors": [{"name": "a", "values_bytes": 3}]}).to_dict("records")
[{'name': 'a', 'values_bytes': 3, 'plan': 'int6'}]
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.validate import short_repr
from pgolf.budget.exact.compare import CompareReport


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _rows_of(obj: Mapping) -> tuple[list | None, dict]:
    """(row list, headline scalars) of a report dict: rows under "tensors", else its only list of dicts."""
    lists = {k: v for k, v in obj.items() if isinstance(v, list) and all(isinstance(r, Mapping) for r in v)}
    headline = {k: v for k, v in obj.items() if _scalar(v)}
    if "tensors" in lists:
        return lists["tensors"], headline
    if len(lists) == 1:
        return next(iter(lists.values())), headline
    if len(lists) > 1:
        raise PgolfInputError(None, f"several row lists ({', '.join(sorted(lists))}): cannot tell which to plot")
    return None, headline


def with_headline(frame: pd.DataFrame, headline: Mapping[str, Any]) -> pd.DataFrame:
    """Add each scalar headline value as a column where the frame has none of that name."""
    out = frame.copy()
    for key, value in headline.items():
        if key not in out.columns and _scalar(value) and value is not None:
            out[key] = value
    return out


def as_frame(data: Any) -> pd.DataFrame:
    """DataFrame | Report-like (`.to_dataframe()`/`.frame`, `.headline`) | report dict | list of row dicts."""
    if isinstance(data, pd.DataFrame):
        return data.copy()
    if hasattr(data, "to_dataframe") or hasattr(data, "frame"):
        frame = data.to_dataframe() if hasattr(data, "to_dataframe") else data.frame
        return with_headline(pd.DataFrame(frame), getattr(data, "headline", {}) or {})
    if isinstance(data, Mapping):
        rows, headline = _rows_of(data)
        if rows is None:  # a headline-only report (e.g. one budget): one row
            return pd.DataFrame([headline])
        return with_headline(pd.DataFrame(rows), headline)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        rows = list(data)
        if rows and all(isinstance(r, pd.DataFrame) for r in rows):
            return pd.concat(rows, ignore_index=True)
        if all(isinstance(r, Mapping) for r in rows):
            return pd.DataFrame(rows)
    raise PgolfInputError(None, f"cannot plot a {type(data).__name__}: give a DataFrame, a report or a list of rows")


def require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """PgolfInputError naming the missing columns (and the ones present) for plot `what`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise PgolfInputError(None, f"{what} needs column(s) {', '.join(missing)}; the data has: {have}")
    if not len(frame):
        raise PgolfInputError(None, f"{what}: no rows to plot")


MAX_ABS = 1e15  # no byte count, BPB or step pgolf plots comes near; 1e308 breaks the axis locators


def numeric(frame: pd.DataFrame, columns: Iterable[str], what: str, complete: bool = False) -> pd.DataFrame:
    """Cast columns to float; a non-numeric, infinite or absurdly large entry (and, when `complete`,
    an empty one) is bad input, not a crash inside matplotlib.

    >>> numeric(pd.DataFrame({"b": ["3", 1e308]}), ["b"], "plot")
    Traceback (most recent call last):
    ...
    pgolf.budget.errors.PgolfInputError: plot: column b has 1e+308 in row 1, beyond ±1e+15
    """
    out = frame.copy()
    for c in columns:
        converted = pd.to_numeric(out[c], errors="coerce")
        text = out[c].astype(str).str.strip().str.lower()
        bad = converted.isna() & out[c].notna() & ~text.isin(["nan", ""])
        if bad.any():
            raise PgolfInputError(None, f"{what}: column {c} has non-numeric value {short_repr(out[c][bad].iloc[0])}")
        if complete and converted.isna().any():
            raise PgolfInputError(None, f"{what}: column {c} is empty or NaN in row {int(np.argmax(converted.isna()))}")
        huge = converted.notna() & ~(converted.abs() <= MAX_ABS)
        if huge.any():
            row = int(np.argmax(huge.to_numpy()))
            raise PgolfInputError(None, f"{what}: column {c} has {converted.iloc[row]:g} in row {row}, "
                                        f"beyond ±{MAX_ABS:g}")
        out[c] = converted.astype("float64")
    return out


def module_of(name: str, depth: int = 3) -> str:
    """The module group of a tensor name: drop the parameter name, keep `depth` components.

    >>> [module_of(n) for n in ("blocks.3.attn.c_q.weight", "blocks.3.attn_scale", "tok_emb.weight", "skip_weights")]
    ['blocks.3.attn', 'blocks.3', 'tok_emb', 'skip_weights']
    """
    parts = name.split(".")
    if len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts[:depth])


def plan_points(report: CompareReport, bpb: pd.DataFrame, compressors=None) -> pd.DataFrame:
    """The compare matrix's rows (only `compressors`, when given) with each plan's roundtrip
    val_bpb: the headroom plot's input. `label` drops the common "+small" to keep labels short.

    >>> import torch, pandas as pd
    >>> from pgolf.budget.exact.compare import compare
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> bpb = pd.DataFrame({"plan": ["int6"], "val_bpb": [1.3]})
    >>> plan_points(compare(sd, ["int6"], ["zlib"]), bpb)[["label", "val_bpb"]].values.tolist()
    [['int6 + zlib', 1.3]]
    """
    frame = report.to_dataframe().merge(bpb, on="plan", how="left")
    if compressors is not None:
        frame = frame[frame["compressor"].isin(list(compressors))].reset_index(drop=True)
    frame["label"] = frame["plan"].str.removesuffix("+small") + " + " + frame["compressor"]
    frame["cap"] = report.headline["cap"]
    return frame
