"""Sample compression: the real codec on K disjoint samples of an artifact's streams, anchored on entropy.

Order-0 entropy misses what codecs do past it (LZ matches, adaptive and context models, block
tables), so the estimator runs the real codec on a sample. Streams (a tensor's values or scales)
are grouped by what they hold (`group_key`: storage class, scheme, source dtype). Each group's
sample is evenly spaced 1 KiB pieces of every stream's bytes, the same fraction of each, about
1 % of the artifact in all (128 KiB to 256 KiB; every byte of groups under 32 KiB, which are
compressed whole and need no scaling). The pieces are dealt round-robin into K = DRAWS disjoint
draws, each in artifact order, and each draw is compressed on its own with the artifact's codec
settings (zstd's parameters for the full size, lzma's filters on a raw stream with a dictionary
the sample fits in, the same transforms).

Scaling needs no fitted correction: a draw's codec bytes are divided by its *anchor*, the
order-0 entropy of what the codec sees counted in windows of the codec's adaptation length
(`WINDOW_BYTES`: zlib's 16 Ki-symbol blocks, zstd's 128 KiB blocks, ans's 64 KiB segments),
Miller-Madow corrected so a short window does not read low. That ratio, codec bytes per
anchor bit, is what the codec adds to or saves on the order-0 floor; it is measured on the
sample, so it holds in whatever regime the weights are, and is applied to the anchor of the
full streams (`anchor_bits` of each stream's available bytes, scaled to its full length).
Each draw gives an estimate of the group; their mean is the estimate, their spread over
sqrt(K) its standard error (`GroupEstimate`), with the error of each stream's row correction
(rows.anchor_correction: the draws all come from the same sampled rows, so their spread cannot
show how well those rows stand for the tensor). lzma's adaptive probabilities start flat in each
stream, which costs a short draw ~10 % of its bytes and the full stream the same bytes once (ans's
table likewise): `learning_cost` measures that on the sample (two draws apart against the two as
one stream) and `scaled_draw` scales each draw net of it. What comes before a group can change how
the codec codes all of it: zstd's optimal parser carries its prices from block to block, so the official
export's pickle head costs the first group far more than its own bytes; `lead_in` measures that
on the sample behind the real head.

>>> s = sample_plan({"byte|int6|float32": [(1_000_000, b"\\x01" * 40_000)]}, 17_000_000)
>>> [(g, sum(len(d) for d in draws), full) for g, draws, full, _ in s]
[('byte|int6|float32', 32768, 1000000)]
"""
from __future__ import annotations

import dataclasses
import lzma
import math
from typing import Callable, NamedTuple

import numpy as np

from pgolf.budget.files.compressors import ZSTD_WINDOW_LOG, Compressor, get_compressor

SAMPLE_FRACTION = 0.01
SAMPLE_MIN_BYTES = 1 << 17
SAMPLE_MAX_BYTES = 1 << 18
GROUP_MIN_BYTES = 1 << 15  # a group smaller than this is compressed whole
# An artifact storing no more than a largest sample is its own sample: every stored byte, in artifact
# order, compressed as one stream (no scaling; cross-group matches counted), for the cost of one sample.
WHOLE_MAX_BYTES = SAMPLE_MAX_BYTES
PIECE_BYTES = 1 << 10
DRAWS = 4  # disjoint draws per group: their spread is the estimate's standard error
MIN_DRAW_BYTES = 1 << 13
# > any sample: same matches as the artifact's 64 MiB dictionary, no 700 MB set-up. Each call takes
# the smallest power of two (>= 64 KiB) its input fits in: the same bytes out (checked on the
# estimator's models), and a 8 KiB draw compresses in 0.9 ms instead of 2.4 ms of match-finder set-up.
_LZMA_SAMPLE_DICT = 1 << 22
_LZMA_MIN_DICT = 1 << 16
# How far each codec's statistics reach (bytes): zlib level 9 emits a block per 16 Ki symbols
# (lit_bufsize), zstd codes 128 KiB blocks, ans starts a table per 64 KiB; lzma's and brotli's
# adaptive models follow a few KiB.
WINDOW_BYTES = {"zlib": 1 << 14, "zstd": 1 << 17, "ans": 1 << 16, "lzma": 1 << 12, "brotli": 1 << 14}
DEFAULT_WINDOW = 1 << 14
H_FLOOR = 0.5  # bits per byte: history_factor's 1 / h term stays finite on near-constant bytes
# Codecs that pay a cost each stream start which the full stream pays about once, measured on the
# sample (estimate_group): lzma's literal and match probabilities start flat (~100-250 B per draw);
# ans stores a table per segment, and a group's alike 64 KiB blocks merge into one (~300 B for fp16).
LEARNING_CODECS = ("lzma", "ans")
# head + group lengths at which lead_in measures what a head does to the group behind it
LEAD_IN_BYTES = (1 << 17, 1 << 19)


