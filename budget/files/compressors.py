"""Compressors (zlib, zstd, lzma, brotli, ans, zpaq, none) with byte transforms, bounded decompression.

Spec strings: `name[:level][+transform]...`, e.g. `zlib` (level 9), `zstd:19`, `lzma:6`,
`lzma:9e` (preset 9 | extreme, the default), `brotli+byte-shuffle`, `zlib+transpose(1024)`.
`brotli` is `brotli.compress(data, quality=11)` as the records call it (window lgwin 22).
`ans` is order-0 entropy coding (entropy.py) of segments whose byte statistics differ: the data
cut into 64 KiB blocks, neighbours merged while one table codes them smaller than two (so tensors
of different widths get their own tables); `zpaq` is ZPAQ (the `zpaq` package, levels 1..5);
`ans:row16` / `ans:col16` (`ans:rowG`, `ans:colG`, G in 2..64) code the int8 matrices whose
offsets and shapes the caller passes (`matrices=[(offset, rows, cols), ...]`: build.py passes every
1-byte-per-symbol quantized matrix) with one table per class of G row / column classes
(grouped_ans.py; labels, shapes and tables counted) and everything else as `ans` does.
`best` codes each of those segments with whichever of ans, zstd-22, lzma-9e, brotli-11 and
brotli-11 + byte-shuffle is smallest (measured; a byte names the choice), each given matrix that a
grouped table (rows or columns, 2..16 classes) codes smaller than ans as one segment that may also
take it, or the whole data with one of them when that is smaller still (context across segments),
so it is slow: every candidate runs twice on all data.
Transforms run before compression, their inverses after decompression:
- `byte-shuffle(S)`: bytes i, i+S, i+2S, ... grouped together for each i < S (S = 2 default:
  low and high bytes of fp16 scales apart, as the records did before brotli-11);
- `transpose(W)`: the bytes as rows of W (default 512, one baseline int8 row), written column by
  column so that equal positions of neighbouring rows sit side by side.
A trailing remainder that fills no whole stride/row is kept as-is at the end.

>>> c = get_compressor("zlib+byte-shuffle")
>>> c.name, c.decompress(c.compress(b"abcabc" * 10), max_output=60) == b"abcabc" * 10
('zlib+byte-shuffle', True)
"""
from __future__ import annotations

import dataclasses
import importlib
import lzma
import re
import struct
import zlib
from typing import Iterable, Iterator

import numpy as np

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files import entropy, grouped_ans


def _optional(module: str):
    try:
        return importlib.import_module(module), ""
    except ImportError as exc:  # listed as unavailable with the reason, never a crash
        return None, f"python package {module!r} is not importable ({exc}); pip install {module}"


_zstd, _ZSTD_REASON = _optional("zstandard")
_brotli, _BROTLI_REASON = _optional("brotli")
_zpaq, _ZPAQ_REASON = _optional("zpaq")

ZSTD_WINDOW_LOG = 27      # `zstd --long` window: 128 MiB, larger than any artifact
# brotli's own default window (4 MiB), what `brotli.compress(data, quality=11)` in the records uses,
# so pgolf counts their bytes. Quality 11 jumps between two codings ~1-3 % apart when the payload
# moves by a few bytes (benchmarks/codec_stability.py): at lgwin 24 half again as often as at 22.
BROTLI_LGWIN = 22
DEFAULT_LEVELS = {"none": None, "zlib": 9, "zstd": 22, "lzma": "9e", "brotli": 11, "ans": None, "zpaq": 5, "best": None}
LEVEL_RANGES = {"zlib": range(0, 10), "zstd": range(1, 23), "lzma": range(0, 10), "brotli": range(0, 12),
                "zpaq": range(1, 6)}
_CHUNK = 1 << 16


def _too_big(limit: int) -> ValueError:
    return ValueError(f"decompressed size exceeds limit of {limit} bytes")


