"""Open any model file pgolf accepts, detected by content, validated, never executing code.

Formats (the `format` field): "state-dict-pt" (torch.save of a state dict, zip or legacy),
"safetensors", "pgolf-checkpoint" (step_NNNNNN.safetensors + .json sidecar, or their folder),
"official-ptz" (zlib over torch.save of an int8_clean_per_row_v1 export) and "pgolf-artifact"
(pgolf's own frame). Artifacts go through the one decoder (decode.py), once: the LoadedInput keeps
the decoded form for `stored_form`. Pickles are only ever loaded with
torch.load(weights_only=True, map_location="cpu"); decompression is bounded by
`max_decompressed_bytes` (default DEFAULT_LIMIT, or env PGOLF_MAX_DECOMPRESSED).

>>> load_bytes(b"", "x.pt")
Traceback (most recent call last):
...
pgolf.budget.errors.PgolfInputError: x.pt: empty file
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from pgolf.budget.atomic import is_temp_litter
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact import container
from pgolf.budget.exact.decode import Decoded, decode_artifact
from pgolf.budget.files.safeload import DEFAULT_LIMIT, is_pickle, is_zip, resolve_limit, torch_load_bytes
from pgolf.budget.files.validate import (MAX_JSON_BYTES, describe, one_line, parse_json_bytes, read_file_bytes,
                                         read_json, read_shard, read_tokenizer, validate_state_dict)

__all__ = ["LoadedInput", "load_input", "load_bytes", "load_checkpoint_bytes", "read_json", "read_shard",
           "read_tokenizer", "FORMATS"]

MAX_FILE_BYTES = DEFAULT_LIMIT  # a model file on disk: checked by stat before it is read
CHECKPOINT_FORMAT = "pgolf-checkpoint-v1"
FORMATS = ("pgolf-checkpoint", "state-dict-pt", "safetensors", "official-ptz", "pgolf-artifact")
SIDECAR_KEYS = ("config", "step")
STEP_RE = re.compile(r"step_(\d+)\.safetensors")
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own header limit


@dataclass(frozen=True)
class LoadedInput:
    """One validated model input: its tensors (dequantized for artifacts) and where they came from."""
    path: Path
    format: str
    state_dict: dict[str, Tensor] = field(repr=False)
    raw_bytes: int
    metadata: dict = field(default_factory=dict)
    export: dict | None = field(default=None, repr=False)
    artifact: Decoded | None = field(default=None, repr=False)  # artifacts: decoded once, for stored_form



# --- content sniffing -------------------------------------------------------------------------

def _is_zlib(data: bytes) -> bool:
    # RFC 1950: CM = 8 (deflate), window <= 32 KB, and the 16-bit header is a multiple of 31
    return len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and ((data[0] << 8) | data[1]) % 31 == 0


def _looks_safetensors(data: bytes) -> bool:
    if len(data) < 9 or data[8:9] != b"{":
        return False
    return struct.unpack("<Q", data[:8])[0] < _SAFETENSORS_MAX_HEADER


def _first_bytes(data: bytes) -> str:
    return data[:8].hex(" ")


# --- decoders ---------------------------------------------------------------------------------

def _decode_safetensors(data: bytes, path) -> tuple[dict[str, Tensor], dict]:
    from safetensors.torch import load as st_load

    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise PgolfInputError(path, f"truncated safetensors file (header says {n:,} header bytes, "
                                    f"file has {len(data) - 8:,} after the length)") from None
    try:
        header = json.loads(data[8:8 + n])
        meta = header.get("__metadata__") or {}
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        need = max((e for e in ends if isinstance(e, int)), default=0)
        if 8 + n + need > len(data):
            raise PgolfInputError(path, f"truncated safetensors file (its tensors need {8 + n + need:,} bytes, "
                                        f"the file has {len(data):,})") from None
        loaded = st_load(data)
        # the library returns a hash map in a different order on every call; the export's bytes
        # and the model hash depend on the order, so it is the file's own header order
        sd = {k: loaded[k] for k in header if k != "__metadata__"}
    except PgolfInputError:
        raise
    except Exception as exc:  # SafetensorError, JSON and UTF-8 errors: a malformed file
        raise PgolfInputError(path, f"corrupt safetensors file ({one_line(exc, 120)})") from None
    if not isinstance(meta, dict):
        raise PgolfInputError(path, f"safetensors __metadata__ is a {describe(meta)}, expected a dict") from None
    return validate_state_dict(sd, path), meta


def _artifact_input(data: bytes, name, limit: int, fmt: str, meta: dict) -> LoadedInput:
    decoded = decode_artifact(data, name, limit)
    sd = validate_state_dict(decoded.state_dict, name, "dequantized state dict")
    return LoadedInput(Path(str(name)), fmt, sd, len(data), meta, decoded.export, decoded)


def load_bytes(data: bytes, name="<bytes>", max_decompressed_bytes: int | None = None,
               metadata: dict | None = None) -> LoadedInput:
    """Detect, decode and validate one model file held in memory (`name` is used in messages)."""
    limit = resolve_limit(max_decompressed_bytes)
    path, meta = Path(str(name)), dict(metadata or {})
    if not data:
        raise PgolfInputError(name, "empty file") from None
    if container.is_artifact(data):
        return _artifact_input(data, name, limit, "pgolf-artifact", meta)
    if is_zip(data) or is_pickle(data):
        obj = torch_load_bytes(data, name, limit)
        if isinstance(obj, dict) and "__quant_format__" in obj:
            raise PgolfInputError(name, "holds an uncompressed int8 export; pgolf reads exports as the "
                                        "zlib-compressed .ptz the baseline writes") from None
        return LoadedInput(path, "state-dict-pt", validate_state_dict(obj, name), len(data), meta, None)
    if _looks_safetensors(data):
        sd, _ = _decode_safetensors(data, name)
        return LoadedInput(path, "safetensors", sd, len(data), meta, None)
    if _is_zlib(data):
        return _artifact_input(data, name, limit, "official-ptz", meta)
    if len(data) < 8:
        raise PgolfInputError(name, f"truncated: only {len(data)} bytes (first bytes {_first_bytes(data)})") from None
    raise PgolfInputError(name, f"unknown format (first bytes {_first_bytes(data)}): expected a torch .pt, "
                                f".safetensors, pgolf checkpoint, official .ptz or pgolf artifact") from None


# --- pgolf checkpoints ------------------------------------------------------------------------

def validate_sidecar(sidecar: dict, weights: bytes, sidecar_name) -> dict:
    """Checks a parsed sidecar against its weights: required keys and the weights' sha256."""
    if not isinstance(sidecar.get("config"), dict):
        raise PgolfInputError(sidecar_name, f"'config' is a {describe(sidecar.get('config'))}, expected an object") from None
    step = sidecar.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise PgolfInputError(sidecar_name, f"'step' is {str(step)[:40]!r}, expected a non-negative integer") from None
    want = sidecar.get("weights_sha256")
    if want is not None:
        if not (isinstance(want, str) and re.fullmatch(r"[0-9a-f]{64}", want)):
            raise PgolfInputError(sidecar_name, f"'weights_sha256' is {str(want)[:70]!r}, expected 64 hex digits") from None
        got = hashlib.sha256(weights).hexdigest()
        if got != want:
            raise PgolfInputError(sidecar_name, f"weights_sha256 mismatch: the sidecar says {want[:12]}..., "
                                                f"the weights file hashes to {got[:12]}... (stale or corrupt checkpoint)") from None
    return sidecar


