"""The repository layout keeps the standard library importable from the root."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

AREAS = ("trainer", "budget", "inspect", "figures")


def test_no_init_in_top_level_folders():
    offenders = [p.relative_to(ROOT) for p in ROOT.glob("*/__init__.py")]
    assert offenders == []


def test_stdlib_inspect_wins_when_running_from_root():
    code = (
        "import inspect, dataclasses\n"
        "assert hasattr(inspect, 'signature'), inspect.__file__\n"
        "@dataclasses.dataclass\nclass A:\n    x: int = 1\nprint(A())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "A(x=1)"


def test_areas_import_as_pgolf_subpackages():
    code = "import importlib\n" + "".join(
        f"print(list(importlib.import_module('pgolf.{a}').__path__)[0])\n" for a in AREAS
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(ROOT / a) for a in AREAS]
