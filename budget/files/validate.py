"""Validators for what pgolf reads: state dicts, official exports, JSON files, data shards, tokenizers.

Each check raises `PgolfInputError(path, problem)` with one line naming what is wrong; nothing
from pickle, json, numpy or sentencepiece escapes with a traceback.

>>> import torch
>>> validate_state_dict({"w": torch.zeros(2)}, "m.pt")["w"].shape
torch.Size([2])
>>> validate_state_dict({}, "m.pt")
Traceback (most recent call last):
...
pgolf.budget.errors.PgolfInputError: m.pt: empty state dict (no tensors)
"""
from __future__ import annotations

import json
import os
import re
import reprlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.official import FORMAT_TAG, quantize_state_dict_int8

FLOAT_DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "float8_e5m2")
EXPORT_KEYS = tuple(k for k, v in quantize_state_dict_int8({})[0].items() if isinstance(v, dict))  # always written
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4
MAX_DENSE_BYTES = 1_500_000_000  # tensors materialised: 375M fp32 values, 10x a record's 35.9M-value model
MAX_JSON_BYTES = 64 * 1_000_000  # plans, sidecars and caches are kilobytes; refuse absurd files
MAX_SHARD_BYTES = 2_000_000_000  # the challenge's shards hold 100M tokens (200 MB)
MAX_TOKENIZER_BYTES = 256 * 1_000_000  # SentencePiece models are kilobytes to a few MB


def one_line(text: object, limit: int = 200) -> str:
    """First non-empty line of a library's message, shortened: errors stay one line.

    >>> one_line("bad thing\\n\\nmore detail")
    'bad thing'
    """
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxtuple, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring = 3, 4, 4, 4, 80


def short_repr(obj: object, limit: int = 60) -> str:
    """repr of an untrusted value in a bounded number of steps, cut to `limit` characters: a
    pickle's shared references can make plain str() of a 500-byte file gigabytes long.

    >>> short_repr("int4_magic_v9")
    "'int4_magic_v9'"
    >>> t = ()
    >>> for _ in range(60): t = (t, t)
    >>> short_repr(t, 20)
    '((((...), (...)), ((...'
    """
    if isinstance(obj, str):
        return repr(obj[:limit])
    text = _SHORT.repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def describe(obj: object) -> str:
    """Short type name for messages: 'list', 'Tensor', 'int'."""
    return type(obj).__name__


# --- state dicts -------------------------------------------------------------------------------

def finite_mask(t: Tensor) -> Tensor:
    """torch.isfinite, also for the 1-byte float8 dtypes it does not implement (cast: NaN stays NaN)."""
    return torch.isfinite(t.float() if t.is_floating_point() and t.element_size() == 1 else t)


def validate_state_dict(sd: object, path, what: str = "state dict") -> dict[str, Tensor]:
    """A non-empty dict of str -> dense finite Tensor, returned as a plain dict (order kept)."""
    if not isinstance(sd, dict):
        hint = " (a full checkpoint? save model.state_dict() instead)" if describe(sd) not in ("Tensor",) else ""
        raise PgolfInputError(path, f"expected a {what} (dict of name -> tensor), found {describe(sd)}{hint}") from None
    if not sd:
        raise PgolfInputError(path, f"empty {what} (no tensors)") from None
    out: dict[str, Tensor] = {}
    bad_finite: list[tuple[str, int]] = []
    dense = 0
    for name, t in sd.items():
        if not isinstance(name, str):
            raise PgolfInputError(path, f"{what} key {short_repr(name)} is a {describe(name)}, expected a string") from None
        if not isinstance(t, Tensor):
            hint = " (nested dict: is this a training checkpoint? pass its model state dict)" if isinstance(t, dict) else ""
            raise PgolfInputError(path, f"{what} entry '{name}' is a {describe(t)}, expected a tensor{hint}") from None
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            raise PgolfInputError(path, f"tensor '{name}' is not a dense CPU tensor (layout {t.layout}, dtype {t.dtype})") from None
        dense += t.numel() * t.element_size()  # what it takes once materialised (a stride-0 view: far more than stored)
        if dense > MAX_DENSE_BYTES:
            raise PgolfInputError(path, f"the tensors would take over {MAX_DENSE_BYTES:,} bytes once materialised "
                                        f"(reached at '{name}', {tuple(t.shape)} {t.dtype}); a model under the cap "
                                        f"needs far less") from None
        if (t.is_floating_point() or t.is_complex()) and not bool(finite_mask(t).all()):
            bad_finite.append((name, int(t.numel() - finite_mask(t).sum().item())))
        out[name] = t
    if bad_finite:
        name, n_bad = bad_finite[0]
        more = f" (and {len(bad_finite) - 1:,} more tensors)" if len(bad_finite) > 1 else ""
        raise PgolfInputError(path, f"tensor '{name}' has {n_bad:,} NaN/Inf values{more}") from None
    return out


