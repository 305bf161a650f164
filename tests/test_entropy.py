"""Order-0 ANS (files/entropy.py) and the `ans` compressor: bit-exact roundtrips, the numpy fallback
reads constriction's stream, and the coded size sits on the order-0 floor plus the table."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgolf.budget.files import entropy
from pgolf.budget.files.compressors import best_codec_ids, get_compressor
from pgolf.budget.files.entropy import ans_segments


@st.composite
def symbol_arrays(draw):
    n = draw(st.integers(0, 3000))
    kind = draw(st.sampled_from(["uniform", "laplace", "one", "two", "wide"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if kind == "uniform":
        return rng.integers(0, 256, n).astype(np.uint8)
    if kind == "laplace":
        return np.clip(np.round(rng.laplace(0, draw(st.sampled_from([0.3, 3.0, 30.0])), n)), -127, 127) \
            .astype(np.int8).view(np.uint8)
    if kind == "one":
        return np.full(n, draw(st.integers(0, 255)), np.uint8)
    if kind == "two":
        return np.where(rng.random(n) < 0.999, 7, 200).astype(np.uint8)
    return rng.choice(np.array([0, 1, 128, 255], np.uint8), n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=symbol_arrays())
def test_roundtrip_constriction_and_numpy_fallback(s):
    blob = entropy.encode(s)
    assert np.array_equal(entropy.decode(blob), s)
    assert np.array_equal(entropy.decode_numpy(blob), s)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=symbol_arrays(), tail=st.binary(max_size=300))
def test_ans_compressor_roundtrip(s, tail):
    data = s.tobytes() + tail
    comp = get_compressor("ans")
    packed = comp.compress(data)
    assert comp.decompress(packed, max_output=len(data)) == data
    assert comp.compress_chunks([data[:7], data[7:]], len(data)) == packed
    if data:
        with pytest.raises(ValueError, match="exceeds limit"):
            comp.decompress(packed, max_output=len(data) - 1)


def test_size_is_floor_plus_table_within_a_tenth_of_a_percent():
    rng = np.random.default_rng(0)
    s = np.clip(np.round(rng.normal(0, 6, 1_000_000)), -31, 31).astype(np.int8).view(np.uint8)
    c = entropy.counts(s)
    floor = entropy.entropy_bits(c) / 8
    blob = entropy.encode(s)
    assert floor + entropy.table_bytes(c) < len(blob) <= (floor + entropy.table_bytes(c)) * 1.001 + 16
    assert math.isclose(entropy.entropy_bits(np.array([0, 1, 2, 3] * 4, np.uint8)), 32.0)


def test_table_is_exact_and_valid():
    c = np.bincount(np.r_[[3] * 1_000_000, [9]], minlength=256)
    present, f = entropy.quantize_table(c)
    assert present.tolist() == [3, 9] and f.tolist() == [65535, 1]


def test_corrupt_streams_are_value_errors():
    comp = get_compressor("ans")
    packed = comp.compress(b"abc" * 1000)
    for bad in (packed[:-1], packed + b"x", packed[:6]):
        with pytest.raises(ValueError):
            comp.decompress(bad, max_output=10_000)


def test_segments_follow_statistics():
    assert ans_segments(bytes(100_000) + bytes(range(256)) * 400) == [65536, 65536, 71328]
    assert sum(ans_segments(bytes(range(256)) * 1000)) == 256_000 and len(ans_segments(bytes(range(256)) * 1000)) == 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), axis=st.integers(0, 1), groups=st.integers(1, 20),
       seed=st.integers(0, 2 ** 16))
def test_grouped_ans_roundtrip(rows, cols, axis, groups, seed):
    from pgolf.budget.files.grouped_ans import decode_grouped, encode_grouped

    rng = np.random.default_rng(seed)
    q = np.clip(np.round(rng.normal(0, 1, (rows, cols)) * rng.random((rows, 1)) * 20), -31, 31).astype(np.int8)
    assert np.array_equal(decode_grouped(encode_grouped(q, axis, groups), q.shape), q)


def test_best_takes_the_whole_stream_when_context_wins():
    comp = get_compressor("best")
    text = b"parameter golf squeezes bytes; " * 3000  # repeats: LZ context beats any order-0 segment
    packed = comp.compress(text)
    assert packed[:4] == b"\xff\xff\xff\xff" and comp.decompress(packed, max_output=len(text)) == text
    assert len(packed) <= min(len(get_compressor(c).compress(text)) for c in ("zstd", "lzma", "brotli")) + 5
    rng = np.random.default_rng(0)
    symbols = np.clip(np.round(rng.normal(0, 6, 200_000)), -31, 31).astype(np.int8).tobytes()
    mixed = symbols + bytes(range(256)) * 300
    packed = comp.compress(mixed)
    assert packed[:4] != b"\xff\xff\xff\xff" and comp.decompress(packed, max_output=len(mixed)) == mixed
    assert len(packed) < len(get_compressor("brotli").compress(mixed))


def fp16_bytes(n: int, seed: int) -> bytes:
    return (np.random.default_rng(seed).normal(0, 0.02, n)).astype(np.float16).tobytes()


def test_best_takes_brotli_byte_shuffle_for_fp16_and_is_never_above_a_general_compressor():
    """fp16 values: high and low bytes apart (id 5) beat every unshuffled candidate; with int8
    symbols after them, each part takes its own codec and best stays below brotli + byte-shuffle."""
    comp = get_compressor("best")
    general = ("zstd", "lzma", "brotli", "brotli+byte-shuffle")
    half = fp16_bytes(100_000, 0)
    packed = comp.compress(half)
    assert packed[:5] == b"\xff\xff\xff\xff\x05" and comp.decompress(packed, max_output=len(half)) == half
    assert len(packed) == len(get_compressor("brotli+byte-shuffle").compress(half)) + 5
    assert len(packed) < 0.97 * min(len(get_compressor(c).compress(half)) for c in general[:3])
    symbols = np.clip(np.round(np.random.default_rng(1).normal(0, 6, 200_000)), -31, 31).astype(np.int8).tobytes()
    mixed = half + symbols
    packed = comp.compress(mixed)
    ids, pos = [], 4
    for _ in range(int.from_bytes(packed[:4], "little")):
        ids.append(packed[pos])
        pos += 5 + int.from_bytes(packed[pos + 1:pos + 5], "little")
    assert {0, 5} <= set(ids) and pos == len(packed), ids
    assert comp.decompress(packed, max_output=len(mixed)) == mixed
    assert len(packed) < min(len(get_compressor(c).compress(mixed)) for c in general)


def test_corrupt_best_streams_are_value_errors():
    comp = get_compressor("best")
    data = fp16_bytes(20_000, 3)
    packed = comp.compress(data)
    assert packed[4] == 5
    for bad_id in (4, 6, 255):  # 4 (a grouped matrix) never codes the whole data
        with pytest.raises(ValueError, match=f"unknown codec id {bad_id}"):
            comp.decompress(packed[:4] + bytes([bad_id]) + packed[5:], max_output=len(data))
    listed = struct.pack("<IBI", 1, 9, 3) + b"abc"  # a segment list naming an id no codec has
    for read in (lambda b: comp.decompress(b, max_output=len(data)), best_codec_ids):
        with pytest.raises(ValueError, match="unknown codec id 9"):
            read(listed)
    for bad in (packed[:4], packed[:-1], packed + b"x"):
        with pytest.raises(ValueError):
            comp.decompress(bad, max_output=len(data))
    flipped = bytearray(packed)
    flipped[len(packed) // 2] ^= 0x55
    try:  # brotli has no checksum (unlike the ans segments' CRC-32): wrong bytes may come back, nothing else
        assert len(comp.decompress(bytes(flipped), max_output=len(data))) <= len(data)
    except ValueError:
        pass


def test_without_constriction_ans_is_unavailable_with_a_reason_and_decoding_falls_back():
    import subprocess
    import sys

    blob = entropy.encode(np.frombuffer(b"golf" * 500, np.uint8)).hex()
    probe = ('import sys; sys.modules["constriction"] = None\n'
             "from pgolf.budget.files.compressors import COMPRESSORS\n"
             "from pgolf.budget.files import entropy\n"
             "c = COMPRESSORS['ans']\n"
             f"print(c.available, COMPRESSORS['best'].available, 'pip install constriction' in c.reason, "
             f"entropy.decode(bytes.fromhex('{blob}')).tobytes() == b'golf' * 500)\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.split() == ["False", "False", "True", "True"]


@st.composite
def data_with_matrices(draw):
    """Bytes with int8 matrices at known offsets (some overlapping or out of range: ignored by the coder)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    parts, matrices, pos = [], [], 0
    for _ in range(draw(st.integers(0, 4))):
        gap = rng.integers(0, 256, draw(st.integers(0, 200))).astype(np.uint8).tobytes()
        rows, cols = draw(st.integers(1, 30)), draw(st.integers(1, 30))
        q = np.clip(np.round(rng.normal(0, 1, (rows, cols)) * rng.random((1, cols)) * 20), -31, 31).astype(np.int8)
        parts += [gap, q.tobytes()]
        matrices.append((pos + len(gap), rows, cols))
        pos += len(gap) + q.size
    parts.append(draw(st.binary(max_size=100)))
    extra = draw(st.lists(st.tuples(st.integers(0, pos + 50), st.integers(0, 9), st.integers(0, 9)), max_size=2))
    return b"".join(parts), matrices + extra


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=data_with_matrices(), spec=st.sampled_from(["ans:col16", "ans:row16", "ans:col2", "ans:row64", "best"]))
def test_grouped_compressors_roundtrip_with_matrices(case, spec):
    data, matrices = case
    comp = get_compressor(spec)
    packed = comp.compress(data, matrices)
    assert comp.decompress(packed, max_output=len(data)) == data
    assert comp.compress_chunks([data[:5], data[5:]], len(data), matrices) == packed
    assert comp.decompress(comp.compress(data), max_output=len(data)) == data  # no matrices: plain ans inside
    if data:
        with pytest.raises(ValueError, match="exceeds limit"):
            comp.decompress(packed, max_output=len(data) - 1)


