"""The demo's report as data, and its markdown rendering (report.md).

A `DemoReport` is a title, headline numbers and ordered `Section`s; each section holds a short
intro and items: report objects (rendered by their own `to_markdown`), figures (the PNG/SVG/CSV
paths `export_plot` wrote), tables (DataFrames) and links. Paths are written relative to the
report's folder, so the folder can be moved or served as is.

>>> s = Section("Budget", "Exact bytes.", [Link("plan", Path("out/plan.json"))])
>>> print(render_markdown(DemoReport("pgolf demo", {"cap": 123_456}, [s]), Path("out")))
# pgolf demo
<BLANKLINE>
- **cap**: 123,456
<BLANKLINE>
## Budget
<BLANKLINE>
Exact bytes.
<BLANKLINE>
- [plan](plan.json)
<BLANKLINE>
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Union

import pandas as pd

from pgolf.budget.report_base import Report, format_value


@dataclasses.dataclass(frozen=True)
class Figure:
    """One exported figure: {"png": path, "svg": path, "csv": path} and a one-line caption."""

    kind: str
    paths: dict[str, Path]
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
    """A small DataFrame shown as is (numbers formatted like report objects format them)."""

    title: str
    frame: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class Link:
    text: str
    path: Path


Item = Union[Report, Figure, Table, Link]


@dataclasses.dataclass
class Section:
    title: str
    intro: str = ""
    items: list[Item] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DemoReport:
    title: str
    headline: dict[str, Any]
    sections: list[Section]
    notes: list[str] = dataclasses.field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [i for s in self.sections for i in s.items if isinstance(i, Figure)]


def relative(path: Path, base: Path) -> str:
    """`path` relative to `base` with forward slashes (a link that works in any viewer)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def table_markdown(frame: pd.DataFrame) -> str:
    """A pipe table with report-style numbers (thousands separators, 6 significant digits).

    >>> print(table_markdown(pd.DataFrame({"step": [100], "val_bpb": [2.123456789]})))
    | step | val_bpb |
    |---|---|
    | 100 | 2.12346 |
    """
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
    return "\n".join(lines)


def _item_markdown(item: Item, base: Path) -> str:
    if isinstance(item, Figure):
        png = relative(item.paths["png"], base)
        others = ", ".join(f"[{fmt.upper()}]({relative(item.paths[fmt], base)})" for fmt in ("svg", "csv")
                           if fmt in item.paths)
        caption = f"*{item.caption}* " if item.caption else ""
        return f"![{item.kind}]({png})\n\n{caption}({others})"
    if isinstance(item, Table):
        return (f"**{item.title}**\n\n" if item.title else "") + table_markdown(item.frame)
    if isinstance(item, Link):
        return f"- [{item.text}]({relative(item.path, base)})"
    # report objects render themselves; one heading level below the section
    return item.to_markdown().replace("### ", "#### ", 1).rstrip()


def render_markdown(report: DemoReport, base: Path) -> str:
    """report.md's text; links relative to `base` (the folder report.md is written to)."""
    lines = [f"# {report.title}", ""]
    lines += [f"- **{k}**: {format_value(v)}" for k, v in report.headline.items()]
    lines += [f"\n_{n}_" for n in report.notes]
    for section in report.sections:
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for item in section.items:
            lines += [_item_markdown(item, base), ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"  # one blank line between blocks