class StreamSample(NamedTuple):
    """One stream of a group: its full byte count, its available sample bytes, and what its rows'
    statistics say of them (streams.Stream.anchor_factor, anchor_rel_se)."""

    n: int
    sample: bytes
    anchor_factor: float = 1.0
    anchor_rel_se: float = 0.0


def group_key(cls: str, scheme: str, dtype: str) -> str:
    """'class|scheme|source dtype' of a stream: streams that share it hold alike bytes."""
    return f"{cls}|{scheme}|{dtype}"


def group_class(key: str) -> str:
    return key.split("|", 1)[0]


def sample_budget(total_bytes: int) -> int:
    """Sample bytes for an artifact of `total_bytes` stored bytes (about 1 %, clamped)."""
    return int(min(max(total_bytes * SAMPLE_FRACTION, SAMPLE_MIN_BYTES), SAMPLE_MAX_BYTES))


def window_of(compressor: str | Compressor) -> int:
    return WINDOW_BYTES.get(get_compressor(compressor).codec, DEFAULT_WINDOW)


def anchor_bits(data: bytes, window: int) -> float:
    """Order-0 entropy of `data` counted per window of `window` bytes, Miller-Madow corrected, total bits.

    >>> anchor_bits(bytes(range(256)) * 64, 1 << 14) > 8 * 16384
    True
    >>> anchor_bits(bytes(5000), 4096)
    0.0
    """
    arr = np.frombuffer(data, np.uint8)
    if arr.size == 0:
        return 0.0
    counts = np.stack([np.bincount(arr[i:i + window], minlength=256)
                       for i in range(0, arr.size, window)]).astype(np.float64)
    n = counts.sum(axis=1)
    seen = counts > 0
    # sum over windows of n log n - sum c log c: one log per cell, no division
    c_log_c = np.log2(counts, out=np.zeros_like(counts), where=seen) * counts
    plug = float((n * np.log2(n)).sum() - c_log_c.sum())
    return max(plug, 0.0) + float((seen.sum(axis=1) - 1).clip(min=0).sum() / (2 * math.log(2)))


def _piece_starts(length: int, want: int) -> list[int]:
    """Start offsets of `want` bytes of a `length`-byte stream as evenly spaced PIECE_BYTES pieces
    (one middle run when fewer than two pieces); even offsets keep byte-shuffle lanes aligned."""
    want = min(want, length)
    want -= want % 2
    if want < 2 * PIECE_BYTES:
        start = (length - want) // 2
        return [start - start % 2]
    k = want // PIECE_BYTES
    step = (length - PIECE_BYTES) / (k - 1)
    return [int(i * step) & ~1 for i in range(k)]


def _pieces(blob: bytes, want: int) -> list[bytes]:
    """`want` bytes of `blob` as evenly spaced pieces. Spread, because rows differ along a tensor
    (embedding rows of rare and frequent tokens), yet each piece long enough to look alike."""
    want = min(want, len(blob))
    want -= want % 2
    size = want if want < 2 * PIECE_BYTES else PIECE_BYTES
    return [blob[a:a + size] for a in _piece_starts(len(blob), want)]


