"""`pgolf budget`, `pgolf compare`, `pgolf schemes`: output, JSON keys, files, one-line errors (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import fixture_path
from pgolf.budget.exact.decoder import decoder_source
from pgolf.budget.exact.build import fake_quantize
from pgolf.budget.exact.inputs import load_input
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
from pgolf.figures.cli import main

KEYS = ["params", "plan", "compressor", "bytes_model", "bytes_code", "bytes_total", "cap", "headroom_bytes"]



@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    sd = synthetic_state_dict(baseline_specs(num_layers=1, model_dim=192, num_heads=4, num_kv_heads=2,
                                             vocab_size=512), seed=2)
    path = tmp_path_factory.mktemp("models") / "model.pt"
    torch.save(sd, path)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_schemes_text_and_json(capsys):
    code, out, _ = run(capsys, "schemes")
    assert code == 0 and "int8_clean_per_row_v1" in out and "ternary" in out and "compressors:" in out
    code, out, _ = run(capsys, "schemes", "--json")
    obj = json.loads(out)
    schemes = {s["scheme"]: s for s in obj["schemes"]}
    assert schemes["ternary"]["bits_per_value"] == 1.6 and schemes["int6"]["levels"] == 63
    assert [p["plan"] for p in obj["plans"]][:2] == ["official-int8", "fp16-embed"]
    assert all(c["available"] for c in obj["compressors"])


def test_budget_official_ptz_json(capsys):
    ptz = fixture_path("artifacts", "sp1024-3L-d128", "final_model.int8.ptz")
    code, out, _ = run(capsys, "budget", str(ptz), "--json", "--quiet")
    obj = json.loads(out)
    assert code == 0 and list(obj)[:8] == KEYS and "tensors" in obj
    assert obj["bytes_model"] == ptz.stat().st_size == 772_586 and obj["params"] == 476_812
    assert obj["headroom_bytes"] == 16_000_000 - 772_586
    assert {r["name"] for r in obj["tensors"]} >= {"tok_emb.weight", "skip_weights"}


def test_budget_text_with_code_cap_and_artifact(capsys, model_pt, tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text("print('hi')\n" * 100)
    art = tmp_path / "out" / "model.pgolf"
    code, out, _ = run(capsys, "budget", str(model_pt), "--plan", "int6", "--compressor", "zstd:3", "--code",
                       str(script), "--cap", "2_000_000", "--write-artifact", str(art), "--quiet")
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines()[1:9])
    # the script's 1,200 bytes plus the decoder the artifact needs (`pgolf decoder`)
    decoder = len(decoder_source("int6", "zstd:3", torch.load(model_pt, weights_only=True)).encode())
    assert lines["plan"] == "int6" and lines["compressor"] == "zstd:3" and lines["bytes_code"] == f"{1_200 + decoder:,}"
    bytes_model = int(lines["bytes_model"].replace(",", ""))
    assert lines["headroom_bytes"] == f"{2_000_000 - bytes_model - 1_200 - decoder:,}"
    assert art.stat().st_size == bytes_model
    loaded = load_input(art)
    assert loaded.format == "pgolf-artifact"
    fake = fake_quantize(torch.load(model_pt, weights_only=True), "int6")
    assert all(torch.equal(loaded.state_dict[n], t) for n, t in fake.items())


def test_compare_matrix(capsys, model_pt):
    code, out, _ = run(capsys, "compare", str(model_pt), "--plans", "official-int8,int6", "--compressors",
                       "zlib,none", "--json", "--quiet")
    obj = json.loads(out)
    assert code == 0 and [(p["plan"], p["compressor"]) for p in obj["pairs"]] == [
        ("official-int8", "zlib"), ("official-int8", "none"), ("int6", "zlib"), ("int6", "none")]
    assert all(p["roundtrip_exact"] for p in obj["pairs"])
    code, out, _ = run(capsys, "compare", str(model_pt), "--plans", "int6", "--compressors", "zlib", "--quiet")
    assert "bytes_model:" in out and "bits_per_param:" in out and "headroom_bytes:" in out


@pytest.mark.parametrize("argv,message", [
    (["budget"], "no INPUT given"),
    (["budget", "missing.pt"], "missing.pt:"),
    (["budget", "--baseline", "x.pt"], "either INPUT or --baseline"),
    (["budget", "--baseline", "--plan", "int9"], "intN needs N in 2..8"),
    (["budget", "--baseline", "--compressor", "zip"], "unknown compressor 'zip'"),
    (["compare", "--baseline", "--plans", ","], "--plans is empty"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith("pgolf: error: ") and message in err
    assert err.count("\n") == 1


def test_nan_weights_name_file_and_tensor_without_traceback(tmp_path):
    path = tmp_path / "nan.pt"
    sd = {"w": torch.zeros(300, 300)}
    sd["w"][7, 7] = float("nan")
    torch.save(sd, path)
    proc = subprocess.run([sys.executable, "-m", "pgolf.figures.cli", "budget", str(path), "--plan", "int6"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"pgolf: error: {path}: ") and "'w'" in proc.stderr and "NaN" in proc.stderr


def test_help_for_each_subcommand(capsys):
    for sub in ("budget", "compare", "schemes"):
        with pytest.raises(SystemExit) as info:
            main([sub, "--help"])
        assert info.value.code == 0 and "--json" in capsys.readouterr().out


def test_budget_estimate_flag_is_bounded_by_measurement(tmp_path, capsys):
    import json

    import torch

    from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
    from pgolf.figures.cli import main

    sd = synthetic_state_dict(baseline_specs(num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2), seed=1)
    path = tmp_path / "model.pt"
    torch.save(sd, path)
    out = {}
    for flag in ("--estimate", None):
        argv = ["budget", str(path), "--plan", "int6", "--compressor", "zstd", "--json", "--quiet"]
        assert main(argv + ([flag] if flag else [])) == 0
        out[flag] = json.loads(capsys.readouterr().out)
    est, exact = out["--estimate"], out[None]
    assert est["estimated"] is True and exact.get("estimated", False) is False
    assert est["params"] == exact["params"]
    assert abs(est["bytes_model"] - exact["bytes_model"]) / exact["bytes_model"] < 0.05
    assert est["bytes_model_low"] <= exact["bytes_model"] <= est["bytes_model_high"]