# --- transforms --------------------------------------------------------------------------------
def _regroup(data: bytes, width: int, inverse: bool) -> bytes:
    """View data[:n] as (rows, width) and transpose it (inverse: transpose back)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size - arr.size % width
    if n == 0 or width == 1:
        return bytes(data)
    rows = n // width
    head = arr[:n].reshape(width, rows) if inverse else arr[:n].reshape(rows, width)
    return head.T.tobytes() + arr[n:].tobytes()


@dataclasses.dataclass(frozen=True)
class Transform:
    """A reversible byte permutation applied before compression."""

    kind: str          # byte-shuffle | transpose
    width: int

    def __post_init__(self):
        if self.kind not in TRANSFORM_DEFAULTS:
            raise ValueError(f"unknown transform {self.kind!r}; write byte-shuffle or transpose")
        if int(self.width) != self.width or self.width < 1:
            raise ValueError(f"{self.kind} needs a positive integer width, got {self.width}")

    @property
    def name(self) -> str:
        return self.kind if self.width == TRANSFORM_DEFAULTS[self.kind] else f"{self.kind}({self.width})"

    def forward(self, data: bytes) -> bytes:
        # byte-shuffle(S) is transpose with rows of S: the same permutation, different default.
        return _regroup(data, self.width, inverse=False)

    def inverse(self, data: bytes) -> bytes:
        return _regroup(data, self.width, inverse=True)


TRANSFORM_DEFAULTS = {"byte-shuffle": 2, "transpose": 512}


# --- codecs --------------------------------------------------------------------------------------
def _lzma_preset(level) -> int:
    text = str(level)
    return int(text.rstrip("e")) | (lzma.PRESET_EXTREME if text.endswith("e") else 0)


def _zstd_params(level: int, size: int):
    return _zstd.ZstdCompressionParameters.from_level(level, source_size=size, window_log=ZSTD_WINDOW_LOG,
                                                      enable_ldm=True)


def _decompress_stream(d, data: bytes, limit: int, name: str) -> bytes:
    """One whole stream through a zlib/lzma-style decompressor object, output capped at `limit`."""
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise _too_big(limit)
    if not d.eof:
        raise ValueError(f"truncated {name} stream")
    if d.unused_data:
        raise ValueError(f"{len(d.unused_data)} trailing bytes after the {name} stream")
    return out


def _decompress_zlib(data: bytes, limit: int) -> bytes:
    return _decompress_stream(zlib.decompressobj(), data, limit, "zlib")


def _decompress_lzma(data: bytes, limit: int) -> bytes:
    return _decompress_stream(lzma.LZMADecompressor(), data, limit, "lzma")


def _decompress_zstd(data: bytes, limit: int) -> bytes:
    d = _zstd.ZstdDecompressor(max_window_size=1 << ZSTD_WINDOW_LOG)
    declared = _zstd.frame_content_size(data)  # -1 when the frame does not say
    if declared > limit:
        raise _too_big(limit)
    try:
        # With a declared size zstd decodes into a buffer of exactly that size; without one,
        # max_output_size caps the buffer. Either way memory stays under the limit.
        return d.decompress(data, max_output_size=limit, allow_extra_data=False)
    except _zstd.ZstdError:
        if declared < 0 and len(d.stream_reader(data).read(limit + 1)) > limit:
            raise _too_big(limit) from None
        raise


def _decompress_brotli(data: bytes, limit: int) -> bytes:
    d = _brotli.Decompressor()
    parts, total, pos = [], 0, 0
    while not d.is_finished():
        # output_buffer_limit keeps each call's output near _CHUNK bytes (brotli >= 1.2), so a
        # bomb is stopped within one chunk of the limit.
        if pos < len(data) and d.can_accept_more_data():
            part = d.process(data[pos:pos + _CHUNK], output_buffer_limit=_CHUNK)
            pos += _CHUNK
        else:
            part = d.process(b"", output_buffer_limit=_CHUNK)
            if not part and pos >= len(data):
                break
        total += len(part)
        if total > limit:
            raise _too_big(limit)
        parts.append(part)
    if not d.is_finished():
        raise ValueError("truncated brotli stream")
    if pos < len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the brotli stream")
    return b"".join(parts)


BEST_CANDIDATES = ("ans", "zstd", "lzma", "brotli")  # the id byte is the index
GROUPED_ID = len(BEST_CANDIDATES)  # a matrix coded by grouped_ans.encode_matrix
SHUFFLED_ID = GROUPED_ID + 1  # brotli-11 + byte-shuffle: fp16 bytes' planes apart, as the records did
BEST_GROUPS = (2, 4, 8, 16)
WHOLE = 0xFFFFFFFF  # in place of the segment count: one candidate coded all the data


def _grouped_wins(data: bytes, off: int, rows: int, cols: int) -> bytes | None:
    """The smallest grouped coding of the matrix at `off` (rows or columns, BEST_GROUPS classes) when
    it beats plain `ans` of the same bytes, else None: such a matrix stays inside the neighbouring
    `ans` segments, which may share one table with other tensors."""
    seg = data[off:off + rows * cols]
    mat = np.frombuffer(seg, np.int8).reshape(rows, cols)
    grouped = min((grouped_ans.encode_matrix(mat, axis, g) for axis in (0, 1) for g in BEST_GROUPS
                   if g <= (rows, cols)[axis]), key=len, default=None)
    return grouped if grouped is not None and len(grouped) < len(entropy.compress_segments(seg)) else None


def _best_pieces(data: bytes, matrices) -> list[tuple[int, int, bytes | None]]:
    """(offset, length, grouped coding or None): `ans` segments between the matrices a grouped
    table codes smaller than plain ans, each such matrix one piece."""
    out, end = [], 0
    chosen = [(o, r, c, g) for o, r, c in grouped_ans.clean_matrices(matrices, len(data))
              if (g := _grouped_wins(data, o, r, c)) is not None]
    for off, rows, cols, grouped in chosen + [(len(data), 0, 0, None)]:
        pos = end
        for n in entropy.ans_segments(data[end:off]):
            out.append((pos, n, None))
            pos += n
        if rows:
            out.append((off, rows * cols, grouped))
        end = off + rows * cols
    return out


def _best_codings(data: bytes, grouped: bytes | None = None) -> list[tuple[int, bytes]]:
    """(id, coded bytes) of every `best` candidate for `data`."""
    coded = [(i, Compressor(c)._encode([data], len(data))) for i, c in enumerate(BEST_CANDIDATES)]
    coded.append((SHUFFLED_ID, _SHUFFLED.compress(data)))
    return coded + ([(GROUPED_ID, grouped)] if grouped is not None else [])


def _smallest(coded: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    return min(coded, key=lambda c: (len(c[1]), c[0]))  # ties keep the lower id, the plainer codec


def _best_piece(seg: bytes, grouped: bytes | None) -> bytes:
    i, blob = _smallest(_best_codings(seg, grouped))
    return struct.pack("<BI", i, len(blob)) + blob


def _compress_best(data: bytes, matrices=()) -> bytes:
    parts = [_best_piece(data[pos:pos + n], grouped) for pos, n, grouped in _best_pieces(data, matrices)]
    out = struct.pack("<I", len(parts)) + b"".join(parts)
    i, whole = _smallest(_best_codings(data))
    return struct.pack("<IB", WHOLE, i) + whole if len(whole) + 5 < len(out) else out


def _best_codec(i: int) -> "Compressor":
    return _SHUFFLED if i == SHUFFLED_ID else Compressor(BEST_CANDIDATES[i])  # ids checked by _best_segments


def _best_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(codec id, coded bytes) of each segment of a `best` stream; ValueError when the frame is cut."""
    try:
        (k,) = struct.unpack_from("<I", data, 0)
        if k == WHOLE:
            if data[4] == GROUPED_ID or data[4] > SHUFFLED_ID:  # a grouped table codes one matrix, not all
                raise ValueError(f"unknown codec id {data[4]}")
            yield data[4], data[5:]
            return
        pos = 4
        for _ in range(k):
            i, m = struct.unpack_from("<BI", data, pos)
            if i > SHUFFLED_ID:
                raise ValueError(f"unknown codec id {i}")
            if pos + 5 + m > len(data):
                raise ValueError("truncated best stream")
            yield i, data[pos + 5:pos + 5 + m]
            pos += 5 + m
    except (struct.error, IndexError):
        raise ValueError("truncated best stream") from None
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the best stream")