def sample_plan(groups: dict[str, list[tuple[int, bytes]]], total_bytes: int, draws: int = DRAWS
                ) -> list[tuple[str, list[bytes], int, list[tuple]]]:
    """(group, draws, full bytes, streams) per group; `groups` maps a group to its streams as
    StreamSample or (full byte count, available sample bytes of that stream), in artifact order.
    A group small enough to take whole is one draw holding every byte."""
    budget = sample_budget(total_bytes)
    out = []
    for key, streams in groups.items():
        full = sum(s[0] for s in streams)
        if full == 0:
            continue
        want = max(min(full, GROUP_MIN_BYTES), budget * full / max(total_bytes, 1))
        frac = min(1.0, want / full)
        if frac >= 1.0 and all(len(s[1]) == s[0] for s in streams):
            out.append((key, [b"".join(s[1] for s in streams)], full, streams))
            continue
        k = max(2, min(draws, int(want) // MIN_DRAW_BYTES))  # small groups: fewer, longer draws
        dealt: list[list[bytes]] = [[] for _ in range(k)]
        turn = 0
        for n, s, *_ in streams:  # round-robin over all pieces, in artifact order: disjoint, alike draws
            for piece in _pieces(s, max(2, int(round(n * frac)))):
                dealt[turn % k].append(piece)
                turn += 1
        blobs = [b"".join(d) for d in dealt if d]
        if blobs:
            out.append((key, blobs, full, streams))
    return out


def sample_codec(compressor: str | Compressor, full_bytes: int) -> Callable[[bytes], int]:
    """Compressed length of a sample under the artifact's codec settings for `full_bytes` of input."""
    comp = get_compressor(compressor)
    forward = forward_transforms(comp)
    if comp.codec == "lzma":
        preset = int(str(comp.level).rstrip("e")) | (lzma.PRESET_EXTREME if str(comp.level).endswith("e") else 0)

        def lzma_size(data: bytes) -> int:
            data = forward(data)
            dict_size = min(max(_LZMA_MIN_DICT, 1 << max(len(data) - 1, 1).bit_length()), _LZMA_SAMPLE_DICT)
            filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size}]
            return len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters))
        return lzma_size
    if comp.codec == "zstd":
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            comp.level, source_size=max(full_bytes, 1), window_log=ZSTD_WINDOW_LOG, enable_ldm=True)
        codec = zstandard.ZstdCompressor(compression_params=params)
        return lambda data: len(codec.compress(forward(data)))
    return lambda data: len(comp.compress(data))  # zlib, brotli, ans: cheap to set up, transforms included


def forward_transforms(compressor: str | Compressor) -> Callable[[bytes], bytes]:
    """The compressor's transforms (byte-shuffle, ...) as one function: what its codec sees."""
    comp = get_compressor(compressor)

    def forward(data: bytes) -> bytes:
        for t in comp.transforms:
            data = t.forward(data)
        return data
    return forward


@dataclasses.dataclass(frozen=True)
class Draw:
    """One draw of a group: its bytes, codec bytes (less the empty-input bytes) and anchor bits."""

    n: int
    compressed: int
    anchor: float

    def bits_per_byte(self) -> float:
        return self.anchor / max(self.n, 1)


@dataclasses.dataclass(frozen=True)
class GroupEstimate:
    """One group: codec bytes of its draws, their sample bytes, the full bytes and anchor, the
    estimate and its standard error from the draws' spread."""

    compressed: int
    sample: int
    full: int
    estimate: float
    sd: float
    draws: tuple[Draw, ...] = ()
    full_anchor: float = 0.0
    learning: float = 0.0  # codec bytes each draw pays to learn, paid once by the full stream
    rows_sd: float = 0.0   # the part of sd from the sampled rows (rows.anchor_correction), in bytes


