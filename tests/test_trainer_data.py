"""Shards, tokenizers and the embedded default corpus (Python's own documentation)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from conftest import fixture_path
from pgolf.trainer import corpus
from pgolf.trainer.train_gpt import embedded_data_dir, load_data_shard, load_tokenizer, load_validation_tokens
from trainer_fixtures import session_cache_dir, shared_corpus


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The session's from-scratch build (shared with the training tests; never modified)."""
    return shared_corpus(tmp_path_factory)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_shard_roundtrip(tmp_path):
    tokens = np.array([1, 5, 1023, 0, 65535], dtype=np.uint16)
    path = write(tmp_path / "fineweb_val_000000.bin", corpus.shard_bytes(tokens))
    assert path.stat().st_size == 1024 + 2 * 5
    assert load_data_shard(path).numpy().tolist() == tokens.tolist()


def header(magic=20240520, version=1, count=3) -> bytes:
    h = np.zeros(256, dtype="<i4")
    h[:3] = (magic, version, count)
    return h.tobytes()


@pytest.mark.parametrize("data,problem", [
    (header(magic=1234) + b"\0" * 6, "not a token shard"),
    (header(version=2) + b"\0" * 6, "not a token shard"),
    (header(count=3) + b"\0" * 4, "size 1028 bytes, header promises 1030"),
    (header(count=3) + b"\0" * 8, "size 1032 bytes, header promises 1030"),
    (b"\x01\x02", "not a token shard"),
    (b"", "not a token shard"),
])
def test_bad_shards_name_the_file(tmp_path, data, problem):
    path = write(tmp_path / "fineweb_train_000007.bin", data)
    with pytest.raises(ValueError, match=problem) as info:
        load_data_shard(path)
    assert str(path) in str(info.value)


def test_validation_tokens_are_whole_windows_and_capped(tmp_path):
    write(tmp_path / "fineweb_val_000000.bin", corpus.shard_bytes(np.arange(1000, dtype=np.uint16)))
    pattern = str(tmp_path / "fineweb_val_*.bin")
    assert load_validation_tokens(pattern, 64).numel() == 999 // 64 * 64 + 1
    assert load_validation_tokens(pattern, 64, max_tokens=200).numel() == 3 * 64 + 1
    with pytest.raises(ValueError, match="too short"):
        load_validation_tokens(pattern, 2048)


def test_tokenizer_validation(tmp_path):
    model = str(fixture_path("tokenizers", "fineweb_1024_bpe.model"))
    assert load_tokenizer(model, 1024).vocab_size() == 1024
    with pytest.raises(ValueError, match="does not match VOCAB_SIZE=8192"):
        load_tokenizer(model, 8192)
    bad = write(tmp_path / "bad.model", b"not a proto")
    with pytest.raises(ValueError, match=f"{bad}: unreadable SentencePiece model"):
        load_tokenizer(str(bad), 1024)


def test_docstrings_in_source_order():
    src = b'"""Module."""\nclass A:\n    """Class A."""\n    def f(self):\n        """Method f."""\ndef g():\n    """Function g."""\n'
    assert corpus.docstrings_in_source(src) == ["Module.", "Class A.", "Method f.", "Function g."]


