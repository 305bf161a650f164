"""A catalogue of bad model inputs, built from the real fixtures into a folder with fixed names.

Shared by tests/test_readers.py (through load_input) and tests/test_errors_doc.py (through the
real `pgolf budget` CLI, which writes docs/errors.md). Every builder is deterministic in what
the error message says, so the generated doc is stable.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as st_save

from conftest import fixture_path

MODEL = "sp1024-2L-d64"
QUANT_MODEL = "sp1024-3L-d128"  # the fixture whose export has an int8 tensor (tok_emb.weight)
MARKER = "PWNED_MARKER"  # a hostile pickle would create this file next to itself


class SystemCall:
    """Unpickling this runs a shell command: what a hostile .pt would carry."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def fixture_pt() -> bytes:
    return fixture_path("artifacts", MODEL, "final_model.pt").read_bytes()


def fixture_ptz() -> bytes:
    return fixture_path("artifacts", MODEL, "final_model.int8.ptz").read_bytes()


def fixture_sd() -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(fixture_pt()), weights_only=True, map_location="cpu")


def export_obj() -> dict:
    """The d128 fixture's own export object, decoded with the plain libraries."""
    data = fixture_path("artifacts", QUANT_MODEL, "final_model.int8.ptz").read_bytes()
    return torch.load(io.BytesIO(zlib.decompress(data)), weights_only=True, map_location="cpu")


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def ptz_bytes(obj) -> bytes:
    return zlib.compress(torch_bytes(obj), 9)


def zlib_bomb(total_mb: int) -> bytes:
    """A valid zlib stream of `total_mb` MiB of zeros, about 1 KB per MiB, built without ever
    holding the inflated data: after a full flush deflate restarts, so every later 1 MiB chunk
    compresses to the same bytes; the Adler-32 trailer is computed chunk by chunk."""
    zeros = bytes(1 << 20)
    c = zlib.compressobj(9)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()
    adler = 1
    for _ in range(total_mb):
        adler = zlib.adler32(zeros, adler)
    return first + repeat * (total_mb - 1) + end[:-4] + struct.pack(">I", adler)


def checkpoint(folder: Path, sidecar: dict | bytes | None, step: int = 1, weights: bytes | None = None) -> Path:
    """step_NNNNNN.safetensors (+ .json sidecar unless None) built from the fixture state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step_{step:06d}"
    if weights is None:
        weights = st_save(fixture_sd(), metadata={"format": "pgolf-checkpoint-v1"})
    stem.with_suffix(".safetensors").write_bytes(weights)
    if sidecar is not None:
        data = sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode()
        stem.with_suffix(".json").write_bytes(data)
    return stem.with_suffix(".safetensors")


def good_sidecar(**changes) -> dict:
    side = {"format": "pgolf-checkpoint-v1", "config": {"vocab_size": 1024, "num_layers": 2, "model_dim": 64},
            "step": 1, "tokens_seen": 0, "val_bpb": None, "seed": 1337}
    side.update(changes)
    return {k: v for k, v in side.items() if v is not ...}


def _export_with(**edits) -> bytes:
    obj = export_obj()
    for key, value in edits.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return ptz_bytes(obj)


def _scale_mismatch() -> bytes:
    obj = export_obj()
    name = next(iter(obj["quantized"]))
    obj["scales"][name] = obj["scales"][name][:-1].clone()
    return ptz_bytes(obj)


def _not_int8() -> bytes:
    obj = export_obj()
    name = next(iter(obj["quantized"]))
    obj["quantized"][name] = obj["quantized"][name].to(torch.int16)
    return ptz_bytes(obj)


def _bad_dtype_name() -> bytes:
    obj = export_obj()
    name = next(iter(obj["quantized"]))
    obj["dtypes"][name] = "float8_imaginary"
    return ptz_bytes(obj)


def _with_nan() -> bytes:
    sd = fixture_sd()
    sd["blocks.0.attn.c_q.weight"][0, :3] = float("nan")
    return torch_bytes(sd)


def _with_inf_safetensors() -> bytes:
    sd = fixture_sd()
    sd["tok_emb.weight"][5, 7] = float("inf")
    return st_save(sd)


def _bitflip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _safetensors_bad_header() -> bytes:
    data = bytearray(st_save(fixture_sd()))
    n = struct.unpack("<Q", data[:8])[0]
    data[8 + n // 2] = ord("\x01")  # a control character inside the JSON header
    return bytes(data)


@dataclass(frozen=True)
class BadInput:
    name: str          # the argument given to `pgolf budget` (relative to the catalogue folder)
    what: str          # one line for docs/errors.md
    expect: str        # a fragment the error line must contain
    build: Callable[[Path], None]
    env: tuple[tuple[str, str], ...] = ()


def _frame_v1_artifact() -> bytes:
    """An int6 artifact in an older pgolf's layout: frame version 1, JSON header before the data."""
    from pgolf.budget.exact import container
    from pgolf.budget.exact.build import build_artifact

    sd = {"w": torch.randn(300, 300, generator=torch.Generator().manual_seed(0)) * 0.05}  # > 65,536: int6
    blob = build_artifact(sd, "int6", "none")  # frame v2: 12-byte frame, data, header, length
    (n,) = struct.unpack("<I", blob[-4:])
    head = blob[-4 - n:-4].replace(b"container-v2", b"container-v1")
    data = b"".join(r.values + r.scales for r in container.decode(blob[12:]))  # v1: tensor by tensor
    return b"PGOLF\x01" + blob[6:12] + struct.pack("<I", len(head)) + head + data