def best_codec_ids(data: bytes) -> frozenset[int]:
    """The codec ids a `best` stream uses: what its decoder must hold (decoder.decoder_for).

    >>> fp16 = np.random.default_rng(0).normal(0, 1, 20_000).astype(np.float16).tobytes()
    >>> sorted(best_codec_ids(Compressor("best").compress(fp16)))  # brotli-11 after the byte shuffle
    [5]
    """
    return frozenset(i for i, _ in _best_segments(data))


def _decompress_best(data: bytes, limit: int) -> bytes:
    out, total = [], 0
    for i, blob in _best_segments(data):
        part = grouped_ans.decode_matrix(blob, limit - total) if i == GROUPED_ID else \
            _best_codec(i).decompress(blob, limit - total)
        total += len(part)
        out.append(part)
    return b"".join(out)


def _decompress_zpaq(data: bytes, limit: int) -> bytes:
    out = _zpaq.decompress(data)  # the package offers no output cap: checked after
    if len(out) > limit:
        raise _too_big(limit)
    return out


_CODEC_ERRORS: tuple[type[BaseException], ...] = (zlib.error, lzma.LZMAError) + tuple(
    e for e in (getattr(_zstd, "ZstdError", None), getattr(_brotli, "error", None), getattr(_zpaq, "Error", None))
    if e)


