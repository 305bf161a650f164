"""The exact engine: official reproduction, baseline golden numbers, roundtrips, ties, artifacts, code bytes."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest
import torch

from conftest import FIXTURE_MODELS, fixture_path
from pgolf.budget.quant import official
from pgolf.budget.exact.build import assign, build, export_object, quantize_item
from pgolf.budget.files.codebytes import code_bytes, code_sizes, wrap_source
from pgolf.budget.exact.compare import compare, compare_input
from pgolf.budget.exact.container import frame
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.build import build_artifact, fake_quantize
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.exact.measure import measure_budget, measure_input, symbol_stats, tensor_table
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.exact.inputs import load_input
from pgolf.budget.forecast.shapes import baseline_specs, param_count, synthetic_state_dict


HEADLINE = ["params", "plan", "compressor", "bytes_model", "bytes_code", "bytes_total", "cap", "headroom_bytes"]


def _bits(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def _ptz_export(path):
    return torch.load(io.BytesIO(zlib.decompress(path.read_bytes())), weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def mini():
    """1 block x 192, vocab 512: embedding and MLP matrices above 65,536 values, the rest passthrough."""
    return synthetic_state_dict(baseline_specs(num_layers=1, model_dim=192, num_heads=4, num_kv_heads=2,
                                               vocab_size=512), seed=1)


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_requantizing_final_model_reproduces_the_official_ptz(model):
    pt = fixture_path("artifacts", model, "final_model.pt")
    ptz = fixture_path("artifacts", model, "final_model.int8.ptz")
    sd = torch.load(pt, weights_only=True, map_location="cpu")
    ref = _ptz_export(ptz)
    items = [quantize_item(i) for i in assign(sd, "official-int8")]
    ours = export_object(items)
    assert list(ours) == list(ref)
    for section in ("quantized", "scales", "passthrough"):
        assert list(ours[section]) == list(ref[section])
        for name, t in ref[section].items():
            assert ours[section][name].dtype == t.dtype and torch.equal(ours[section][name], t), (section, name)
    for key in ("dtypes", "qmeta", "passthrough_orig_dtypes", "__quant_format__"):
        assert ours.get(key) == ref.get(key)
    size, ours_size = ptz.stat().st_size, len(build_artifact(sd, "official-int8", "zlib"))
    assert abs(ours_size - size) / size < 0.005


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_ptz_read_as_is_its_file_bytes_are_bytes_model(model):
    ptz = fixture_path("artifacts", model, "final_model.int8.ptz")
    report = measure_input(load_input(ptz))
    assert report.headline["bytes_model"] == ptz.stat().st_size
    assert report.headline["serialized_bytes"] == len(zlib.decompress(ptz.read_bytes()))
    assert report.headline["params"] == {"sp1024-2L-d64": 107_080, "sp1024-3L-d128": 476_812}[model]
    requant = measure_input(load_input(ptz), "int6", "zstd", per_tensor=False)
    assert requant.headline["roundtrip_exact"] and requant.headline["plan"] == "int6"


@pytest.mark.parametrize("plan,compressor,stored_plan", [("int5-mlp-int6-attn", "zstd:3", "int5-mlp-int6-attn"),
                                                          ("fp16-embed", "brotli:5", "official-int8")])
def test_pgolf_artifact_is_measured_as_stored(mini, tmp_path, plan, compressor, stored_plan):
    path = tmp_path / "model.pgolf"
    path.write_bytes(build_artifact(mini, plan, compressor))
    loaded = load_input(path)
    h = measure_input(loaded, per_tensor=False).headline
    assert (h["plan"], h["compressor"], h["bytes_model"]) == (stored_plan, compressor, path.stat().st_size)
    other = measure_input(loaded, compressor="zlib", per_tensor=False)  # same plan: stored tensors, no requantizing
    decoded = read_artifact(other.artifact)
    assert other.headline["compressor"] == "zlib" and all(torch.equal(decoded[n], t) for n, t in loaded.state_dict.items())
    pairs = compare_input(loaded, [stored_plan], [compressor, "none"]).frame
    assert pairs.loc[0, "bytes_model"] == path.stat().st_size


def test_baseline_shape_golden_numbers():
    sd = synthetic_state_dict(baseline_specs(), seed=0)
    report = measure_budget(sd, "official-int8", "zlib", per_tensor=False)
    h = report.headline
    assert h["params"] == param_count(baseline_specs()) == 17_059_912
    assert h["payload_bytes"] == 17_178_912
    assert h["serialized_bytes"] == 17_224_025
    assert h["roundtrip_exact"] is True and h["artifact"] == "official-export"
    assert h["bytes_total"] == h["bytes_model"] and h["headroom_bytes"] == 16_000_000 - h["bytes_model"]
    assert 7.2 < h["bits_per_param"] < 7.6  # the published baseline: 7.42
    assert (report.frame["kind"] == "quantized").sum() == 55 and len(report.frame) == 92
    assert h["payload_bytes"] == official.quantize_state_dict_int8(sd)[1]["int8_payload_bytes"]


@pytest.mark.parametrize("plan", ["official-int8", "fp16-embed"])
def test_streamed_export_is_byte_identical_to_torch_save(mini, plan):
    sd = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"]})  # a tie: one storage in both
    items = [quantize_item(i) for i in assign(sd, plan)]
    built = build(assign(sd, plan), plan, "zlib", keep_raw=True)
    ref = official.serialize_export(export_object(items))
    assert len(built.raw) == built.serialized_bytes and built.raw == ref
    assert built.blob == zlib.compress(ref, 9)

def _every_branch(mini):
    """The mini model plus an entry for each branch of the official rule: int, fp64, bf16 control,
    bf16 and fp16 small, a large 1-D and 3-D tensor, a 0-d scalar."""
    g = torch.Generator().manual_seed(3)
    return dict(mini, **{"extra.int": torch.arange(7), "extra.f64": torch.randn(10, dtype=torch.float64, generator=g),
                         "blocks.0.q_gain": torch.randn(4, generator=g).bfloat16(),
                         "extra.bf16": torch.randn(5, generator=g).bfloat16(),
                         "extra.fp16": torch.randn(6, generator=g).half(),
                         "extra.big1d": torch.randn(70_000, generator=g),
                         "extra.big3d": torch.randn(2, 200, 200, generator=g),
                         "extra.scalar": torch.tensor(0.5)})


@pytest.mark.parametrize("plan,keep_float", [("official-int8", ()), ("fp16-embed", ("tok_emb.weight",))])
def test_export_object_is_the_official_functions_own(mini, plan, keep_float):
    """Same torch.save bytes as official.quantize_state_dict_int8 (FP16_EMBED: keep_float) of the same model."""
    sd = _every_branch(mini)
    ours = export_object([quantize_item(i) for i in assign(sd, plan)])
    theirs = official.quantize_state_dict_int8(sd, keep_float=keep_float)[0]
    assert official.serialize_export(ours) == official.serialize_export(theirs)
    # every branch is in it: int8 per row and not, fp16 casts recorded, a control tensor widened unrecorded
    assert {"extra.big1d", "extra.big3d"} <= set(theirs["quantized"]) - set(theirs["qmeta"])
    assert "blocks.0.mlp.fc.weight" in theirs["qmeta"]
    assert theirs["passthrough_orig_dtypes"]["extra.bf16"] == "bfloat16" and "extra.fp16" not in theirs[
        "passthrough_orig_dtypes"]
    assert theirs["passthrough"]["blocks.0.q_gain"].dtype == torch.float32


@pytest.mark.parametrize("rules,recorded", [  # mini: tok_emb bf16, the MLP matrices fp32, both over the limit
    ((("tok_emb", "fp8_e4m3"),), {"tok_emb.weight": "bfloat16"}),
    ((("tok_emb", "bf16"), ("mlp.fc", "fp32")), {}),  # stored as they are: nothing to restore
    ((("tok_emb", "fp32"), ("mlp", "fp16")), {"tok_emb.weight": "bfloat16", "blocks.0.mlp.fc.weight": "float32",
                                             "blocks.0.mlp.proj.weight": "float32"}),
])
def test_a_plans_own_float_formats_in_the_official_export_read_back(mini, tmp_path, rules, recorded):
    from pgolf.budget.quant.plans import Plan

    plan = Plan("own-formats", rules)
    obj = export_object([quantize_item(i) for i in assign(mini, plan)])
    large = {n: d for n, d in obj.get("passthrough_orig_dtypes", {}).items()
             if mini[n].numel() > official.INT8_KEEP_FLOAT_MAX_NUMEL}
    assert large == recorded
    path = tmp_path / "own.ptz"
    path.write_bytes(build_artifact(mini, plan, "zlib"))
    back = read_artifact(path.read_bytes())
    expected = fake_quantize(mini, plan)
    assert all(back[n].dtype == expected[n].dtype and torch.equal(_bits(back[n]), _bits(expected[n])) for n in mini)
    report = measure_input(load_input(path))
    assert report.headline["roundtrip_exact"] and report.headline["bytes_model"] == path.stat().st_size
    schemes = report.frame.set_index("name")["scheme"]
    # read back as the plan stored them where a record tells; a tensor stored as it was is passthrough
    assert {n: schemes[n] for n in recorded} == {n: plan.scheme_for(n, mini[n]) for n in recorded}


def test_streamed_export_keeps_a_tie_in_one_storage_while_the_worker_quantizes(mini, monkeypatch):
    from pgolf.budget.exact import build as artifact

    made = artifact._placeholder

    def then_quantized(item, *layout):  # the worker finishes this item just after its stand-in is made
        stand_in = made(item, *layout)
        quantize_item(item)
        return stand_in

    monkeypatch.setattr(artifact, "_placeholder", then_quantized)
    monkeypatch.setattr(artifact, "background", lambda produce, depth=64: iter(produce()))  # no real worker
    sd = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"]})
    built = build(assign(sd, "official-int8"), "official-int8", "zlib", keep_raw=True)
    ref = official.serialize_export(export_object([quantize_item(i) for i in assign(sd, "official-int8")]))
    assert built.raw == ref


def test_export_falls_back_to_torch_save_when_the_layout_is_unknown(mini, monkeypatch):
    from pgolf.budget.exact import build as artifact, exportzip

    def refuse(*args, **kwargs):
        raise exportzip.LayoutError("test: unknown layout")

    expected = build(assign(mini, "official-int8"), "official-int8", "zlib").blob
    monkeypatch.setattr(artifact, "stream_export", refuse)
    assert build(assign(mini, "official-int8"), "official-int8", "zlib").blob == expected


def test_layout_sink_keeps_headers_and_reads_skipped_data_as_zeros():
    import ctypes

    from pgolf.budget.exact.exportzip import _LayoutSink

    hole = bytearray(b"\x07" * 6)  # a placeholder's data: recognised by its address and length
    sink = _LayoutSink({ctypes.addressof((ctypes.c_char * 6).from_buffer(hole)): ("k", 6)})
    for part in (b"head", memoryview(hole), b"tail"):
        sink.write(memoryview(part))
    layout = sink.layout()
    assert sink.found == {4: ("k", 6)} and len(layout) == 14
    assert layout[0:14] == b"head" + bytes(6) + b"tail" and layout[2:6] == b"ad\0\0" and layout[12:99] == b"il"


def _check_roundtrip(sd, plan, compressor):
    report = measure_budget(sd, plan, compressor, per_tensor=False)
    h = report.headline
    assert list(h)[:8] == HEADLINE and h["roundtrip_exact"] is True and h["bytes_model"] == len(report.artifact)
    decoded, fake = read_artifact(report.artifact), fake_quantize(sd, plan)
    # the official export groups quantized before passthrough tensors; pgolf's container keeps the order
    order = sorted if h["artifact"] == "official-export" else list
    assert order(decoded) == order(sd)
    for name, t in sd.items():
        assert fake[name].dtype == t.dtype and torch.equal(_bits(decoded[name].to(t.dtype)), _bits(fake[name]))
    return report


@pytest.mark.parametrize("plan", list(PRESETS) + ["int4:packed", "binary", "fp16", "int3:mse:group(64):packed"])
def test_every_plan_roundtrips_exactly(mini, plan):
    _check_roundtrip(mini, plan, "zlib")


@pytest.mark.parametrize("plan", ["official-int8", "int6"])
@pytest.mark.parametrize("compressor", ["none", "zstd:3", "lzma:1", "brotli:5+byte-shuffle", "zlib:1+transpose"])
def test_every_compressor_roundtrips_exactly(mini, plan, compressor):
    report = _check_roundtrip(mini, plan, compressor)
    assert report.artifact[:5] == b"PGOLF"  # framed: names its compressor


@pytest.mark.parametrize("plan", ["official-int8", "int5-mlp-int6-attn"])
def test_same_weights_same_bytes(mini, plan):
    assert build_artifact(mini, plan, "zlib") == build_artifact(dict(mini), plan, "zlib")


def test_per_tensor_rows(mini):
    frame = tensor_table(mini, "int6", "zlib")
    row = frame.set_index("name").loc["tok_emb.weight"]
    assert (row["scheme"], row["dtype"], row["numel"], row["values_bytes"], row["scales_bytes"]) == \
        ("int6", "bfloat16", 98_304, 98_304, 1_024)
    assert row["payload_bytes"] == 99_328 and 40 <= row["levels"] <= 63
    assert row["compressed_bytes"] == len(zlib.compress(
        read_payload(mini["tok_emb.weight"], "int6"), 9))
    # i.i.d. Gaussian symbols: no compressor beats the order-0 entropy of the values
    assert row["entropy_bytes"] <= row["compressed_bytes"]


def read_payload(t, spec):
    from pgolf.budget.quant.schemes import get_scheme

    s = get_scheme(spec)
    values, scales = s.pack(s.quantize(t))
    return values + scales


def test_symbol_stats_golden():
    assert symbol_stats(torch.tensor([1, 1, -1, 0], dtype=torch.int8)) == (3, 0.75)
    assert symbol_stats(torch.zeros(10, dtype=torch.int8)) == (1, 0.0)
    levels, entropy = symbol_stats(torch.arange(256, dtype=torch.int16))
    assert (levels, entropy) == (256, 256.0)


def test_tied_tensors_in_a_pgolf_container_are_stored_once_and_said_so(mini):
    untied = dict(mini)
    tied = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"]})
    copied = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"].clone()})
    r0, r1, r2 = (measure_budget(sd, "int6", "zlib", per_tensor=False) for sd in (untied, tied, copied))
    assert r1.headline["params"] == r0.headline["params"] == r2.headline["params"] - 98_304
    assert 0 < r1.headline["bytes_model"] - r0.headline["bytes_model"] < 400
    assert r2.headline["bytes_model"] - r0.headline["bytes_model"] > 40_000
    row = r1.frame.set_index("name").loc["lm_head.weight"]
    assert row["tied_to"] == "tok_emb.weight" and row["payload_bytes"] == 0
    assert any("stored once (a pgolf container choice" in n for n in r1.notes)
    decoded = read_artifact(r1.artifact)
    assert torch.equal(decoded["lm_head.weight"], decoded["tok_emb.weight"])


@pytest.mark.parametrize("plan", ["official-int8", "fp16-embed"])
def test_tied_tensors_under_the_official_export_cost_what_the_baseline_writes(mini, plan):
    tied = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"]})
    keep = ("tok_emb.weight", "lm_head.weight") if plan == "fp16-embed" else ()
    obj, _ = official.quantize_state_dict_int8(tied, keep_float=keep)
    expected = len(zlib.compress(official.serialize_export(obj), 9))
    report = measure_budget(tied, plan, "zlib", per_tensor=False)
    assert report.headline["bytes_model"] == expected  # two copies, as quantize_state_dict_int8 writes them
    copied = dict(mini, **{"lm_head.weight": mini["tok_emb.weight"].clone()})
    assert measure_budget(copied, plan, "zlib", per_tensor=False).headline["bytes_model"] == expected


@pytest.mark.parametrize("bad,word", [(float("nan"), "1 NaN and 0 Inf"), (float("-inf"), "0 NaN and 1 Inf")])
@pytest.mark.parametrize("how", ["measure_budget int6", "build_artifact int6", "build_artifact official-int8"])
def test_non_finite_weights_refused_naming_the_tensor(mini, bad, word, how):
    # build_artifact leaves the check to the quantizing worker; the message must be the same
    sd = dict(mini)
    sd["blocks.0.mlp.fc.weight"] = sd["blocks.0.mlp.fc.weight"].clone()
    sd["blocks.0.mlp.fc.weight"][3, 4] = bad
    fn, plan = how.split()
    with pytest.raises(PgolfInputError) as info:
        (measure_budget if fn == "measure_budget" else build_artifact)(sd, plan)
    assert "tensor 'blocks.0.mlp.fc.weight' has " + word in str(info.value)


def test_container_golden_bytes():
    t = torch.tensor([[0.0, 0.5, -1.0, 1.0]]).repeat(70_000, 1)
    blob = build_artifact({"w": t}, "int2", "none")
    header = json.dumps({"format": "pgolf-container-v2", "plan": "int2", "fields": ["name", "shape", "dtype",
                         "scheme", "values_bytes", "scales_bytes", "tied_to"],
                         "tensors": [["w", [70_000, 4], "float32", "int2", 280_000, 140_000, None]]},
                        separators=(",", ":")).encode()
    # clip = 1 (percentile of |w|), scale 1.0 in fp16; 0.5 rounds half to even: symbols 0, 0, -1, 1
    values = bytes([0, 0, 255, 1]) * 70_000
    scales = torch.ones(70_000, dtype=torch.float16).numpy().tobytes()
    # frame v2, uncompressed payload: the data, then the JSON header, then its uint32 length
    assert blob == b"PGOLF\x02\x00\x04none" + values + scales + header + struct.pack("<I", len(header))
    assert len(blob) == 8 + 4 + 280_000 + 140_000 + len(header) + 4  # frame 8 + L, L = len("none")


@pytest.mark.parametrize("blob,problem", [
    (b"hello world", "unknown artifact format"),
    (b"PGOLF\x03\x00\x04none", "frame version 3 is not supported"),
    (b"PGOLF\x01\x00\x04none" + b"\x05\x00\x00\x00{bad}", "frame version 1 (an older pgolf's layout"),
    (b"PGOLF\x02\x07\x04none", "unknown pgolf payload kind 7"),
    (b"PGOLF\x02\x00\x03zip" + b"x", "unknown compressor 'zip'"),
    (b"PGOLF\x02\x00\x04none" + b"{bad}\x05\x00\x00\x00", "not valid JSON"),
    (b"PGOLF\x02\x00\x04none" + b"{}\xff\x00\x00\x00", "exceeds the data"),
    (b"PGOLF\x02\x00\x04none" + b"\x00" * 3 + b'{"format":"pgolf-container-v1"}\x1f\x00\x00\x00',
     "format is 'pgolf-container-v1', expected 'pgolf-container-v2'"),
    (b"PGOLF\x02\x00\x04zlib" + zlib.compress(b"x" * 100)[:-3], "truncated zlib stream"),
    (b"\x78\x9c" + b"garbage", "corrupt zlib stream"),
])
def test_read_artifact_refuses_bad_input_in_one_line(blob, problem):
    with pytest.raises(PgolfInputError) as info:
        read_artifact(blob)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_read_artifact_checks_sizes_and_bounds(mini):
    blob = build_artifact(mini, "int6", "none")
    with pytest.raises(PgolfInputError, match="exceeds limit of 1000 bytes"):
        read_artifact(frame(0, "zlib", zlib.compress(blob[12:])), max_output_bytes=1000)
    (n,) = struct.unpack("<I", blob[-4:])
    data_end = len(blob) - 4 - n  # container v2: data, then the n-byte JSON header, then n
    with pytest.raises(PgolfInputError, match="header length .* exceeds the data"):
        read_artifact(blob[:-10])
    with pytest.raises(PgolfInputError, match="data cut off"):
        read_artifact(blob[:data_end - 10] + blob[data_end:])
    with pytest.raises(PgolfInputError, match="1 bytes between the last tensor and the header"):
        read_artifact(blob[:data_end] + b"\x00" + blob[data_end:])


def test_code_bytes_and_the_wrapper_really_runs(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import sys\nx = sum(range(10))\nif __name__ == '__main__':\n"
                      "    print('trained', x, sys.argv[1:])\n" + "# padding comment line\n" * 200)
    sizes = code_bytes(script)
    assert sizes["raw"] == script.stat().st_size == len(script.read_bytes())
    wrapped = tmp_path / "wrapped.py"
    wrapped.write_text(wrap_source(script.read_bytes()))
    assert sizes["wrapped"] == wrapped.stat().st_size < sizes["raw"]
    runs = [subprocess.run([sys.executable, str(p), "a"], capture_output=True, text=True, cwd=tmp_path)
            for p in (script, wrapped)]
    assert runs[0].stdout == runs[1].stdout == "trained 45 ['a']\n" and runs[1].returncode == 0
    assert code_sizes("é".encode()) ["raw"] == 2
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(PgolfInputError, match="not UTF-8"):
        code_bytes(bad)


def test_code_counts_toward_the_total(mini, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('x')\n" * 500)
    sizes = code_bytes(script)
    raw = measure_budget(mini, "int6", "zlib", code=script, per_tensor=False).headline
    wrapped = measure_budget(mini, "int6", "zlib", code=script, code_wrapped=True, cap=1_000_000,
                             per_tensor=False).headline
    assert raw["bytes_code"] == sizes["raw"] == 5_500 and wrapped["bytes_code"] == sizes["wrapped"]
    assert raw["bytes_total"] == raw["bytes_model"] + 5_500
    assert wrapped["headroom_bytes"] == 1_000_000 - wrapped["bytes_model"] - sizes["wrapped"]


def test_compare_matches_single_measurements(mini):
    report = compare(mini, ["official-int8", "int6", "ternary"], ["zlib", "lzma:1"])
    assert len(report.frame) == 6 and report.frame["roundtrip_exact"].all()
    for row in report.frame.itertuples():
        if row.compressor == "zlib" or row.plan == "ternary":
            single = measure_budget(mini, row.plan, row.compressor, per_tensor=False).headline
            assert row.bytes_model == single["bytes_model"] and row.headroom_bytes == single["headroom_bytes"]
    matrix = report.matrix("bytes_model")
    assert list(matrix.index) == ["official-int8", "int6", "ternary"] and list(matrix.columns) == ["zlib", "lzma:1"]
    best = report.frame.loc[report.frame["bytes_model"].idxmin()]
    assert report.headline["best"] == f"{best.plan} + {best.compressor}" and best.plan == "ternary"
    text = repr(report)
    assert "bytes_model:" in text and "bits_per_param:" in text and "headroom_bytes:" in text
    assert json.loads(report.to_json())["pairs"][0]["plan"] == "official-int8"


def test_report_renders_every_way(mini):
    r = measure_budget(mini, "ternary", "zlib")
    assert r.to_text().splitlines()[1] == f"params: {r.headline['params']:,}"
    assert "<table>" in r._repr_html_() and "| name |" in r.to_markdown()
    d = json.loads(r.to_json())
    assert list(d)[:9] == HEADLINE + ["bits_per_param"] and len(d["tensors"]) == len(mini)
    assert os.path.commonprefix([r.title, "pgolf budget"]) == "pgolf budget"


def test_engine_restores_the_callers_torch_threads(mini):
    torch.set_num_threads(2)
    try:
        fake_quantize(mini, "int6")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_background_worker_ends_when_its_consumer_is_dropped_unstarted():
    import gc
    import threading

    from pgolf.budget.exact.threads import background

    before = {t for t in threading.enumerate() if t.name == "pgolf-quantize"}
    stream = background(lambda: iter(range(2)), depth=2)  # the items fill the queue: the end marker waits
    worker = next(t for t in threading.enumerate() if t.name == "pgolf-quantize" and t not in before)
    worker.join(timeout=0.5)
    assert worker.is_alive()  # blocked on the full queue, waiting for a consumer
    del stream
    gc.collect()
    worker.join(timeout=2)
    assert not worker.is_alive()
