"""`pgolf demo --quick` end to end: every figure is a real PNG and SVG of plausible size with its
CSV, report.md links them, report.html embeds them, report.json holds the same numbers."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT

KINDS = ("training-curve", "headroom", "tensor-bytes", "compressors", "quant-gap", "exchange-rate")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One `pgolf demo --quick` for all tests here, also under pytest-xdist: the workers share the
    session's base temp folder, the first one runs the demo under a lock, the others reuse it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one session's folder either way
    out = shared / "demo-quick"
    with open(shared / "demo-quick.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "stdout.txt").is_file():
            pgolf = Path(sys.executable).with_name("pgolf")
            started = time.perf_counter()
            done = subprocess.run([str(pgolf), "demo", "--quick", "--out", str(out)], capture_output=True, text=True,
                                  cwd=ROOT, env=os.environ | {"PYTHONWARNINGS": "ignore"}, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
            (out / "seconds.txt").write_text(f"{time.perf_counter() - started:.1f}")
            (out / "stdout.txt").write_text(done.stdout)
    return out, (out / "stdout.txt").read_text(), float((out / "seconds.txt").read_text())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_demo_quick_runs_and_prints_summary(demo, record_property):
    out, stdout, seconds = demo
    record_property("summary", f"pgolf demo --quick: {seconds:.1f} s wall")
    cap = json.loads((out / "report.json").read_text())["headline"]["cap"]
    assert f"cap used: {cap:,} bytes" in stdout
    for name in ("report.md", "report.html", "report.json", "allocated.json"):
        assert name in stdout
    assert (out / "train" / "train.log").is_file()
    assert len(list((out / "train" / "checkpoints").glob("step_*.safetensors"))) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_figure_is_a_valid_png_svg_csv(demo, kind):
    out = demo[0] / "figures"
    png = (out / f"{kind}.png").read_bytes()
    width, height = png_size(png)
    assert 600 <= width <= 4000 and 300 <= height <= 8000
    assert 20_000 < len(png) < 3_000_000
    svg = (out / f"{kind}.svg").read_bytes()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and 10_000 < len(svg) < 5_000_000
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 10
    rows = pd.read_csv(out / f"{kind}.csv")
    assert len(rows) >= 2


@pytest.mark.slow
def test_report_md_links_every_figure(demo):
    out = demo[0]
    text = (out / "report.md").read_text()
    for kind in KINDS:
        for fmt in ("png", "svg", "csv"):
            assert f"(figures/{kind}.{fmt})" in text
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).is_file(), link
    assert "plans/allocated.json" in text


@pytest.mark.slow
def test_report_html_embeds_every_figure(demo):
    out = demo[0]
    page = (out / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert sorted(k for k, _ in images) == sorted(KINDS)
    for kind, data in images:  # the embedded bytes are the PNG written beside it
        assert base64.b64decode(data) == (out / "figures" / f"{kind}.png").read_bytes()
    assert not re.search(r'(src|href)="(https?:)?//', page), "report.html must not load anything external"


@pytest.mark.slow
def test_report_json_matches_what_was_measured(demo):
    out = demo[0]
    data = json.loads((out / "report.json").read_text())
    assert data["format"] == "pgolf-demo-v1"
    head = data["headline"]
    pairs = data["compare"]["pairs"]
    assert all(p["roundtrip_exact"] for p in pairs)
    assert all(p["headroom_bytes"] == head["cap"] - p["bytes_total"] for p in pairs)
    # the cap is half the fp16 artifact: fp16 does not fit, the allocation does
    fp16 = [p for p in pairs if p["plan"] == "fp16+small"]
    assert fp16 and all(p["bytes_model"] > head["cap"] for p in fp16)
    assert head["allocated_bytes_model"] <= head["cap"]
    for gaps in data["gaps"]:
        assert gaps["artifact_matches"] is True
    steps = [c["step"] for c in data["checkpoints"]]
    assert steps == sorted(steps) and len(steps) >= 3


@pytest.mark.slow
def test_demo_reports_held_out_numbers_and_calls_nothing_better_within_noise(demo):
    """The allocation's headline is the held-out slice's, with its interval, in report.json and
    report.md; a plan or the allocation is called better than unquantized only when significant."""
    out = demo[0]
    data = json.loads((out / "report.json").read_text())
    head, alloc = data["headline"], data["allocation"]
    assert head["allocated_val_bpb"] == alloc["val_bpb_quantized"]
    assert alloc["report_tokens"] == head["report_tokens"] > 0 and alloc["select_tokens"] == head["eval_tokens"]
    assert alloc["quant_gap_bpb_lo"] < alloc["quant_gap_bpb"] < alloc["quant_gap_bpb_hi"]
    assert head["allocated_quant_gap_bpb_se"] == alloc["quant_gap_bpb_se"] > 0
    better = head["allocated_quant_gap_bpb"] < 0 and head["allocated_quant_gap_bpb_significant"]
    assert ("better than unquantized" in head["allocated_vs_unquantized"]) == better
    if not head["allocated_quant_gap_bpb_significant"]:
        assert head["allocated_vs_unquantized"].startswith("within noise")
    points = {p["plan"]: p for p in data["plan_points"]}
    best = head["best_plan_under_cap"]
    if best != "none fits":
        p = points[best.split(" + ")[0]]
        assert ("better than unquantized" in best) == (p["plan_gap_bpb"] < 0 and p["plan_gap_bpb_significant"])
    text = (out / "report.md").read_text()
    assert f"**allocated_val_bpb**: {head['allocated_val_bpb']:.6g}" in text
    assert "**allocated_quant_gap_bpb_hi**" in text and " ± " in text
