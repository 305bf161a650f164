"""Mutation machinery for tests/test_fuzz_readers.py: a watchdogged case runner that tallies
outcomes, byte-level edits, zip rebuilding, and structural edits of state dicts, int8 exports,
safetensors headers, plans and pgolf containers.

>>> apply_byte_ops(b"abcdef", [("truncate", "head", 0.0, 3, b"x", 1, 0)])
b'abc'
"""
from __future__ import annotations

import io
import json
import os
import signal
import struct
import time
import zipfile
from collections import Counter

import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.inputs import LoadedInput

CASES = int(os.environ.get("PGOLF_FUZZ_CASES", "2000"))
CASE_TIMEOUT_S = 10  # a case running longer counts as a hang
VOCAB = 1024


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no reader's `except Exception` can swallow it."""


def _on_alarm(signum, frame):
    raise Hang()


class Fuzzer:
    """Runs one reader per case under a watchdog and tallies what happened."""

    def __init__(self, reader: str, check):
        self.reader, self.check = reader, check
        self.outcomes: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.failures: list[str] = []
        self.start = time.perf_counter()

    def run(self, kind: str, describe: str, fn, *args) -> None:
        self.kinds[kind] += 1
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
        try:
            result = fn(*args)
            outcome = "loaded"
            problem = self.check(result)
        except PgolfInputError as exc:
            outcome, problem = "refused", ("multi-line message" if "\n" in str(exc) else None)
        except Hang:
            outcome, problem = "hang", f"no answer within {CASE_TIMEOUT_S} s"
        except Exception as exc:  # the defect this test exists to find
            outcome, problem = "uncaught", f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        self.outcomes[outcome] += 1
        if problem is not None:
            self.failures.append(f"{kind} {describe}: {outcome}: {problem}")

    def finish(self, record_property) -> None:
        total = sum(self.outcomes.values())
        line = (f"fuzz {self.reader}: {total:,} cases in {time.perf_counter() - self.start:.1f} s: "
                f"{self.outcomes['refused']:,} refused with one line, {self.outcomes['loaded']:,} loaded and valid, "
                f"{self.outcomes['uncaught']:,} uncaught, {self.outcomes['hang']:,} hangs "
                f"(mutations: {', '.join(f'{k} {v:,}' for k, v in sorted(self.kinds.items()))})")
        record_property("summary", line)
        print(line)
        assert not self.failures, f"{len(self.failures)} bad outcomes, first: " + " | ".join(self.failures[:5])
        assert total >= CASES, f"only {total} cases ran, {CASES} asked"
        assert self.outcomes["refused"] > 0 and self.outcomes["loaded"] > 0  # both paths exercised


def fuzz_settings():
    return settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                    phases=[Phase.generate], suppress_health_check=list(HealthCheck))


# --- byte-level mutation ----------------------------------------------------------------------

BYTE_OPS = ("truncate", "flip", "set", "insert", "delete", "duplicate", "zero-run")
byte_op = st.tuples(st.sampled_from(BYTE_OPS), st.sampled_from(("head", "tail", "any")),
                    st.floats(0, 1), st.integers(0, 4095), st.binary(min_size=1, max_size=16),
                    st.integers(1, 4096), st.integers(0, 7))
byte_ops = st.lists(byte_op, min_size=1, max_size=3)


def apply_byte_ops(data: bytes, ops) -> bytes:
    """Apply (kind, where, frac, off, payload, length, bit) edits; positions clamp to the data."""
    b = bytearray(data)
    for kind, where, frac, off, payload, length, bit in ops:
        n = len(b)
        if n == 0:
            break
        pos = {"head": min(off, n - 1), "tail": max(0, n - 1 - off), "any": int(frac * (n - 1))}[where]
        if kind == "truncate":
            del b[pos:]
        elif kind == "flip":
            b[pos] ^= 1 << bit
        elif kind == "set":
            b[pos:pos + len(payload)] = payload
        elif kind == "insert":
            b[pos:pos] = payload
        elif kind == "delete":
            del b[pos:pos + length]
        elif kind == "duplicate":
            b[pos:pos] = b[pos:pos + length]
        else:
            b[pos:pos + length] = bytes(len(b[pos:pos + length]))
    return bytes(b)


def zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rebuild_zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:  # stored, fresh CRCs: the mutation reaches torch's unpickler
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def mutate_entry(entries: dict[str, bytes], pick: int, ops) -> tuple[str, bytes]:
    """Mutate data.pkl most of the time, sometimes another small entry (version, byteorder)."""
    small = [n for n, d in entries.items() if len(d) < 16]
    name = next(n for n in entries if n.endswith("data.pkl")) if pick % 3 else small[pick % len(small)]
    edited = dict(entries)
    edited[name] = apply_byte_ops(entries[name], ops)
    return name.rsplit("/", 1)[-1], rebuild_zip(edited)


# --- structural mutation ----------------------------------------------------------------------

def garbage_values():
    return [None, 0, -1, 2**70, 1.5, float("nan"), "text", b"bytes", [1, 2], (1,), {"a": 1}, {},
            torch.zeros(0), torch.tensor(float("nan")), torch.tensor([1.0, float("inf")]),
            torch.zeros(3, dtype=torch.int64), torch.ones(2, 2, dtype=torch.complex64),
            torch.zeros(2, dtype=torch.bool), torch.zeros(3).to_sparse(), torch.zeros(4, dtype=torch.float64),
            torch.zeros(2, dtype=torch.uint8), torch.empty(0, 5), torch.zeros(2, 3, dtype=torch.int8),
            torch.zeros(5, dtype=torch.float16)]


GARBAGE_COUNT = len(garbage_values())
BAD_KEYS = [0, 1.5, ("a",), "", "x" * 300, None, True]
CASTS = [torch.int8, torch.int16, torch.int32, torch.uint8, torch.float16, torch.float32, torch.float64,
         torch.bfloat16, torch.bool, torch.complex64]
