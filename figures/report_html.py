"""The demo's report as one self-contained HTML page (report.html): figures embedded as base64
PNG, tables from the report objects' own `_repr_html_`, no external resource of any kind, so the
file opens anywhere, offline, and can be mailed as is.

>>> page = render_html(DemoReport("pgolf demo", {"cap": 1000}, []), Path("."))
>>> page.startswith("<!DOCTYPE html>"), "<td>1,000</td>" in page
(True, True)
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from pgolf.budget.report_base import format_value
from pgolf.figures.report_md import DemoReport, Figure, Item, Link, Table, relative

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1180px;
       padding: 0 1.5em; color: #1b1b1b; line-height: 1.45; }
h1 { border-bottom: 3px solid #0072B2; padding-bottom: .3em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
h4 { margin-bottom: .4em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }
th { background: #eef3f8; }
tr:nth-child(even) td { background: #f7f9fb; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #e1e4e8; }
figcaption { font-size: 13px; color: #444; }
.scroll { overflow-x: auto; }
.headline td, .headline th { text-align: left; }
"""


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _item_html(item: Item, base: Path) -> str:
    if isinstance(item, Figure):
        links = " · ".join(f'<a href="{html.escape(relative(item.paths[fmt], base))}">{fmt.upper()}</a>'
                           for fmt in ("svg", "csv") if fmt in item.paths)
        caption = html.escape(item.caption)
        return (f'<figure id="fig-{html.escape(item.kind)}"><img alt="{html.escape(item.kind)}" '
                f'src="{_embedded_png(item.paths["png"])}"><figcaption>{caption} ({links})</figcaption></figure>')
    if isinstance(item, Table):
        title = f"<h4>{html.escape(item.title)}</h4>" if item.title else ""
        text = item.frame.apply(lambda col: col.map(format_value)) if len(item.frame) else item.frame
        return f'{title}<div class="scroll">{text.to_html(index=False, escape=True)}</div>'
    if isinstance(item, Link):
        return f'<p><a href="{html.escape(relative(item.path, base))}">{html.escape(item.text)}</a></p>'
    return f'<div class="scroll">{item._repr_html_()}</div>'


def render_html(report: DemoReport, base: Path) -> str:
    """report.html's text; the few links (SVG, CSV, plan files) are relative to `base`."""
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_value(v))}</td></tr>"
                   for k, v in report.headline.items())
    body = [f"<h1>{html.escape(report.title)}</h1>", f'<table class="headline">{head}</table>']
    body += [f"<p><em>{html.escape(n)}</em></p>" for n in report.notes]
    for section in report.sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.intro:
            body.append(f"<p>{html.escape(section.intro)}</p>")
        body += [_item_html(item, base) for item in section.items]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
