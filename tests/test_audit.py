"""`pgolf audit` on the three real record folders, and on copies with one thing wrong."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import fixture_path
from pgolf.figures.cli import main
from pgolf.inspect.audit import agrees, audit
from pgolf.inspect.bpb_check import check_bpb_luts

BASE, LONG = "2026-03-17_NaiveBaseline", "2026-03-18_LongContextSeq2048"
SP = "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2"


def record(name):
    return fixture_path("records", name)


def rows(report, check):
    return report.frame[report.frame["check"] == check]


@pytest.mark.parametrize("name, code, inner, wrapper, logs, counted_max", [
    (BASE, 47_642, 47_642, "none", 1, 15_863_489),
    (LONG, 47_716, 47_716, "none", 3, 15_867_270),
    (SP, 15_516, 43_103, "base64.b85decode -> lzma.decompress", 5, 15_988_983),
])
def test_the_records_pass(name, code, inner, wrapper, logs, counted_max):
    r = audit(record(name))
    h = r.headline
    assert (h["bytes_code_shipped"], h["bytes_code_inner"], h["code_wrapper"], h["logs"]) == (code, inner, wrapper, logs)
    assert h["bytes_counted_max"] == counted_max and h["cap"] == 16_000_000
    assert (h["verdict"], r.exit_code, h["checks_failed"]) == ("pass", 0, 0)
    sub = json.loads((record(name) / "submission.json").read_text())
    assert rows(r, "submission bytes_code")["found"].tolist() == [f"{sub['bytes_code']:,}"]
    assert len(rows(r, "counted bytes < cap")) == logs and set(rows(r, "counted bytes < cap")["status"]) == {"pass"}
    assert set(r.frame.loc[r.frame["check"].isin(["BPB byte accounting", "significance"]), "status"]) == {"not checked"}


def test_sp8192_per_seed_numbers():
    r = audit(record(SP))
    seeds = r.frame[r.frame["check"].str.startswith("seed ")]
    assert len(seeds) == 20 and set(seeds["status"]) == {"pass"}  # 5 seeds x val_loss, val_bpb, artifact_bytes, steps
    one = seeds[seeds["subject"] == "seed 1234 (train_seed1234.log)"].set_index("check")
    assert one.loc["seed artifact_bytes", "found"] == "15,983,318" and one.loc["seed steps", "found"] == "4,989"
    assert one.loc["seed val_loss", "detail"] == "sliding window"
    means = rows(r, "submission val_loss")
    assert means["detail"].tolist() == ["mean over 5 logs"] and means["expected"].tolist() == ["2.80428"]


def test_significance_inside_the_audit():
    r = audit(record(SP), vs=record(BASE), metric="val_bpb")
    assert r.headline["significance_verdict"] == "pass" and r.headline["significance_p"] < 1e-6
    r = audit(record(SP), vs_loss=2.07269931)  # val_loss across tokenizers: the per-token loss is higher
    assert r.headline["significance_verdict"] == "fail" and r.exit_code == 1
    assert any("across different tokenizers" in n for n in r.notes)
    r = audit(record(LONG), vs=record(BASE))
    assert r.headline["significance_t"] == pytest.approx(44.0871, abs=1e-4) and r.exit_code == 0


@pytest.fixture
def copy(tmp_path):
    def make(name):
        dst = tmp_path / name
        shutil.copytree(record(name), dst)
        for p in dst.iterdir():
            p.chmod(0o644)
        return dst
    return make


def test_failures_are_found(copy):
    folder = copy(LONG)
    sub = json.loads((folder / "submission.json").read_text())
    sub.update(val_loss=2.0412, bytes_code=104_721, bytes_total=16_500_000)  # under a MiB cap, over the real one
    (folder / "submission.json").write_text(json.dumps(sub))
    log = folder / "train_seed1339.log"
    log.write_text(log.read_text().replace("Code size: 47716 bytes", "Code size: 47000 bytes"))
    log = folder / "train_seed1338.log"
    log.write_text(log.read_text() + "budget:15861239/16777216\n")  # a MiB cap in the log
    r = audit(folder)
    failed = r.frame[r.frame["status"] == "fail"]
    assert sorted(failed["check"]) == ["log cap", "log code bytes", "submission bytes_code", "submission bytes_total",
                                       "submission under cap", "submission val_loss"]
    assert r.exit_code == 1 and r.headline["verdict"] == "fail"


def test_code_that_cannot_be_unwrapped(copy):
    folder = copy(BASE)
    (folder / "train_gpt.py").write_text('exec(bytes(c ^ 1 for c in b"qshou)(iu(("))\n')
    r = audit(folder)
    row = rows(r, "code readable").iloc[0]
    assert row["status"] == "fail" and "cannot unwrap" in row["detail"]
    assert r.headline["bytes_code_inner"] is None


def test_formats_and_exit_codes(capsys, tmp_path):
    assert main(["audit", str(record(SP)), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("### pgolf audit") and "| code readable | train_gpt.py |" in md
    assert main(["audit", str(record(SP)), "--vs-loss", "2.07269931", "--format", "html", "-o", str(tmp_path / "a.html")]) == 1
    page = (tmp_path / "a.html").read_text()
    assert page.startswith("<!doctype html>") and "<table" in page and "significance" in page
    assert main(["audit", str(record(BASE)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "pgolf-audit-v1" and {c["check"] for c in out["checks"]} >= {"code readable", "significance"}
    assert main(["audit", str(record(LONG)), "--check-bpb-luts"]) == 2  # needs --tokenizer
    assert "needs --tokenizer" in capsys.readouterr().err


def test_agrees_to_the_published_precision():
    assert agrees(2.80405, 2.80405024) and agrees(1.2243657, 1.22436570) and not agrees(2.8017, 2.80176)


BUGGY_LUTS = '''
import numpy as np, torch
def build_sentencepiece_luts(sp, vocab_size, device):
    n = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(n, dtype=np.int16); space = np.zeros(n, dtype=np.bool_); boundary = np.ones(n, dtype=np.bool_)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        base[i] = 1 if sp.is_byte(i) else len(sp.id_to_piece(i).encode("utf-8"))  # keeps the 3-byte "\\u2581"
        space[i] = sp.id_to_piece(i).startswith("\\u2581")
    return tuple(torch.tensor(a, device=device) for a in (base, space, boundary))
if __name__ == "__main__":
    raise SystemExit("main must not run")
'''


def test_bpb_byte_accounting(tmp_path):
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    ok = check_bpb_luts(record(BASE) / "train_gpt.py", tok)
    assert (ok["status"], ok["bpb_factor"], ok["differing_tokens"]) == ("pass", 1.0, 0)
    assert ok["bytes_official"] == ok["bytes_script"] > 0
    buggy = tmp_path / "train_gpt.py"
    buggy.write_text(BUGGY_LUTS)
    bad = check_bpb_luts(buggy, tok)
    assert bad["status"] == "fail" and bad["bytes_script"] > bad["bytes_official"]
    # every leading-space token counts the space twice over (3 bytes for U+2581 + the space itself)
    assert 1.1 < bad["bpb_factor"] < 1.6 and "official val_bpb = reported x" in bad["detail"]
    sp = check_bpb_luts(record(SP) / "train_gpt.py", fixture_path("tokenizers", "fineweb_8192_bpe.model"))
    assert sp["status"] == "not checked" and "flash_attn_interface" in sp["detail"]


def test_bpb_check_in_the_audit():
    r = audit(record(BASE), tokenizer=fixture_path("tokenizers", "fineweb_1024_bpe.model"), check_luts=True)
    assert rows(r, "BPB byte accounting")["status"].tolist() == ["pass"]


@pytest.mark.parametrize("module", ["pgolf.inspect.audit", "pgolf.inspect.significance", "pgolf.budget.files.wrap",
                                    "pgolf.budget.exact.decoder", "pgolf.budget.files.codebytes"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted >= 1
