"""Report objects: a tidy DataFrame plus headline numbers that render themselves.

Reports never print. `repr(report)` is the CLI text, `_repr_html_` is what Jupyter shows,
`to_markdown()` goes into report.md, `to_dict()`/`to_json()` is the machine form.

>>> r = Report(title="demo", headline={"bytes_total": 1234567}, frame=pd.DataFrame({"a": [1]}))
>>> print(repr(r).splitlines()[1])
bytes_total: 1,234,567
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
from typing import Any

import numpy as np
import pandas as pd


def format_value(value: Any) -> str:
    """Integers with thousands separators, floats to 6 significant digits, the rest as str."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(value, tuple):
        return "x".join(str(d) for d in value) or "scalar"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity: null (an unbounded interval, an undefined SE)
    return value


def _frame_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda col: col.map(format_value)) if len(frame) else frame


@dataclasses.dataclass
class Report:
    """Base report: subclasses set `title`, fill `headline` and `frame`, and may add `notes`.

    >>> import pandas as pd
    >>> r = Report(title="demo", headline={"bytes_total": 1234567}, frame=pd.DataFrame({"a": [1]}))
    >>> r.to_dict()
    {'bytes_total': 1234567, 'tensors': [{'a': 1}]}
    """

    title: str = ""
    headline: dict[str, Any] = dataclasses.field(default_factory=dict)
    frame: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    notes: list[str] = dataclasses.field(default_factory=list)
    rows_key: str = "tensors"

    def to_dataframe(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        out = {k: _jsonable(v) for k, v in self.headline.items()}
        out[self.rows_key] = [_jsonable(r) for r in self.frame.to_dict(orient="records")]
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def _headline_lines(self) -> list[str]:
        return [f"{k}: {format_value(v)}" for k, v in self.headline.items()]

    def to_text(self, max_rows: int | None = 60) -> str:
        lines = [self.title] if self.title else []
        lines += self._headline_lines()
        if len(self.frame):
            shown = self.frame if max_rows is None else self.frame.head(max_rows)
            lines += ["", _frame_text(shown).to_string(index=False)]
            if max_rows is not None and len(self.frame) > max_rows:
                lines.append(f"... {len(self.frame) - max_rows:,} more rows (use to_dataframe())")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", ""] if self.title else []
        lines += [f"- **{k}**: {format_value(v)}" for k, v in self.headline.items()]
        if len(self.frame):
            text = _frame_text(self.frame)
            cols = list(text.columns)
            lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for row in text.itertuples(index=False):
                lines.append("| " + " | ".join(str(v) for v in row) + " |")
        lines += [f"\n_{n}_" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        head = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(format_value(v))}</td></tr>"
            for k, v in self.headline.items()
        )
        parts = [f"<h4>{html.escape(self.title)}</h4>" if self.title else "", f"<table>{head}</table>"]
        if len(self.frame):
            parts.append(_frame_text(self.frame).to_html(index=False, escape=True))
        parts += [f"<p><em>{html.escape(n)}</em></p>" for n in self.notes]
        return "\n".join(parts)


class LabelledReport:
    """Mixin for a Report whose headline values say how they were obtained: text, markdown and HTML
    print `value (exact)` or `value (<word>, interval low .. high)`; JSON adds `exactness` (key ->
    "exact" | word) and `interval` (key -> [low, high]). Subclasses give exactness() and intervals()."""

    word = "estimated"

    def exactness(self) -> dict[str, str]:
        return {}

    def intervals(self) -> dict[str, list]:
        return {}

    def _labelled(self) -> dict[str, str]:
        kinds, ranges = self.exactness(), self.intervals()
        out = {}
        for k, v in self.headline.items():
            text = format_value(v)
            if k in ranges:
                text += f" ({self.word}, interval {format_value(ranges[k][0])} .. {format_value(ranges[k][1])})"
            elif k in kinds:
                text += f" ({kinds[k]})"
            out[k] = text
        return out

    def _plain(self) -> Report:
        return Report(title=self.title, headline=self._labelled(), frame=self.frame, notes=self.notes)

    def _headline_lines(self) -> list[str]:
        return [f"{k}: {v}" for k, v in self._labelled().items()]

    def to_markdown(self) -> str:
        return self._plain().to_markdown()

    def _repr_html_(self) -> str:
        return self._plain()._repr_html_()

    def to_dict(self) -> dict:
        return {**super().to_dict(), "exactness": self.exactness(), "interval": self.intervals()}


def carried_intervals(head: dict, low, high) -> dict[str, list]:
    """bytes_model's interval [low, high] carried to bytes_total and headroom_bytes (code bytes are exact).

    >>> carried_intervals({"bytes_model": 100, "bytes_total": 130, "headroom_bytes": 870, "cap": 1000}, 90, 110)
    {'bytes_model': [90, 110], 'bytes_total': [120, 140], 'headroom_bytes': [860, 880]}
    """
    out = {"bytes_model": [low, high]}
    if "bytes_total" in head:
        code = head["bytes_total"] - head["bytes_model"]
        out["bytes_total"] = [low + code, high + code]
        if "headroom_bytes" in head:
            out["headroom_bytes"] = [head["cap"] - high - code, head["cap"] - low - code]
    return out