def shared_tuple_pickle(levels: int = 40, as_key: bool = True) -> bytes:
    """A protocol-2 pickle of a dict holding t_levels, where t_0 = () and t_i = (t_i-1, t_i-1)
    through the memo: 7 bytes a level, 2^levels objects once expanded. As a key the unpickler
    hashes it (never ends); as the value of '__quant_format__' str() of it never ends."""
    out = bytearray(b"\x80\x02)q\x00")  # PROTO 2, EMPTY_TUPLE, BINPUT 0
    for i in range(1, levels + 1):
        out += b"h%ch%c\x86q%c" % (i - 1, i - 1, i)  # BINGET i-1 twice, TUPLE2, BINPUT i
    key, value = (b"h%c" % levels, b"K\x01") if as_key else (b"X\x10\x00\x00\x00__quant_format__", b"h%c" % levels)
    return bytes(out) + b"}" + key + value + b"s."  # EMPTY_DICT, key, value, SETITEM, STOP


def with_pickle(pkl: bytes) -> bytes:
    """A torch.save zip whose data.pkl is `pkl` (the other entries from a real save)."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(torch_bytes({}))) as src, zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            zf.writestr(info.filename, pkl if info.filename.endswith("data.pkl") else src.read(info))
    return out.getvalue()


def _file(name: str, make: Callable[[], bytes]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(make())
    return build


def _nothing(root: Path) -> None:
    return None


def _ans_artifact(cut: bool) -> bytes:
    """An int6 + ans artifact cut in half, or with one byte of its first ANS stream inverted."""
    from pgolf.budget.exact.build import build_artifact

    sd = {"w": torch.randn(300, 300, generator=torch.Generator().manual_seed(0)) * 0.05}
    blob = build_artifact(sd, "int6", "ans")
    return blob[:len(blob) // 2] if cut else _bitflip(blob, 2_000)


CATALOGUE: tuple[BadInput, ...] = (
    BadInput("missing.pt", "a path that does not exist", "no such file", _nothing),
    BadInput("empty.pt", "an empty file", "empty file", _file("empty.pt", lambda: b"")),
    BadInput("not-a-model.gif", "a file of another kind (a GIF image)", "unknown format (first bytes 47 49 46",
             _file("not-a-model.gif", lambda: b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(20))),
    BadInput("tiny.bin", "a file of 3 bytes", "truncated: only 3 bytes", _file("tiny.bin", lambda: b"abc")),
    BadInput("no-checkpoints", "a folder without checkpoints", "no complete checkpoint",
             lambda root: (root / "no-checkpoints").mkdir()),
    BadInput("truncated.pt", "the fixture .pt cut in half", "corrupt or truncated torch zip",
             _file("truncated.pt", lambda: fixture_pt()[: len(fixture_pt()) // 2])),
    BadInput("bitflip.pt", "the fixture .pt with one byte of its pickle inverted", "CRC-32 mismatch",
             _file("bitflip.pt", lambda: _bitflip(fixture_pt(), fixture_pt().find(b"data.pkl") + 100))),
    BadInput("list.pt", "torch.save of a list instead of a state dict", "found list",
             _file("list.pt", lambda: torch_bytes([torch.zeros(3)]))),
    BadInput("empty-dict.pt", "torch.save of an empty dict", "empty state dict", _file("empty-dict.pt", lambda: torch_bytes({}))),
    BadInput("nested.pt", "a training checkpoint dict (state dict nested under 'model')", "nested dict",
             _file("nested.pt", lambda: torch_bytes({"model": {"w": torch.zeros(2)}, "step": 3}))),
    BadInput("nan.pt", "the fixture state dict with 3 NaN weights", "has 3 NaN/Inf values", _file("nan.pt", _with_nan)),
    BadInput("inf.safetensors", "the fixture as safetensors with one Inf weight", "has 1 NaN/Inf values",
             _file("inf.safetensors", _with_inf_safetensors)),
    BadInput("hostile.pt", "a .pt whose pickle would run `touch PWNED_MARKER` (os.system)", "refused to unpickle",
             _file("hostile.pt", lambda: torch_bytes({"w": torch.zeros(2), "x": SystemCall(f"touch {MARKER}")}))),
    BadInput("hostile.pkl", "a raw pickle (protocol 2) that would run a command", "refused to unpickle",
             _file("hostile.pkl", lambda: pickle.dumps(SystemCall(f"touch {MARKER}"), protocol=2))),
    BadInput("shared-key.pt", "a 292-byte pickle whose dict key is a tuple DAG of 2^40 objects (hashing it never ends)",
             "expands to over 5,000,000 objects", _file("shared-key.pt", shared_tuple_pickle)),
    BadInput("shared-tag.ptz", "a 496-byte .ptz whose __quant_format__ is a tuple DAG (printing it never ends)",
             "expands to over 5,000,000 objects",
             _file("shared-tag.ptz", lambda: zlib.compress(with_pickle(shared_tuple_pickle(as_key=False)), 9))),
    BadInput("whole-model.pt", "torch.save of a whole nn.Module instead of its state dict", "refused to unpickle",
             _file("whole-model.pt", lambda: torch_bytes(torch.nn.Linear(2, 2)))),
    BadInput("truncated.ptz", "the fixture .ptz cut in half", "truncated zlib stream",
             _file("truncated.ptz", lambda: fixture_ptz()[: len(fixture_ptz()) // 2])),
    BadInput("bitflip.ptz", "the fixture .ptz with one byte inverted", "corrupt zlib stream",
             _file("bitflip.ptz", lambda: _bitflip(fixture_ptz(), 1000))),
    BadInput("trailing.ptz", "the fixture .ptz with 5 bytes appended", "5 unexpected bytes after",
             _file("trailing.ptz", lambda: fixture_ptz() + b"extra")),
    BadInput("bomb.ptz", "a 1.1 MB .ptz that inflates to 1.1 GB of zeros (default limit)", "decompression bomb",
             _file("bomb.ptz", lambda: zlib_bomb(1100))),
    BadInput("limit.ptz", "the fixture .ptz under a 100,000-byte limit", "exceeds 100,000 bytes",
             lambda root: (root / "limit.ptz").write_bytes(fixture_ptz()), env=(("PGOLF_MAX_DECOMPRESSED", "100000"),)),
    BadInput("text.ptz", "zlib-compressed text instead of a torch file", "does not hold a torch.save file",
             _file("text.ptz", lambda: zlib.compress(b"hello world " * 10))),
    BadInput("unknown-format.ptz", "an export with __quant_format__ 'int4_magic_v9'", "unknown __quant_format__",
             _file("unknown-format.ptz", lambda: _export_with(__quant_format__="int4_magic_v9"))),
    BadInput("no-format.ptz", "an export without __quant_format__", "no __quant_format__",
             _file("no-format.ptz", lambda: _export_with(__quant_format__=...))),
    BadInput("no-scales.ptz", "an export missing its 'scales' key", "missing key scales",
             _file("no-scales.ptz", lambda: _export_with(scales=...))),
    BadInput("scale-rows.ptz", "a per-row scale one row short", "scale of", _file("scale-rows.ptz", _scale_mismatch)),
    BadInput("not-int8.ptz", "a quantized tensor stored as int16", "expected torch.int8", _file("not-int8.ptz", _not_int8)),
    BadInput("bad-dtype.ptz", "a dtype name that is not a float dtype", "is not a float dtype name",
             _file("bad-dtype.ptz", _bad_dtype_name)),
    BadInput("raw-export.pt", "an int8 export saved without zlib", "uncompressed int8 export",
             _file("raw-export.pt", lambda: torch_bytes(export_obj()))),
    BadInput("old-frame.pgolf", "an int6 artifact written by an older pgolf (frame version 1, header first)",
             "frame version 1", _file("old-frame.pgolf", _frame_v1_artifact)),
    BadInput("truncated-ans.pgolf", "an int6 + ans artifact cut in half", "truncated ans stream",
             _file("truncated-ans.pgolf", lambda: _ans_artifact(cut=True))),
    BadInput("bitflip-ans.pgolf", "an int6 + ans artifact with one byte of its ANS stream inverted",
             "corrupt ans stream (CRC-32 mismatch)", _file("bitflip-ans.pgolf", lambda: _ans_artifact(cut=False))),
    BadInput("truncated.safetensors", "the fixture as safetensors, cut after 2,000 bytes", "truncated safetensors",
             _file("truncated.safetensors", lambda: st_save(fixture_sd())[:2000])),
    BadInput("bad-header.safetensors", "safetensors with a control byte in its JSON header", "corrupt safetensors",
             _file("bad-header.safetensors", _safetensors_bad_header)),
    BadInput("stale/step_000001.safetensors", "a checkpoint whose sidecar sha256 does not match its weights",
             "weights_sha256 mismatch",
             lambda root: checkpoint(root / "stale", good_sidecar(weights_sha256="0" * 64))),
    BadInput("v2/step_000001.json", "a checkpoint sidecar of a future version", "unsupported version",
             lambda root: checkpoint(root / "v2", good_sidecar(format="pgolf-checkpoint-v2"))),
    BadInput("broken/step_000001.json", "a checkpoint sidecar that is not valid JSON", "invalid JSON",
             lambda root: checkpoint(root / "broken", b'{"format": "pgolf-checkpoint-v1", "step": ')),
    BadInput("nostep/step_000001.json", "a checkpoint sidecar without 'step'", "missing key step",
             lambda root: checkpoint(root / "nostep", good_sidecar(step=...))),
    BadInput("orphan/step_000001.json", "a sidecar whose weights file is gone", "sidecar without its weights file",
             lambda root: (checkpoint(root / "orphan", good_sidecar()), (root / "orphan/step_000001.safetensors").unlink())),
    BadInput("notweights/step_000001.safetensors", "a checkpoint whose weights file is a .pt", "not a safetensors file",
             lambda root: checkpoint(root / "notweights", good_sidecar(), weights=fixture_pt())),
    BadInput("pipe.pt", "a named pipe where a model file is expected (reading it would block)",
             "not a regular file", lambda root: os.mkfifo(root / "pipe.pt")),
    BadInput("sparse.pt", "a sparse file claiming 8 GB (refused by its size, before reading)",
             "over the 1,024,000,000-byte reading limit", lambda root: os.truncate(_touch(root / "sparse.pt"), 8 * 10**9)),
)


def _touch(path: Path) -> Path:
    path.touch()
    return path


def build_all(root: Path) -> None:
    for bad in CATALOGUE:
        bad.build(root)


# --- record folders for `pgolf audit` / `pgolf significance` / `pgolf wrap` -----------------------

BASELINE_RECORD = ("records", "2026-03-17_NaiveBaseline")


def _record(root: Path, name: str, submission: bytes | None = b"", log: bytes | None = b"",
            script: bytes | None = b"") -> Path:
    """A copy of the baseline record folder in `root/name`, with parts replaced (b"": copied, None: left out)."""
    src = fixture_path(*BASELINE_RECORD)
    folder = root / name
    folder.mkdir(parents=True)
    parts = {"submission.json": submission, "train.log": log, "train_gpt.py": script}
    for part, replacement in parts.items():
        data = (src / part).read_bytes() if replacement == b"" else replacement
        if data is not None:
            (folder / part).write_bytes(data)
    return folder


def _no_roundtrip_log() -> bytes:
    text = fixture_path(*BASELINE_RECORD, "train.log").read_text()
    return "".join(line for line in text.splitlines(True) if "roundtrip" not in line).encode()


def build_records(root: Path) -> None:
    """The inputs of AUDIT_CASES under `root`."""
    _record(root, "no-submission", submission=None)
    _record(root, "bad-json", submission=b'{"val_loss": 2.07, "bytes_code": ')
    _record(root, "no-roundtrip", log=_no_roundtrip_log())
    _record(root, "corrupt-wrapper",
            script=b'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("VPa!sWoBpKb8u2")))\n')
    _record(root, "one-seed")
    log = fixture_path(*BASELINE_RECORD, "train.log").read_bytes()
    (root / "seed1.log").write_bytes(log)
    (root / "empty.py").write_bytes(b"")
    (root / "junk.ptz").write_bytes(b"not an artifact")
    from pgolf.budget.exact.build import build_artifact
    (root / "best.ptz").write_bytes(build_artifact({"w": torch.linspace(-1, 1, 4096).reshape(64, 64)}, "int6", "best"))


AUDIT_CASES = [  # (arguments after `pgolf`, what it is)
    (["audit", "no-submission"], "a record folder without submission.json"),
    (["audit", "bad-json"], "a submission.json cut off mid-object"),
    (["audit", "no-roundtrip"], "a log without a final roundtrip line (the baseline's, those lines removed)"),
    (["audit", "corrupt-wrapper"], "a train_gpt.py wrapper whose lzma payload is corrupt"),
    (["audit", "one-seed", "--vs-loss", "2.0727"], "significance asked of a record with one seed's log"),
    (["significance", "seed1.log", "--vs-loss", "2.0727"], "significance over fewer than two seeds"),
    (["significance", "seed1.log", "seed1.log"], "significance without a baseline"),
    (["wrap", "empty.py", "-o", "out.py"], "wrapping an empty script"),
    (["decoder", "--plan", "int6", "--compressor", "best", "--artifact", "junk.ptz"],
     "a decoder asked for a file that is not a pgolf artifact"),
    (["decoder", "--plan", "int6", "--compressor", "zstd", "--artifact", "best.ptz"],
     "a decoder asked for an artifact built with another compressor"),
]


# --- predictions: `pgolf predict ARGS`, run beside model.pt (the 2L-d64 fixture) ---------------------

PREDICT_CASES = [  # (arguments after `pgolf predict`, what it is)
    (["--like", "missing.pt"], "a --like checkpoint that does not exist"),
    (["--like", "not-gpt.pt"], "a --like state dict with no matrix of the baseline family's names"),
    (["--like", "model.pt", "--scale", "long"], "--like with --scale (the checkpoint sets the scale)"),
    (["--delta", "layerz=3"], "--delta naming no shape flag"),
    (["--delta", "layers"], "--delta without =VALUE"),
    (["--delta", "layers=0"], "--delta with a value the flag refuses"),
    (["--delta", "dim=500"], "--delta to a width the heads do not divide"),
    (["--fit", "--delta", "layers=11"], "--fit together with --delta"),
    (["--delta-plan", "int9"], "--delta-plan that is neither a preset, a file nor a scheme"),
]


def build_predict_inputs(root: Path) -> None:
    """model.pt (the 2L-d64 fixture) and not-gpt.pt (one matrix under a name no role has)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.pt").write_bytes(fixture_pt())
    (root / "not-gpt.pt").write_bytes(torch_bytes({"encoder.weight": torch.zeros(300, 300)}))