@dataclasses.dataclass(frozen=True)
class Compressor:
    """One codec at one level, after zero or more transforms. `name` is its canonical spec."""

    codec: str
    level: int | str | None = None
    transforms: tuple[Transform, ...] = ()

    def __post_init__(self):
        if self.codec not in DEFAULT_LEVELS:
            raise ValueError(f"unknown compressor {self.codec!r}; choose one of {', '.join(DEFAULT_LEVELS)}")
        if self.level is None:
            object.__setattr__(self, "level", DEFAULT_LEVELS[self.codec])
        elif self.codec in ("none", "best") or self.codec == "ans" and not _grouped_level(self.level):
            raise ValueError(f"'{self.codec}' takes no level" if self.codec != "ans" else
                             f"ans takes no level, or rowG / colG (G classes, 2..{grouped_ans.MAX_GROUPS}), "
                             f"got {self.level!r}")
        elif not _level_ok(self.codec, self.level):
            hint = "0..9 or 0e..9e" if self.codec == "lzma" else f"{min(LEVEL_RANGES[self.codec])}.." \
                                                                   f"{max(LEVEL_RANGES[self.codec])}"
            raise ValueError(f"{self.codec} level must be {hint}, got {self.level!r}")

    @property
    def name(self) -> str:
        base = self.codec if self.level == DEFAULT_LEVELS[self.codec] else f"{self.codec}:{self.level}"
        return "+".join([base] + [t.name for t in self.transforms])

    @property
    def uses_matrices(self) -> bool:
        """Whether `compress` reads the `matrices` it is given (grouped ans, best)."""
        return not self.transforms and (self.codec == "best" or self.codec == "ans" and bool(self.level))

    @property
    def available(self) -> bool:
        return not self.reason

    @property
    def reason(self) -> str:
        return {"zstd": _ZSTD_REASON, "brotli": _BROTLI_REASON, "zpaq": _ZPAQ_REASON,
                "ans": entropy.CONSTRICTION_REASON,
                "best": entropy.CONSTRICTION_REASON or _ZSTD_REASON or _BROTLI_REASON}.get(self.codec, "")

    def require(self) -> None:
        if not self.available:
            raise PgolfInputError(None, f"compressor {self.name} is unavailable: {self.reason}")

    def _open(self, size: int, matrices=()):
        """A streaming compressor object with .compress(chunk) and .flush()."""
        if self.codec == "zlib":
            return zlib.compressobj(self.level)
        if self.codec == "lzma":
            return lzma.LZMACompressor(preset=_lzma_preset(self.level))
        if self.codec == "zstd":
            return _zstd.ZstdCompressor(compression_params=_zstd_params(self.level, size)).compressobj(size=size)
        if self.codec in ("ans", "zpaq", "best"):
            return _WholeStream(self, matrices)
        if self.codec == "brotli":
            return _BrotliStream(_brotli.Compressor(quality=self.level, lgwin=BROTLI_LGWIN))
        return _NoneStream()

    def compress(self, data: bytes, matrices=()) -> bytes:
        """`matrices`: (offset, rows, cols) of int8 matrices in `data`, for `ans:rowG`/`colG` and `best`
        (the others ignore them, as all do after a transform: the offsets would no longer hold)."""
        self.require()
        for t in self.transforms:
            data = t.forward(data)
        return self._encode([data], len(data), () if self.transforms else matrices)

    def compress_chunks(self, chunks: Iterable[bytes], size: int, matrices=()) -> bytes:
        """Compress the concatenation of `chunks` (total `size` bytes) without joining them first.

        Identical output to `compress(b"".join(chunks), matrices)`; for transform-free compressors
        the chunks are fed as they come, so a generator producing them overlaps with compression.
        `matrices` is read once every chunk is in: a list the chunk generator fills will do.
        """
        if self.transforms:
            return self.compress(b"".join(chunks))
        self.require()
        return self._encode(chunks, size, matrices)

    def _encode(self, chunks: Iterable[bytes], size: int, matrices=()) -> bytes:
        stream = self._open(size, matrices)
        out = [stream.compress(bytes(c)) for c in chunks]
        out.append(stream.flush())
        return b"".join(out)

    def decompress(self, data: bytes, max_output: int) -> bytes:
        """Inverse of `compress`; ValueError if the output would pass `max_output` bytes or the
        stream is corrupt, truncated or followed by trailing bytes."""
        self.require()
        try:
            if self.codec == "none":
                if len(data) > max_output:
                    raise _too_big(max_output)
                out = bytes(data)
            else:
                fn = {"zlib": _decompress_zlib, "lzma": _decompress_lzma, "zstd": _decompress_zstd,
                      "brotli": _decompress_brotli, "ans": entropy.decompress_segments, "zpaq": _decompress_zpaq,
                      "best": _decompress_best}[self.codec]
                fn = grouped_ans.decompress_shaped if self.codec == "ans" and self.level else fn
                out = fn(data, max_output)
        except _CODEC_ERRORS as exc:
            raise ValueError(f"corrupt {self.codec} stream ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        for t in reversed(self.transforms):
            out = t.inverse(out)
        return out


class _NoneStream:
    def compress(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        return b""


class _WholeStream:
    """Codecs that see all their input at once (ans segments it; the zpaq package has no stream)."""

    def __init__(self, comp: "Compressor", matrices=()):
        self.comp, self.parts, self.matrices = comp, [], matrices

    def compress(self, chunk: bytes) -> bytes:
        self.parts.append(chunk)
        return b""

    def flush(self) -> bytes:
        data = b"".join(self.parts)
        if self.comp.codec == "ans" and self.comp.level:
            axis, groups = _grouped_level(self.comp.level)
            return grouped_ans.compress_shaped(data, self.matrices, axis, groups)
        if self.comp.codec == "ans":
            return entropy.compress_segments(data)
        if self.comp.codec == "best":
            return _compress_best(data, self.matrices)
        return _zpaq.compress(data, level=self.comp.level, threads=1)


class _BrotliStream:
    def __init__(self, obj):
        self.obj = obj

    def compress(self, chunk: bytes) -> bytes:
        return self.obj.process(chunk)

    def flush(self) -> bytes:
        return self.obj.finish()


def _grouped_level(level) -> tuple[int, int] | None:
    """(axis, groups) of an `ans` level such as row16 / col16; None if it is not one."""
    m = re.fullmatch(r"(row|col)(\d+)", str(level))
    if not m or not 2 <= int(m.group(2)) <= grouped_ans.MAX_GROUPS or m.group(2).startswith("0"):
        return None
    return int(m.group(1) == "col"), int(m.group(2))


def _level_ok(codec: str, level) -> bool:
    if codec == "ans":
        return _grouped_level(level) is not None
    text = str(level)
    if codec == "lzma" and text.endswith("e"):
        text = text[:-1]
    return text.isdigit() and int(text) in LEVEL_RANGES[codec]


_SPEC_RE = re.compile(r"^([a-z-]+)(?:\((\d+)\))?$")


def get_compressor(spec: str | Compressor) -> Compressor:
    """The compressor a spec string names; PgolfInputError if it names none.

    >>> get_compressor("zstd:19+transpose(1024)").name
    'zstd:19+transpose(1024)'
    """
    if isinstance(spec, Compressor):
        return spec
    text = str(spec).strip()
    head, *rest = text.split("+")
    codec, _, level = head.partition(":")
    try:
        transforms = []
        for part in rest:
            m = _SPEC_RE.match(part.strip())
            if not m or m.group(1) not in TRANSFORM_DEFAULTS:
                raise ValueError(f"unknown transform {part!r}; write byte-shuffle, byte-shuffle(4), transpose, "
                                 f"transpose(1024)")
            transforms.append(Transform(m.group(1), int(m.group(2) or TRANSFORM_DEFAULTS[m.group(1)])))
        if codec not in DEFAULT_LEVELS:
            raise ValueError(f"unknown compressor {codec!r}; choose one of {', '.join(DEFAULT_LEVELS)}")
        lvl = None if level == "" else (level if codec == "lzma" and level.endswith("e") else
                                        int(level) if level.isdigit() else level)
        return Compressor(codec, lvl, tuple(transforms))
    except ValueError as exc:
        raise PgolfInputError(None, f"compressor {text!r}: {exc}") from None


COMPRESSORS: dict[str, Compressor] = {name: Compressor(name) for name in DEFAULT_LEVELS}
_SHUFFLED = Compressor("brotli", transforms=(Transform("byte-shuffle", 2),))
