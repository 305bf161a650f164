"""The embedded default corpus: English prose that every Python installation carries, as shards.

Source: the interpreter's own documentation, read without importing anything that runs code:
`pydoc_data.topics` (the language reference topics behind `help()`) plus the module, class and
function docstrings of the standard library's `.py` files, read with `ast` in source order.
Deterministic rules: sorted file list, test/GUI-demo folders skipped, files that do not parse
skipped (and counted), one document per topic and per module, train/val split by a hash of the
document name (1 in 10 to val), documents ordered by that hash. Each document becomes BOS (id 1)
followed by its tokens in the official shard format (`fineweb_{train,val}_000000.bin`).

The tokenizer is a 1024-piece SentencePiece BPE trained on the train split with the settings of
the challenge's `fineweb_1024_bpe.model` (read from its model proto: BPE, character coverage
0.999, split digits, no byte fallback, no hard vocab limit, nmt_nfkc, no dummy prefix, ids
pad 0 / bos 1 / eos 2 / unk 3). With `tokenizer=MODEL` the same text is tokenized by that model
into a separate folder instead.

>>> info = prepare_default(quiet=True)                      # doctest: +SKIP
>>> info.manifest["tokens"]["val"], Path(info.data_path).name   # doctest: +SKIP
(69471, 'pydocs-py311-sp1024')
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import sys
import sysconfig
from pathlib import Path

import numpy as np
import sentencepiece as spm

from pgolf.budget.atomic import write_bytes_atomic, write_text_atomic
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.entropy import read_leb
from pgolf.budget.progress import progress

CORPUS_FORMAT = "pgolf-corpus-v1"
BOS_ID = 1
VAL_ONE_IN = 10
SKIP_FOLDERS = frozenset({"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "site-packages",
                          "dist-packages", "__pycache__", "ensurepip"})
# Mirrors the trainer_spec/normalizer_spec stored in the challenge's fineweb_1024_bpe.model.
TOKENIZER_SETTINGS = dict(model_type="bpe", vocab_size=1024, character_coverage=0.999, split_digits=True,
                          byte_fallback=False, hard_vocab_limit=False, normalization_rule_name="nmt_nfkc",
                          add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3)
# Speed and determinism only: every line is used (no sampling), two threads, quiet.
TRAINING_LIMITS = dict(input_sentence_size=2_000_000, shuffle_input_sentence=False, num_threads=2, minloglevel=2)


@dataclasses.dataclass(frozen=True)
class Document:
    name: str  # "topic:<name>" or "module:<path relative to the stdlib>"
    text: str

    @property
    def key(self) -> int:
        return int(hashlib.sha256(self.name.encode("utf-8")).hexdigest()[:12], 16)

    @property
    def split(self) -> str:
        return "val" if self.key % VAL_ONE_IN == 0 else "train"


@dataclasses.dataclass(frozen=True)
class DataInfo:
    data_path: str  # folder with fineweb_train_000000.bin and fineweb_val_000000.bin
    tokenizer_path: str
    manifest: dict


def default_cache_dir() -> Path:
    return Path(os.environ.get("PGOLF_CACHE") or Path.home() / ".cache" / "pgolf")


def dataset_dir(cache_dir: Path, tokenizer: Path | None = None, tokenizer_sha256: str = "") -> Path:
    """The folder for one (Python version, tokenizer) pair; train_gpt.embedded_data_dir agrees for sp1024."""
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    if tokenizer is None:
        return cache_dir / f"pydocs-{py}-sp{TOKENIZER_SETTINGS['vocab_size']}"
    return cache_dir / f"pydocs-{py}-{tokenizer.stem}-{tokenizer_sha256[:8]}"


# --- extraction ------------------------------------------------------------------------------

def docstrings_in_source(source: bytes) -> list[str]:
    """Module, class and function docstrings in source order (nested ones after their parent).

    >>> docstrings_in_source(b"'Mod.'\\nclass A:\\n    'Cls.'\\n    def f(self):\\n        'Fn.'")
    ['Mod.', 'Cls.', 'Fn.']
    """
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        doc = ast.get_docstring(node, clean=True)
        if doc and doc.strip():
            found.append(doc.strip())
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child)

    visit(ast.parse(source))
    return found


def stdlib_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if not any(p in SKIP_FOLDERS or p.startswith("test_") for p in parts):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


@functools.lru_cache(maxsize=2)  # the installation's files do not change while we run
def python_documents(quiet: bool = True) -> tuple[tuple[Document, ...], dict]:
    """All documents, ordered by their hash key, and the counts for the manifest."""
    from pydoc_data.topics import topics  # plain data module: a dict of str, no code runs

    docs = [Document(f"topic:{name}", topics[name].strip()) for name in sorted(topics) if topics[name].strip()]
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root) if root.is_dir() else []
    skipped = 0
    for path in progress(files, desc="reading docstrings", quiet=quiet):
        try:
            strings = docstrings_in_source(path.read_bytes())
        except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
            skipped += 1
            continue
        if strings:
            docs.append(Document(f"module:{path.relative_to(root).as_posix()}", "\n\n".join(strings)))
    counts = {"topics": sum(d.name.startswith("topic:") for d in docs),
              "modules": sum(d.name.startswith("module:") for d in docs),
              "files_read": len(files), "files_skipped": skipped, "stdlib": str(root)}
    return tuple(sorted(docs, key=lambda d: (d.key, d.name))), counts


def text_sha256(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(f"{d.name}\0{d.text}\0".encode("utf-8"))
    return h.hexdigest()


# --- tokenizer and shards ----------------------------------------------------------------------

def train_tokenizer(docs: list[Document]) -> bytes:
    """A SentencePiece model (bytes) trained on the documents' non-empty lines; deterministic."""
    lines = [line.strip() for d in docs for line in d.text.splitlines() if line.strip()]
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out,
                                   **TOKENIZER_SETTINGS, **TRAINING_LIMITS)
    return out.getvalue()


