"""docs/errors.md: every bad input tried, with the exact line pgolf prints; regenerated, never stale.

Each catalogue input (tests/bad_inputs.py) goes through the real CLI entry point
(`pgolf.figures.cli.main`, what the `pgolf` console script runs): exit code 2, one line on
stderr, nothing on stdout, no traceback. Two of them also run as real `pgolf` processes, with
and without --debug. `PGOLF_REGEN_DOCS=1` rewrites docs/errors.md; otherwise the test fails
when the committed file differs from what pgolf prints today.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bad_inputs
from bad_inputs import AUDIT_CASES, CATALOGUE, MARKER
from conftest import ROOT, fixture_path
from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.inputs import read_json, read_shard, read_tokenizer
from pgolf.figures.cli import main

DOC = ROOT / "docs" / "errors.md"
REGEN = os.environ.get("PGOLF_REGEN_DOCS") == "1"

PLAN_FILES = {  # name -> (what, content); given as `pgolf budget --baseline --plan NAME`
    "plan-v2.json": ("a plan file of a future version", '{"format": "pgolf-plan-v2", "rules": []}'),
    "plan-broken.json": ("a plan file cut off mid-object", '{"format": "pgolf-plan-v1", "rules": ['),
    "plan-rules.json": ("a plan whose rules are not pattern/scheme objects",
                        '{"format": "pgolf-plan-v1", "rules": [["tok_emb", "int8"]]}'),
    "plan-deep.json": ("a plan file nested 100,000 levels deep", "[" * 100_000),
    "plan-alternation.json": ("a plan regex that repeats an alternation (2^n steps on a name)",
                              '{"format": "pgolf-plan-v1", "rules": [{"pattern": "^(.|.)*Z$", "scheme": "int6"}]}'),
    "plan-huge-repeat.json": ("a plan regex with a repeat count beyond what re compiles",
                              '{"format": "pgolf-plan-v1", "rules": [{"pattern": "a{99999999999}", "scheme": "int6"}]}'),
    "plan-missing.json": ("a plan file that does not exist", None),
}


EXPORT_CASES = [  # (arguments after `pgolf export`, what); model.pt is the 2L-d64 fixture's final_model.pt
    (["missing-run", "--plan", "int6"], "a run folder that does not exist"),
    (["empty-run", "--plan", "int6"], "a folder with no final_model.pt and no checkpoint"),
    (["model.pt", "--plan", "int6", "--score"], "scoring a bare state dict (no run config to rebuild the model)"),
    (["model.pt", "--plan", "int6", "-o", "model.pt"], "an output path that is the input itself"),
    (["model.pt", "--plan", "int9"], "a plan that is neither a preset, a file nor a scheme"),
    (["model.pt", "--plan", "int6", "--compressor", "zip"], "an unknown compressor"),
    (["model.pt", "--plan", "int6", "--compressor", "ans:col1"], "grouped ANS with one class (rowG / colG take 2..64)"),
]


def shard(tokens, magic=20240520, version=1, count=None) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(tokens) if count is None else count
    return header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes()


def library_cases() -> list[tuple[str, str, str, object]]:
    """(call shown in the doc, file name, what, bytes) for the readers other areas call."""
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model").read_bytes()
    return [
        ("read_shard(p, vocab_size=1024)", "short.bin", "a shard shorter than its 1,024-byte header", b"\0" * 100),
        ("read_shard(p, vocab_size=1024)", "magic.bin", "a shard with another magic number", shard([1, 2], magic=7)),
        ("read_shard(p, vocab_size=1024)", "version.bin", "a shard of version 2", shard([1, 2], version=2)),
        ("read_shard(p, vocab_size=1024)", "cut.bin", "a shard missing its last token", shard([1, 2, 3])[:-2]),
        ("read_shard(p, vocab_size=1024)", "oov.bin", "a shard with token 5000 for a 1,024 vocab", shard([1, 5000, 3])),
        ("read_tokenizer(p)", "empty.model", "an empty tokenizer file", b""),
        ("read_tokenizer(p)", "junk.model", "a tokenizer file of random bytes", bytes(range(256)) * 4),
        ("read_tokenizer(p, vocab_size=8192)", "sp1024.model", "the sp1024 tokenizer where 8,192 is expected", tok),
        ("read_json(p, 'pgolf-checkpoint-v1', ('config', 'step'))", "side.json", "a sidecar without 'step'",
         b'{"format": "pgolf-checkpoint-v1", "config": {}}'),
        ("read_json(p, 'pgolf-checkpoint-v1')", "nan.json", "JSON with a NaN constant",
         b'{"format": "pgolf-checkpoint-v1", "val_bpb": NaN}'),
    ]


def run_cli(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """The real CLI entry point in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in env}
    os.chdir(cwd)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return code, out.getvalue(), err.getvalue()


def cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def render(cli_rows, plan_rows, lib_rows, export_rows, audit_rows=(), script_rows=(), predict_rows=()) -> str:
    lines = [
        "# Bad inputs and what pgolf says about them",
        "",
        "Generated by `tests/test_errors_doc.py` from the inputs in `tests/bad_inputs.py` (built from the",
        "challenge fixtures); the test fails when this file differs from what pgolf prints, so it cannot go",
        "stale. Regenerate with `PGOLF_REGEN_DOCS=1 .venv/bin/python -m pytest tests/test_errors_doc.py`.",
        "",
        "Every input below makes `pgolf` exit with code 2 and print exactly one line on stderr, naming the",
        "file and the problem; nothing is printed on stdout and no traceback is shown (`pgolf --debug ...`",
        "shows it). Pickles are only ever loaded with `torch.load(weights_only=True)`: the hostile ones",
        "below would run `touch PWNED_MARKER` if unpickled unsafely, and the test checks the file never",
        "appears. Decompression stops at `PGOLF_MAX_DECOMPRESSED` bytes (default 1,024,000,000).",
        "",
        "## Model inputs: `pgolf budget INPUT`",
        "",
        "| INPUT | what it is | stderr |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {what} | {cell(msg)} |" for name, what, msg in cli_rows]
    lines += ["", "## Plan files: `pgolf budget --baseline --plan FILE`", "", "| FILE | what it is | stderr |",
              "|---|---|---|"]
    lines += [f"| `{name}` | {what} | {cell(msg)} |" for name, what, msg in plan_rows]
    def args_section(title: str, intro: list[str], rows) -> list[str]:
        return (["", title, "", *intro, "", "| ARGS | what it is | stderr |", "|---|---|---|"] +
                [f"| `{args}` | {what} | {cell(msg)} |" for args, what, msg in rows])

    lines += args_section("## Exports: `pgolf export ARGS`",
                          ["`model.pt` is the 2L-d64 fixture's `final_model.pt`; no artifact file is left behind."],
                          export_rows)
    lines += args_section("## Record folders, logs and scripts: `pgolf audit` / `significance` / `wrap` / `decoder`",
                          ["Record folders are copies of the baseline record fixture with one part broken; "
                           "`best.ptz` is a `best` artifact of a 64 x 64 matrix."], audit_rows)
    lines += args_section("## Predictions: `pgolf predict ARGS`",
                          ["`model.pt` is the 2L-d64 fixture's `final_model.pt`."], predict_rows)
    lines += args_section("## The participant's script: `pgolf gaps model.pt ARGS`",
                          ["`model.pt` is the 2L-d64 fixture's `final_model.pt`; `BASELINE` stands for the fixture",
                           "`official_baseline_train_gpt.py`. The same lines come from `pgolf headroom` and "
                           "`pgolf allocate`."], script_rows)
    lines += ["", "## Readers other commands use (`pgolf.budget.exact.inputs`)", "",
              "The message of the `PgolfInputError` raised, which the CLI prints after `pgolf: error: `.", "",
              "| call | file | what it is | message |", "|---|---|---|---|"]
    lines += [f"| `{call}` | `{name}` | {what} | {cell(msg)} |" for call, name, what, msg in lib_rows]
    return "\n".join(lines) + "\n"


