"""Inputs generated per dimension, not mutated from fixture bytes: sizes that lie, special files,
regex shapes, edge numbers, config types, and odd-but-legal state dicts whose official-int8
artifact must be the baseline export's own bytes.

Every case is refused with one line (PgolfInputError, or exit 2 with one stderr line) or accepted
and checked; never a traceback, never a hang (each case under a watchdog). Each generator prints
its counts and the seed. PGOLF_FUZZ_GEN_CASES sets the cases per random generator (default 12:
the suite stays fast), PGOLF_FUZZ_SEED the seed (default 20); a long run:
PGOLF_FUZZ_GEN_CASES=2000 pytest tests/test_fuzz_generators.py -s
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from bad_inputs import good_sidecar, torch_bytes
from conftest import fixture_path
from fuzzing import Fuzzer, check_loaded
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.build import assign, build_artifact
from pgolf.budget.exact.inputs import load_bytes, load_checkpoint_bytes, load_input
from pgolf.budget.files.validate import parse_shard_bytes, read_json, read_shard, read_tokenizer
from pgolf.budget.quant.official import quantize_state_dict_int8
from pgolf.budget.quant.plans import load_plan
from pgolf.figures.cli import main as pgolf

CASES = int(os.environ.get("PGOLF_FUZZ_GEN_CASES", "12"))
SEED = int(os.environ.get("PGOLF_FUZZ_SEED", "20"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixture_sd() -> dict[str, torch.Tensor]:
    data = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt").read_bytes()
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def finish(fuzz: Fuzzer, record_property, expected: int) -> None:
    """Print the generator's counts; fail on any traceback, hang or bad accepted result."""
    total = sum(fuzz.outcomes.values())
    line = (f"fuzz-gen {fuzz.reader} (seed {SEED}): {total:,} attempts: {fuzz.outcomes['refused']:,} refused with "
            f"one line, {fuzz.outcomes['loaded']:,} accepted, {fuzz.outcomes['uncaught']:,} tracebacks, "
            f"{fuzz.outcomes['hang']:,} hangs (kinds: {', '.join(f'{k} {v}' for k, v in sorted(fuzz.kinds.items()))})")
    record_property("summary", line)
    print(line)
    assert not fuzz.failures, f"{len(fuzz.failures)} bad outcomes, first: " + " | ".join(fuzz.failures[:5])
    assert total == expected


