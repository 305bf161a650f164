"""Untrusted bytes to Python objects, bounded and one-line on failure: torch.load and zlib.

`torch_load_bytes` only ever runs torch.load(weights_only=True, map_location="cpu"), after checking
a zip's structure, CRC-32s and unpacked size, and the shape of its pickle (`pickle_tree_size`: shared
references can make a 300-byte pickle expand to 2^40 objects, which the unpickler would hash and a
message would print, forever); `decompress_zlib_bounded` refuses a stream whose output
would pass the limit (DEFAULT_LIMIT, or env PGOLF_MAX_DECOMPRESSED) before holding it in memory.

>>> resolve_limit(1000)
1000
"""
from __future__ import annotations

import io
import pickletools
import re
import struct
import warnings
import zipfile
import zlib

import torch

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.validate import env_int, one_line
from pgolf.budget.glossary import CAP_BYTES

DEFAULT_LIMIT = 64 * CAP_BYTES  # 1.024 GB: far above any real artifact, far below a bomb
LIMIT_ENV = "PGOLF_MAX_DECOMPRESSED"
_CHUNK = 1 << 20  # inflate 1 MB at a time when measuring a zlib stream
MAX_PICKLE_NODES = 5_000_000  # objects a pickle expands to: a state dict has about 20 per tensor
_LEGACY_PICKLES = 5  # torch's legacy format: magic, protocol, sys info, the object, storage keys