def shard_bytes(tokens: np.ndarray) -> bytes:
    """The official shard layout: 256 int32 header (magic, version, count) + uint16 tokens."""
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, tokens.size)
    return header.tobytes() + tokens.astype("<u2").tobytes()


def encode_documents(sp: spm.SentencePieceProcessor, docs: list[Document]) -> np.ndarray:
    if sp.vocab_size() > 65536:
        raise PgolfInputError(None, f"tokenizer has {sp.vocab_size():,} pieces; uint16 shards hold at most 65,536")
    pieces = sp.encode([d.text for d in docs])
    return np.concatenate([np.array([BOS_ID, *ids], dtype=np.int64) for ids in pieces]).astype(np.uint16)


def load_tokenizer_file(path: Path) -> tuple[spm.SentencePieceProcessor, bytes]:
    if not path.is_file():
        raise PgolfInputError(path, "tokenizer model not found") from None
    blob = path.read_bytes()
    try:
        sp = spm.SentencePieceProcessor(model_proto=blob)
    except (RuntimeError, OSError):
        raise PgolfInputError(path, "not a SentencePiece model (the proto does not parse)") from None
    if sp.bos_id() != BOS_ID:
        raise PgolfInputError(path, f"BOS id is {sp.bos_id()}; the shard format needs BOS = {BOS_ID}") from None
    return sp, blob


# --- the cached dataset ------------------------------------------------------------------------

