"""Sample compression: the real codec on a small, layout-faithful sample of an artifact's streams.

Order-0 entropy misses what codecs do past it (LZ matches, adaptive and context models, block
tables), so the estimator compresses a sample with the real codec and scales it up. Streams (a
tensor's values or scales) are grouped by what they hold (`group_key`: storage class, scheme,
source dtype), since mixing unlike data in one block costs a block-based codec (zstd, zlib)
bits the artifact, where each tensor fills whole blocks, does not pay. Each group's sample is a
few evenly spaced 1 KiB pieces of every stream's bytes, the same fraction of each, in artifact
order; together about 1 % of the artifact (128 KiB to 256 KiB, every byte of groups under
32 KiB). An artifact of at most 256 KiB stored bytes is compressed whole instead (estimate.py's
whole_payload): there a sample would be most of it and the scaling its noisiest. The codec
runs with the artifact's own settings (zstd's parameters for the full size, lzma's filters
on a raw stream with a dictionary the sample fits in, the same transforms).

Scaling a group's compressed sample C up by r = full bytes / sample bytes overstates what a
codec learns once (tables, adaptive statistics) and misses what it gains from more data
(matches, better-trained models); a correction fitted per compressor and storage class
(benchmarks/fit_estimator.py) takes both out: C r (1 + alpha log2 r) - beta (r - 1).

>>> s = sample_plan({"byte|int6|float32": [(1_000_000, b"\\x01" * 40_000)]}, 17_000_000)
>>> [(g, len(blob), full) for g, blob, full in s]
[('byte|int6|float32', 32768, 1000000)]
"""
from __future__ import annotations

import lzma
import math
from typing import Callable

from pgolf.budget.files.compressors import ZSTD_WINDOW_LOG, Compressor, get_compressor

SAMPLE_FRACTION = 0.01
SAMPLE_MIN_BYTES = 1 << 17
SAMPLE_MAX_BYTES = 1 << 18
GROUP_MIN_BYTES = 1 << 15  # a group smaller than this is compressed whole
# An artifact storing no more than a largest sample is its own sample: every stored byte, in artifact
# order, compressed as one stream (no scaling; cross-group matches counted), for the cost of one sample.
WHOLE_MAX_BYTES = SAMPLE_MAX_BYTES
PIECE_BYTES = 1 << 10
_LZMA_SAMPLE_DICT = 1 << 22  # > any sample: same matches as the artifact's 64 MiB dictionary, no 700 MB set-up


def group_key(cls: str, scheme: str, dtype: str) -> str:
    """'class|scheme|source dtype' of a stream: streams that share it hold alike bytes."""
    return f"{cls}|{scheme}|{dtype}"


def group_class(key: str) -> str:
    return key.split("|", 1)[0]


def sample_budget(total_bytes: int) -> int:
    """Sample bytes for an artifact of `total_bytes` stored bytes (about 1 %, clamped)."""
    return int(min(max(total_bytes * SAMPLE_FRACTION, SAMPLE_MIN_BYTES), SAMPLE_MAX_BYTES))


def _pieces(blob: bytes, want: int) -> bytes:
    """`want` bytes of `blob` as evenly spaced pieces of PIECE_BYTES (one middle piece when fewer);
    even lengths and offsets keep byte-shuffle lanes aligned. Spread, because rows differ along a
    tensor (embedding rows of rare and frequent tokens), yet each piece long enough to look alike."""
    want = min(want, len(blob))
    want -= want % 2
    if want < 2 * PIECE_BYTES:
        start = (len(blob) - want) // 2
        start -= start % 2
        return blob[start:start + want]
    k = want // PIECE_BYTES
    step = (len(blob) - PIECE_BYTES) / (k - 1)
    starts = [int(i * step) & ~1 for i in range(k)]
    return b"".join(blob[a:a + PIECE_BYTES] for a in starts)


def sample_plan(groups: dict[str, list[tuple[int, bytes]]], total_bytes: int) -> list[tuple[str, bytes, int]]:
    """(group, sample bytes, full bytes) per group; `groups` maps a group to its streams as
    (full byte count, available sample bytes of that stream), in artifact order."""
    budget = sample_budget(total_bytes)
    out = []
    for key, streams in groups.items():
        full = sum(n for n, _ in streams)
        if full == 0:
            continue
        want = max(min(full, GROUP_MIN_BYTES), budget * full / max(total_bytes, 1))
        frac = min(1.0, want / full)
        if frac >= 1.0 and all(len(s) == n for n, s in streams):
            blob = b"".join(s for _, s in streams)
        else:
            blob = b"".join(_pieces(s, max(2, int(round(n * frac)))) for n, s in streams)
        if blob:
            out.append((key, blob, full))
    return out


def sample_codec(compressor: str | Compressor, full_bytes: int) -> Callable[[bytes], int]:
    """Compressed length of a sample under the artifact's codec settings for `full_bytes` of input."""
    comp = get_compressor(compressor)

    def forward(data: bytes) -> bytes:
        for t in comp.transforms:
            data = t.forward(data)
        return data

    if comp.codec == "lzma":
        preset = int(str(comp.level).rstrip("e")) | (lzma.PRESET_EXTREME if str(comp.level).endswith("e") else 0)
        filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": _LZMA_SAMPLE_DICT}]
        return lambda data: len(lzma.compress(forward(data), format=lzma.FORMAT_RAW, filters=filters))
    if comp.codec == "zstd":
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            comp.level, source_size=max(full_bytes, 1), window_log=ZSTD_WINDOW_LOG, enable_ldm=True)
        codec = zstandard.ZstdCompressor(compression_params=params)
        return lambda data: len(codec.compress(forward(data)))
    return lambda data: len(comp.compress(data))  # zlib, brotli: cheap to set up, transforms included


def scaled_bytes(compressed: int, sample: int, full: int, coef: dict | None) -> float:
    """A group's estimated compressed bytes from its sample's: C r (1 + alpha log2 r) - beta (r - 1)."""
    if sample <= 0:
        return 0.0
    r = full / sample
    if r <= 1.0 or not coef:
        return compressed * r
    return max(0.0, compressed * r * (1 + coef["alpha"] * math.log2(r)) - coef["beta"] * (r - 1))


def compress_groups(plan: list[tuple[str, bytes, int]], compressor: str | Compressor,
                    total_bytes: int) -> dict[str, tuple[int, int, int]]:
    """group -> (compressed sample bytes, sample bytes, full bytes)."""
    size_of = sample_codec(compressor, total_bytes)
    return {key: (size_of(blob), len(blob), full) for key, blob, full in plan}
