"""A small JSON cache that never trusts a stale or corrupt entry (for gap sweeps and the like).

One file per entry, written atomically: {"format": "pgolf-cache-v1", "version", "key", "value",
"checksum"}. `get` returns None and deletes the file when the entry is unreadable JSON, has
another format or version, fails its checksum, or holds a different key; the caller recomputes.

>>> cache = JsonCache("/tmp/pgolf-doc-cache", key_fields=("model_sha256", "plan"))   # doctest: +SKIP
>>> cache.get_or_compute({"model_sha256": "ab12", "plan": "int6"}, lambda: {"gap_bpb": 0.0071})  # doctest: +SKIP
{'gap_bpb': 0.0071}
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.validate import MAX_JSON_BYTES, read_file_bytes

CACHE_FORMAT = "pgolf-cache-v1"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def entry_checksum(version: str, key: dict, value: Any) -> str:
    """sha256 over the canonical JSON of (version, key, value): any edited byte changes it."""
    return hashlib.sha256(_canonical([version, key, value]).encode("utf-8")).hexdigest()


class JsonCache:
    """JSON values keyed by a dict of exactly `key_fields`; bump `version` when the computation
    behind the values changes, and every older entry counts as stale.

    `discarded` lists (file name, reason) for each entry thrown away, so tests and reports can
    say why a value was recomputed.
    """

    def __init__(self, directory: str | os.PathLike, key_fields: tuple[str, ...] | list[str], version: str = "1"):
        if not key_fields:
            raise ValueError("JsonCache needs at least one key field, e.g. ('model_sha256', 'plan')")
        self.directory = Path(directory)
        self.key_fields = tuple(key_fields)
        self.version = str(version)
        self.hits = 0
        self.misses = 0
        self.discarded: list[tuple[str, str]] = []

    def check_key(self, key: dict) -> dict:
        fields = set(key)
        if fields != set(self.key_fields):
            missing = sorted(set(self.key_fields) - fields)
            extra = sorted(fields - set(self.key_fields))
            raise ValueError(f"cache key must have exactly the fields {self.key_fields}; "
                             f"missing {missing}, unexpected {extra}")
        return {k: key[k] for k in self.key_fields}

    def path_for(self, key: dict) -> Path:
        digest = hashlib.sha256(_canonical(self.check_key(key)).encode("utf-8")).hexdigest()
        return self.directory / f"{digest[:32]}.json"

    def _problem(self, entry: Any, key: dict) -> str | None:
        if not isinstance(entry, dict):
            return "not a JSON object"
        if entry.get("format") != CACHE_FORMAT:
            return f"format {entry.get('format')!r}, expected {CACHE_FORMAT!r}"
        if entry.get("version") != self.version:
            return f"stale: version {entry.get('version')!r}, current {self.version!r}"
        if entry.get("key") != key:
            return "key mismatch"
        if "value" not in entry or entry.get("checksum") != entry_checksum(self.version, key, entry["value"]):
            return "checksum mismatch"
        return None

    def _discard(self, path: Path, reason: str) -> None:
        self.discarded.append((path.name, reason))
        try:
            path.unlink()
        except OSError:
            pass  # a read-only or vanished entry is skipped all the same

    def get(self, key: dict) -> Any | None:
        """The cached value, or None when absent or untrustworthy (a bad file is removed)."""
        key = self.check_key(key)
        path = self.path_for(key)
        if not path.is_file():  # absent, or not ours (a pipe would block): a miss, nothing removed
            self.misses += 1
            return None
        try:
            text = read_file_bytes(path, MAX_JSON_BYTES).decode("utf-8")
        except (PgolfInputError, UnicodeDecodeError) as exc:
            self._discard(path, f"unreadable: {getattr(exc, 'problem', type(exc).__name__)}")
            self.misses += 1
            return None
        try:
            entry = json.loads(text)
        except (ValueError, RecursionError):
            entry, problem = None, "invalid JSON"
        else:
            problem = self._problem(entry, key)
        if problem is not None:
            self._discard(path, problem)
            self.misses += 1
            return None
        self.hits += 1
        return entry["value"]

    def put(self, key: dict, value: Any) -> Path:
        """Store `value` (JSON-serializable) atomically; returns the entry's path."""
        key = self.check_key(key)
        entry = {"format": CACHE_FORMAT, "version": self.version, "key": key, "value": value,
                 "checksum": entry_checksum(self.version, key, value)}
        return write_text_atomic(self.path_for(key), json.dumps(entry, sort_keys=True, indent=1) + "\n")

    def get_or_compute(self, key: dict, compute: Callable[[], Any]) -> Any:
        """Cached value if trustworthy, else compute(), store and return it.

        The stored JSON is returned even on a miss, so a hit and a miss give equal values
        (tuples become lists either way).
        """
        value = self.get(key)
        if value is None:
            value = json.loads(json.dumps(compute()))
            self.put(key, value)
        return value