def history_factor(coef: dict | None, draw: Draw, full: int) -> float:
    """full-stream codec bytes per anchor bit over a draw's: 1 - (a0 + a1 h + a2 / h) log2(full / n).

    Codecs code a long stream better per anchor bit than a short one (more history for matches,
    adaptive models learnt once); the slope depends on the bits per byte h: low-entropy bytes
    gain most, lzma's adaptive literal and match models steeply so (a2 / h; h floored at
    H_FLOOR). a0, a1, a2 per codec and class come from benchmarks/fit_estimator.py (a2 absent: 0).

    >>> history_factor({"a0": 0.01, "a1": -0.001}, Draw(1024, 100, 4096.0), 4096)  # h = 4, log2 = 2
    0.988
    >>> history_factor({"a0": 0.0, "a1": 0.0, "a2": 0.02}, Draw(1024, 100, 4096.0), 4096)
    0.99
    """
    if not coef or full <= draw.n:
        return 1.0
    h = draw.bits_per_byte()
    slope = coef["a0"] + coef["a1"] * h + coef.get("a2", 0.0) / max(h, H_FLOOR)
    return max(0.5, 1.0 - slope * math.log2(full / draw.n))


def learning_cost(draws: list[bytes], sizes: list[int], size_of: Callable[[bytes], int], empty: int) -> float:
    """Codec bytes a stream start costs past the steady rate, measured: the first two draws apart
    less the two as one stream (the second then starts with what the first taught), at most half
    the smaller draw's bytes; 0 with fewer than two draws.

    >>> learning_cost([b"ab", b"cd"], [7, 7], lambda d: len(d) + 5, 0)  # 7 + 7 - (4 + 5)
    3.5
    """
    if len(draws) < 2:
        return 0.0
    saved = sizes[0] + sizes[1] - max(size_of(draws[0] + draws[1]) - empty, 0)
    return float(min(max(saved, 0), min(sizes[0], sizes[1]) / 2))


def estimate_group(draws: list[bytes], full: int, streams: list[StreamSample], size_of: Callable[[bytes], int],
                   empty: int, window: int, forward: Callable[[bytes], bytes], coef: dict | None = None,
                   learns: bool = False) -> GroupEstimate:
    """A group's compressed bytes from its draws: each draw's codec bytes (less the codec's bytes for
    empty input, paid once per artifact) per anchor bit, times the full streams' anchor bits and
    the history factor; the estimate is their mean, the standard error their spread / sqrt(K).
    `learns`: the codec's learning cost (learning_cost) is taken off each draw before scaling and
    added once, as the full stream pays it once.

    >>> blob = bytes(range(256)) * 16
    >>> e = estimate_group([blob], len(blob), [(len(blob), blob)], lambda d: len(d) + 5, 5, 1 << 14, bytes)
    >>> e.estimate, e.sd
    (4096.0, 0.0)
    """
    sizes = [max(size_of(d) - empty, 0) for d in draws]
    sample = sum(len(d) for d in draws)
    if len(draws) == 1 and sample == full:  # every byte, one stream: measured, not scaled
        return GroupEstimate(sizes[0], sample, full, float(sizes[0]), 0.0)
    full_anchor, anchor_sd = full_anchor_bits([StreamSample(*s) for s in streams], window, forward)
    ds = tuple(Draw(len(d), size, anchor_bits(forward(d), window)) for d, size in zip(draws, sizes))
    learning = learning_cost(draws, sizes, size_of, empty) if learns else 0.0
    per_draw = [scaled_draw(d, full, full_anchor, coef, learning) for d in ds]
    point = float(np.mean(per_draw))
    draws_sd = float(np.std(per_draw, ddof=1) / math.sqrt(len(per_draw))) if len(per_draw) > 1 else 0.0
    # the draws share the sampled rows, so their spread misses how those rows stand for the tensor
    rows_sd = max(point - learning, 0.0) * anchor_sd / full_anchor if full_anchor > 0 else 0.0
    return GroupEstimate(sum(sizes), sample, full, point, math.hypot(draws_sd, rows_sd), ds, full_anchor, learning,
                         rows_sd)


def full_anchor_bits(streams: list[StreamSample], window: int, forward: Callable[[bytes], bytes]
                     ) -> tuple[float, float]:
    """(anchor bits of the full streams, their sd): each stream's sample anchor scaled to its full
    length and by its rows' anchor_factor; the sd from the rows' regression, independent per stream.

    >>> bits, sd = full_anchor_bits([StreamSample(8192, bytes(range(256)) * 16, 0.5, 0.1)], 1 << 14, bytes)
    >>> round(bits), round(sd)  # 4096 bytes of 8 bits (+ Miller-Madow), twice over, halved
    (32952, 3295)
    """
    total, var = 0.0, 0.0
    for s in streams:
        if s.sample:
            part = anchor_bits(forward(s.sample), window) * s.n / len(s.sample) * s.anchor_factor
            total += part
            var += (part * s.anchor_rel_se) ** 2
    return total, math.sqrt(var)