def test_default_corpus_manifest_and_shards(fresh, monkeypatch):
    m = fresh.manifest
    folder = Path(fresh.data_path)
    assert m["format"] == "pgolf-corpus-v1" and m["python_version"] == sys.version.split()[0]
    assert 1_500_000 < m["text_bytes"]["total"] < 4_000_000
    assert m["documents"]["topics"] > 50 and m["documents"]["modules"] > 300
    assert 0.05 < m["documents"]["val"] / (m["documents"]["train"] + m["documents"]["val"]) < 0.2
    for shard in m["shards"]:
        data = (folder / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        tokens = load_data_shard(folder / shard["file"])
        assert tokens.numel() == shard["tokens"] == m["tokens"][shard["split"]]
        assert int((tokens == 1).sum()) == shard["documents"] == m["documents"][shard["split"]]
        assert int(tokens[0]) == 1 and int(tokens.int().max()) < 1024
    assert hashlib.sha256(Path(fresh.tokenizer_path).read_bytes()).hexdigest() == m["tokenizer"]["sha256"]
    monkeypatch.setenv("PGOLF_CACHE", str(folder.parent))
    assert embedded_data_dir() == folder  # where train_gpt.py looks without importing pgolf


def test_val_shard_holds_the_val_documents_in_order(fresh):
    sp = spm.SentencePieceProcessor(model_file=fresh.tokenizer_path)
    docs, _ = corpus.python_documents()
    val = [d for d in docs if d.split == "val"]
    tokens = load_data_shard(Path(fresh.data_path) / "fineweb_val_000000.bin").numpy()
    starts = np.flatnonzero(tokens == 1).tolist() + [tokens.size]
    decoded = [sp.decode(tokens[a + 1 : b].tolist()) for a, b in zip(starts, starts[1:])]
    assert decoded == [sp.decode(sp.encode(d.text)) for d in val]
    assert {d.name for d in val}.isdisjoint(d.name for d in docs if d.split == "train")


def test_tokenizer_mirrors_the_challenge_settings(fresh):
    ours = corpus.read_model_spec(Path(fresh.tokenizer_path).read_bytes())
    challenge = corpus.read_model_spec(fixture_path("tokenizers", "fineweb_1024_bpe.model").read_bytes())
    assert ours == challenge
    assert ours["byte_fallback"] is False and ours["add_dummy_prefix"] is False and ours["split_digits"] is True
    sp = spm.SentencePieceProcessor(model_file=fresh.tokenizer_path)
    assert (sp.vocab_size(), sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (1024, 0, 1, 2, 3)


def test_extraction_is_deterministic_across_processes(fresh):
    # A fresh interpreter has another hash seed: set or dict order leaking into the text would show.
    code = "from pgolf.trainer.corpus import python_documents, text_sha256; print(text_sha256(python_documents()[0]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": "123"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == fresh.manifest["text_sha256"] == corpus.text_sha256(corpus.python_documents()[0])


def test_tokenizer_training_is_deterministic():
    docs, _ = corpus.python_documents()
    subset = [d for d in docs if d.split == "train"][:150]
    assert corpus.train_tokenizer(subset) == corpus.train_tokenizer(subset)


def test_prepare_reuses_a_whole_cache_and_rebuilds_a_damaged_one(fresh, tmp_path):
    folder = tmp_path / Path(fresh.data_path).name
    shutil.copytree(fresh.data_path, folder)  # damage a copy: other workers read the shared one
    again = corpus.prepare_default(cache_dir=tmp_path, quiet=True)
    assert again.manifest == fresh.manifest and again.data_path == str(folder)
    shard = folder / "fineweb_val_000000.bin"
    good = shard.read_bytes()
    shard.write_bytes(good[:-2])  # a truncated shard must not be trusted
    rebuilt = corpus.prepare_default(cache_dir=tmp_path, quiet=True)
    assert shard.read_bytes() == good and rebuilt.manifest == fresh.manifest


def test_prepare_with_the_challenge_tokenizer(tmp_path_factory, fresh):
    model = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    info = corpus.prepare_default(cache_dir=session_cache_dir(tmp_path_factory), tokenizer=model, quiet=True)
    assert Path(info.data_path).name.startswith("pydocs-py") and "fineweb_1024_bpe-849ea920" in info.data_path
    assert info.manifest["tokenizer"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert info.manifest["text_sha256"] == fresh.manifest["text_sha256"]
    assert info.manifest["documents"]["val"] == fresh.manifest["documents"]["val"]
    sp = spm.SentencePieceProcessor(model_file=info.tokenizer_path)
    docs, _ = corpus.python_documents()
    val = [d for d in docs if d.split == "val"]
    assert info.manifest["tokens"]["val"] == sum(len(ids) + 1 for ids in sp.encode([d.text for d in val]))


def test_cli_prepare_json_and_bad_tokenizer(fresh, tmp_path):
    pgolf = [sys.executable, "-m", "pgolf.figures.cli"]
    out = subprocess.run([*pgolf, "data", "prepare", "--out", str(Path(fresh.data_path).parent), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["tokens_val"] == fresh.manifest["tokens"]["val"] and len(report["shards"]) == 2
    bad = write(tmp_path / "broken.model", b"\x00garbage")
    out = subprocess.run([*pgolf, "data", "prepare", "--out", str(tmp_path / "c"), "--tokenizer", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"pgolf: error: {bad}: not a SentencePiece model (the proto does not parse)"
    assert not (tmp_path / "c").exists()
