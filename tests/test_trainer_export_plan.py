"""`pgolf train --plan` and `pgolf export`: the trainer's export under any plan, exact and scored.

One small run (`pgolf train ... --plan int6`, 30 steps of a 2 x 192 model, ~10 s of one core) is
shared by the tests below and across xdist workers; tests that log into a run work on a copy.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pgolf.budget.exact.build import build_artifact, fake_quantize
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.quant.plans import Plan, load_plan
from pgolf.budget.exact.decode import roundtrip_mismatches
from pgolf.figures.cli import main as pgolf
from pgolf.trainer.logs import parse_log_summary
from pgolf.trainer.plan_export import artifact_name, eval_label, export_label, export_with_plan, log_lines, slug
from trainer_fixtures import exclusive, session_dir, shared_corpus

# dim 192: the MLP matrices (73,728 values) and the embedding pass the 65,536-value passthrough
# limit, so int6 really quantizes them; attention matrices (36,864) stay fp16 under presets.
FLAGS = ["--device", "cpu", "--num-layers", "2", "--model-dim", "192", "--num-heads", "4", "--num-kv-heads", "2",
         "--train-seq-len", "64", "--train-batch-tokens", "2048", "--iterations", "30", "--warmdown-iters", "10",
         "--max-wallclock-seconds", "0", "--val-tokens", "8192", "--val-batch-size", "16384", "--warmup-steps", "0",
         "--val-loss-every", "0", "--train-log-every", "10", "--seed", "5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """(OUT_DIR, printed results.json) of `pgolf train FLAGS --plan int6 --json`, once per session."""
    info = shared_corpus(tmp_path_factory)
    shared = session_dir(tmp_path_factory)
    out = shared / "trainer-export-plan"
    with exclusive(shared / "trainer-export-plan.lock"):
        if not (out / "stdout.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
            env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
            env.update(OMP_NUM_THREADS="1", DATA_PATH=info.data_path, TOKENIZER_PATH=info.tokenizer_path)
            done = subprocess.run([sys.executable, "-m", "pgolf.figures.cli", "train", *FLAGS, "--out-dir", str(out),
                                   "--plan", "int6", "--json"], env=env, cwd=shared, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            (out / "stdout.json").write_text(done.stdout)
    return out, json.loads((out / "stdout.json").read_text())


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "final_model.pt", weights_only=True, map_location="cpu")


def copy_run(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(out, dst, ignore=shutil.ignore_patterns("*.ptz", "stdout.json"))
    return dst



@pytest.mark.slow
def test_train_plan_writes_the_exact_artifact_and_official_style_log(run):
    out, printed = run
    path = out / "final_model.int6.zlib.ptz"
    blob, sd = path.read_bytes(), weights(out)
    expected = build_artifact(sd, "int6", "zlib")
    assert len(blob) == len(expected) and blob == expected
    assert roundtrip_mismatches(read_artifact(blob), fake_quantize(sd, "int6")) == []
    name = "blocks.0.mlp.fc.weight"  # 384 x 192: int6 really quantized it, at most 63 levels a row
    assert max(len(row.unique()) for row in read_artifact(blob)[name]) <= 63 < min(len(r.unique()) for r in sd[name])
    assert blob[:5] == b"PGOLF"  # pgolf's container (the official export cannot hold int6)

    s = parse_log_summary(out / "train.log")
    entry = printed["plan_exports"]["int6+zlib"]
    code = printed["bytes_code"]
    assert s["bytes_code"] == code > 40_000  # the script's own `Code size:` line
    assert s["exports"]["int6+zlib"] == {"bytes_model": len(blob), "bytes_total": len(blob) + code,
                                         "payload_bytes": entry["payload_bytes"],
                                         "serialized_bytes": entry["serialized_bytes"]}
    assert s["exports"]["int8+zlib"]["bytes_model"] == (out / "final_model.int8.ptz").stat().st_size
    exact = s["evals"]["final_int6_zlib_roundtrip_exact"]
    assert exact["val_bpb"] == pytest.approx(entry["val_bpb_quantized"], abs=5e-9)
    assert exact["val_loss"] == pytest.approx(entry["val_loss_quantized"], abs=5e-9)
    # the newest export is the headline, its gap against the run's last full-precision eval
    assert (s["export"], s["bytes_model"], s["bytes_total"]) == ("int6+zlib", len(blob), len(blob) + code)
    assert s["val_bpb_quantized"] == exact["val_bpb"]
    assert s["val_bpb_full"] == pytest.approx(printed["val_bpb"], abs=5e-5)
    assert entry["quant_gap_bpb"] == pytest.approx(entry["val_bpb_quantized"] - printed["val_bpb"], abs=1e-12)
    # int6 weights score differently from int8 ones, by a little on this small model
    assert entry["val_bpb_quantized"] != printed["roundtrip_val_bpb"]
    assert abs(entry["val_bpb_quantized"] - printed["roundtrip_val_bpb"]) < 0.05
    assert printed["val_bpb"] < 3.6  # it trained (an untrained model scores ~3.5-4.5)


@pytest.mark.slow
def test_official_plan_reproduces_the_scripts_own_export_and_score(run, tmp_path):
    out, printed = run
    report = export_with_plan(out, "official-int8", "zlib", output=tmp_path / "x.ptz", log=False)
    # same bytes as train_gpt.py's final_model.int8.ptz, same validation tokens, same val_bpb
    assert (tmp_path / "x.ptz").read_bytes() == (out / "final_model.int8.ptz").read_bytes()
    h = report.headline
    assert h["bytes_model"] == printed["bytes_model"] and h["bytes_total"] == printed["bytes_total"]
    assert h["val_bpb_quantized"] == pytest.approx(printed["roundtrip_val_bpb"], abs=1e-7)
    assert h["val_loss_quantized"] == pytest.approx(printed["roundtrip_val_loss"], abs=1e-7)
    assert h["val_tokens"] == 8192 and h["roundtrip_exact"] is True
    assert set(json.loads((out / "results.json").read_text())["plan_exports"]) == {"int6+zlib"}  # log=False
    assert "official-int8+zlib" not in parse_log_summary(out / "train.log")["exports"]


@pytest.mark.slow
def test_allocator_plan_json_is_accepted_by_pgolf_export(run, tmp_path, capsys):
    out = copy_run(run[0], tmp_path)
    sd = weights(out)
    schemes = ["int5", "int6", "int8", "fp16"]
    big = [n for n, t in sd.items() if t.ndim == 2]
    # as `pgolf allocate` writes it: exact-name rules, no passthrough limit, saved by pgolf.budget.quant.plans
    plan = Plan(name="allocated", rules=tuple((f"^{re.escape(n)}$", schemes[i % 4]) for i, n in enumerate(big)),
                default="int8", keep_float_max_numel=0, description="pgolf allocate: test")
    plan_path = plan.save(tmp_path / "plan.json")
    assert json.loads(plan_path.read_text())["format"] == "pgolf-plan-v1"

    assert pgolf(["export", str(out), "--plan", str(plan_path), "--compressor", "zstd", "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    path = out / "final_model.allocated.zstd.ptz"
    assert got["artifact_path"] == str(path) and got["plan"] == "allocated" and got["compressor"] == "zstd"
    blob = path.read_bytes()
    assert got["bytes_model"] == len(blob) == len(build_artifact(sd, load_plan(plan_path), "zstd"))
    assert roundtrip_mismatches(read_artifact(blob), fake_quantize(sd, load_plan(plan_path))) == []
    rows = {r["name"]: r["scheme"] for r in got["tensors"]}
    assert [rows[n] for n in big] == [schemes[i % 4] for i in range(len(big))]

    s = parse_log_summary(out / "train.log")
    assert s["exports"]["allocated+zstd"]["bytes_model"] == len(blob)
    assert s["exports"]["allocated+zstd"]["bytes_total"] == got["bytes_total"] == len(blob) + s["bytes_code"]
    assert s["evals"]["final_allocated_zstd_roundtrip_exact"]["val_bpb"] == pytest.approx(got["val_bpb_quantized"],
                                                                                            abs=5e-9)
    assert s["export"] == "allocated+zstd"
    results = json.loads((out / "results.json").read_text())
    assert set(results["plan_exports"]) == {"int6+zlib", "allocated+zstd"}


@pytest.mark.slow
def test_export_of_a_plain_state_dict_is_unscored_and_logs_nothing(run, tmp_path, capsys):
    sd = weights(run[0])
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    assert pgolf(["export", str(src), "--plan", "int6", "--compressor", "lzma", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    path = tmp_path / "model.int6.lzma.ptz"
    assert got["artifact_path"] == str(path) and got["bytes_model"] == path.stat().st_size
    assert got["bytes_code"] == 0 and "val_bpb_quantized" not in got
    assert path.read_bytes() == build_artifact(sd, "int6", "lzma")
    assert pgolf(["export", str(src), "--plan", "int6", "--score"]) == 2
    assert "scoring needs the run's config" in capsys.readouterr().err


@pytest.mark.slow
def test_missing_validation_data_fails_before_any_output(run, tmp_path, capsys):
    out = copy_run(run[0], tmp_path)
    log = (out / "train.log").read_text()
    assert pgolf(["export", str(out), "--plan", "int6", "--data", str(tmp_path / "nodata")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation data of the run: no shards match" in err
    assert not list(out.glob("*.ptz")) and (out / "train.log").read_text() == log


@pytest.mark.slow
def test_export_never_writes_over_the_runs_own_files(run, tmp_path, capsys):
    out = copy_run(run[0], tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for victim in ("train.log", "results.json"):
        assert pgolf(["export", str(out), "--plan", "int6", "-o", str(out / victim)]) == 2
        assert "output would overwrite the input or a file of its run" in capsys.readouterr().err
    (out / "results.json").write_text('{"val_bpb": ')  # broken: refused before the artifact or the log
    before["results.json"] = (out / "results.json").read_bytes()
    assert pgolf(["export", str(out), "--plan", "int6", "--score"]) == 2
    assert "results.json: invalid JSON" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("plan, compressor", [("int6:sdclip(12.85)", "zstd:19"), ("fp16-embed", "brotli+byte-shuffle"),
                                              ("int8_clean_per_row_v1", "zlib")])
def test_log_lines_parse_back(plan, compressor):
    head = {"source": "r/final_model.pt", "plan": plan, "compressor": compressor, "artifact_path": "r/a.ptz",
            "artifact": "pgolf-container", "payload_bytes": 2_500_000, "serialized_bytes": 2_600_123,
            "bytes_model": 2_012_345, "bytes_total": 2_060_000}
    lines = log_lines(head, {"val_loss": 2.123456789, "val_bpb": 1.234567891, "eval_ms": 12.0})
    s = parse_log_summary("step:9/9 val_loss:2.1 val_bpb:1.2\n" + "\n".join(lines) + "\n")
    label = export_label(plan, compressor)
    assert s["exports"] == {label: {"bytes_model": 2_012_345, "bytes_total": 2_060_000, "payload_bytes": 2_500_000,
                                    "serialized_bytes": 2_600_123}}
    assert s["evals"][eval_label(plan, compressor) + "_exact"] == {"val_loss": 2.12345679, "val_bpb": 1.23456789}
    assert s["val_bpb_quantized"] == 1.23456789 and s["export"] == label
    assert artifact_name(plan, compressor) == f"final_model.{slug(plan)}.{slug(compressor)}.ptz"
    assert re.fullmatch(r"[\w-]+", slug(plan) + slug(compressor))


BAD_PLANS = [
    ("missing.json", None, "cannot read plan file"),
    ("corrupt.json", '{"format": "pgolf-plan-v1", "rules": [', "not valid JSON"),
    ("badscheme.json", '{"format": "pgolf-plan-v1", "rules": [{"pattern": "mlp", "scheme": "int99"}]}', "int99"),
    ("int99", None, "unknown plan 'int99'"),
]


@pytest.mark.parametrize("command", ["export", "train"])
@pytest.mark.parametrize("name, content, problem", BAD_PLANS)
def test_bad_plan_is_one_line_exit_2_before_any_work(command, name, content, problem, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / name).write_text(content)
    args = ["export", "no-such-run"] if command == "export" else ["train", "--out-dir", "never", "--device", "cpu"]
    assert pgolf([*args, "--plan", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pgolf: error: ") and problem in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_bad_input_and_compressor_are_one_line_exit_2(tmp_path, capsys):
    assert pgolf(["export", str(tmp_path / "nope"), "--plan", "int6"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert pgolf(["export", str(tmp_path), "--plan", "int6", "--compressor", "gzip"]) == 2
    assert "gzip" in capsys.readouterr().err
    assert pgolf(["train", "--compressor", "zstd", "--out-dir", str(tmp_path / "x")]) == 2
    assert "--compressor applies to the --plan export" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