# --- the official int8 export ------------------------------------------------------------------

def _tensor_dict(obj: dict, key: str, path) -> dict[str, Tensor]:
    d = obj[key]
    if not isinstance(d, dict):
        raise PgolfInputError(path, f"export['{key}'] is a {describe(d)}, expected a dict") from None
    for name, t in d.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            raise PgolfInputError(path, f"export['{key}'] entry {short_repr(name)} is a {describe(t)}, expected str -> tensor") from None
        if t.layout != torch.strided or t.is_quantized:
            raise PgolfInputError(path, f"export['{key}']['{name}'] is not a dense tensor") from None
    return d


def _dtype_names(obj: dict, key: str, path) -> dict[str, str]:
    d = obj.get(key, {})
    if not isinstance(d, dict):
        raise PgolfInputError(path, f"export['{key}'] is a {describe(d)}, expected a dict") from None
    for name, dt in d.items():
        if dt not in FLOAT_DTYPE_NAMES:
            raise PgolfInputError(path, f"export['{key}']['{name}'] = {short_repr(dt, 40)} is not a float dtype name "
                                        f"({', '.join(FLOAT_DTYPE_NAMES)})") from None
    return d


def validate_export(obj: object, path) -> dict:
    """Check an `int8_clean_per_row_v1` export object before dequantizing it.

    Every quantized tensor must be int8 with a dtype name, and a scale that is either a per-row
    vector (length = rows) or a 0-d tensor; passthrough entries must be tensors.
    """
    if not isinstance(obj, dict):
        raise PgolfInputError(path, f"expected an int8 export dict, found {describe(obj)}") from None
    if "__quant_format__" not in obj:
        raise PgolfInputError(path, "no __quant_format__ key: not an official int8 export") from None
    tag = obj["__quant_format__"]
    if tag != FORMAT_TAG:
        raise PgolfInputError(path, f"unknown __quant_format__ {short_repr(tag)} (pgolf reads {FORMAT_TAG!r})") from None
    missing = [k for k in EXPORT_KEYS if k not in obj]
    if missing:
        raise PgolfInputError(path, f"export is missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}") from None
    quantized = _tensor_dict(obj, "quantized", path)
    scales = _tensor_dict(obj, "scales", path)
    passthrough = _tensor_dict(obj, "passthrough", path)
    dtypes = _dtype_names(obj, "dtypes", path)
    _dtype_names(obj, "passthrough_orig_dtypes", path)
    qmeta = obj.get("qmeta", {})
    if not isinstance(qmeta, dict):
        raise PgolfInputError(path, f"export['qmeta'] is a {describe(qmeta)}, expected a dict") from None
    for name, q in quantized.items():
        if q.dtype != torch.int8:
            raise PgolfInputError(path, f"quantized tensor '{name}' has dtype {q.dtype}, expected torch.int8") from None
        if name not in scales:
            raise PgolfInputError(path, f"quantized tensor '{name}' has no scale") from None
        if name not in dtypes:
            raise PgolfInputError(path, f"quantized tensor '{name}' has no entry in export['dtypes']") from None
        if name in passthrough:
            raise PgolfInputError(path, f"tensor '{name}' is both quantized and passthrough") from None
        s = scales[name]
        if not s.is_floating_point():
            raise PgolfInputError(path, f"scale of '{name}' has dtype {s.dtype}, expected a float dtype") from None
        meta = qmeta.get(name, {})
        per_row = (isinstance(meta, dict) and meta.get("scheme") == "per_row") or s.ndim > 0
        if per_row:
            rows = q.shape[0] if q.ndim else None
            if s.ndim != 1 or rows is None or s.numel() != rows:
                raise PgolfInputError(path, f"scale of '{name}' has shape {tuple(s.shape)}, expected ({rows},) "
                                            f"for quantized shape {tuple(q.shape)}") from None
        elif s.numel() != 1:
            raise PgolfInputError(path, f"scale of '{name}' has shape {tuple(s.shape)}, expected a 0-d tensor") from None
        if not bool(torch.isfinite(s.float()).all()):
            raise PgolfInputError(path, f"scale of '{name}' has NaN/Inf values") from None
    extra = sorted(set(scales) - set(quantized))
    if extra:
        raise PgolfInputError(path, f"scale '{extra[0]}' has no quantized tensor") from None
    return obj


