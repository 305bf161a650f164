"""Schemes and storages: bits, exact payload bytes, clip rules, packing, spec strings, errors."""
from __future__ import annotations

import math

import pytest
import torch

from pgolf.budget.quant import official
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.grouping import quantile_rows
from pgolf.budget.quant.schemes import SCHEMES, IntScheme, TernaryScheme, get_scheme
from pgolf.budget.quant.packing import pack, storage_bytes, unpack


# Every scheme family x every storage it offers (plus clip/group variants).
SPECS = ["fp32", "bf16", "fp16", "fp8_e4m3", "passthrough", "int8_clean_per_row_v1",
         *[f"int{n}" for n in range(2, 9)], *[f"int{n}:packed" for n in range(2, 9)],
         "int6:amax", "int6:sdclip(12.85)", "int5:mse:packed", "int4:percentile(99.9):group(16):packed",
         "ternary", "ternary:packed", "ternary:byte", "ternary:group(7)", "binary", "binary:byte", "binary:group(5)"]
SHAPES = [(37, 53), (64,), (), (1, 1), (3, 4, 5), (0, 8), (2, 130)]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _tensor(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 0.05).to(dtype)


@pytest.mark.parametrize("spec,bits", [("fp32", 32), ("bf16", 16), ("fp16", 16), ("fp8_e4m3", 8),
                                       ("int8_clean_per_row_v1", 8), ("int6", 8), ("int6:packed", 6),
                                       ("int2:packed", 2), ("ternary", 1.6), ("ternary:packed", 2),
                                       ("ternary:byte", 8), ("binary", 1), ("binary:byte", 8)])
def test_bits_per_value(spec, bits):
    assert get_scheme(spec).bits == bits


@pytest.mark.parametrize("spec,shape,expected", [
    ("int8_clean_per_row_v1", (512, 512), (262_144, 1_024)),
    ("int8_clean_per_row_v1", (3, 4, 5), (60, 4)),          # not 2-D: one fp32 0-d scale
    ("int6", (1024, 512), (524_288, 2_048)),
    ("int5:packed", (1024, 512), (327_680, 2_048)),
    ("int6:group(100)", (10, 250), (2_500, 60)),             # ceil(250/100) = 3 groups per row
    ("ternary", (512, 512), (52_429, 4_096)),                # ceil(262144/5) bytes, 4 groups x 512 rows
    ("ternary:packed", (512, 512), (65_536, 4_096)),
    ("binary", (512, 512), (32_768, 4_096)),
    ("fp16", (1024, 512), (1_048_576, 0)),
    ("fp8_e4m3", (7,), (7, 0)),
])
def test_payload_bytes_golden(spec, shape, expected):
    assert get_scheme(spec).payload_bytes(shape, torch.float32) == expected


def test_passthrough_bits_follow_dtype():
    s = SCHEMES["passthrough"]
    assert [s.bits_for(d) for d in (torch.int64, torch.bfloat16, torch.bool)] == [64, 16, 8]
    assert s.payload_bytes((3, 5), torch.int64) == (120, 0)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", SHAPES)
def test_payload_bytes_is_what_pack_writes_and_unpack_restores(spec, shape):
    scheme = get_scheme(spec)
    t = _tensor(shape)
    q = scheme.quantize(t)
    values, scales = scheme.pack(q)
    assert (len(values), len(scales)) == scheme.payload_bytes(shape, t.dtype)
    back = scheme.unpack(values, scales, shape, t.dtype)
    assert torch.equal(back.symbols, q.symbols)
    out = scheme.dequantize(back)
    assert out.dtype == t.dtype and tuple(out.shape) == shape
    assert torch.equal(_bits(out), _bits(scheme.dequantize(q)))


@pytest.mark.parametrize("spec", SPECS)
def test_canonical_name_parses_back_to_the_same_scheme(spec):
    scheme = get_scheme(spec)
    assert get_scheme(scheme.name) == scheme


def test_official_scheme_is_bit_exact_with_the_official_export():
    sd = {"a": _tensor((300, 300), 1), "b": _tensor((70_000,), 2), "c": _tensor((4, 200, 100), 3, torch.bfloat16)}
    obj, _ = official.quantize_state_dict_int8(sd)
    ref = official.dequantize_state_dict_int8(obj)
    scheme = get_scheme("official-int8")
    for name, t in sd.items():
        q = scheme.quantize(t)
        assert torch.equal(q.symbols, obj["quantized"][name]) and torch.equal(q.scales, obj["scales"][name])
        assert torch.equal(_bits(scheme.dequantize(q)), _bits(ref[name]))


