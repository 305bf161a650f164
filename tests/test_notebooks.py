"""The four notebooks run top to bottom with a real Jupyter kernel (nbclient), on the embedded
default, with no edits; they are committed without outputs.

They share one small trained model (`demo_run`'s cache, trained once under a file lock even when
pytest-xdist runs two notebooks at once).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = ("01_byte_budget", "02_quant_gap_report", "03_headroom_vs_bpb", "04_train_and_inspect")
TIMEOUT_S = 600  # per cell; the first cell may train the shared model


def _client(book, cwd: Path) -> NotebookClient:
    return NotebookClient(book, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})


def test_the_four_numbered_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == list(NAMES)
    assert not (ROOT / "notebooks" / ".keep").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    assert all(not c.outputs and c.execution_count is None for c in code)
    # thin: a few lines per cell, no function or class definitions
    assert max(len(c.source.splitlines()) for c in code) <= 12
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())


def test_kernel_runs_this_interpreter(tmp_path):
    """kernel_name="python3" must start the venv's python (jupyter_client swaps "python" for
    sys.executable in the native kernelspec), or the notebooks would test another install."""
    book = nbformat.v4.new_notebook()
    book.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    _client(book, tmp_path).execute()
    assert book.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, record_property, monkeypatch):
    # The kernel inherits this: one torch thread per kernel, as pytest -n 2 already fills 2 cores
    # (two spinning threads per process made the evaluations ~3x slower on a busy machine).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    book = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    try:
        _client(book, tmp_path).execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{str(exc)[-3000:]}")
    seconds = time.perf_counter() - started
    record_property("summary", f"notebook {path.stem}: executed in {seconds:.1f} s")
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # every figure cell really shows a PNG, every report cell its HTML table
    for cell in book.cells:
        if cell.cell_type == "code" and cell.source.rstrip().endswith(".figure"):
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    assert any("text/html" in o.get("data", {}) for o in outputs), "no report object displayed"
