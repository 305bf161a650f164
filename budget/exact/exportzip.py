"""The official export's torch.save bytes, streamed tensor by tensor and deterministic.

`torch.save` writes a zip of stored (uncompressed) records: `data.pkl`, a few small records,
one `data/K` record per storage in the order the pickler first meets them, `version`, a
40-digit `.data/serialization_id` derived from the other records, then the central directory.
Every record's CRC-32 sits in a data descriptor after its data and again in the central
directory (flag bit 3).

`stream_export` saves a template of the export in which the int8 values and scales are
placeholders of the right shapes, then emits the template with each placeholder's bytes
replaced by the real ones (and both CRCs fixed) as soon as the tensor is quantized, so the
compressor can start before quantization ends. Only the template's layout matters, so it is
saved into a sink that skips the placeholders' data and with torch's CRCs off; every CRC is
computed here instead. The serialization id is recomputed the way PyTorchStreamWriter derives
it (a hash of the record names, then the record CRCs folded with c10::hash_combine), so the
output is byte-identical to `torch.save` of the real export (tests compare them byte for byte)
and deterministic.

>>> import torch
>>> t = torch.ones(2, 3, dtype=torch.int8)
>>> stand_in = torch.empty(2, 3, dtype=torch.int8)
>>> size, chunks = stream_export({"q": stand_in}, {"q": stand_in}, [("q", t)])
>>> raw = b"".join(chunks)
>>> torch.load(__import__("io").BytesIO(raw), weights_only=True)["q"].tolist()
[[1, 1, 1], [1, 1, 1]]
"""
from __future__ import annotations

import bisect
import contextlib
import struct
import threading
import zipfile
import zlib
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

_U64 = (1 << 64) - 1
_DESCRIPTOR_SIG = b"PK\x07\x08"
_CENTRAL_SIG = b"PK\x01\x02"
_CRC_SWITCH = threading.Lock()


class LayoutError(Exception):
    """The template does not have the layout this module expects (caller falls back to torch.save)."""


class _LayoutSink:
    """A write target for torch.save that keeps everything but the placeholders' data.

    PyTorchStreamWriter hands each storage's data to `write` as a memoryview of the storage
    itself, so a write is recognised as a placeholder's by its address and length (the address
    is only looked up for writes of a placeholder's length: most writes are short headers).
    """

    def __init__(self, holes: dict[int, tuple[str, int]]):
        self.holes = dict(holes)        # data address -> (key, nbytes), each matched once
        self.lengths = {n for _, n in holes.values()}
        self.kept: list[bytes] = []
        self.found: dict[int, tuple[str, int]] = {}  # offset of each skipped write -> (key, nbytes), in order
        self.pos = 0

    def write(self, view) -> int:
        n = len(view)
        address = np.frombuffer(view, np.uint8).ctypes.data if n in self.lengths else None
        hole = self.holes.get(address)
        if hole is not None and hole[1] == n:
            del self.holes[address]
            self.found[self.pos] = hole
        else:
            self.kept.append(bytes(view))
        self.pos += n
        return n

    def flush(self) -> None:
        pass

    def layout(self) -> "_Layout":
        return _Layout(bytearray(b"".join(self.kept)), [(at, n) for at, (_, n) in self.found.items()], self.pos)


class _Layout:
    """The template's bytes with the placeholders' data left out: slices read those as zeros.

    `kept` holds every other byte, in order; materialising 17 MB of zeros instead cost ~20 ms of
    fresh pages per export, and only headers are ever read.
    """

    def __init__(self, kept: bytearray, holes: list[tuple[int, int]], size: int):
        self.kept, self.size = kept, size
        self.view = memoryview(kept)  # slices of it copy once, where bytearray slices would copy twice
        self.starts = [at for at, _ in holes]
        self.ends = [at + n for at, n in holes]
        self.before = [0]  # before[i]: bytes skipped ahead of hole i
        for _, n in holes:
            self.before.append(self.before[-1] + n)

    def __len__(self) -> int:
        return self.size

    def kept_at(self, pos: int) -> int:
        """Where byte `pos` of the template sits in `kept` (for a hole: where its data was left out)."""
        i = bisect.bisect_right(self.starts, pos)
        if i and pos < self.ends[i - 1]:
            return self.starts[i - 1] - self.before[i - 1]
        return pos - self.before[i]

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self.size)
        out, pos = [], start
        while pos < stop:
            i = bisect.bisect_right(self.starts, pos)
            if i and pos < self.ends[i - 1]:  # inside hole i-1
                end = min(self.ends[i - 1], stop)
                out.append(bytes(end - pos))
            else:
                end = min(self.starts[i] if i < len(self.starts) else self.size, stop)
                out.append(bytes(self.view[pos - self.before[i]:end - self.before[i]]))
            pos = end
        return out[0] if len(out) == 1 else b"".join(out)