# --- the participant's script: `pgolf gaps model.pt ARGS` ------------------------------------------

SCRIPT_FILES = {  # name -> source, written under scripts/ beside model.pt (the 2L-d64 fixture)
    "no_gpt.py": "import torch\n\n\nclass Model(torch.nn.Module):\n    pass\n",
    "needs_arg.py": ("import os\n\nimport torch\n\n\nclass Hyperparameters:\n"
                     "    vocab_size = int(os.environ.get('VOCAB_SIZE', 1024))\n\n\n"
                     "class GPT(torch.nn.Module):\n    def __init__(self, vocab_size, mystery_width):\n"
                     "        super().__init__()\n"),
    "raises.py": "import os\n\nraise RuntimeError('DATA_PATH is not set')\n",
    "needs_triton.py": "import torch\nimport triton\nimport triton.language as tl\n",
    "syntax.py": "def broken(:\n    pass\n",
}


def corrupt_wrapper() -> str:
    """A self-extracting script whose base85 payload lost its second half: it cannot decompress."""
    from pgolf.budget.files.codebytes import wrap_source

    text = wrap_source("".join(f"x{i} = {i * i}\n" for i in range(2000)).encode())
    start = text.index('"') + 1
    end = text.index('"', start)
    mid = start + (end - start) // 2 // 5 * 5
    return text[:mid] + text[end:]