def _cached(folder: Path) -> DataInfo | None:
    """The folder's dataset if its manifest is ours, for this Python, and every file is whole."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest["format"] != CORPUS_FORMAT or manifest["python_version"] != platform.python_version():
            return None
        files = [(folder / s["file"], 1024 + 2 * int(s["tokens"])) for s in manifest["shards"]]
        tok = folder / manifest["tokenizer"]["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not tok.is_file() or any(not f.is_file() or f.stat().st_size != size for f, size in files):
        return None
    return DataInfo(str(folder), str(tok), manifest)


def prepare_default(cache_dir=None, tokenizer=None, quiet: bool = False) -> DataInfo:
    """Build (or reuse) the embedded default dataset; `tokenizer` = an existing .model to use instead
    of training one. Every file is written atomically, the manifest last (it marks completion)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    given = Path(tokenizer) if tokenizer is not None else None
    sp, blob = load_tokenizer_file(given) if given is not None else (None, b"")
    folder = dataset_dir(cache_dir, given, hashlib.sha256(blob).hexdigest())
    found = _cached(folder)
    if found is not None:
        return found

    docs, counts = python_documents(quiet=quiet)
    train = [d for d in docs if d.split == "train"]
    val = [d for d in docs if d.split == "val"]
    if given is None:
        blob = train_tokenizer(train)
        sp = spm.SentencePieceProcessor(model_proto=blob)
        tok_name = f"pydocs_{TOKENIZER_SETTINGS['vocab_size']}_bpe.model"
    else:
        tok_name = given.name
    write_bytes_atomic(folder / tok_name, blob)
    shards = []
    for split, part in (("train", train), ("val", val)):
        tokens = encode_documents(sp, part)
        data = shard_bytes(tokens)
        name = f"fineweb_{split}_000000.bin"
        write_bytes_atomic(folder / name, data)
        shards.append({"file": name, "split": split, "documents": len(part), "tokens": int(tokens.size),
                       "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    utf8 = {s: sum(len(d.text.encode("utf-8")) for d in part) for s, part in (("train", train), ("val", val))}
    manifest = {
        "format": CORPUS_FORMAT,
        "source": "Python documentation: pydoc_data.topics + standard-library docstrings (read with ast)",
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "text_sha256": text_sha256(docs),
        "documents": {**counts, "train": len(train), "val": len(val)},
        "text_bytes": {**utf8, "total": utf8["train"] + utf8["val"]},
        "tokens": {s["split"]: s["tokens"] for s in shards},
        "split_rule": f"sha256(name) % {VAL_ONE_IN} == 0 -> val; documents ordered by sha256(name)",
        "tokenizer": {"file": tok_name, "sha256": hashlib.sha256(blob).hexdigest(), "vocab_size": int(sp.vocab_size()),
                      "origin": "trained on the train split" if given is None else f"given: {given}",
                      "settings": TOKENIZER_SETTINGS if given is None else read_model_spec(blob)},
        "shards": shards,
    }
    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return DataInfo(str(folder), str(folder / tok_name), manifest)


# --- reading a SentencePiece model's settings without protobuf ---------------------------------
# Field numbers from sentencepiece_model.proto (ModelProto.trainer_spec = 2, normalizer_spec = 3).

_TRAINER_FIELDS = {3: "model_type", 4: "vocab_size", 10: "character_coverage", 25: "split_digits",
                   35: "byte_fallback", 33: "hard_vocab_limit", 40: "unk_id", 41: "bos_id", 42: "eos_id",
                   43: "pad_id"}
_NORMALIZER_FIELDS = {1: "normalization_rule_name", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces"}
_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _proto_fields(buf: bytes) -> list[tuple[int, object]]:
    out, i = [], 0

    def varint() -> int:  # protobuf's varint is LEB128
        nonlocal i
        value, i = read_leb(buf, i)
        return value

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 2:
            n = varint()
            out.append((field, buf[i : i + n]))
            i += n
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((field, float(np.frombuffer(buf[i : i + width], "<f8" if wire == 1 else "<f4")[0])))
            i += width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def read_model_spec(model: bytes) -> dict:
    """The settings that matter for the challenge, as stored in a SentencePiece model proto
    (fields left at the proto default are absent from the proto and reported as None)."""
    spec: dict[str, object] = {name: None for name in (*_TRAINER_FIELDS.values(), *_NORMALIZER_FIELDS.values())}
    for field, value in _proto_fields(model):
        table = {2: _TRAINER_FIELDS, 3: _NORMALIZER_FIELDS}.get(field)
        for sub, sub_value in _proto_fields(value) if table else []:
            if sub in table:
                spec[table[sub]] = sub_value.decode() if isinstance(sub_value, bytes) else sub_value
    for name in ("split_digits", "byte_fallback", "hard_vocab_limit", "add_dummy_prefix", "remove_extra_whitespaces"):
        spec[name] = None if spec[name] is None else bool(spec[name])
    if spec["model_type"] is not None:
        spec["model_type"] = _MODEL_TYPES.get(spec["model_type"], spec["model_type"])
    if spec["character_coverage"] is not None:
        spec["character_coverage"] = round(spec["character_coverage"], 6)  # stored as float32
    return spec


def main(argv: list[str] | None = None) -> int:
    """`python -m pgolf.trainer.corpus [--quiet]`: what train_gpt.py runs when the default is missing."""
    info = prepare_default(quiet="--quiet" in (argv if argv is not None else sys.argv[1:]))
    print(f"embedded default ready: {info.data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
