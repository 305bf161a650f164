"""pgolf.budget.exact.inputs / validate / cache: real fixtures load exactly, every bad input is one line."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

import bad_inputs
from bad_inputs import CATALOGUE, MARKER, SystemCall, checkpoint, good_sidecar, torch_bytes, zlib_bomb
from conftest import FIXTURE_MODELS, fixture_path
from pgolf.budget.files.cache import CACHE_FORMAT, JsonCache
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.official import dequantize_state_dict_int8
from pgolf.budget.files.safeload import DEFAULT_LIMIT, decompress_zlib_bounded
from pgolf.budget.exact.inputs import (load_bytes, load_input, read_json,
                                  read_shard, read_tokenizer)
from pgolf.budget.files.validate import validate_state_dict

PARAMS = {"sp1024-2L-d64": (107_080, 22), "sp1024-3L-d128": (476_812, 32)}
DECOMPRESSED = {"sp1024-2L-d64": 222_433, "sp1024-3L-d128": 837_939}


def plain_load(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def assert_same(a: dict, b: dict, ordered: bool = True) -> None:
    assert list(a) == list(b) if ordered else sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


# --- the real fixtures ------------------------------------------------------------------------

@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_fixture_state_dict_pt(model):
    path = fixture_path("artifacts", model, "final_model.pt")
    li = load_input(path)
    assert li.format == "state-dict-pt" and li.export is None and li.metadata == {}
    assert li.raw_bytes == path.stat().st_size
    assert sum(t.numel() for t in li.state_dict.values()) == PARAMS[model][0]
    assert len(li.state_dict) == PARAMS[model][1]
    assert all(t.device.type == "cpu" for t in li.state_dict.values())  # d128 was saved on CUDA
    assert_same(li.state_dict, plain_load(path.read_bytes()))


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_fixture_official_ptz(model):
    path = fixture_path("artifacts", model, "final_model.int8.ptz")
    li = load_input(path)
    assert li.format == "official-ptz" and li.raw_bytes == path.stat().st_size
    raw = zlib.decompress(path.read_bytes())
    assert len(raw) == DECOMPRESSED[model]
    assert li.export["__quant_format__"] == "int8_clean_per_row_v1"
    assert_same(li.state_dict, dequantize_state_dict_int8(plain_load(raw)))
    pt = plain_load(fixture_path("artifacts", model, "final_model.pt").read_bytes())
    assert {k: (v.shape, v.dtype) for k, v in li.state_dict.items()} == {k: (v.shape, v.dtype) for k, v in pt.items()}
    # the limit is inclusive: exactly the decompressed size passes, one byte less is refused
    assert load_input(path, max_decompressed_bytes=DECOMPRESSED[model]).format == "official-ptz"
    with pytest.raises(PgolfInputError, match=f"exceeds {DECOMPRESSED[model] - 1:,} bytes"):
        load_input(path, max_decompressed_bytes=DECOMPRESSED[model] - 1)


def test_safetensors_roundtrip(tmp_path):
    sd = bad_inputs.fixture_sd()
    (tmp_path / "m.safetensors").write_bytes(st_save(sd))
    li = load_input(tmp_path / "m.safetensors")
    assert li.format == "safetensors" and li.metadata == {}
    assert_same(li.state_dict, sd, ordered=False)  # safetensors stores tensors sorted, not in model order


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null"])
def test_special_files_refused_without_reading(special):
    if not Path(special).exists():
        pytest.skip(f"{special} not on this system")
    with pytest.raises(PgolfInputError, match="not a regular file"):
        load_input(special)


def test_legacy_torch_save_loads():
    sd = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    li = load_bytes(buf.getvalue(), "legacy.pt")
    assert li.format == "state-dict-pt"
    assert_same(li.state_dict, sd)


# --- pgolf checkpoints ------------------------------------------------------------------------

def test_checkpoint_folder_picks_newest_complete_step(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    weights = {}
    for step in (1, 3, 12):
        sd = {"w": torch.full((4, 4), float(step))}
        weights[step] = st_save(sd, metadata={"format": "pgolf-checkpoint-v1"})
        sha = hashlib.sha256(weights[step]).hexdigest()
        checkpoint(ck, good_sidecar(step=step, weights_sha256=sha), step=step, weights=weights[step])
    # a newer step whose sidecar was never written, and temp litter from a killed writer
    checkpoint(ck, None, step=20, weights=weights[1])
    (ck / ".step_000030.safetensors.tmp-123-abcd1234").write_bytes(b"half written")
    (ck / ".step_000030.json.tmp-123-abcd1234").write_bytes(b'{"format": "pgolf-checkp')
    for given in (tmp_path / "run", ck, ck / "step_000012.json", ck / "step_000012.safetensors"):
        li = load_input(given)
        assert li.format == "pgolf-checkpoint", given
        assert li.path == ck / "step_000012.safetensors"
        assert li.metadata["step"] == 12 and li.raw_bytes == len(weights[12])
        assert torch.equal(li.state_dict["w"], torch.full((4, 4), 12.0))
    # without a sidecar the same safetensors file is a plain safetensors input
    assert load_input(ck / "step_000020.safetensors").format == "safetensors"


def test_checkpoint_from_fixture_weights(tmp_path):
    sd = bad_inputs.fixture_sd()
    data = st_save(sd, metadata={"format": "pgolf-checkpoint-v1"})
    path = checkpoint(tmp_path, good_sidecar(weights_sha256=hashlib.sha256(data).hexdigest()), weights=data)
    li = load_input(path)
    assert li.metadata["config"]["model_dim"] == 64
    assert_same(li.state_dict, sd, ordered=False)
    assert list(li.state_dict) != list(sd)  # without tensor_names: safetensors order, not the model's


def test_checkpoint_tensor_names_restore_model_order(tmp_path):
    sd = bad_inputs.fixture_sd()
    data = st_save(sd, metadata={"format": "pgolf-checkpoint-v1"})
    sha = hashlib.sha256(data).hexdigest()
    path = checkpoint(tmp_path / "a", good_sidecar(weights_sha256=sha, tensor_names=list(sd)), weights=data)
    assert_same(load_input(path).state_dict, sd)  # same order as the .pt: exact official export bytes follow
    path = checkpoint(tmp_path / "b", good_sidecar(weights_sha256=sha, tensor_names=list(sd)[:-1]), weights=data)
    with pytest.raises(PgolfInputError, match="'tensor_names' does not match the weights file's 22 tensors "
                                              "\\(first difference: 'blocks.1.mlp.proj.weight'\\)"):
        load_input(path)


# --- the catalogue of bad inputs --------------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    bad_inputs.build_all(root)
    return root


# the bomb is refused (and timed for memory) in test_bomb_refused_at_default_limit_without_the_memory
@pytest.mark.parametrize("bad", [b for b in CATALOGUE if b.name != "bomb.ptz"],
                         ids=[b.name for b in CATALOGUE if b.name != "bomb.ptz"])
def test_bad_input_is_one_line(bad, catalogue, monkeypatch):
    monkeypatch.chdir(catalogue)
    for k, v in bad.env:
        monkeypatch.setenv(k, v)
    with pytest.raises(PgolfInputError) as info:
        load_input(bad.name)
    message = str(info.value)
    assert message.startswith(f"{bad.name}: ") or message.startswith(str(Path(bad.name).with_suffix(".json")))
    assert bad.expect in message and "\n" not in message and len(message) < 260
    assert info.value.__suppress_context__  # raised `from None`: no chained library traceback
    assert not (catalogue / MARKER).exists()


# --- no code execution from data --------------------------------------------------------------

HOSTILE = {
    "os.system": lambda m: SystemCall(f"touch {m}"),
    "builtins.exec": lambda m: _Reduce(exec, (f"open({str(m)!r}, 'w').close()",)),
    "subprocess.Popen": lambda m: _Reduce(subprocess.Popen, (["touch", str(m)],)),
}


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("container", ["torch-zip", "pickle-2", "pickle-4", "pickle-0", "inside-ptz"])
def test_hostile_pickle_is_refused_and_never_runs(kind, container, tmp_path):
    marker = tmp_path / MARKER
    payload = HOSTILE[kind](marker)
    data = {
        "torch-zip": lambda: torch_bytes({"w": torch.zeros(2), "evil": payload}),
        "pickle-2": lambda: pickle.dumps({"evil": payload}, protocol=2),
        "pickle-4": lambda: pickle.dumps({"evil": payload}, protocol=4),
        "pickle-0": lambda: pickle.dumps({"evil": payload}, protocol=0),
        "inside-ptz": lambda: zlib.compress(torch_bytes({"__quant_format__": "int8_clean_per_row_v1", "x": payload})),
    }[container]()
    (tmp_path / "hostile.pt").write_bytes(data)
    with pytest.raises(PgolfInputError) as info:
        load_input(tmp_path / "hostile.pt")
    assert ("refused to unpickle" in str(info.value)) or container == "pickle-0"  # protocol 0 is text: unknown format
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_hostile_pickle_really_is_hostile(tmp_path):
    """Control: the same bytes unpickled unsafely do create the marker, so the test above can fail."""
    marker = tmp_path / MARKER
    data = pickle.dumps({"evil": SystemCall(f"touch {marker}")}, protocol=2)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=data, check=True, cwd=tmp_path, stdout=subprocess.DEVNULL)
    assert marker.exists()


# --- bounded decompression --------------------------------------------------------------------

def test_bomb_refused_at_default_limit_without_the_memory():
    bomb = zlib_bomb(1100)  # 1,100 MiB of zeros = 1,153,433,600 bytes > DEFAULT_LIMIT
    assert len(bomb) < 1_200_000 and 1100 * 2**20 > DEFAULT_LIMIT
    tracemalloc.start()
    try:
        with pytest.raises(PgolfInputError, match=f"decompressed size exceeds {DEFAULT_LIMIT:,} bytes"):
            load_bytes(bomb, "bomb.ptz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000  # inflated 1 MiB at a time and thrown away, never 1 GB held


def test_bomb_builder_is_a_real_stream():
    assert zlib.decompress(zlib_bomb(3)) == bytes(3 << 20)
    assert decompress_zlib_bounded(zlib_bomb(3), limit=3 << 20) == bytes(3 << 20)
    with pytest.raises(PgolfInputError, match="exceeds 3,145,727 bytes"):
        decompress_zlib_bounded(zlib_bomb(3), limit=(3 << 20) - 1)


def test_zip_entry_bomb_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", bytes(5_000_000))
    with pytest.raises(PgolfInputError, match="zip entries total 5,000,000"):
        load_bytes(buf.getvalue(), "zipbomb.pt", max_decompressed_bytes=1_000_000)


def test_limit_from_environment(monkeypatch):
    ptz = fixture_path("artifacts", "sp1024-2L-d64", "final_model.int8.ptz")
    monkeypatch.setenv("PGOLF_MAX_DECOMPRESSED", "200_000")
    with pytest.raises(PgolfInputError, match="exceeds 200,000 bytes"):
        load_input(ptz)
    assert load_input(ptz, max_decompressed_bytes=300_000).format == "official-ptz"  # argument wins
    monkeypatch.setenv("PGOLF_MAX_DECOMPRESSED", "lots")
    with pytest.raises(PgolfInputError, match="PGOLF_MAX_DECOMPRESSED must be a positive number of bytes, got 'lots'"):
        load_input(ptz)


# --- state-dict validation details ------------------------------------------------------------

@pytest.mark.parametrize("sd, problem", [
    ({1: torch.zeros(1)}, "key 1 is a int, expected a string"),
    ({"w": torch.zeros(3).to_sparse()}, "not a dense CPU tensor"),
    ({"a": torch.tensor([float("inf"), 1.0]), "b": torch.tensor([float("nan")] * 4)}, "'a' has 1 NaN/Inf values (and 1 more tensors)"),
    ({"w": [1.0, 2.0]}, "entry 'w' is a list, expected a tensor"),
])
def test_validate_state_dict_problems(sd, problem):
    with pytest.raises(PgolfInputError) as info:
        validate_state_dict(sd, "m.pt")
    assert problem in str(info.value)


def test_integer_bf16_and_fp8_tensors_pass():
    sd = {"i": torch.arange(5), "b": torch.ones(3, dtype=torch.bfloat16), "h": torch.zeros(2, dtype=torch.float16),
          "f8": torch.ones(4, dtype=torch.float8_e4m3fn), "f8b": torch.ones(2, dtype=torch.float8_e5m2)}
    assert_same(load_bytes(torch_bytes(sd), "ok.pt").state_dict, sd)
    sd["f8"] = torch.tensor([1.0, float("nan")]).to(torch.float8_e4m3fn)
    with pytest.raises(PgolfInputError, match="tensor 'f8' has 1 NaN/Inf values"):
        load_bytes(torch_bytes(sd), "nan8.pt")


# --- shards, tokenizers, JSON -----------------------------------------------------------------

def shard_bytes(tokens, magic=20240520, version=1, count=None) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(tokens) if count is None else count
    return header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes()


def test_read_shard_roundtrip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 1024, size=5000).astype(np.uint16)
    (tmp_path / "fineweb_val_000000.bin").write_bytes(shard_bytes(tokens))
    got = read_shard(tmp_path / "fineweb_val_000000.bin", vocab_size=1024)
    assert got.dtype == np.uint16 and np.array_equal(got, tokens)


@pytest.mark.parametrize("data, vocab, problem", [
    (b"\x00" * 100, None, "truncated shard header (100 bytes, expected at least 1,024)"),
    (shard_bytes([1, 2, 3], magic=1234), None, "wrong magic 1234 (expected 20240520: not a data shard)"),
    (shard_bytes([1, 2, 3], version=2), None, "unsupported shard version 2 (pgolf reads 1)"),
    (shard_bytes([1, 2, 3], count=4), None, "size mismatch: header says 4 tokens (1,032 bytes) but the file has 1,030 bytes"),
    (shard_bytes([], count=0), None, "header token count is 0, expected a positive number"),
    (shard_bytes([1, 2, 1024, 5, 2000]), 1024, "token id 1024 at position 2 is out of range for vocab size 1,024 (largest id 2000)"),
])
def test_read_shard_problems(tmp_path, data, vocab, problem):
    (tmp_path / "s.bin").write_bytes(data)
    with pytest.raises(PgolfInputError) as info:
        read_shard(tmp_path / "s.bin", vocab_size=vocab)
    assert str(info.value) == f"{tmp_path / 's.bin'}: {problem}"


def test_read_tokenizer(tmp_path):
    model = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    assert read_tokenizer(model, vocab_size=1024).vocab_size() == 1024
    with pytest.raises(PgolfInputError, match="tokenizer vocab size 1,024 does not match the expected 8,192"):
        read_tokenizer(model, vocab_size=8192)
    for name, data in {"empty.model": b"", "junk.model": b"\xff\xfe not a protobuf " * 5,
                       "cut.model": model.read_bytes()[:1000]}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PgolfInputError) as info:
            read_tokenizer(tmp_path / name)
        assert "\n" not in str(info.value) and ("SentencePiece" in str(info.value) or "empty file" in str(info.value))


@pytest.mark.parametrize("text, problem", [
    ('{"format": "pgolf-plan-v1", "rules": []}', None),
    ('{"format": "pgolf-plan-v7", "rules": []}', "unsupported version 'pgolf-plan-v7' (this pgolf reads 'pgolf-plan-v1')"),
    ('{"format": "pgolf-cache-v1"}', "format 'pgolf-cache-v1', expected 'pgolf-plan-v1'"),
    ('{"rules": []}', "no format tag, expected 'pgolf-plan-v1'"),
    ('{"format": "pgolf-plan-v1"}', "missing key rules"),
    ('[1, 2]', "expected a JSON object, found list"),
    ('{"format": "pgolf-plan-v1", "rules": [NaN]}', "invalid JSON: non-standard JSON constant NaN"),
    ('{"format": "pgolf-plan-v1", ', "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 29"),
    ("[" * 100_000, "invalid JSON"),
    ("", "empty file (expected JSON)"),
])
def test_read_json(tmp_path, text, problem):
    path = tmp_path / "plan.json"
    path.write_text(text)
    if problem is None:
        assert read_json(path, "pgolf-plan-v1", ("rules",)) == json.loads(text)
        return
    with pytest.raises(PgolfInputError) as info:
        read_json(path, "pgolf-plan-v1", ("rules",))
    assert str(info.value).startswith(f"{path}: {problem}")


def test_read_json_not_utf8(tmp_path):
    (tmp_path / "p.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(PgolfInputError, match="not UTF-8 text"):
        read_json(tmp_path / "p.json")


# --- the cache --------------------------------------------------------------------------------

def corrupt_entry(path: Path, how: str) -> None:
    entry = json.loads(path.read_text())
    if how == "bad-json":
        path.write_text(path.read_text()[:-10])
        return
    if how == "format":
        entry["format"] = "pgolf-cache-v0"
    elif how == "version":
        entry["version"] = "0"
    elif how == "checksum":
        entry["value"]["gap_bpb"] = 0.5  # an edited value no longer matches the stored checksum
    elif how == "key":
        entry["key"]["plan"] = "int5"
    path.write_text(json.dumps(entry))


@pytest.mark.parametrize("how, reason", [("bad-json", "invalid JSON"), ("format", "format 'pgolf-cache-v0'"),
                                         ("version", "stale: version '0'"), ("checksum", "checksum mismatch"),
                                         ("key", "key mismatch")])
def test_cache_detects_bad_entries_and_recomputes(tmp_path, how, reason):
    cache = JsonCache(tmp_path / "cache", ("model", "plan"), version="3")
    key = {"model": "abc", "plan": "int6"}
    calls = []

    def compute():
        calls.append(1)
        return {"gap_bpb": 0.0071, "levels": [1, 2]}

    assert cache.get_or_compute(key, compute) == {"gap_bpb": 0.0071, "levels": [1, 2]}
    assert cache.get_or_compute(key, compute) == {"gap_bpb": 0.0071, "levels": [1, 2]}
    assert len(calls) == 1 and cache.hits == 1
    path = cache.path_for(key)
    assert json.loads(path.read_text())["format"] == CACHE_FORMAT
    corrupt_entry(path, how)
    assert cache.get(key) is None and not path.exists()
    assert cache.discarded[-1][1].startswith(reason)
    assert cache.get_or_compute(key, compute)["gap_bpb"] == 0.0071 and len(calls) == 2
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp litter


def test_cache_version_bump_and_key_fields(tmp_path):
    JsonCache(tmp_path, ("k",), version="1").put({"k": 1}, 10)
    assert JsonCache(tmp_path, ("k",), version="1").get({"k": 1}) == 10
    assert JsonCache(tmp_path, ("k",), version="2").get({"k": 1}) is None
    with pytest.raises(ValueError, match="missing \\['k'\\], unexpected \\['j'\\]"):
        JsonCache(tmp_path, ("k",)).get({"j": 1})
