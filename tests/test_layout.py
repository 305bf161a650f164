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


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module a source imports, including `__import__`/importlib strings."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value).split(".")[0])
    return found


def test_import_check_catches_pgolf_imports():
    for snippet in ("import pgolf.budget", "from pgolf.budget.atomic import write_bytes_atomic",
                    "import importlib\nimportlib.import_module('pgolf.budget')", "x = __import__('pgolf')"):
        assert "pgolf" in imported_modules(snippet), snippet


def test_train_gpt_is_standalone():
    # Its bytes count toward an artifact: it must run with torch/numpy/sentencepiece alone.
    script = ROOT / "trainer" / "train_gpt.py"
    assert script.is_file()
    assert "pgolf" not in imported_modules(script.read_text(encoding="utf-8"))
