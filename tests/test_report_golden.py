"""Golden renderings of report objects (text and markdown) and of the demo's report.md, on small
seeded state dicts measured for real. A rendering change shows up as a readable diff.

Regenerate after an intended change:  PGOLF_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_report_golden.py
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from pgolf.budget.exact.compare import compare
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import small_plans
from pgolf.figures.report_md import DemoReport, Figure, Link, Section, Table, render_markdown

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("PGOLF_REGEN_GOLDEN") == "1"
CAP = 50_000


def seeded_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A one-block model in the official names and dtypes (tok_emb bf16), trained-like scales."""
    g = torch.Generator().manual_seed(seed)
    return {
        "tok_emb.weight": (torch.randn(256, 64, generator=g) * 0.05).to(torch.bfloat16),
        "blocks.0.attn.c_q.weight": torch.randn(64, 64, generator=g) * 0.02,
        "blocks.0.mlp.fc.weight": torch.randn(128, 64, generator=g) * 0.02,
        "blocks.0.attn_scale": torch.ones(64),
    }


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} missing: run with PGOLF_REGEN_GOLDEN=1 to create it")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now", n=1))
        pytest.fail(f"{name} differs from its golden file (PGOLF_REGEN_GOLDEN=1 regenerates):\n{diff[:4000]}")


@pytest.fixture(scope="module")
def sd():
    return seeded_state_dict()


@pytest.fixture(scope="module")
def budget(sd):
    return measure_budget(sd, small_plans(["int6"])[0], "zlib", cap=CAP)


@pytest.fixture(scope="module")
def compared(sd):
    return compare(sd, small_plans(["official-int8", "int6", "ternary"]), ["none", "zlib"], cap=CAP)


@pytest.mark.parametrize("render", ["text", "markdown"])
def test_budget_report_rendering(budget, render):
    check_golden(f"budget_int6_zlib.{'txt' if render == 'text' else 'md'}",
                 budget.to_text() + "\n" if render == "text" else budget.to_markdown())


@pytest.mark.parametrize("render", ["text", "markdown"])
def test_compare_report_rendering(compared, render):
    check_golden(f"compare.{'txt' if render == 'text' else 'md'}",
                 compared.to_text() + "\n" if render == "text" else compared.to_markdown())


def test_demo_report_markdown(budget, compared, tmp_path):
    fig = {fmt: tmp_path / "figures" / f"tensor-bytes.{fmt}" for fmt in ("png", "svg", "csv")}
    report = DemoReport("pgolf demo (golden)", {"params": budget.headline["params"], "cap": CAP}, [
        Section("Byte budget", "Exact bytes of every plan and compressor.",
                [compared, Table("bytes per plan", compared.to_dataframe()[["plan", "compressor", "bytes_model"]])]),
        Section("Allocation", "", [Link("plan", tmp_path / "plans" / "allocated.json"),
                                   Figure("tensor-bytes", fig, "payload per tensor"), budget]),
    ], notes=["a note"])
    check_golden("demo_report.md", render_markdown(report, tmp_path))


def test_golden_numbers_are_the_measured_ones(budget, compared):
    """The golden text is not free text: its headline numbers are the engine's, recomputed."""
    head = budget.headline
    assert head["bytes_total"] == head["bytes_model"] and head["headroom_bytes"] == CAP - head["bytes_model"]
    assert f"bytes_model: {head['bytes_model']:,}" in (GOLDEN / "budget_int6_zlib.txt").read_text()
    frame: pd.DataFrame = compared.to_dataframe()
    assert frame["roundtrip_exact"].all()
    for row in frame.itertuples():
        assert f"{row.bytes_model:,}" in (GOLDEN / "compare.txt").read_text()


def interval_gaps_report():
    """A gaps report from hand-made per-window losses (exact float64 arithmetic, no evaluation):
    one clear gap, one within noise, one tensor stored exactly."""
    import numpy as np

    from pgolf.inspect.evaluate import EvalResult, combine
    from pgolf.inspect.gaps import gap_frame_rows
    from pgolf.inspect.reports import GapsReport

    rng = np.random.default_rng(7)
    nbytes = tuple(float(b) for b in rng.integers(380, 420, 16))

    def result(losses):
        r = EvalResult(0.0, 0.0, 16 * 128, sum(nbytes), tuple(float(x) for x in losses), nbytes, 1, 128)
        return combine([r, r])  # recomputes val_loss / val_bpb from the unit sums (and doubles the slice)

    base = rng.uniform(300, 340, 16)
    ref, quant = result(base), result(base + rng.normal(2.0, 0.5, 16))
    only = {"tok_emb.weight": result(base + rng.normal(1.5, 0.4, 16)),
            "blocks.0.mlp.fc.weight": result(base + rng.normal(0.02, 0.3, 16))}
    frame = gap_frame_rows(["tok_emb.weight", "blocks.0.mlp.fc.weight", "blocks.0.attn_scale"],
                           {"tok_emb.weight": "int4", "blocks.0.mlp.fc.weight": "int4", "blocks.0.attn_scale": "fp32"},
                           ref, quant, only, {})
    head = {"plan": "int4+small", "tokens": ref.tokens, "val_bpb_full": ref.val_bpb, "val_bpb_quantized": quant.val_bpb,
            **quant.minus(ref).columns("quant_gap_bpb")}
    return GapsReport.build(head, frame, source="golden.pt", replay=False)


@pytest.mark.parametrize("render", ["text", "markdown", "html"])
def test_gaps_report_with_intervals_rendering(render):
    report = interval_gaps_report()
    text = {"text": lambda: report.to_text() + "\n", "markdown": report.to_markdown,
            "html": lambda: report._repr_html_() + "\n"}[render]()
    check_golden(f"gaps_intervals.{ {'text': 'txt', 'markdown': 'md', 'html': 'html'}[render] }", text)
    frame = report.to_dataframe().set_index("name")
    assert frame.loc["tok_emb.weight", "gap_only_this_bpb_significant"]
    assert not frame.loc["blocks.0.mlp.fc.weight", "gap_only_this_bpb_significant"]
    assert " ± " in text and "(n.s.)" in text
    assert report.to_dict()["quant_gap_bpb_se"] == report.headline["quant_gap_bpb_se"] > 0


@pytest.mark.parametrize("module", ["report_md", "report_html", "demo.config"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"pgolf.figures.{module}"))
    assert result.failed == 0 and result.attempted > 0