DICT_OPS = ("swap", "replace", "rename", "delete", "delete-all", "wrap", "nan", "cast", "reshape")
dict_op = st.tuples(st.sampled_from(DICT_OPS), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
dict_ops = st.lists(dict_op, min_size=1, max_size=3)


def apply_dict_op(d: dict, op) -> object:
    """One structural edit of a dict of tensors (returns the new object: wrap may change its type)."""
    kind, i, j, k = op
    keys = list(d)
    if not keys:
        return d
    a, b = keys[i % len(keys)], keys[j % len(keys)]
    if kind == "swap":
        d[a], d[b] = d[b], d[a]
    elif kind == "replace":
        d[a] = garbage_values()[k % GARBAGE_COUNT]
    elif kind == "rename":
        d[BAD_KEYS[k % len(BAD_KEYS)]] = d.pop(a)
    elif kind == "delete":
        del d[a]
    elif kind == "delete-all":
        d.clear()
    elif kind == "wrap":
        return [{"model": d}, [d], (d,), {"state_dict": d, "step": 1}][k % 4]
    elif isinstance(d[a], torch.Tensor) and d[a].numel():
        t = d[a].clone()
        if kind == "nan" and t.is_floating_point():
            t.view(-1)[k % t.numel()] = (float("nan"), float("inf"), float("-inf"))[j % 3]
        elif kind == "cast":
            t = t.to(CASTS[k % len(CASTS)])
        elif kind == "reshape":
            flat = t.reshape(-1)
            t = (flat, t.reshape(1, -1), t.t() if t.ndim == 2 else t[None], flat[: max(1, len(flat) // 2)])[k % 4]
        d[a] = t
    return d


def check_loaded(li: LoadedInput) -> str | None:
    """An independent re-check of what a successful load returned."""
    sd = li.state_dict
    if not isinstance(li, LoadedInput) or not isinstance(sd, dict) or not sd:
        return "loaded an empty or non-dict state dict"
    for name, t in sd.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            return f"loaded a bad entry {name!r}"
        wide = t.float() if t.is_floating_point() and t.element_size() == 1 else t  # float8: no isfinite
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(wide).all()):
            return f"loaded non-finite values in {name!r}"
    return None


TOP_KEYS = ("__quant_format__", "quantized", "scales", "dtypes", "passthrough", "qmeta", "passthrough_orig_dtypes")
DTYPE_NAMES = ["float32", "bfloat16", "float16", "float64", "int8", "complex64", "Tensor", "float8_e4m3fn", "", 3, None]
EXPORT_OPS = ("delete-top", "set-top", "format", "sub", "scale-shape", "dtype-name", "cast-q")
export_op = st.tuples(st.sampled_from(EXPORT_OPS), st.integers(0, 10**6), st.integers(0, 10**6), dict_op)


def apply_export_op(obj: dict, op) -> None:
    kind, i, j, sub = op
    key = TOP_KEYS[i % len(TOP_KEYS)]
    if kind == "delete-top":
        obj.pop(key, None)
    elif kind == "set-top":
        obj[key] = garbage_values()[j % GARBAGE_COUNT]
    elif kind == "format":
        obj["__quant_format__"] = ["int8_clean_per_row_v2", "", None, 8, "int6_x", "INT8_CLEAN_PER_ROW_V1"][j % 6]
    elif isinstance(obj.get(key), dict) and key != "__quant_format__":
        d = obj[key]
        names = list(obj["quantized"]) if isinstance(obj.get("quantized"), dict) and obj["quantized"] else list(d)
        name = names[j % len(names)] if names else None
        if kind == "sub" and d:
            apply_dict_op(d, sub)
        elif kind == "scale-shape" and isinstance(obj.get("scales"), dict) and name in obj["scales"]:
            s = obj["scales"][name]
            if isinstance(s, torch.Tensor):
                s = s.reshape(-1)
                obj["scales"][name] = (s[:-1], torch.cat([s.reshape(-1), s.reshape(-1)]), s.reshape(1, -1),
                                       s[:1].sum(), s[:0], s.float() * float("nan"))[sub[1] % 6]
        elif kind == "dtype-name" and isinstance(obj.get("dtypes"), dict) and name is not None:
            obj["dtypes"][name] = DTYPE_NAMES[sub[1] % len(DTYPE_NAMES)]
        elif (kind == "cast-q" and isinstance(obj.get("quantized"), dict)
              and isinstance(obj["quantized"].get(name), torch.Tensor)):
            obj["quantized"][name] = obj["quantized"][name].to(CASTS[sub[1] % len(CASTS)])


ST_DTYPES = ["F32", "BF16", "F16", "F64", "I8", "U8", "BOOL", "I64", "F8_E4M3", "XX", 3, None]
HEADER_OPS = ("dtype", "shape", "offsets", "delete", "duplicate", "metadata", "length")
header_op = st.tuples(st.sampled_from(HEADER_OPS), st.integers(0, 10**6), st.integers(0, 10**6))


def apply_header_ops(data: bytes, ops) -> bytes:
    """Edit the safetensors JSON header (dtype, shape, offsets, entries) and re-serialize it."""
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    length_delta = 0
    for kind, i, j in ops:
        names = [k for k in header if k != "__metadata__"]
        if not names:
            break
        name = names[i % len(names)]
        entry = header[name]
        if kind == "dtype":
            entry["dtype"] = ST_DTYPES[j % len(ST_DTYPES)]
        elif kind == "shape":
            shape = list(entry["shape"])
            entry["shape"] = ([], [0], [-1], [2**40], shape + [1], shape[::-1], [s * 2 for s in shape], "x")[j % 8]
        elif kind == "offsets" and len(entry["data_offsets"]) == 2:
            a, b = entry["data_offsets"]
            entry["data_offsets"] = ([b, a], [a + 1, b], [a, b - 1], [0, 0], [2**60, 2**60 + 4], [a, b + 8], [a])[j % 7]
        elif kind == "delete":
            del header[name]
        elif kind == "duplicate":
            header[name + ".copy"] = dict(entry)
        elif kind == "metadata":
            header["__metadata__"] = ({"format": "pgolf-checkpoint-v2"}, [1], {"a": 1}, "x", None)[j % 5]
        else:
            length_delta = (-1, 1, 8, -8, 2**40)[j % 5]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", max(0, len(text) + length_delta)) + text + body


SIDECAR_VALUES = [None, -1, "x", [], {}, 1.5, True, "0" * 64, 2**70, "pgolf-checkpoint-v2", ["tok_emb.weight"], [1]]
SIDECAR_KEYS = ("format", "config", "step", "weights_sha256", "val_bpb", "tensor_names")
PLAN_VALUES = SIDECAR_VALUES + ["(", "[a-", "int99", "int6:sdclip(", "fp16", "ternary", "a" * 10_000]


def mutate_plan(plan: dict, ops) -> dict:
    for key, v, delete in ops:
        value = PLAN_VALUES[v % len(PLAN_VALUES)]
        if key.startswith("rule-"):
            rules = plan.get("rules")
            if isinstance(rules, list) and rules and isinstance(rules[v % len(rules)], dict):
                rules[v % len(rules)][key[5:]] = value
        elif delete:
            plan.pop(key, None)
        else:
            plan[key] = value
    return plan


ROW_VALUES = {
    0: ["", "x", 3, None, "tok_emb.weight"],
    1: [[], [0], [-1], [2**40], [300, 301], [1, 1, 1], "x", [True]],
    2: ["float32", "bfloat16", "int8", "float8_e4m3fn", "bool", "complex64", "", 3],
    3: ["int6", "int8", "ternary", "binary", "fp16", "int6:sdclip(12.85)", "int9", "", None, "passthrough"],
    4: [0, -1, 1, 2**62, "x", 1.5],
    5: [0, -1, 1, 2**62, "x", 1.5],
    6: [None, "tok_emb.weight", "missing", 3],
}
container_op = st.tuples(st.sampled_from(("field", "delta", "swap", "delete", "duplicate", "top")),
                         st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))


def mutate_container_header(raw: bytes, ops) -> bytes:
    (n,) = struct.unpack_from("<I", raw, len(raw) - 4)  # container v2: data, JSON header, its length
    head, data = json.loads(raw[len(raw) - 4 - n:len(raw) - 4]), raw[:len(raw) - 4 - n]
    rows = head["tensors"]
    for kind, i, j, k in ops:
        if not rows:
            break
        r = i % len(rows)
        if kind == "field":
            field = j % 7
            rows[r][field] = ROW_VALUES[field][k % len(ROW_VALUES[field])]
        elif kind == "delta" and isinstance(rows[r][4 + j % 2], int):
            rows[r][4 + j % 2] += (-1, 1, 8)[k % 3]
        elif kind == "swap":
            s = j % len(rows)
            rows[r], rows[s] = rows[s], rows[r]
        elif kind == "delete":
            del rows[r]
        elif kind == "duplicate":
            rows.insert(r, list(rows[r]))
        else:
            head[("format", "plan", "fields", "tensors")[j % 4]] = ("pgolf-container-v1", None, ["name"], {}, 3)[k % 5]
            break
    text = json.dumps(head).encode()
    return data + text + struct.pack("<I", len(text))


JSON_INSERTS = ['{', '}', '"', '\\', 'NaN', '1e999', '[' * 5000, '\x00', ',', ':', '\u00ff', 'null', '"(?P<"']
