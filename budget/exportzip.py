"""The official export's torch.save bytes, streamed tensor by tensor and deterministic.

`torch.save` writes a zip of stored (uncompressed) records: `data.pkl`, a few small records,
one `data/K` record per storage in the order the pickler first meets them, `version`, a
40-digit `.data/serialization_id` derived from the other records, then the central directory. Every record's CRC-32 sits in a
data descriptor after its data and again in the central directory (flag bit 3).

`stream_export` saves a template of the export in which the int8 values and scales are zero
placeholders of the right shapes, then emits the template with each placeholder's bytes
replaced by the real ones (and both CRCs fixed) as soon as the tensor is quantized, so the
compressor can start before quantization ends. The serialization id is recomputed the way
PyTorchStreamWriter derives it (a hash of the record names, then the record CRCs folded with
c10::hash_combine), so the output is byte-identical to `torch.save` of the real export (tests
compare them byte for byte) and deterministic.

>>> import torch
>>> t = torch.ones(2, 3, dtype=torch.int8)
>>> stand_in = torch.zeros(2, 3, dtype=torch.int8)
>>> size, chunks = stream_export({"q": stand_in}, {"q": stand_in}, [("q", t)])
>>> raw = b"".join(chunks)
>>> torch.load(__import__("io").BytesIO(raw), weights_only=True)["q"].tolist()
[[1, 1, 1], [1, 1, 1]]
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from typing import Iterable, Iterator

import torch
from torch import Tensor

from pgolf.budget import official

_U64 = (1 << 64) - 1
_DESCRIPTOR_SIG = b"PK\x07\x08"
_CENTRAL_SIG = b"PK\x01\x02"


class LayoutError(Exception):
    """The template does not have the layout this module expects (caller falls back to torch.save)."""


def _storage_order(obj: object) -> list[int]:
    """Storage ids (`_cdata`) in the order torch.save's pickler assigns them keys 0, 1, ..."""
    order: dict[int, None] = {}

    class Recorder(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, torch.storage.TypedStorage):
                order.setdefault(o._untyped_storage._cdata, None)
                return "s"
            if torch.is_storage(o):
                order.setdefault(o._cdata, None)
                return "s"
            return None

    Recorder(io.BytesIO(), protocol=2).dump(obj)
    return list(order)


def _records(raw: bytes) -> list[dict]:
    """Each zip record: name, data offset, size, descriptor CRC offset, central CRC offset."""
    zf = zipfile.ZipFile(io.BytesIO(raw))
    infos = zf.infolist()
    out, pos = [], zf.start_dir
    for info in infos:
        if raw[pos:pos + 4] != _CENTRAL_SIG:
            raise LayoutError("central directory entry not where expected")
        n, m, k = struct.unpack_from("<HHH", raw, pos + 28)
        if raw[pos + 46:pos + 46 + n].decode("utf-8") != info.filename:
            raise LayoutError("central directory order differs from zipfile's")
        central_crc = pos + 16
        pos += 46 + n + m + k
        h = info.header_offset
        flags = struct.unpack_from("<H", raw, h + 6)[0]
        ln, le = struct.unpack_from("<HH", raw, h + 26)
        data = h + 30 + ln + le
        end = data + info.file_size
        if info.compress_type != zipfile.ZIP_STORED:
            raise LayoutError("record not stored")
        if not flags & 0x8:  # miniz writes empty records without a data descriptor
            if info.file_size:
                raise LayoutError("non-empty record without data descriptor")
            out.append({"name": info.filename, "data": data, "size": 0, "crc": None, "central": central_crc,
                        "value": info.CRC})
            continue
        crc_at = end + 4 if raw[end:end + 4] == _DESCRIPTOR_SIG else end
        if struct.unpack_from("<I", raw, crc_at)[0] != info.CRC or struct.unpack_from("<I", raw, central_crc)[0] != info.CRC:
            raise LayoutError("CRC not where expected")
        out.append({"name": info.filename, "data": data, "size": info.file_size, "crc": crc_at,
                    "central": central_crc, "value": info.CRC})
    return out


def stream_export(template: dict, placeholders: dict[str, Tensor],
                  real: Iterable[tuple[str, Tensor]]) -> tuple[int, Iterator[bytes]]:
    """(length, chunks) of the torch.save bytes of `template` with placeholders swapped for real tensors.

    `placeholders` maps a key to a tensor inside `template` (owning its storage) whose real
    values come later; `real` yields (key, tensor) pairs, each before its record is needed (in
    storage order). Raises LayoutError up front if the zip layout is not the expected one.
    """
    raw = official.serialize_export(template)
    records = _records(raw)
    order = _storage_order(template)
    storages = [r for r in records if "/data/" in r["name"] and not r["name"].endswith("serialization_id")]
    if len(storages) != len(order):
        raise LayoutError(f"{len(storages)} storage records for {len(order)} storages")
    cdata_to_key: dict[int, str] = {}
    for key, t in placeholders.items():  # tied entries share one placeholder: the first key owns it
        cdata_to_key.setdefault(t.untyped_storage()._cdata, key)
    for rec, cdata in zip(storages, order):
        rec["key"] = cdata_to_key.get(cdata)
        if rec["key"] is not None and rec["size"] != placeholders[rec["key"]].untyped_storage().nbytes():
            raise LayoutError(f"record {rec['name']} size differs from its storage")
    sid = next((r for r in records if r["name"].endswith(".data/serialization_id")), None)
    if sid is None or sid["size"] != 40 or sid is not records[-1]:
        raise LayoutError("no 40-byte serialization id record")
    return len(raw), _emit(raw, records, sid, iter(real))


def _hash_combine(seed: int, value: int) -> int:
    """c10::hash_combine on 64-bit size_t, as PyTorchStreamWriter folds record CRCs into its id."""
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & _U64)) & _U64


def _emit(raw: bytes, records: list[dict], sid: dict, source: Iterator[tuple[str, Tensor]]) -> Iterator[bytes]:
    crcs: dict[int, int] = {}
    ready: dict[str, bytes] = {}
    combined, pos = 0, 0
    for rec in records:
        if rec is sid:
            # torch's id: 20 digits hashing the record names (unchanged), 20 folding the data CRCs.
            data = raw[rec["data"]:rec["data"] + 20] + f"{combined:020d}".encode("ascii")
        elif rec.get("key") is not None and rec["size"]:
            while rec["key"] not in ready:
                key, t = next(source)
                ready[key] = _tensor_bytes(t)
            data = ready.pop(rec["key"])
        else:
            if rec["crc"] is not None:
                combined = _hash_combine(combined, rec["value"])
            continue
        if len(data) != rec["size"]:
            raise ValueError(f"{rec['name']}: real tensor has {len(data)} bytes, placeholder {rec['size']}")
        crc = zlib.crc32(data)
        if rec is not sid:
            combined = _hash_combine(combined, crc)
        crcs[rec["central"]] = crc
        yield raw[pos:rec["data"]]
        yield data
        yield raw[rec["data"] + rec["size"]:rec["crc"]] + struct.pack("<I", crc)
        pos = rec["crc"] + 4
    tail = bytearray(raw[pos:])
    for at, crc in crcs.items():
        struct.pack_into("<I", tail, at - pos, crc)
    yield bytes(tail)


def _tensor_bytes(t: Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