def cli(argv: list[str]) -> int:
    """`pgolf ARGV` in process: exit 2 with one stderr line becomes PgolfInputError (refused)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = pgolf(argv)
    except SystemExit as done:  # argparse's own refusals
        code = done.code
    text = err.getvalue()
    if code == 2:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("usage:") and not ln.startswith(" ")]
        if len(lines) != 1 or "Traceback" in text:
            raise RuntimeError(f"exit 2 without one line: {text[-300:]!r}")
        raise PgolfInputError(None, lines[0])
    if code != 0:
        raise RuntimeError(f"exit {code}: {text[-300:]!r}")
    return code


# --- sizes that lie ---------------------------------------------------------------------------

def _zip_size_lie(data: bytes, rng: random.Random) -> bytes:
    """Rewrite one size field of a local header or central directory entry."""
    b = bytearray(data)
    spots = [(m, 18 + 4 * rng.randint(0, 1)) for m in _find_all(b, b"PK\x03\x04")]
    spots += [(m, 20 + 4 * rng.randint(0, 1)) for m in _find_all(b, b"PK\x01\x02")]
    at, field = rng.choice(spots)
    old = struct.unpack_from("<I", b, at + field)[0]
    struct.pack_into("<I", b, at + field, rng.choice([0, 1, old + 1, max(0, old - 1), 2 * old + 8, 0xFFFFFFFF,
                                                       0xFFFFFFFE, old + 1_000_000]) & 0xFFFFFFFF)
    return bytes(b)


def _find_all(b: bytes, sub: bytes) -> list[int]:
    out, at = [], b.find(sub)
    while at >= 0:
        out.append(at)
        at = b.find(sub, at + 1)
    return out


def _safetensors_lie(sd: dict, rng: random.Random) -> bytes:
    data = st_save(sd)
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    name = rng.choice([k for k in header if k != "__metadata__"])
    entry = header[name]
    a, b = entry["data_offsets"]
    lie = rng.randint(0, 5)
    if lie == 0:
        entry["shape"] = [s * 2 for s in entry["shape"]] or [2]
    elif lie == 1:
        entry["data_offsets"] = [a, b + rng.choice([1, 8, 10**12])]
    elif lie == 2:
        entry["data_offsets"] = [a + 4, b]
    elif lie == 3:
        entry["shape"] = [2**31, 2**31]
    elif lie == 4:
        body = body[: rng.randint(0, max(0, len(body) - 1))]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    length = len(text) + (rng.choice([-8, 8, 10**9]) if lie == 5 else 0)
    return struct.pack("<Q", max(0, length)) + text + body


def _shard_lie(rng: random.Random) -> bytes:
    tokens = np.arange(rng.randint(1, 300), dtype="<u2") % 1024
    header = np.zeros(256, dtype="<i4")
    header[:3] = 20240520, 1, rng.choice([len(tokens) + 1, len(tokens) - 1, 0, -1, 2**31 - 1, 3 * len(tokens)])
    return header.tobytes() + tokens.tobytes()


def test_sizes_that_lie(fixture_sd, record_property):
    rng = random.Random(SEED)
    fuzz = Fuzzer("size lies", lambda r: check_loaded(r) if hasattr(r, "state_dict") else None)
    pt = torch_bytes(fixture_sd)
    small = {k: v for k, v in list(fixture_sd.items())[:4]}
    ptz = zlib.compress(torch_bytes(quantize_state_dict_int8(fixture_sd)[0]), 9)
    raw_export = zlib.decompress(ptz)
    for i in range(CASES):
        fuzz.run("zip-entry", f"case {i}", load_bytes, _zip_size_lie(pt, rng), "lie.pt")
        fuzz.run("ptz-zip-entry", f"case {i}", load_bytes, zlib.compress(_zip_size_lie(raw_export, rng)), "lie.ptz")
        fuzz.run("safetensors", f"case {i}", load_bytes, _safetensors_lie(small, rng), "lie.safetensors")
        fuzz.run("shard-count", f"case {i}", parse_shard_bytes, _shard_lie(rng), "lie.bin", 1024)
        blob = build_artifact(small, "int6", "zlib")
        cut = rng.randint(1, len(blob) - 1)
        fuzz.run("container-length", f"case {i}", load_bytes, blob[:cut] + blob[cut + rng.randint(1, 9):], "lie.pgolf")
    finish(fuzz, record_property, 5 * CASES)


# --- special files ------------------------------------------------------------------------------

def _special_files(root: Path) -> dict[str, Path]:
    os.mkfifo(root / "fifo")
    (root / "folder").mkdir()
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    (root / "dangling").symlink_to(root / "nowhere")
    with open(root / "sparse", "wb") as f:
        f.truncate(8_000_000_000)
    (root / "empty").touch()
    return {"fifo": root / "fifo", "folder": root / "folder", "symlink-loop": root / "loop-a",
            "dangling-link": root / "dangling", "sparse-8GB": root / "sparse", "empty": root / "empty",
            "dev-zero": Path("/dev/zero"), "dev-urandom": Path("/dev/urandom"), "dev-null": Path("/dev/null")}


def test_special_files(tmp_path, record_property):
    fuzz = Fuzzer("special files", lambda r: None)
    readers = {"load_input": load_input, "read_json": read_json, "load_plan": load_plan,
               "read_shard": read_shard, "read_tokenizer": read_tokenizer,
               "pgolf budget": lambda p: cli(["budget", str(p), "--quiet"]),
               "pgolf budget --plan": lambda p: cli(["budget", "--baseline", "--plan", str(p), "--quiet"])}
    files = _special_files(tmp_path)
    for kind, path in files.items():
        for reader, fn in readers.items():
            fuzz.run(kind, reader, fn, path)
    assert fuzz.outcomes["loaded"] == 0  # none of these is a usable input
    finish(fuzz, record_property, len(files) * len(readers))


# --- regex shapes -------------------------------------------------------------------------------

ATOMS = ["a", ".", r"\d", r"\w", "[a-z_.0-9]", r"\.", "mlp", "attn", "(?:tok|lm)", "(x)", "^", "$", r"\b"]
QUANTS = ["", "", "*", "+", "?", "{0,40}", "{2,}", "*?", "+?", "{3}", "{99999}"]
BROKEN = ["(", "[", "\\", "(?P<", "{2,1}", "(?<=a+)", "*", "a{99999999999}", "(?P=nope)"]


def _regex(rng: random.Random, depth: int = 0) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        if depth < 3 and rng.random() < 0.3:
            inner = _regex(rng, depth + 1)
            if rng.random() < 0.3:
                inner += "|" + _regex(rng, depth + 1)
            parts.append(f"({inner})" + rng.choice(QUANTS))
        else:
            parts.append(rng.choice(ATOMS) + rng.choice(QUANTS))
    if rng.random() < 0.1:
        parts.insert(rng.randint(0, len(parts)), rng.choice(BROKEN))
    return "".join(parts)


def test_regex_shapes(fixture_sd, tmp_path, record_property):
    rng = random.Random(SEED)
    sd = dict(fixture_sd)
    sd["blocks." * 40 + "mlp.fc.weight"] = torch.zeros(300, 300)  # a 293-character name to match against
    fuzz = Fuzzer("regex shapes", lambda items: None if len(items) == len(sd) else "lost tensors")

    def plan_on_model(path):
        return assign(sd, load_plan(path))

    for i in range(CASES * 4):
        pattern = _regex(rng)
        path = tmp_path / f"plan{i}.json"
        path.write_text(json.dumps({"format": "pgolf-plan-v1", "rules": [{"pattern": pattern, "scheme": "int6"}],
                                    "default": "int8"}))
        fuzz.run("nested" if pattern.count("(") > 1 else "flat", repr(pattern), plan_on_model, path)
    finish(fuzz, record_property, CASES * 4)


# --- edge numbers -------------------------------------------------------------------------------

EDGE = ["1e999", "-1e999", "inf", "-inf", "nan", "NaN", "-0", "0", "-1", "1e-320", "5e-324", "1e308",
        "9" * 40, "0x10", "1_0", " 7 ", "", "1e1", "2.5"]  # not 1e3: predict of 1,000 layers is legal, takes minutes
FLAGS = [["budget", "--baseline", "--cap"], ["budget", "--baseline", "--plan", "int6", "--cap"],
         ["predict", "--layers"], ["predict", "--dim"], ["predict", "--mlp-mult"], ["predict", "--vocab"],
         ["compare", "--baseline", "--plans", "int4", "--compressors", "zlib", "--cap"]]
MODIFIERS = ["int6:group({})", "int6:sdclip({})", "int4:group({})", "ternary:group({})"]


def test_edge_numbers(fixture_sd, tmp_path, record_property):
    rng = random.Random(SEED)
    fuzz = Fuzzer("edge numbers", lambda r: None)
    for i in range(CASES):
        flag, value = rng.choice(FLAGS), rng.choice(EDGE)
        fuzz.run("flag", f"{flag[-1]} {value!r}", cli, [*flag, value, "--quiet"] if flag[0] != "predict"
                 else [*flag, value])
        spec = rng.choice(MODIFIERS).format(rng.choice(EDGE))
        fuzz.run("plan-modifier", repr(spec), lambda s: assign(fixture_sd, s), spec)
        number = rng.choice(EDGE + ["1e400", "-0.0", "1.5", "true", "null", '"3"', "[1]"])
        path = tmp_path / f"plan{i}.json"
        path.write_text('{"format": "pgolf-plan-v1", "rules": [], "keep_float_max_numel": ' + (number or "0") + "}")
        fuzz.run("plan-json-number", repr(number), load_plan, path)
    finish(fuzz, record_property, 3 * CASES)


# --- config types -------------------------------------------------------------------------------

CONFIG_KEYS = ["num_layers", "model_dim", "num_heads", "num_kv_heads", "vocab_size", "mlp_mult", "train_seq_len",
               "logit_softcap", "rope_base", "qk_gain_init", "tie_embeddings", "num_unique_layers"]
CONFIG_VALUES = [None, "two", "", [], [1.5], {}, True, False, 0, -1, 1.5, 2**70, float("nan"), float("inf"),
                 -0.0, 1e-320, "nan", "inf", "1e999", 10**400]


def test_config_types(fixture_sd, record_property):
    from pgolf.inspect.load import infer_architecture

    rng = random.Random(SEED)
    weights = st_save({k: v.contiguous() for k, v in fixture_sd.items()})
    fuzz = Fuzzer("config types", lambda r: None)
    for i in range(CASES * 2):
        config = dict(good_sidecar()["config"])
        for _ in range(rng.randint(1, 3)):
            config[rng.choice(CONFIG_KEYS)] = rng.choice(CONFIG_VALUES)
        text = json.dumps(good_sidecar(config=config), default=str).encode()  # 10**400 as digits, NaN as NaN
        fuzz.run("sidecar", repr(config)[:200],
                 lambda: infer_architecture(load_checkpoint_bytes(weights, text, "c.safetensors", "c.json").state_dict,
                                            json.loads(text)["config"], "c.json"))
    finish(fuzz, record_property, CASES * 2)


# --- odd but legal state dicts ------------------------------------------------------------------

def _odd_state_dict(rng: random.Random) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rng.randint(0, 2**31))
    big = torch.randn(300, 260, generator=g) * 0.02
    sd: dict[str, torch.Tensor] = {"base.weight": big}
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["tied", "transposed", "zero-size", "0-dim", "bool", "int", "fp8", "offset-view",
                           "huge-name", "unicode-name", "bf16", "fp16-big", "strided", "complex"])
        if kind == "tied":
            sd["tied.weight"] = sd["base.weight"]
        elif kind == "transposed":
            sd["t.weight"] = torch.randn(280, 300, generator=g).t()
        elif kind == "zero-size":
            sd["empty.weight"] = torch.zeros(0, 300)
        elif kind == "0-dim":
            sd["scalar"] = torch.tensor(rng.uniform(-3, 3))
        elif kind == "bool":
            sd["mask"] = torch.rand(17, generator=g) > 0.5
        elif kind == "int":
            sd["counts"] = torch.randint(-5, 5, (33,), generator=g, dtype=rng.choice([torch.int64, torch.int32, torch.int8]))
        elif kind == "fp8":
            sd["fp8.weight"] = (torch.randn(300, 300, generator=g) * 0.1).to(torch.float8_e4m3fn)
        elif kind == "offset-view":
            flat = torch.randn(300 * 300 + 77, generator=g)
            sd["view.a"] = flat[77:].view(300, 300)
            sd["view.b"] = flat[:77]
        elif kind == "huge-name":
            sd["n" * rng.choice([300, 5000]) + ".weight"] = torch.randn(64, generator=g)
        elif kind == "unicode-name":
            sd["блок.é.🙂.weight"] = torch.randn(300, 300, generator=g)
        elif kind == "bf16":
            sd["bf.weight"] = torch.randn(300, 300, generator=g).to(torch.bfloat16)
        elif kind == "fp16-big":
            sd["half.weight"] = torch.randn(300, 300, generator=g).half()
        elif kind == "strided":
            sd["s.weight"] = torch.randn(600, 300, generator=g)[::2]
        else:
            sd["c"] = torch.randn(5, 3, dtype=torch.complex64, generator=g)
    return sd


def _official_bytes_match(sd: dict[str, torch.Tensor]) -> str | None:
    """pgolf's official-int8 artifact, through the file reader, against the baseline's own export."""
    reference = zlib.compress(torch_bytes(quantize_state_dict_int8(sd)[0]), 9)
    loaded = load_bytes(torch_bytes(sd), "odd.pt").state_dict
    ours = build_artifact(loaded, "official-int8", "zlib")
    return None if ours == reference else f"official-int8 bytes differ ({len(ours):,} vs the export's {len(reference):,})"


def test_odd_but_legal_state_dicts(record_property):
    rng = random.Random(SEED)
    fuzz = Fuzzer("odd state dicts vs the baseline export", lambda problem: problem)
    for i in range(CASES * 2):
        sd = _odd_state_dict(rng)
        fuzz.run("+".join(sorted({k.split(".")[0][:8] for k in sd})), repr(list(sd))[:200], _official_bytes_match, sd)
    assert fuzz.outcomes["loaded"] >= CASES  # legal inputs: mostly accepted, and then byte for byte the export's
    finish(fuzz, record_property, CASES * 2)