def check_one_line(code: int, out: str, err: str, label: str) -> str:
    assert code == 2, f"{label}: exit code {code}"
    assert out == "", f"{label}: partial output on stdout: {out[:200]!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"{label}: stderr is not one line: {err!r}"
    assert "Traceback" not in err and err.startswith("pgolf: error: "), f"{label}: {err!r}"
    return err.rstrip("\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors") / "inputs"
    root.mkdir()
    bad_inputs.build_all(root)
    for name, (_, text) in PLAN_FILES.items():
        if text is not None:
            (root / name).write_text(text)
    (root / "empty-run").mkdir()
    (root / "model.pt").write_bytes(fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt").read_bytes())
    return root


def test_errors_doc_is_current(inputs):
    cli_rows = []
    for bad in CATALOGUE:
        code, out, err = run_cli(["budget", bad.name], inputs, dict(bad.env))
        msg = check_one_line(code, out, err, bad.name)
        assert bad.expect in msg, (bad.name, msg)
        env = " ".join(f"{k}={v}" for k, v in bad.env)
        cli_rows.append((bad.name if not env else f"{bad.name}` with `{env}", bad.what, msg))
    assert not (inputs / MARKER).exists(), "a hostile pickle ran"
    plan_rows = []
    for name, (what, _) in PLAN_FILES.items():
        code, out, err = run_cli(["budget", "--baseline", "--plan", name, "--quiet"], inputs, {})
        plan_rows.append((name, what, check_one_line(code, out, err, name)))
    lib_rows = []
    lib_dir = inputs / "lib"
    lib_dir.mkdir(exist_ok=True)
    for call, name, what, data in library_cases():
        (lib_dir / name).write_bytes(data)
        with pytest.raises(PgolfInputError) as info:
            _call(lib_dir, name, call)
        assert "\n" not in str(info.value)
        lib_rows.append((call, name, what, str(info.value)))
    export_rows = []
    for args, what in EXPORT_CASES:
        before = sorted(p.name for p in inputs.iterdir())
        code, out, err = run_cli(["export", *args, "--quiet"], inputs, {})
        export_rows.append((" ".join(args), what, check_one_line(code, out, err, " ".join(args))))
        assert sorted(p.name for p in inputs.iterdir()) == before, f"export {args}: left a file behind"
    audit_rows = []
    records = inputs / "records"
    records.mkdir(exist_ok=True)
    bad_inputs.build_records(records)
    for args, what in AUDIT_CASES:
        code, out, err = run_cli(args, records, {})
        audit_rows.append((" ".join(args), what, check_one_line(code, out, err, " ".join(args))))
    assert not (records / "out.py").exists(), "wrap left a file behind"
    script_rows = []
    bad_inputs.build_script_inputs(inputs / "script-cases")
    for args, what, expect in bad_inputs.SCRIPT_CASES:
        code, out, err = run_cli(bad_inputs.script_argv(args), inputs / "script-cases", {"CUDA_VISIBLE_DEVICES": ""})
        msg = check_one_line(code, out, err, " ".join(args))
        assert expect in msg, (args, msg)
        script_rows.append((" ".join(args), what, msg))
    predict_rows = []
    bad_inputs.build_predict_inputs(inputs / "predict-cases")
    for args, what in bad_inputs.PREDICT_CASES:
        code, out, err = run_cli(["predict", *args], inputs / "predict-cases", {})
        predict_rows.append((" ".join(args), what, check_one_line(code, out, err, " ".join(args))))
    text = render(cli_rows, plan_rows, lib_rows, export_rows, audit_rows, script_rows, predict_rows)
    if REGEN:
        write_text_atomic(DOC, text)
    assert DOC.exists(), "docs/errors.md is missing: run with PGOLF_REGEN_DOCS=1"
    assert DOC.read_text() == text, "docs/errors.md is stale: rerun with PGOLF_REGEN_DOCS=1 and review the diff"


def _call(folder: Path, name: str, call: str):
    """Run `call` exactly as the doc shows it, with `p` the file's relative name (stable messages)."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        return eval(call, {"read_shard": read_shard, "read_tokenizer": read_tokenizer, "read_json": read_json, "p": name})
    finally:
        os.chdir(old)


def test_real_process_one_line_and_debug_traceback(inputs):
    """The console script itself: exit 2, one line; with --debug the traceback and the same line."""
    pgolf = Path(sys.executable).with_name("pgolf")
    argv = [str(pgolf)] if pgolf.exists() else [sys.executable, "-m", "pgolf.figures.cli"]
    run = subprocess.run([*argv, "budget", "hostile.pt"], cwd=inputs, capture_output=True, text=True, timeout=120)
    msg = check_one_line(run.returncode, run.stdout, run.stderr, "hostile.pt")
    assert "refused to unpickle global posix.system" in msg or "refused to unpickle global nt.system" in msg
    assert not (inputs / MARKER).exists()
    run = subprocess.run([*argv, "--debug", "budget", "truncated.ptz"], cwd=inputs, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and run.stdout == ""
    assert "Traceback (most recent call last)" in run.stderr
    assert "PgolfInputError: truncated.ptz: truncated zlib stream" in run.stderr
