"""`pgolf inspect|gaps|headroom|allocate` on the challenge fixtures: output, JSON, bad input."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import fixture_path
from inspect_fixtures import one_thread  # noqa: F401 (fixture)
from pgolf.budget.measure import build_artifact
from pgolf.budget.shapes import baseline_specs, synthetic_state_dict
from pgolf.figures.cli import main
from pgolf.inspect.gaps import quantize_small
from pgolf.inspect.headroom import with_scheme

TOKENIZER = ("tokenizers", "fineweb_1024_bpe.model")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_gaps_on_a_real_participants_model(capsys, tmp_path, one_thread):
    """sp1024-3L-d128 (a participant's checkpoint) scored with the challenge tokenizer, per tensor."""
    model = fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt")
    code, out, err = _run(capsys, "gaps", model, "--plan", "int4", "--quantize-small", "--tokenizer",
                          fixture_path(*TOKENIZER), "--tokens", 2048, "--cache-dir", tmp_path, "--json", "--quiet")
    assert code == 0, err
    data = json.loads(out)
    assert data["plan"] == "int4+small" and data["tokens"] == 2048
    assert "fineweb_1024_bpe.model" in data["slice"]
    assert data["artifact_matches"] is True and data["val_bpb_artifact"] == data["val_bpb_quantized"]
    assert data["quant_gap_bpb"] == data["val_bpb_quantized"] - data["val_bpb_full"]
    rows = {r["name"]: r for r in data["tensors"]}
    assert len(rows) == 32
    quantized = [r for r in rows.values() if r["scheme"] == "int4"]
    assert len(quantized) == 19  # tok_emb + 3 blocks x 6 matrices
    assert sum(r["gap_only_this_bpb"] != 0 for r in quantized) >= 17  # each alone moves the score
    assert all(r["gap_only_this_bpb"] == 0 for r in rows.values() if r["scheme"] == "fp32")
    assert all(r["bytes"] > 0 and r["sqnr_db"] is not None and r["proxy_gap_bpb"] is not None for r in quantized)
    # the same command again is answered from the cache: no evaluation but the real-artifact check
    code, out, _ = _run(capsys, "gaps", model, "--plan", "int4", "--quantize-small", "--tokenizer",
                        fixture_path(*TOKENIZER), "--tokens", 2048, "--cache-dir", tmp_path, "--json", "--quiet",
                        "--no-proxy")
    again = json.loads(out)
    assert again["evaluations"] == 1 and again["val_bpb_quantized"] == data["val_bpb_quantized"]
    assert [r["gap_only_this_bpb"] for r in again["tensors"]] == [r["gap_only_this_bpb"] for r in data["tensors"]]


def test_gaps_of_an_official_ptz_under_its_own_rule_are_exactly_zero(capsys, one_thread):
    """The .ptz is read dequantized; the official rule maps those weights to themselves (the int8
    rows requantize to the same values, the fp16 passthrough is already fp16): gap 0, exactly."""
    model = fixture_path("artifacts", "sp1024-3L-d128", "final_model.int8.ptz")
    code, out, err = _run(capsys, "gaps", model, "--tokenizer", fixture_path(*TOKENIZER), "--tokens", 1024,
                          "--no-cache", "--quiet")
    assert code == 0, err
    assert out.startswith(f"pgolf gaps: {model}\nplan: official-int8\n")
    for line in ("quant_gap_bpb: 0\n", "artifact_matches: True\n", "tensors_changed: 0\n",
                 "bytes_model: 772,437\n"):
        assert line in out
    assert "evaluations: 3\n" in out  # reference, quantized, real artifact: nothing else to evaluate


def test_headroom_exact_delta_bytes(capsys, tmp_path):
    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    script = tmp_path / "train_gpt.py"
    script.write_text("print('hello')\n" * 100)
    code, out, err = _run(capsys, "headroom", model, "--plan", "int6", "--quantize-small", "--gaps", "none",
                          "--code", script, "--cap", 1_000_000, "--json", "--quiet")
    assert code == 0, err
    data = json.loads(out)
    assert data["bytes_code"] == 1500 and data["headroom_bytes"] == 1_000_000 - data["bytes_model"] - 1500
    rows = data["tensors"]
    assert len(rows) == 2 * 13  # tok_emb + 2 blocks x 6 matrices, one step up and one down each
    assert {(r["scheme"], r["direction"], r["scheme_next"]) for r in rows} == {("int6", "up", "int8"),
                                                                                ("int6", "down", "int5")}
    from pgolf.budget.readers import load_input

    sd = load_input(model).state_dict
    plan = quantize_small("int6")
    base = len(build_artifact(sd, plan))
    row = next(r for r in rows if r["name"] == "blocks.1.mlp.fc.weight" and r["direction"] == "down")
    assert row["delta_bytes"] == len(build_artifact(sd, with_scheme(plan, {row["name"]: "int5"}))) - base
    assert all((r["delta_bytes"] > 0) == (r["direction"] == "up") for r in rows)


@pytest.mark.parametrize("argv, problem", [
    (["gaps", "{bigram}", "--plan", "int6"], "not the baseline GPT family: unexpected tensor bigram.embed.weight"),
    (["gaps", "{d64}", "--data", "{missing}"], "--data must be a folder"),
    (["allocate", "{d64}", "--cap", "1000", "--tokens", "1024", "--gaps", "proxy"], "is below the smallest candidate"),
    (["gaps", "{d64}", "--plan", "int99"], "unknown plan 'int99'"),
    (["allocate", "{d64}", "--cap", "10000000", "--candidates", "int6,int77"], "scheme 'int77'"),
])
def test_bad_input_is_one_line_exit_2(argv, problem, tmp_path, capsys, one_thread):
    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 256, bigram_hash_size=64), seed=0)
    torch.save(sd, tmp_path / "bigram.pt")
    paths = {"{bigram}": tmp_path / "bigram.pt", "{missing}": tmp_path / "missing",
             "{d64}": fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")}
    code, out, err = _run(capsys, *[paths.get(a, a) for a in argv], "--quiet")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgolf: error: ") and problem in lines[0], err


@pytest.mark.parametrize("command", ["inspect", "gaps", "headroom", "allocate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pgolf {command}")