@pytest.mark.parametrize("n", range(2, 9))
def test_int_symbols_symmetric_and_amax_hits_qmax(n):
    t = _tensor((16, 200), n)
    q = get_scheme(f"int{n}:amax").quantize(t)
    qmax = 2 ** (n - 1) - 1
    assert int(q.symbols.abs().max()) == qmax and int(q.symbols.min()) >= -qmax
    assert torch.equal(q.symbols.abs().amax(dim=1), torch.full((16,), qmax, dtype=torch.int8))


def test_clip_rule_scales():
    t = _tensor((8, 300), 5)
    s_pct = get_scheme("int6:percentile(99)").quantize(t).scales[:, 0]
    assert torch.equal(s_pct, (torch.quantile(t.abs(), 0.99, dim=1) / 31).half())
    s_sd = get_scheme("int6:sdclip(12.85)").quantize(t).scales[:, 0]
    assert torch.equal(s_sd, (12.85 * t.std(dim=1) / 31).half())
    s_tern = get_scheme("ternary:group(100)").quantize(t).scales
    assert s_tern.shape == (8, 3)
    assert torch.equal(s_tern, t.abs().reshape(8, 3, 100).mean(dim=2).half())


@pytest.mark.parametrize("spec,clip", [("int6:amax:floor(1)", "amax"), ("int8:floor(1)", "pct"),
                                       ("int5:sdclip(12):floor(2)", "sd")])
def test_floor_raises_the_scale_not_the_clip(spec, clip):
    # the records' rule: scale = (clip / qmax).clamp_min(floor / qmax), values clipped at clip
    scheme = get_scheme(spec)
    qmax, floor = scheme.qmax, scheme.floor
    t = _tensor((6, 400), 9) * torch.tensor([1.0, 2.0, 5.0, 20.0, 60.0, 200.0])[:, None]  # rows below and above
    clip_at = {"amax": t.abs().amax(dim=1), "pct": torch.quantile(t.abs(), official.CLIP_PERCENTILE / 100, dim=1),
               "sd": 12 * t.std(dim=1)}[clip]
    scale = (clip_at / qmax).clamp_min(floor / qmax).half()
    symbols = torch.clamp(torch.round(torch.maximum(torch.minimum(t, clip_at[:, None]), -clip_at[:, None])
                                      / scale.float()[:, None]), -qmax, qmax).to(torch.int8)
    q = scheme.quantize(t)
    assert torch.equal(q.scales[:, 0], scale) and torch.equal(q.symbols, symbols)
    small = clip_at < floor  # rows whose own clip is under the floor get the floor's scale
    assert bool(small.any()) and not bool(small.all())
    assert bool((q.scales[small, 0] == torch.tensor(floor / qmax).half()).all())
    assert scheme.name == spec and get_scheme(scheme.name) == scheme and f"at least {floor:g}/{qmax}" in scheme.stores


@pytest.mark.parametrize("q", [0.9999984, 0.999, 0.99, 0.9, 0.5, 0.0, 1.0])
@pytest.mark.parametrize("cols", [1, 2, 7, 512, 1024, 3000])
def test_topk_quantile_is_torch_quantile_bit_for_bit(q, cols):
    g = torch.Generator().manual_seed(cols)
    a = (torch.randn(33, cols, generator=g) * 3).abs()
    a[::4] = a[::4].round()  # ties
    assert torch.equal(_bits(quantile_rows(a, q)), _bits(torch.quantile(a, q, dim=1)))
    a[1, 0] = float("nan")  # NaN propagates like torch.quantile; ignore_nan is torch.nanquantile
    assert torch.equal(_bits(quantile_rows(a, q)), _bits(torch.quantile(a, q, dim=1)))
    assert torch.equal(_bits(quantile_rows(a, q, ignore_nan=True)), _bits(torch.nanquantile(a, q, dim=1)))


def test_mse_clip_is_no_worse_than_each_candidate():
    t = _tensor((32, 256), 7)
    t[0, 0] = 2.0  # one outlier makes amax a poor clip for row 0

    def row_err(spec):
        s = get_scheme(spec)
        return ((s.dequantize(s.quantize(t)) - t) ** 2).sum(dim=1)

    best = row_err("int4:mse")
    for p in ("99", "99.9", "100"):
        assert bool((best <= row_err(f"int4:percentile({p})") + 1e-12).all())
    assert float(best[0]) < float(row_err("int4:amax")[0])


def test_ternary_and_binary_symbols():
    t = torch.tensor([[0.0, -0.3, 0.01, 0.5, -0.02, 0.2]])
    q = get_scheme("ternary").quantize(t)
    assert q.symbols.tolist() == [[0, -1, 0, 1, 0, 1]]
    assert float(q.scales) == pytest.approx(t.abs().mean().item(), rel=1e-3)
    b = get_scheme("binary").quantize(t)
    assert b.symbols.tolist() == [[1, -1, 1, 1, -1, 1]]  # sign, 0 -> +1