# --- JSON files (plans, sidecars, caches) -------------------------------------------------------

def _reject_constant(token: str):
    raise ValueError(f"non-standard JSON constant {token}")


def parse_json_bytes(data: bytes, path, expected_format: str | None = None,
                     required_keys: tuple[str, ...] = ()) -> dict:
    """Decode a JSON object and check its `format` tag and keys.

    A tag of the same family but another version ("pgolf-plan-v2" when "pgolf-plan-v1" is
    expected) gets a version message; anything else a wrong-format message.
    """
    if not data:
        raise PgolfInputError(path, "empty file (expected JSON)") from None
    if len(data) > MAX_JSON_BYTES:
        raise PgolfInputError(path, f"JSON file of {len(data):,} bytes exceeds {MAX_JSON_BYTES:,} bytes") from None
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise PgolfInputError(path, f"not UTF-8 text (byte {exc.start:,})") from None
    except json.JSONDecodeError as exc:
        raise PgolfInputError(path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise PgolfInputError(path, f"invalid JSON: {one_line(exc)}") from None
    if not isinstance(obj, dict):
        raise PgolfInputError(path, f"expected a JSON object, found {describe(obj)}") from None
    if expected_format is not None:
        tag = obj.get("format")
        if tag != expected_format:
            family = re.sub(r"-v\d+$", "", expected_format)
            if isinstance(tag, str) and re.fullmatch(re.escape(family) + r"-v\d+", tag):
                raise PgolfInputError(path, f"unsupported version {tag!r} (this pgolf reads {expected_format!r})") from None
            shown = "no format tag" if tag is None else f"format {str(tag)[:60]!r}"
            raise PgolfInputError(path, f"{shown}, expected {expected_format!r}") from None
    missing = [k for k in required_keys if k not in obj]
    if missing:
        raise PgolfInputError(path, f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}") from None
    return obj


def read_file_bytes(path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, or one line saying why not (missing, a folder, not a regular file, larger
    than `max_bytes`, unreadable). The size is checked by `stat` before anything is read, so a
    sparse file that claims gigabytes costs nothing."""
    p = Path(path)
    try:
        if not p.exists():
            raise PgolfInputError(path, "no such file") from None
        if p.is_dir():
            raise PgolfInputError(path, "is a folder, expected a file") from None
        if not p.is_file():  # a FIFO or /dev/zero would block or never end
            raise PgolfInputError(path, "not a regular file") from None
        size = p.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise PgolfInputError(path, f"file is {size:,} bytes, over the {max_bytes:,}-byte reading limit") from None
        with p.open("rb") as f:
            data = f.read(size + 1 if max_bytes is None else min(size, max_bytes) + 1)
        if max_bytes is not None and len(data) > max_bytes:  # it grew while we read it
            raise PgolfInputError(path, f"file grew past the {max_bytes:,}-byte reading limit") from None
        return data
    except PermissionError:
        raise PgolfInputError(path, "permission denied") from None
    except OSError as exc:
        raise PgolfInputError(path, f"cannot read: {exc.strerror or one_line(exc)}") from None


def read_json(path, expected_format: str | None = None, required_keys: tuple[str, ...] = ()) -> dict:
    """A validated JSON object from a file.

    >>> read_json("plan.json", "pgolf-plan-v1", ("rules",))   # doctest: +SKIP
    {'format': 'pgolf-plan-v1', 'rules': [...], ...}
    """
    return parse_json_bytes(read_file_bytes(path, MAX_JSON_BYTES), path, expected_format, required_keys)


# --- data shards ------------------------------------------------------------------------------

def parse_shard_bytes(data: bytes, path, vocab_size: int | None = None) -> np.ndarray:
    """Tokens (uint16) of one fineweb shard: 256 int32 header (magic, version, count) + tokens."""
    if len(data) < SHARD_HEADER_BYTES:
        raise PgolfInputError(path, f"truncated shard header ({len(data):,} bytes, expected at least "
                                    f"{SHARD_HEADER_BYTES:,})") from None
    header = np.frombuffer(data, dtype="<i4", count=SHARD_HEADER_INTS)
    magic, version, count = (int(v) for v in header[:3])
    if magic != SHARD_MAGIC:
        raise PgolfInputError(path, f"wrong magic {magic} (expected {SHARD_MAGIC}: not a data shard)") from None
    if version != SHARD_VERSION:
        raise PgolfInputError(path, f"unsupported shard version {version} (pgolf reads {SHARD_VERSION})") from None
    if count <= 0:
        raise PgolfInputError(path, f"header token count is {count}, expected a positive number") from None
    expected = SHARD_HEADER_BYTES + 2 * count
    if len(data) != expected:
        raise PgolfInputError(path, f"size mismatch: header says {count:,} tokens ({expected:,} bytes) "
                                    f"but the file has {len(data):,} bytes") from None
    tokens = np.frombuffer(data, dtype="<u2", offset=SHARD_HEADER_BYTES, count=count)
    if vocab_size is not None:
        top = int(tokens.max())
        if top >= vocab_size:
            pos = int(np.argmax(tokens >= vocab_size))
            raise PgolfInputError(path, f"token id {int(tokens[pos])} at position {pos:,} is out of range for "
                                        f"vocab size {vocab_size:,} (largest id {top})") from None
    return tokens


def read_shard(path, vocab_size: int | None = None) -> np.ndarray:
    """Validated tokens of a data shard (uint16 numpy array, read-only view of the file's bytes).

    >>> read_shard("fineweb_val_000000.bin", vocab_size=1024)[:3]   # doctest: +SKIP
    array([   1,  ...], dtype=uint16)
    """
    return parse_shard_bytes(read_file_bytes(path, MAX_SHARD_BYTES), path, vocab_size)


# --- tokenizers -------------------------------------------------------------------------------

def read_tokenizer(path, vocab_size: int | None = None):
    """A loaded SentencePiece processor, or one line saying why the model file is unusable.

    >>> read_tokenizer("fineweb_1024_bpe.model").vocab_size()   # doctest: +SKIP
    1024
    """
    import sentencepiece as spm

    data = read_file_bytes(path, MAX_TOKENIZER_BYTES)
    if not data:
        raise PgolfInputError(path, "empty file (expected a SentencePiece model)") from None
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as exc:  # sentencepiece raises RuntimeError/OSError with multi-line text
        why = "its protobuf does not parse" if "ParseFromArray" in str(exc) else one_line(exc, 120)
        raise PgolfInputError(path, f"not a SentencePiece model ({why})") from None
    n = sp.vocab_size()
    if n <= 0:
        raise PgolfInputError(path, "SentencePiece model has an empty vocabulary") from None
    if vocab_size is not None and n != vocab_size:
        raise PgolfInputError(path, f"tokenizer vocab size {n:,} does not match the expected {vocab_size:,}") from None
    return sp


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment, or the default; a bad value is one clear line."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = -1
    if value <= 0:
        raise PgolfInputError(None, f"{name} must be a positive number of bytes, got {raw!r}") from None
    return value