def load_checkpoint_bytes(weights: bytes, sidecar: bytes, name="<checkpoint>.safetensors",
                          sidecar_name="<checkpoint>.json") -> LoadedInput:
    """A pgolf checkpoint from its two files' bytes: validated sidecar + safetensors weights."""
    meta = validate_sidecar(parse_json_bytes(sidecar, sidecar_name, CHECKPOINT_FORMAT, SIDECAR_KEYS),
                            weights, sidecar_name)
    if not weights:
        raise PgolfInputError(name, "empty file") from None
    if not _looks_safetensors(weights):
        raise PgolfInputError(name, f"checkpoint weights are not a safetensors file (first bytes "
                                    f"{_first_bytes(weights)})") from None
    sd, st_meta = _decode_safetensors(weights, name)
    tag = st_meta.get("format")
    if tag is not None and tag != CHECKPOINT_FORMAT:
        raise PgolfInputError(name, f"safetensors metadata format {str(tag)[:60]!r} does not match the "
                                    f"sidecar's {CHECKPOINT_FORMAT!r}") from None
    return LoadedInput(Path(str(name)), "pgolf-checkpoint", in_model_order(sd, meta, sidecar_name), len(weights), meta, None)


def in_model_order(sd: dict[str, Tensor], sidecar: dict, sidecar_name) -> dict[str, Tensor]:
    """safetensors stores tensors sorted by name; the sidecar's `tensor_names` restores the
    state-dict order (which the official export, and so its exact bytes, follows)."""
    names = sidecar.get("tensor_names")
    if names is None:
        return sd
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise PgolfInputError(sidecar_name, "'tensor_names' is not a list of strings") from None
    if len(names) != len(sd) or set(names) != set(sd):
        missing = sorted(set(sd) - set(names)) or sorted(set(names) - set(sd)) or ["(duplicates)"]
        raise PgolfInputError(sidecar_name, f"'tensor_names' does not match the weights file's {len(sd):,} tensors "
                                            f"(first difference: {missing[0][:60]!r})") from None
    return {n: sd[n] for n in names}