@pytest.mark.parametrize("spec", ["int6", "ternary", "binary", "int3:packed"])
def test_all_zero_and_constant_rows(spec):
    t = torch.zeros(3, 40)
    t[1] = 0.25
    s = get_scheme(spec)
    out = s.dequantize(s.quantize(t))
    assert torch.equal(out[0], torch.zeros(40))
    assert torch.allclose(out[1], torch.full((40,), 0.25), rtol=1e-3)


def test_fp8_saturates_instead_of_nan():
    s = get_scheme("fp8_e4m3")
    assert s.dequantize(s.quantize(torch.tensor([1000.0, -1000.0, 1.0]))).tolist() == [448.0, -448.0, 1.0]


@pytest.mark.parametrize("spec", ["int6", "fp16", "ternary", "int8_clean_per_row_v1", "passthrough"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_refused(spec, bad):
    t = torch.ones(4, 4)
    t[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        get_scheme(spec).quantize(t)


@pytest.mark.parametrize("spec,hint", [
    ("int9", "write int2 .. int8"), ("int6:sdclip", "sdclip(12.85)"), ("int6:percentile(101)", "percentile(99.9)"),
    ("int6:group(0)", "group(128)"), ("ternary:bits", "base3, packed, byte"), ("fp16:packed", "no modifiers"),
    ("int6:amax(3)", "takes no argument"), ("nope", "see `pgolf schemes`"), ("int6:wat", "does not apply"),
    ("int6:floor", "floor(1)"), ("int6:floor(0)", "floor(1)"), ("ternary:floor(1)", "does not apply"),
])
def test_bad_specs_say_what_to_write(spec, hint):
    with pytest.raises(PgolfInputError, match=None) as info:
        get_scheme(spec)
    assert hint in str(info.value)


def test_dataclass_validation_in_post_init():
    with pytest.raises(ValueError, match="N in 2..8"):
        IntScheme(nbits=1)
    with pytest.raises(ValueError, match="storage must be one of"):
        TernaryScheme(storage="bits")


# --- storage ------------------------------------------------------------------------------------
def test_storage_golden_bytes():
    sym = torch.tensor([-3, -2, -1, 0, 1, 2, 3], dtype=torch.int8)
    # int3 packed: symbol + 3 -> 0..6, 3 bits each, little-endian bit stream
    u = [0, 1, 2, 3, 4, 5, 6]
    word = sum(v << (3 * i) for i, v in enumerate(u))
    assert pack(sym, "packed", 3) == word.to_bytes(3, "little")
    assert pack(torch.tensor([-1, 1, 1, -1, 1, -1, -1, -1, 1], dtype=torch.int8), "bits", 1) == bytes([0b00010110, 1])
    assert pack(torch.tensor([1, 1, 1, 1, 1, -1], dtype=torch.int8), "base3", 2) == bytes([242, 0])
    assert pack(sym, "byte", 8) == bytes([253, 254, 255, 0, 1, 2, 3])


@pytest.mark.parametrize("storage,nbits", [("packed", n) for n in range(2, 9)] + [("base3", 2), ("bits", 1), ("byte", 8)])
@pytest.mark.parametrize("n", [0, 1, 5, 8, 9, 1001])
def test_storage_roundtrip_and_size(storage, nbits, n):
    qmax = 1 if storage in ("base3", "bits") else 2 ** (nbits - 1) - 1
    g = torch.Generator().manual_seed(n)
    sym = torch.randint(-qmax, qmax + 1, (n,), generator=g, dtype=torch.int8)
    if storage == "bits":
        sym = torch.where(sym == 0, 1, sym).to(torch.int8)
    data = pack(sym, storage, nbits)
    assert len(data) == storage_bytes(storage, n, nbits) == math.ceil(n * {"base3": 1.6, "bits": 1}.get(storage, nbits) / 8)
    assert torch.equal(unpack(data, storage, n, nbits), sym)


def test_unpack_rejects_wrong_sizes_and_bad_symbols():
    with pytest.raises(ValueError, match="needs 2 bytes, got 3"):
        unpack(b"abc", "base3", 10, 2)
    with pytest.raises(ValueError, match="corrupt base-3 byte 250"):
        unpack(bytes([250]), "base3", 5, 2)
    s = get_scheme("int3:packed")
    with pytest.raises(ValueError, match="outside"):
        s.unpack(b"\xff\xff", b"\x00\x3c", (5,), torch.float32)  # 7 = symbol 4 > qmax 3