def scaled_draw(d: Draw, full: int, full_anchor: float, coef: dict | None, learning: float = 0.0) -> float:
    """One draw's estimate of its group: (its bytes less the learning cost) per anchor bit, times the
    full anchor and the history factor, plus the learning cost once.

    >>> scaled_draw(Draw(1024, 110, 800.0), 4096, 3200.0, None, 10.0)  # (110 - 10) * 4 + 10
    410.0
    """
    steady = d.compressed - learning
    # a draw of one repeated byte has no entropy: scale its bytes by length instead
    scaled = steady * full_anchor / d.anchor if d.anchor > 0 and full_anchor > 0 else steady * full / d.n
    return scaled * history_factor(coef, d, full) + learning


def lead_in(head: bytes, first: bytes, full: int, size_of: Callable[[bytes], int]) -> tuple[float, float]:
    """(bytes, sd) that `head` adds to the group behind it, past both compressed alone, at the
    group's `full` length; `first` is the start of that group's sample (its bytes in artifact order).

    zstd's optimal parser (btopt and up: level 16+) prices literals and matches from the previous
    block's statistics, so what the first block holds steers every later block. The official
    export opens with the pickle naming every tensor: text full of real matches, after which the
    parser codes int8 values as short spurious matches (12 % worse per block at 2.5 bits per
    value) and, its statistics feeding themselves, does not recover. Draws compressed alone never
    see it, so it is measured here: `head` in front of the first LEAD_IN_BYTES of the group's
    sample against both compressed apart, at two lengths, extrapolated as a power law in the
    length (exponent from the two, within [0, 1]: damage that persists grows in proportion,
    damage that fades grows less). The extrapolated part is uncertain by half of itself.

    >>> lead_in(b"", b"x" * 100, 100, len)
    (0.0, 0.0)
    >>> lead_in(b"hh", bytes(300_000), 1_000_000, lambda d: len(d) // 2)  # no interaction
    (0.0, 0.0)
    """
    if not head or not first:
        return 0.0, 0.0
    alone = size_of(head)

    def extra(n: int) -> tuple[int, int]:
        s = first[:max(n - len(head), 0)]
        return size_of(head + s) - size_of(s) - alone, len(s)

    (e1, n1), (e2, n2) = extra(LEAD_IN_BYTES[0]), extra(LEAD_IN_BYTES[1])
    if n2 >= full or n2 <= n1:  # the whole group measured, or all the sample holds
        return float(e2), 0.0 if n2 >= full else abs(float(e2)) * 0.5
    alpha = min(max(math.log(e2 / e1) / math.log(n2 / n1), 0.0), 1.0) if e1 > 0 and e2 > 0 else 0.0
    at_full = e2 * (full / n2) ** alpha
    return float(at_full), float(abs(at_full - e2) / 2)


def class_coef(history: dict | None, key: str) -> dict | None:
    """The history coefficients for a group: its storage class's, else the codec's pooled ones."""
    if not history:
        return None
    return history.get("classes", {}).get(group_class(key)) or history.get("all")


def compress_groups(plan, compressor: str | Compressor, total_bytes: int, history: dict | None = None
                    ) -> dict[str, GroupEstimate]:
    """group -> GroupEstimate for a `sample_plan`; `history` is a fit's per-class history coefficients."""
    size_of = sample_codec(compressor, total_bytes)
    empty = size_of(b"")
    window, forward = window_of(compressor), forward_transforms(compressor)
    learns = get_compressor(compressor).codec in LEARNING_CODECS
    return {key: estimate_group(draws, full, streams, size_of, empty, window, forward, class_coef(history, key), learns)
            for key, draws, full, streams in plan}
