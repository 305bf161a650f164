"""`pgolf inspect|gaps|headroom|allocate` on the challenge fixtures: output, JSON, bad input."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import fixture_path
from inspect_fixtures import one_thread  # noqa: F401 (fixture)
from pgolf.budget.exact.build import build_artifact
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
from pgolf.figures.cli import main
from pgolf.budget.quant.plans import quantize_small
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
    from pgolf.budget.exact.inputs import load_input

    sd = load_input(model).state_dict
    plan = quantize_small("int6")
    base = len(build_artifact(sd, plan))
    row = next(r for r in rows if r["name"] == "blocks.1.mlp.fc.weight" and r["direction"] == "down")
    assert row["delta_bytes"] == len(build_artifact(sd, with_scheme(plan, {row["name"]: "int5"}))) - base
    assert all(r["delta_bytes"] > 0 for r in rows if r["direction"] == "up")
    # one level fewer on a 2,048-value near-init matrix saves a few dozen bytes at most: zlib's
    # block choices can turn that into a few bytes more
    assert all(r["delta_bytes"] < 16 for r in rows if r["direction"] == "down")
    assert sum(r["delta_bytes"] for r in rows if r["direction"] == "down") < 0


@pytest.mark.parametrize("argv, problem", [
    (["gaps", "{bigram}", "--plan", "int6"], "not the baseline GPT family: unexpected tensor bigram.embed.weight"),
    (["gaps", "{d64}", "--data", "{missing}"], "--data must be a folder"),
    (["allocate", "{d64}", "--cap", "1000", "--select-tokens", "1024", "--gaps", "proxy"], "is below the smallest candidate"),
    (["allocate", "{d64}", "--cap", "100000", "--select-tokens", "69000"], "nothing left after the first 68,608"),
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


GAPS_KEYS = ("val_bpb_full", "val_bpb_quantized", "quant_gap_bpb")
GAPS_ROW_KEYS = ("name", "scheme", "bytes", "gap_only_this_bpb", "gap_all_but_this_bpb", "proxy_gap_bpb", "rel_mse",
                 "sqnr_db")


def test_gaps_json_holds_the_issues_keys_with_real_numbers(capsys, tmp_path, one_thread):
    """The JSON the issue specifies, key for key: finite numbers (never null/NaN) where a tensor is
    quantized, the all-but-this sweep included."""
    import math

    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    code, out, err = _run(capsys, "gaps", model, "--plan", "int5", "--quantize-small", "--tokenizer",
                          fixture_path(*TOKENIZER), "--tokens", 2048, "--no-cache", "--json", "--quiet")
    assert code == 0, err
    data = json.loads(out)
    for key in GAPS_KEYS:
        assert isinstance(data[key], float) and math.isfinite(data[key]), key
    assert data["quant_gap_bpb"] == data["val_bpb_quantized"] - data["val_bpb_full"]
    rows = data["tensors"]
    assert len(rows) == 22 and all(set(GAPS_ROW_KEYS) <= set(r) for r in rows)
    quantized = [r for r in rows if r["scheme"] == "int5"]
    assert len(quantized) == 13  # tok_emb + 2 blocks x 6 matrices
    for r in quantized:
        assert isinstance(r["name"], str) and isinstance(r["bytes"], int) and r["bytes"] > 0
        for key in GAPS_ROW_KEYS[3:]:
            assert isinstance(r[key], float) and math.isfinite(r[key]), (r["name"], key)
        assert r["rel_mse"] > 0 and r["sqnr_db"] > 0
    # all-but-this really restores one tensor: not all equal to the whole gap, some differ from zero
    assert len({r["gap_all_but_this_bpb"] for r in quantized}) > 1
    assert sum(r["gap_all_but_this_bpb"] != 0 for r in quantized) >= 10


def test_allocate_with_the_proxy_measures_real_bpb_and_budget_accepts_its_plan(capsys, tmp_path, one_thread):
    """--gaps proxy (no measured sweep): val_bpb_full and the final plan's val_bpb are still measured
    (never NaN/null), the latter through the real artifact; `pgolf budget --plan` reads the plan file
    and measures the same bytes."""
    import math

    from pgolf.budget.exact.inputs import load_input
    from pgolf.inspect.evaluate import evaluate_bpb, load_slice, load_weights
    from pgolf.inspect.load import build_model

    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    plan_file = tmp_path / "allocated.json"
    code, out, err = _run(capsys, "allocate", model, "--cap", 70_000, "--gaps", "proxy", "--tokenizer",
                          fixture_path(*TOKENIZER), "--select-tokens", 2048, "--report-tokens", 2048, "--no-cache",
                          "-o", plan_file, "--json", "--quiet")
    assert code == 0, err
    data = json.loads(out)
    for key in GAPS_KEYS:
        assert isinstance(data[key], float) and math.isfinite(data[key]), key
    assert data["quant_gap_bpb"] == data["val_bpb_quantized"] - data["val_bpb_full"]
    assert data["artifact_matches"] is True and data["fits"] is True and data["bytes_total"] < 70_000
    assert data["gap_source"].startswith("gradient proxy") and data["select_tokens"] == data["report_tokens"] == 2048
    # the same numbers measured here independently: the headline on the held-out slice after the
    # selection slice, the select_* numbers on the selection slice
    sd = load_input(model).state_dict
    net = build_model(sd)
    sl = load_slice(tokenizer=fixture_path(*TOKENIZER), tokens=2048, seq_len=1024, vocab_size=1024, quiet=True,
                    offset=2048)
    assert evaluate_bpb(net, sl).val_bpb == data["val_bpb_full"] != data["select_val_bpb_full"]
    from pgolf.budget.quant.plans import load_plan
    from pgolf.budget.exact.build import fake_quantize

    load_weights(net, fake_quantize(sd, load_plan(plan_file)))
    assert evaluate_bpb(net, sl).val_bpb == data["val_bpb_quantized"]
    code, out, err = _run(capsys, "budget", model, "--plan", plan_file, "--cap", 70_000, "--json", "--quiet")
    assert code == 0, err
    budget = json.loads(out)
    assert budget["plan"] == "allocated" and budget["bytes_model"] == data["bytes_model"]
    assert budget["headroom_bytes"] == 70_000 - data["bytes_model"] > 0
    assert {r["name"]: r["scheme"] for r in budget["tensors"] if r["name"] in {t["name"] for t in data["tensors"]}} \
        == {t["name"]: t["scheme"] for t in data["tensors"]}


def test_target_se_extends_in_cached_chunks_and_resumes(capsys, tmp_path, one_thread):
    """--target-se adds chunks of --tokens until the SE is reached or --max-tokens stops it; a
    larger --max-tokens later reuses every cached chunk and gives the numbers of a fresh run."""
    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    flags = ["--plan", "int5", "--quantize-small", "--tokenizer", fixture_path(*TOKENIZER), "--tokens", 1024,
             "--no-proxy", "--no-verify", "--no-all-but-this", "--json", "--quiet"]
    cache = ["--cache-dir", tmp_path]
    code, out, err = _run(capsys, "gaps", model, *flags, *cache, "--target-se", 0.5)
    assert code == 0, err
    easy = json.loads(out)
    # one 1,024-token window has no SE at all (one block): a second chunk is needed, then it is met
    assert (easy["chunks"], easy["tokens"], easy["target_se_met"]) == (2, 2048, True)
    code, out, err = _run(capsys, "gaps", model, *flags, *cache, "--target-se", 1e-9, "--max-tokens", 4096)
    first = json.loads(out)
    assert (first["chunks"], first["tokens"], first["target_se_met"]) == (4, 4096, False)
    assert first["se_reached"] == first["quant_gap_bpb_se"] > 1e-9
    code, out, err = _run(capsys, "gaps", model, *flags, *cache, "--target-se", 1e-9, "--max-tokens", 6144)
    resumed = json.loads(out)
    code, out, err = _run(capsys, "gaps", model, *flags, "--no-cache", "--target-se", 1e-9, "--max-tokens", 6144)
    fresh = json.loads(out)
    assert resumed["tokens"] == fresh["tokens"] == 6144 and resumed["chunks"] == 6
    assert resumed["evaluations"] < fresh["evaluations"] / 2  # 4 of 6 chunks came from the cache
    for key in ("val_bpb_full", "quant_gap_bpb", "quant_gap_bpb_se", "quant_gap_bpb_lo"):
        assert resumed[key] == fresh[key], key
    assert [r["gap_only_this_bpb_se"] for r in resumed["tensors"]] == \
        [r["gap_only_this_bpb_se"] for r in fresh["tensors"]]
    # --per-tensor-se: every only-this gap's SE counts too (answered from the cached chunks)
    code, out, err = _run(capsys, "gaps", model, *flags, *cache, "--target-se", 1e-9, "--max-tokens", 4096,
                          "--per-tensor-se")
    per = json.loads(out)
    assert per["evaluations"] == 0 and per["chunks"] == 4
    assert per["se_reached"] == max(per["quant_gap_bpb_se"], *(r["gap_only_this_bpb_se"] for r in per["tensors"]))
    # the text rendering shows the interval and says whether the target was met
    code, out, err = _run(capsys, "gaps", model, *flags[:-2], "--quiet", *cache, "--target-se", 1e-9,
                          "--max-tokens", 4096)
    assert "quant_gap_bpb: " in out and " ± " in out and "target_se_met: False" in out


def test_infeasible_cap_advice_names_the_clis_flags(capsys):
    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    code, out, err = _run(capsys, "allocate", model, "--cap", 5_000, "--candidates", "int6,int8", "--tokenizer",
                          fixture_path(*TOKENIZER), "--select-tokens", 1024, "--no-cache", "--quiet")
    assert code == 2 and out == ""
    line = err.strip()
    assert "\n" not in line and "is below the smallest candidate plan (uniform int6: " in line
    assert line.endswith("; raise --cap, lower --margin, or add a smaller scheme (int3, int2, ternary) to --candidates")


def test_gaps_on_a_shard_folder_equals_the_embedded_default(capsys, one_thread):
    """--data SHARD_DIR (official shard format; here the embedded default's own folder, its
    tokenizer found beside it) scores the very slice the default path scores."""
    from pgolf.trainer.corpus import prepare_default

    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    flags = ["--plan", "int6", "--quantize-small", "--tokens", 2048, "--no-cache", "--no-all-but-this",
             "--no-verify", "--json", "--quiet"]
    code, out, err = _run(capsys, "gaps", model, "--data", prepare_default(quiet=True).data_path, *flags)
    assert code == 0, err
    shards = json.loads(out)
    code, out, err = _run(capsys, "gaps", model, *flags)
    assert code == 0, err
    default = json.loads(out)
    assert "official val shards" in shards["slice"] and "embedded default" in default["slice"]
    assert shards["val_bpb_full"] == default["val_bpb_full"] and shards["tokens"] == default["tokens"] == 2048
    assert [r["gap_only_this_bpb"] for r in shards["tensors"]] == [r["gap_only_this_bpb"] for r in default["tensors"]]
    assert sum(r["gap_only_this_bpb"] != 0 for r in shards["tensors"]) == 13
