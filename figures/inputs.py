"""Read what `pgolf plot` is given: a CSV, a pgolf `--json` output, or a training log.

Every failure is one PgolfInputError naming the file; nothing from pandas or json escapes.

>>> load_table("budget.json").columns.tolist()          # doctest: +SKIP
['name', 'shape', 'numel', ..., 'plan', 'compressor', 'bytes_total']
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd

from pgolf.budget.errors import PgolfInputError
from pgolf.figures.frames import as_frame
from pgolf.trainer.logs import parse_log, read_log_text

TABLE_SUFFIXES = (".csv", ".json")


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV file, or a JSON report (rows under "tensors", its only list of rows, or a top-level list)."""
    p = Path(path)
    text = read_log_text(p)  # same size limit and binary check as logs
    if not text.strip():
        raise PgolfInputError(p, "empty file")
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PgolfInputError(p, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
        except (ValueError, RecursionError) as exc:  # nested too deep, a number of thousands of digits
            raise PgolfInputError(p, f"not usable JSON: {str(exc).splitlines()[0][:120]}") from None
        if not isinstance(obj, (dict, list)):
            raise PgolfInputError(p, "JSON holds neither a report object nor a list of rows")
        try:
            frame = as_frame(obj)
        except PgolfInputError as exc:
            raise PgolfInputError(p, exc.problem) from None
    else:
        try:
            frame = pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PgolfInputError(p, f"not a readable CSV: {problem}") from None
    if not len(frame):
        raise PgolfInputError(p, "no rows")
    return frame


def load_plot_input(kind: str, paths: list[str | os.PathLike]) -> pd.DataFrame:
    """The rows of all inputs together: tables for every kind, logs too for training-curve."""
    frames = []
    for path in paths:
        if kind == "training-curve" and Path(path).suffix.lower() not in TABLE_SUFFIXES:
            frames.append(parse_log(path))
        else:
            frames.append(load_table(path))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
