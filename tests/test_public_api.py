"""`import pgolf as pg`: every public name documented with an example that runs, and the notebooks
and the README's Python example use only `pgolf`."""
from __future__ import annotations

import ast
import doctest
import json
import re

import pytest

import pgolf as pg
from conftest import ROOT

# Their examples need the demo's trained model and validation data (minutes of training): they
# are marked +SKIP here, and tests/test_notebooks.py runs these calls for real.
NEED_TRAINED_MODEL = {"open_checkpoint", "eval_slice", "plan_bpb", "checkpoint_frame", "measure_gaps", "GapOracle",
                      "GapSweep", "headroom", "allocate", "demo_run", "demo_checkpoint",
                      "load_model"}  # load_model's example needs a participant's script beside a model
NAMES = [n for n in pg.__all__ if n != "__version__"]


def examples(name: str) -> list[doctest.Example]:
    obj = getattr(pg, name)
    doc = doctest.DocTestParser().get_doctest(obj.__doc__ or "", {}, name, None, 0)
    return doc.examples


def test_version_is_the_installed_distribution():
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+.*", pg.__version__) and pg.__version__ == version("pgolf")


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pg.nope  # noqa: B018


@pytest.mark.parametrize("name", NAMES)
def test_public_name_has_a_docstring_with_an_example_that_runs(name):
    obj = getattr(pg, name)
    assert (obj.__doc__ or "").strip(), f"pg.{name} has no docstring"
    found = examples(name)
    assert found, f"pg.{name}'s docstring has no >>> example"
    skipped = all(e.options.get(doctest.SKIP) for e in found)
    assert skipped == (name in NEED_TRAINED_MODEL), f"pg.{name}: +SKIP only where a trained model is needed"
    module = __import__(obj.__module__, fromlist=["_"])
    test = doctest.DocTestFinder(recurse=False).find(obj, name, module=module, globs=vars(module).copy())[0]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_package_docstring_example_runs():
    result = doctest.testmod(pg)
    assert result.attempted > 0 and result.failed == 0


def pgolf_imports(source: str) -> set[str]:
    """Every module a piece of code imports (IPython magics dropped)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_import_only_pgolf(path):
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    used = set().union(*(pgolf_imports("".join(c["source"])) for c in cells))
    assert used == {"pgolf"}, sorted(used)


def test_readme_python_example_imports_only_pgolf():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no Python example"
    for block in blocks:
        assert {m for m in pgolf_imports(block) if m.startswith("pgolf")} == {"pgolf"}, block


def test_readme_python_example_runs():
    import matplotlib

    matplotlib.use("Agg")
    block = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)[0]
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102  (our own README)
    assert scope["pg"].measure_budget(scope["sd"], "int6", "zstd").headline["roundtrip_exact"] is True
