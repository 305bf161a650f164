"""Shared test helpers: paths to the challenge fixtures in ../shared, skipped when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import torch

# One intra-op thread per test process: under xdist two workers share two cores, and torch's
# default of a thread per core makes small tensor ops ~30x slower; trainer subprocesses inherit it.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
ARTIFACTS = FIXTURES / "artifacts"
TOKENIZERS = FIXTURES / "tokenizers"
FIXTURE_MODELS = ("sp1024-2L-d64", "sp1024-3L-d128")


def default_sigint() -> None:
    """preexec_fn for a child the Ctrl-C tests interrupt: a shell runs a background job (`cmd &`) with
    SIGINT ignored and children inherit that, so the child restores the default first."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fixture_path(*parts: str) -> Path:
    """Path under ../shared/fixtures, or skip the test saying what is missing."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"challenge fixture not present: {path} (../shared/fixtures is provided beside the checkout)")
    return path


# Tests may report a one-line measured summary (fuzz case counts, ...) with
# `record_property("summary", line)`; it is printed at the end of the run, also under xdist.
_SUMMARIES: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _SUMMARIES.extend(str(value) for key, value in report.user_properties if key == "summary")


def pytest_terminal_summary(terminalreporter):
    if _SUMMARIES:
        terminalreporter.write_sep("-", "summaries")
        for line in _SUMMARIES:
            terminalreporter.write_line(line)