class _LayoutFile:
    """Just enough of a read-only file over a _Layout for zipfile to list the records."""

    def __init__(self, layout: _Layout):
        self.layout, self.pos = layout, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = (offset, self.pos + offset, len(self.layout) + offset)[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = len(self.layout) if n is None or n < 0 else min(self.pos + n, len(self.layout))
        data = self.layout[self.pos:end]
        self.pos = max(end, self.pos)
        return data


@contextlib.contextmanager
def _torch_crc_off():
    """torch.save without its own CRC pass (ours replaces every CRC); a no-op where torch has no switch."""
    try:
        from torch.utils.serialization import config
        save = config.save
        before = save.compute_crc32
    except (ImportError, AttributeError):
        yield
        return
    with _CRC_SWITCH:
        save.compute_crc32 = False
        try:
            yield
        finally:
            save.compute_crc32 = before


def _records(raw: _Layout) -> list[dict]:
    """Each zip record: name, data offset, size, descriptor CRC offset, central CRC offset."""
    zf = zipfile.ZipFile(_LayoutFile(raw))
    infos = zf.infolist()
    out, pos = [], zf.start_dir
    for info in infos:
        if raw[pos:pos + 4] != _CENTRAL_SIG:
            raise LayoutError("central directory entry not where expected")
        n, m, k = struct.unpack("<HHH", raw[pos + 28:pos + 34])
        if raw[pos + 46:pos + 46 + n].decode("utf-8") != info.filename:
            raise LayoutError("central directory order differs from zipfile's")
        central_crc = pos + 16
        pos += 46 + n + m + k
        h = info.header_offset
        flags = struct.unpack("<H", raw[h + 6:h + 8])[0]
        ln, le = struct.unpack("<HH", raw[h + 26:h + 30])
        data = h + 30 + ln + le
        end = data + info.file_size
        if info.compress_type != zipfile.ZIP_STORED:
            raise LayoutError("record not stored")
        if not flags & 0x8:  # miniz writes empty records without a data descriptor
            if info.file_size:
                raise LayoutError("non-empty record without data descriptor")
            out.append({"name": info.filename, "data": data, "size": 0, "crc": None, "central": central_crc})
            continue
        crc_at = end + 4 if raw[end:end + 4] == _DESCRIPTOR_SIG else end
        if raw[crc_at:crc_at + 4] != raw[central_crc:central_crc + 4]:
            raise LayoutError("CRC not where expected")
        out.append({"name": info.filename, "data": data, "size": info.file_size, "crc": crc_at,
                    "central": central_crc})
    return out


def stream_export(template: dict, placeholders: dict[str, Tensor],
                  real: Iterable[tuple]) -> tuple[int, Iterator[bytes]]:
    """(length, chunks) of the torch.save bytes of `template` with placeholders swapped for real tensors.

    `placeholders` maps a key to a tensor inside `template` (owning its storage) whose real
    values come later; `real` yields (key, tensor or bytes[, crc32]) tuples, each before its
    record is needed (in storage order). Raises LayoutError up front if the zip layout is not
    the expected one.
    """
    holes: dict[int, tuple[str, int]] = {}
    for key, t in placeholders.items():  # tied entries share one placeholder: the first key owns it
        storage = t.untyped_storage()
        if storage.nbytes():
            holes.setdefault(storage.data_ptr(), (key, storage.nbytes()))
    sink = _LayoutSink(holes)
    with _torch_crc_off():
        torch.save(template, sink)
    if len(sink.found) != len(holes):
        raise LayoutError(f"{len(holes) - len(sink.found)} placeholder storages not written as expected")
    raw = sink.layout()
    records = _records(raw)
    for rec in records:
        rec["key"] = sink.found.pop(rec["data"], (None,))[0] if rec["size"] else None
    if sink.found:
        raise LayoutError("placeholder data outside any record")
    sid = next((r for r in records if r["name"].endswith(".data/serialization_id")), None)
    if sid is None or sid["size"] != 40 or sid is not records[-1]:
        raise LayoutError("no 40-byte serialization id record")
    return len(raw), _emit(raw, records, sid, iter(real))


def _hash_combine(seed: int, value: int) -> int:
    """c10::hash_combine on 64-bit size_t, as PyTorchStreamWriter folds record CRCs into its id."""
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & _U64)) & _U64


def _emit(raw: _Layout, records: list[dict], sid: dict, source: Iterator[tuple]) -> Iterator[bytes]:
    """The template's kept bytes with CRCs and the id patched in, and the real data where it was left out.

    Every patch lands after the last chunk handed out, so chunks are zero-copy views of one buffer.
    """
    buf, view = raw.kept, raw.view
    central: list[tuple[int, int]] = []
    ready: dict[str, tuple[bytes, int]] = {}
    combined, pos = 0, 0
    for rec in records:
        if rec["crc"] is None:  # empty record: CRC 0, not folded into the id
            continue
        at = raw.kept_at(rec["data"])
        if rec["key"] is not None:
            yield view[pos:at]  # before waiting for the data: the compressor need not wait too
            pos = at
            while rec["key"] not in ready:
                key, value, *known = next(source)
                data = value if isinstance(value, bytes) else _tensor_bytes(value)
                ready[key] = data, (known[0] if known else zlib.crc32(data))
            data, crc = ready.pop(rec["key"])
            if len(data) != rec["size"]:
                raise ValueError(f"{rec['name']}: real tensor has {len(data)} bytes, placeholder {rec['size']}")
            yield data
        else:
            if rec is sid:
                # torch's id: 20 digits hashing the record names (unchanged), 20 folding the data CRCs.
                buf[at + 20:at + 40] = f"{combined:020d}".encode("ascii")
            crc = zlib.crc32(view[at:at + rec["size"]])
        if rec is not sid:
            combined = _hash_combine(combined, crc)
        struct.pack_into("<I", buf, raw.kept_at(rec["crc"]), crc)
        central.append((raw.kept_at(rec["central"]), crc))
    for at, crc in central:  # the central directory follows the last record's data
        struct.pack_into("<I", buf, at, crc)
    yield view[pos:]


def _tensor_bytes(t: Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
