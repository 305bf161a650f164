"""pgolf predict: exact parameter counts, monotone predictions, the interval, --fit, the CLI."""
from __future__ import annotations

import argparse
import json

import pytest

from pgolf.budget import predict_commands
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.predict import fit_largest, predict

FAST = dict(interval=False)


def test_baseline_prediction_counts_exactly():
    r = predict(plan="official-int8", compressor="zlib")
    h = r.headline
    assert h["params"] == 17_059_912
    assert h["payload_bytes"] == 17_178_912  # q + scales + passthrough, exact
    assert h["bytes_model_low"] <= h["bytes_model"] <= h["bytes_model_high"]
    assert h["estimated"] is True and any(n.startswith("PREDICTED") for n in r.notes)


def test_depth_recurrent_prediction_counts_exactly():
    h = predict(layers=9, unique_layers=3, plan="int6", compressor="zstd", **FAST).headline
    assert h["params"] == 6_037_528
    full = predict(layers=9, plan="int6", compressor="zstd", **FAST).headline
    assert h["bytes_model"] < full["bytes_model"] / 2


@pytest.mark.parametrize("dimension, values", [("layers", (4, 5, 9, 11)), ("dim", (256, 384, 512)),
                                               ("mlp_mult", (1, 2, 2.5, 3)), ("vocab", (512, 1024, 1152, 4096))])
@pytest.mark.parametrize("plan, compressor", [("int6", "zstd"), ("official-int8", "zlib")])
def test_predictions_are_monotone(dimension, values, plan, compressor):
    sizes = [predict(**{dimension: v}, plan=plan, compressor=compressor, **FAST).headline["bytes_model"]
             for v in values]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_cheaper_plans_predict_fewer_bytes():
    sizes = [predict(plan=p, compressor="lzma", **FAST).headline["bytes_model"]
             for p in ("official-int8", "int6", "sdclip-int6-int8emb", "ternary")]
    assert sizes == sorted(sizes, reverse=True)


def test_scale_floors_bind_only_at_the_calibrated_scale():
    kw = dict(layers=4, dim=256, mlp_mult=2, vocab=1024, compressor="zstd")
    # official int8 floors the scale at 1/127: calibrated weights (row max < 1) take fewer bits
    long_, short = (predict(plan="official-int8", scale=s, **kw).headline for s in ("long", "calibrated"))
    assert short["bytes_model"] < 0.95 * long_["bytes_model"]
    assert long_["bytes_model_low"] <= short["bytes_model"] and long_["scale"] == "long"
    # sdclip has no floor: its symbols do not depend on the scale
    free = [predict(plan="sdclip-int6-int8emb", scale=s, interval=False, **kw).headline["bytes_model"]
            for s in ("long", "calibrated")]
    assert abs(free[0] / free[1] - 1) < 0.01, free
    with pytest.raises(PgolfInputError, match="scale must be one of"):
        predict(scale="huge", **kw)


def test_fit_largest_layers_is_the_boundary():
    kw = dict(plan="int6", compressor="zstd")
    value, report = fit_largest(12_000_000, "layers", {"dim": 512, "mlp_mult": 3}, **kw)
    assert report.headline["bytes_total_high"] <= 12_000_000
    assert predict(layers=value + 1, dim=512, mlp_mult=3, **kw).headline["bytes_total_high"] > 12_000_000
    assert fit_largest(1_000, "layers", {}, **kw) == (None, None)


def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    predict_commands.register(parser.add_subparsers())
    args = parser.parse_args(["predict", *argv])
    code = args.handler(args)
    return code, capsys.readouterr().out


def test_cli_json(capsys):
    code, out = _cli(["--layers", "11", "--mlp-mult", "3", "--plan", "int6", "--compressor", "zstd", "--json"], capsys)
    obj = json.loads(out)
    assert code == 0 and obj["params"] == 26_501_720 and obj["estimated"] is True
    assert obj["bytes_model_low"] <= obj["bytes_model"] <= obj["bytes_model_high"]


@pytest.mark.slow  # a search of ~10 predictions with intervals: ~15-20 s on 2 busy cores
def test_cli_fit_json(capsys):
    code, out = _cli(["--fit", "--max-bytes", "16000000", "--dimension", "vocab", "--plan", "int6",
                      "--compressor", "zlib", "--json"], capsys)
    obj = json.loads(out)
    assert code == 0 and obj["dimension"] == "vocab" and obj["largest"] >= 1024
    assert obj["prediction"]["bytes_total_high"] <= 16_000_000


def test_cli_bad_shape_is_one_line_error(capsys):
    with pytest.raises(PgolfInputError, match="divisible"):
        _cli(["--dim", "500"], capsys)
