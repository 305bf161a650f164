"""Every predict report says which numbers are exact and which predicted, and with what interval."""
from __future__ import annotations

import argparse
import json

import pytest

from conftest import fixture_path
from pgolf.budget import predict_commands
from pgolf.budget.forecast.like import load_recipe
from pgolf.budget.forecast.predict import predict, predict_delta


def _cli(argv, capsys) -> dict:
    p = argparse.ArgumentParser()
    predict_commands.register(p.add_subparsers())
    assert predict_commands.run_predict(p.parse_args(["predict", *argv, "--json"])) == 0
    return json.loads(capsys.readouterr().out)


def _renderings(report) -> list[str]:
    return [report.to_text(), report.to_markdown(), report._repr_html_()]


def test_shipped_prediction_labels_every_number_in_every_rendering(capsys):
    r = predict(layers=2, dim=128, plan="int6", compressor="zstd")
    h = r.headline
    for text in _renderings(r):
        assert f"{h['params']:,} (exact)" in text and f"{h['payload_bytes']:,} (exact)" in text
        assert f"{h['bytes_model']:,} (predicted, interval {h['bytes_model_low']:,} .. {h['bytes_model_high']:,})" in text
        assert "headroom_bytes" in text and "EXACT:" in text and "PREDICTED" in text
    out = _cli(["--layers", "2", "--dim", "128", "--plan", "int6", "--compressor", "zstd"], capsys)
    assert out["exactness"]["params"] == "exact" and out["exactness"]["compressed_bytes"] == "predicted"
    assert out["exactness"]["values_bytes"] == "exact"
    assert out["interval"]["bytes_model"] == [out["bytes_model_low"], out["bytes_model_high"]]
    lo, hi = out["interval"]["headroom_bytes"]
    assert lo == out["cap"] - out["bytes_model_high"] - out["bytes_code"] and lo <= out["headroom_bytes"] <= hi
    assert any(n.startswith("PREDICTED (no weights)") for n in out["notes"])


def test_like_and_delta_reports_label_their_numbers_and_path(capsys):
    path = str(fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt"))
    out = _cli(["--like", path, "--plan", "official-int8"], capsys)
    assert out["like_path"] == "exact" and out["measured_share"] == 1 and out["exactness"]["measured_share"] == "exact"
    assert out["interval"]["bytes_model"] == [out["bytes_model_low"], out["bytes_model_high"]]
    assert any("measured exactly" in n for n in out["notes"])
    like = load_recipe(path)
    d = predict_delta(like.config, {"layers": 4}, plan="official-int8", compressor="zlib", like=like)
    b = predict(**{**like.config, "layers": 4}, plan="official-int8", compressor="zlib", like=like).headline
    # B keeps its own interval: the same draws as predicting B alone
    assert d.to_dict()["interval"]["bytes_model_b"] == [b["bytes_model_low"], b["bytes_model_high"]]
    for text in _renderings(d):
        assert f"{d.headline['delta_params']:,} (exact)" in text
        assert f"{b['bytes_model']:,} (predicted, interval {b['bytes_model_low']:,} .. {b['bytes_model_high']:,})" in text
        assert "compressed_bytes_b" in text  # the per-role columns, named in the PREDICTED note
    exactness = d.to_dict()["exactness"]
    assert exactness["payload_bytes_b"] == "exact" and exactness["compressed_bytes_b"] == "predicted"


def test_fit_json_carries_the_labels(capsys):
    out = _cli(["--fit", "--max-bytes", "400000", "--dim", "128", "--plan", "int6", "--compressor", "zlib"], capsys)
    assert out["largest"] >= 1 and out["prediction"]["exactness"]["bytes_model"] == "predicted"
    assert out["prediction"]["bytes_total_high"] <= 400_000