def resolve_limit(max_decompressed_bytes: int | None) -> int:
    if max_decompressed_bytes is None:
        return env_int(LIMIT_ENV, DEFAULT_LIMIT)
    if int(max_decompressed_bytes) <= 0:
        raise PgolfInputError(None, f"max_decompressed_bytes must be positive, got {max_decompressed_bytes}") from None
    return int(max_decompressed_bytes)


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def is_pickle(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def decompress_zlib_bounded(data: bytes, limit: int, path=None) -> bytes:
    """Inflate a zlib stream, refusing it once the output would pass `limit` bytes.

    A first pass inflates 1 MB at a time and keeps nothing, so a bomb costs time, not memory;
    only a stream known to fit is then inflated into memory.

    >>> decompress_zlib_bounded(zlib.compress(b"x" * 10), limit=100)
    b'xxxxxxxxxx'
    """
    d = zlib.decompressobj()
    total, pending = 0, data
    try:
        while pending and not d.eof:
            total += len(d.decompress(pending, _CHUNK))
            if total > limit:
                raise PgolfInputError(path, f"decompressed size exceeds {limit:,} bytes (decompression bomb? "
                                            f"raise the limit with {LIMIT_ENV})") from None
            pending = d.unconsumed_tail
        if not d.eof:
            total += len(d.flush())
    except zlib.error as exc:
        raise PgolfInputError(path, f"corrupt zlib stream ({one_line(exc)})") from None
    if not d.eof:
        raise PgolfInputError(path, f"truncated zlib stream (ends after {total:,} decompressed bytes)") from None
    if d.unused_data:
        raise PgolfInputError(path, f"{len(d.unused_data):,} unexpected bytes after the end of the zlib stream") from None
    return zlib.decompress(data, bufsize=max(total, 1))


def _check_zip(data: bytes, path, limit: int) -> None:
    """Structure and total unpacked size of a torch zip, before torch touches it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise PgolfInputError(path, f"decompressed size exceeds {limit:,} bytes (zip entries total {total:,})") from None
            if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
                raise PgolfInputError(path, "zip archive without data.pkl: not a torch.save file") from None
            # torch does not check the CRC-32s it writes; without this a flipped bit in a weight loads silently
            bad = zf.testzip()
            pkl = None if bad is not None else zf.read(next(i for i in infos if i.filename.endswith("/data.pkl")
                                                             or i.filename == "data.pkl"))
    except PgolfInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
            zlib.error, NotImplementedError, RuntimeError) as exc:
        raise PgolfInputError(path, f"corrupt or truncated torch zip archive ({one_line(exc, 80)})") from None
    if bad is not None:
        raise PgolfInputError(path, f"corrupt torch zip archive: CRC-32 mismatch in entry {bad[:80]!r}") from None
    _check_pickle(pkl, path, 1)


def _tree_sizes(children: list[list[int]], cap: int) -> int:
    """Largest expanded size (the object counted once per path to it) of any node of a reference
    graph, computed once per node; a reference back to a node in progress (a cycle) counts 1,
    as repr prints it `[...]`. Stops counting past `cap`.

    >>> _tree_sizes([[], [0, 0], [1, 1]], cap=100)   # ((), ()) twice: 7 objects when expanded
    7
    """
    size = [0] * len(children)
    state = bytearray(len(children))  # 0 new, 1 in progress, 2 done
    nxt = [0] * len(children)
    largest = 0
    for root in range(len(children)):
        if state[root]:
            continue
        state[root], work = 1, [root]
        while work:
            n = work[-1]
            kids = children[n]
            if nxt[n] < len(kids):
                c = kids[nxt[n]]
                nxt[n] += 1
                if not state[c]:
                    state[c] = 1
                    work.append(c)
                continue
            size[n] = min(cap, 1 + sum(size[c] if state[c] == 2 else 1 for c in kids))
            state[n] = 2
            largest = max(largest, size[n])
            work.pop()
            if largest >= cap:
                return largest
    return largest


def _pickle_graph(stream: io.BytesIO, children: list[list[int]]) -> None:
    """Replay one pickle's opcodes on a stack of node ids, recording which node holds which (no
    object is built, no global is resolved). Stops quietly at malformed input: torch will say how."""
    def new(kids=()) -> int:
        children.append(list(kids))
        return len(children) - 1

    def pop_mark() -> list[int]:
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def top() -> int:
        if len(stack) <= (marks[-1] if marks else 0):
            raise IndexError("no object above the mark")
        return stack[-1]

    def pop1() -> int:
        top()
        return stack.pop()

    stack: list[int] = []
    marks: list[int] = []  # where each open MARK starts on the stack
    memo: dict = {}
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name == "STOP":
                return
            if name == "MARK":
                marks.append(len(stack))
            elif name in ("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST"):
                stack.append(new(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                items = [pop1() for _ in range(int(name[-1]))]
                stack.append(new(items))
            elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                items = pop_mark()
                children[top()].extend(items)
            elif name in ("APPEND", "BUILD"):
                item = pop1()
                children[top()].append(item)
            elif name == "SETITEM":
                v, k = pop1(), pop1()
                children[top()] += [k, v]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = top()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg] if arg in memo else new())
            elif name == "DUP":
                stack.append(top())
            elif name == "POP_MARK":
                pop_mark()
            else:  # REDUCE, NEWOBJ, BINPERSID, GLOBAL, numbers, strings: the result may hold what it consumed
                singles = [x for x in op.stack_before if x not in (pickletools.markobject, pickletools.stackslice)]
                consumed = pop_mark() if pickletools.markobject in op.stack_before else []
                consumed += [pop1() for _ in singles]
                for _ in op.stack_after:
                    stack.append(new(consumed))
    except (ValueError, IndexError, KeyError, TypeError, EOFError, struct.error, UnicodeDecodeError):
        return


def pickle_tree_size(data: bytes, pickles: int = 1, cap: int = MAX_PICKLE_NODES) -> int:
    """How many objects the first `pickles` pickles in `data` expand to at most (shared
    references counted once per path), without unpickling anything.

    >>> import pickle
    >>> pickle_tree_size(pickle.dumps({"w": (1, 2)}, protocol=2))
    5
    """
    stream, children = io.BytesIO(data), []
    for _ in range(pickles):
        if not is_pickle(data[stream.tell():stream.tell() + 2]):
            break
        _pickle_graph(stream, children)
    return _tree_sizes(children, cap)


def _check_pickle(pkl: bytes, path, pickles: int) -> None:
    if pickle_tree_size(pkl, pickles) >= MAX_PICKLE_NODES:
        raise PgolfInputError(path, f"its pickle expands to over {MAX_PICKLE_NODES:,} objects through shared "
                                    f"references (hashing or printing it would not end); a state dict "
                                    f"holds about 20 per tensor") from None


def _unpickle_problem(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text or "WeightsUnpickler" in text or "Unsupported" in text:
        m = re.search(r"(?:unsupported GLOBAL|Unsupported global:)\s*(?:GLOBAL\s*)?([\w.]+)", text)
        what = f"global {m.group(1)}" if m else one_line(
            next((ln for ln in text.splitlines() if "Unsupported" in ln), "a disallowed pickle opcode"), 80)
        return (f"refused to unpickle {what}: only tensors and plain containers are loaded "
                f"(weights_only=True), never code")
    if "PytorchStreamReader" in text or "zip archive" in text:
        return f"corrupt torch zip archive ({one_line(text, 100)})"
    return f"cannot load torch file: {one_line(f'{type(exc).__name__}: {text}', 160)}"


def torch_load_bytes(data: bytes, path, limit: int):
    """torch.load(weights_only=True, map_location='cpu') of in-memory bytes, errors as one line."""
    if is_zip(data):
        _check_zip(data, path, limit)
    else:
        _check_pickle(data, path, _LEGACY_PICKLES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol/storage notices would break the one-line rule
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle, zip, EOF and torch errors alike: the file is bad, say how
        raise PgolfInputError(path, _unpickle_problem(exc)) from None
