"""Every docstring example in budget/, inspect/, trainer/ (the library modules) and figures/ runs."""
from __future__ import annotations

import doctest
import importlib

import pytest

from import_graph import STANDALONE, modules

MODULES = sorted(m for m in modules() if m != "pgolf" and m not in STANDALONE)


def doctests(name: str) -> list[doctest.DocTest]:
    """The module's doctests, plus those of its decorated functions (a wrapper's globals are the
    decorator's module, so doctest's own finder passes them over)."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    tests = finder.find(module)
    for attr, obj in sorted(vars(module).items()):
        if hasattr(obj, "__wrapped__") and getattr(obj, "__module__", None) == name:
            tests += finder.find(obj, f"{name}.{attr}", module=module, globs=vars(module).copy())
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctests(module):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_examples_are_there():
    assert sum(len(t.examples) for m in MODULES for t in doctests(m)) > 150