def newest_checkpoint(folder: Path) -> Path:
    """The highest step_N.safetensors that has its .json sidecar (written last, so it marks a
    complete checkpoint); temp litter from killed writers is never considered."""
    for where in (folder, folder / "checkpoints"):
        steps = []
        for p in where.glob("step_*.safetensors") if where.is_dir() else ():
            m = STEP_RE.fullmatch(p.name)
            if m and not is_temp_litter(p) and p.with_suffix(".json").is_file():
                steps.append((int(m.group(1)), p))
        if steps:
            return max(steps)[1]
    raise PgolfInputError(folder, "folder holds no complete checkpoint (step_NNNNNN.safetensors with its "
                                  ".json sidecar, here or in checkpoints/)") from None


def load_input(path, max_decompressed_bytes: int | None = None) -> LoadedInput:
    """Load and validate one model input file (or a checkpoint folder).

    `max_decompressed_bytes=None` means env PGOLF_MAX_DECOMPRESSED, else DEFAULT_LIMIT.

    >>> load_input("no/such.pt")
    Traceback (most recent call last):
    ...
    pgolf.budget.errors.PgolfInputError: no/such.pt: no such file
    """
    p = Path(path)
    limit = resolve_limit(max_decompressed_bytes)
    if p.is_dir():
        p = newest_checkpoint(p)
    elif p.suffix == ".json" and p.is_file():
        weights = p.with_suffix(".safetensors")
        if not weights.is_file():
            raise PgolfInputError(path, f"sidecar without its weights file {weights.name}") from None
        return _load_checkpoint_files(weights, p)
    if p.suffix == ".safetensors" and p.with_suffix(".json").is_file():
        return _load_checkpoint_files(p, p.with_suffix(".json"))
    return load_bytes(read_file_bytes(p, MAX_FILE_BYTES), p, limit)


def _load_checkpoint_files(weights: Path, sidecar: Path) -> LoadedInput:
    return load_checkpoint_bytes(read_file_bytes(weights, MAX_FILE_BYTES), read_file_bytes(sidecar, MAX_JSON_BYTES),
                                 weights, sidecar)
