"""Shared test helpers: paths to the challenge fixtures in ../shared, skipped when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
ARTIFACTS = FIXTURES / "artifacts"
TOKENIZERS = FIXTURES / "tokenizers"
FIXTURE_MODELS = ("sp1024-2L-d64", "sp1024-3L-d128")


def fixture_path(*parts: str) -> Path:
    """Path under ../shared/fixtures, or skip the test saying what is missing."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"challenge fixture not present: {path} (../shared/fixtures is provided beside the checkout)")
    return path