def test_grouped_specs_parse_and_refuse_bad_class_counts():
    from pgolf.budget.errors import PgolfInputError

    assert get_compressor("ans:col16").name == "ans:col16" and get_compressor("ans:row4").level == "row4"
    assert get_compressor("ans:col16").uses_matrices and not get_compressor("ans").uses_matrices
    assert not get_compressor("ans:col16+transpose").uses_matrices
    for bad in ("ans:col1", "ans:col65", "ans:col016", "ans:9", "ans:diag16"):
        with pytest.raises(PgolfInputError, match="rowG / colG"):
            get_compressor(bad)


def test_column_classes_pay_where_columns_differ_and_best_takes_them():
    """Columns whose scales span 100x: 16 column tables beat one table by far more than their cost,
    and `best` codes that matrix with a grouped table (id 4) instead of plain ans."""
    rng = np.random.default_rng(1)
    q = np.clip(np.round(rng.laplace(0, 1, (512, 512)) * np.geomspace(0.1, 10, 512)), -31, 31).astype(np.int8)
    data = b"\x00" * 100 + q.tobytes()
    mats = [(100, 512, 512)]
    ans, col = len(get_compressor("ans").compress(data)), len(get_compressor("ans:col16").compress(data, mats))
    row = len(get_compressor("ans:row16").compress(data, mats))
    assert col < 0.97 * ans and row > col
    best = get_compressor("best").compress(data, mats)
    assert best[:4] == (2).to_bytes(4, "little") and best[4 + 5 + struct.unpack_from("<I", best, 5)[0]] == 4
    assert len(best) <= col + 16 and get_compressor("best").decompress(best, len(data)) == data


def test_corrupt_grouped_streams_are_value_errors():
    rng = np.random.default_rng(2)
    q = np.clip(np.round(rng.laplace(0, 3, (64, 80))), -31, 31).astype(np.int8)
    data = b"head" + q.tobytes() + b"tail"
    comp = get_compressor("ans:col4")
    packed = comp.compress(data, [(4, 64, 80)])
    flipped = bytearray(packed)
    flipped[-20] ^= 0x55
    for bad in (packed[:-1], packed + b"x", packed[:9], bytes(flipped)):
        with pytest.raises(ValueError):
            comp.decompress(bad, max_output=10_000)
