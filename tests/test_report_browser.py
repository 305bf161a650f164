"""report.html in a real browser: headless Chromium screenshots the page and the figures must be
visible in it (the page is not blank, and the figures' own colours cover real area).

The page is the demo's renderer on real measurements of a small seeded model (the same code path
`pgolf demo` takes, without training). Skipped when Debian's `chromium` is not installed (`make
test` installs it where it can: root and apt-get).
"""
from __future__ import annotations

import shutil
import subprocess

import matplotlib.image
import numpy as np
import pytest

from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.exact.compare import compressor_frame
from pgolf.budget.quant.plans import small_plans
from pgolf.figures.export import export_plot
from pgolf.figures.report_html import render_html
from pgolf.figures.report_md import DemoReport, Figure, Section
from pgolf.figures.style import PALETTE

from test_report_golden import CAP, seeded_state_dict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 2000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium; "
                                                          "`make test` does this when run as root)")


def screenshot(page, tmp_path):
    out = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={out}",
           f"--window-size={WIDTH},{HEIGHT}", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return matplotlib.image.imread(out)[..., :3]  # float RGB in [0, 1]


def near(img, hex_colour: str, tol: float = 0.08) -> int:
    """Pixels within `tol` of a colour on every channel."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - rgb) <= tol).all(axis=-1).sum())


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    sd = seeded_state_dict()
    budget = measure_budget(sd, small_plans(["int6"])[0], "zlib", cap=CAP)
    rows = compressor_frame(sd, ["fp16", "int8", "int6", "int4"], ["zlib", "zstd"])
    figs = [Figure(k, export_plot(k, data, out / "figures"), k) for k, data in
            (("compressors", rows), ("tensor-bytes", budget))]
    report = DemoReport("pgolf demo (browser check)", {"params": budget.headline["params"], "cap": CAP},
                        [Section("Figures", "Two figures, then a report table.", [*figs, budget])])
    return write_text_atomic(out / "report.html", render_html(report, out))


@pytest.mark.slow
def test_report_html_renders_with_figures_visible(page, tmp_path, record_property):
    img = screenshot(page, tmp_path)
    assert img.shape[:2] == (HEIGHT, WIDTH)
    non_white = float((img < 0.97).any(axis=-1).mean())
    colours = len(np.unique((img * 255).round().astype(np.uint8).reshape(-1, 3), axis=0))
    # PALETTE[1] (orange) appears only inside the figures (zstd bars, scale bytes), never in the CSS
    orange = near(img, PALETTE[1])
    record_property("summary", f"chromium screenshot: {non_white:.1%} non-white, {colours} colours, "
                               f"{orange:,} figure-orange pixels")
    assert non_white > 0.05, "the page is (almost) blank"
    assert colours > 200, "too few colours for a page with embedded figures"
    assert orange > 2_000, "the figures' bars are not visible in the screenshot"