SCRIPT_CASES = [  # (arguments after `pgolf gaps model.pt`, what, a fragment the line must contain)
    (["--script", "scripts/no_gpt.py"], "a script with no GPT class", "defines no GPT class"),
    (["--script", "scripts/needs_arg.py"], "a GPT constructor argument pgolf cannot supply", "'mystery_width'"),
    (["--script", "scripts/raises.py"], "a script that raises at import",
     "RuntimeError: DATA_PATH is not set at line 3"),
    (["--script", "scripts/needs_triton.py"], "a script that imports triton (not installed)",
     "imports triton at line 2"),
    (["--script", "scripts/syntax.py"], "a script that does not parse", "does not parse"),
    (["--script", "scripts/corrupt_wrapped.py"], "a self-extracting script whose payload is corrupt",
     "self-extracting script with a corrupt payload"),
    (["--script", "BASELINE"], "the official baseline script at its default size (9x512) for the 2-layer model",
     "state dict does not fit the script's model"),
    (["--script", "BASELINE", "--env", "NUM_LAYERS"], "an --env value without =", "expected KEY=VALUE"),
    (["--factory", "scripts/no_gpt.py:build"], "a --factory FILE whose function does not exist", "defines no function"),
    (["--device", "cuda"], "--device cuda on a machine without CUDA", "no usable CUDA device"),
    (["--nproc", "99"], "--nproc larger than the number of tensors the plan changes (4 under official-int8)",
     "--nproc 99 is more processes than"),
]


def build_script_inputs(root: Path) -> None:
    """scripts/*.py and model.pt under `root` for SCRIPT_CASES (BASELINE: the fixture's official script)."""
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPT_FILES.items():
        (root / "scripts" / name).write_text(text)
    (root / "scripts" / "corrupt_wrapped.py").write_text(corrupt_wrapper())
    (root / "model.pt").write_bytes(fixture_pt())


def script_argv(args: list[str]) -> list[str]:
    baseline = str(fixture_path("scripts", "official_baseline_train_gpt.py"))
    return ["gaps", "model.pt", *(baseline if a == "BASELINE" else a for a in args),
            "--tokens", "256", "--seq-len", "128", "--no-cache", "--quiet"]
