"""benchmarks/codec_stability.py: a grid payload compressed under small cuts, and the estimator's worst cases picked."""
from __future__ import annotations

import sys

import pandas as pd

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # as when the script runs: it imports estimate_accuracy's grid
import codec_stability  # noqa: E402


def test_a_grid_payload_under_every_cut():
    frame = codec_stability.run([("grid:b1.5-t3-f0-r0-u0", "official-int8", ["zlib"])], quiet=True)
    row = frame.iloc[0]
    assert row["payload"] == 1_589_281 and row["codec"] == "zlib"
    sizes = [row[name] for name, _, _ in codec_stability.CUTS]
    assert len(set(sizes)) > 1 and row["spread_pct"] == 100 * (max(sizes) / min(sizes) - 1) < 0.01  # zlib holds


def test_worst_cases_are_the_largest_errors_per_compressor(tmp_path):
    path = tmp_path / "acc.csv"
    pd.DataFrame({"model": ["grid:a", "grid:b", "grid:c", "fixture:d", "grid:e"],
                  "plan": ["p"] * 5, "compressor": ["zstd", "zstd", "zstd", "zstd", "lzma"],
                  "error_pct": [0.5, -2.0, 1.0, 9.0, 0.1]}).to_csv(path, index=False)
    assert codec_stability.worst_cases(str(path), 2) == [("grid:b", "p", "zstd"), ("grid:c", "p", "zstd"),
                                                         ("grid:e", "p", "lzma")]
