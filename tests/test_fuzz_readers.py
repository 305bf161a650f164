"""Hypothesis-driven mutation of real files through every reader: refused with one line, or loaded
and valid; never another exception, never a hang.

Seeds: the fixtures' final_model.pt and final_model.int8.ptz, a pgolf checkpoint (safetensors +
sidecar) made from the fixture, a data shard of real tokenizer output, and a plan JSON. Mutations:
truncation, bit flips, byte edits/insertions/deletions near the header, the tail and anywhere;
edits of the pickle inside the zip; and structural edits (load, mutate, re-save): swapped,
deleted, renamed and retyped tensors, keys and header fields. PGOLF_FUZZ_CASES sets the number
of cases per reader (default 2,000); the counts are printed in the run's summary.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from bad_inputs import good_sidecar, torch_bytes
from conftest import fixture_path
from fuzzing import (JSON_INSERTS, SIDECAR_KEYS, SIDECAR_VALUES, TOP_KEYS, VOCAB, Fuzzer, apply_byte_ops,
                     apply_dict_op, apply_export_op, apply_header_ops, byte_ops, check_loaded, container_op,
                     dict_ops, export_op, fuzz_settings, header_op, mutate_container_header, mutate_entry,
                     mutate_plan, zip_entries)
from pgolf.budget.quant.official import quantize_state_dict_int8
from pgolf.budget.exact.inputs import load_bytes, load_checkpoint_bytes
from pgolf.budget.files.validate import parse_json_bytes, parse_shard_bytes

# --- seeds ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Thousands of tiny tensor ops: a second intra-op thread only adds synchronisation, and under
    pytest-xdist on 2 cores it oversubscribes the machine (measured: 100 us -> 3 ms per op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def seeds():
    pt = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt").read_bytes()
    ptz = fixture_path("artifacts", "sp1024-2L-d64", "final_model.int8.ptz").read_bytes()
    ptz128 = fixture_path("artifacts", "sp1024-3L-d128", "final_model.int8.ptz").read_bytes()
    sd = torch.load(io.BytesIO(pt), weights_only=True, map_location="cpu")
    # The d64 export has no int8 tensor: add a 2-D one (per-row scales) and a 3-D one (0-d scale)
    gen = torch.Generator().manual_seed(0)
    extra = dict(sd, **{"extra.fc.weight": torch.randn(300, 300, generator=gen) * 0.02,
                        "extra.conv.weight": torch.randn(50, 40, 40, generator=gen) * 0.02})
    exports = [torch.load(io.BytesIO(zlib.decompress(ptz128)), weights_only=True, map_location="cpu"),
               quantize_state_dict_int8(extra)[0]]
    return {"pt": pt, "pt_entries": zip_entries(pt), "sd": sd, "ptz": ptz, "ptz_payload": zlib.decompress(ptz),
            "exports": exports}


# --- the readers ------------------------------------------------------------------------------

pt_case = st.one_of(st.tuples(st.just("bytes"), byte_ops, st.just(0)),
                    st.tuples(st.just("pickle"), byte_ops, st.integers(0, 100)),
                    st.tuples(st.just("dict"), dict_ops, st.just(0)))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_fuzz_state_dict_pt(seeds, record_property):
    fuzz = Fuzzer("state-dict .pt", check_loaded)

    @fuzz_settings()
    @given(pt_case)
    def case(spec):
        kind, ops, pick = spec
        if kind == "bytes":
            data = apply_byte_ops(seeds["pt"], ops)
        elif kind == "pickle":
            kind, data = mutate_entry(seeds["pt_entries"], pick, ops)
        else:
            obj: object = dict(seeds["sd"])
            for op in ops:
                obj = apply_dict_op(obj, op) if isinstance(obj, dict) else obj
            data = torch_bytes(obj)
        fuzz.run(kind, repr(spec)[:300], load_bytes, data, "fuzz.pt")

    case()
    fuzz.finish(record_property)


ptz_case = st.one_of(st.tuples(st.just("compressed"), byte_ops, st.just(0)),
                     st.tuples(st.just("payload"), byte_ops, st.just(0)),
                     st.tuples(st.just("pickle"), byte_ops, st.integers(0, 100)),
                     st.tuples(st.just("export"), st.lists(export_op, min_size=1, max_size=3), st.integers(0, 1)))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_fuzz_official_ptz(seeds, record_property):
    fuzz = Fuzzer("official .ptz", check_loaded)
    payload_entries = zip_entries(seeds["ptz_payload"])

    @fuzz_settings()
    @given(ptz_case)
    def case(spec):
        kind, ops, pick = spec
        if kind == "compressed":
            data = apply_byte_ops(seeds["ptz"], ops)
        elif kind == "payload":
            data = zlib.compress(apply_byte_ops(seeds["ptz_payload"], ops), 0)
        elif kind == "pickle":
            kind, inner = mutate_entry(payload_entries, pick, ops)
            data = zlib.compress(inner, 0)
        else:
            obj = copy.copy(seeds["exports"][pick])
            for key in TOP_KEYS[1:]:
                if isinstance(obj.get(key), dict):
                    obj[key] = dict(obj[key])  # shallow copies: ops replace entries, never edit tensors in place
            for op in ops:
                apply_export_op(obj, op)
            data = zlib.compress(torch_bytes(obj), 0)  # stored blocks: a valid stream, cheap to build
        fuzz.run(kind, repr(spec)[:300], load_bytes, data, "fuzz.ptz")

    case()
    fuzz.finish(record_property)


checkpoint_case = st.one_of(
    st.tuples(st.just("weights-bytes"), byte_ops, st.sampled_from((True, True, True, False))),
    st.tuples(st.just("weights-header"), st.lists(header_op, min_size=1, max_size=3), st.sampled_from((True, True, True, False))),
    st.tuples(st.just("sidecar-text"), byte_ops, st.just(True)),
    st.tuples(st.just("sidecar-dict"), st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100), st.booleans()),
                                                min_size=1, max_size=3), st.just(True)))


def test_fuzz_checkpoint(seeds, record_property):
    fuzz = Fuzzer("pgolf checkpoint", check_loaded)
    weights = st_save(seeds["sd"], metadata={"format": "pgolf-checkpoint-v1"})

    def sidecar_for(w: bytes, rehash: bool) -> dict:
        return good_sidecar(weights_sha256=hashlib.sha256(w if rehash else weights).hexdigest(),
                            tensor_names=list(seeds["sd"]))  # as the trainer writes it

    @fuzz_settings()
    @given(checkpoint_case)
    def case(spec):
        kind, ops, rehash = spec
        w = weights
        if kind == "weights-bytes":
            w = apply_byte_ops(weights, ops)
        elif kind == "weights-header":
            w = apply_header_ops(weights, ops)
        side = sidecar_for(w, rehash)
        side_bytes = json.dumps(side).encode()
        if kind == "sidecar-text":
            side_bytes = apply_byte_ops(side_bytes, ops)
        elif kind == "sidecar-dict":
            for i, j, delete in ops:
                key = SIDECAR_KEYS[i % len(SIDECAR_KEYS)]
                side.pop(key, None) if delete else side.__setitem__(key, SIDECAR_VALUES[j % len(SIDECAR_VALUES)])
            side_bytes = json.dumps(side).encode()
        fuzz.run(kind, repr(spec)[:300], load_checkpoint_bytes, w, side_bytes, "step_000001.safetensors",
                 "step_000001.json")

    case()
    fuzz.finish(record_property)


@pytest.fixture(scope="module")
def shard_seed():
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(fixture_path("tokenizers", "fineweb_1024_bpe.model")))
    docs = ["The quick brown fox jumps over the lazy dog.", "Parameter Golf caps the artifact at 16 MB.",
            "Compression ratios depend on the entropy of the quantized weights; zlib and zstd differ."]
    tokens = [t for d in docs * 20 for t in [1] + sp.encode(d)]  # BOS before each document
    header = np.zeros(256, dtype="<i4")
    header[:3] = 20240520, 1, len(tokens)
    return header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes()


def check_tokens(tokens) -> str | None:
    if tokens.dtype != np.uint16 or tokens.size == 0 or int(tokens.max()) >= VOCAB:
        return "loaded tokens that are empty or out of range"
    return None


HEADER_VALUES = [0, 1, -1, 2, 20240520, 2**31 - 1, -(2**31), 255, 1024, 65535]
shard_case = st.one_of(st.tuples(st.just("bytes"), byte_ops),
                       st.tuples(st.just("header"), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 100),
                                                                        st.integers(-3, 3)), min_size=1, max_size=3)),
                       st.tuples(st.just("tokens"), st.lists(st.tuples(st.integers(0, 10**6),
                                                                        st.integers(0, 65535)), min_size=1, max_size=4)))


def test_fuzz_data_shard(shard_seed, record_property):
    fuzz = Fuzzer("data shard", check_tokens)

    @fuzz_settings()
    @given(shard_case)
    def case(spec):
        kind, ops = spec
        if kind == "bytes":
            data = apply_byte_ops(shard_seed, ops)
        elif kind == "header":
            header = np.frombuffer(shard_seed[:1024], dtype="<i4").copy()
            for field, v, delta in ops:
                header[field] = HEADER_VALUES[v % len(HEADER_VALUES)] if delta == 0 else \
                    (int(header[field]) + delta + 2**31) % 2**32 - 2**31  # wraps like int32
            data = header.tobytes() + shard_seed[1024:]
        else:
            tokens = np.frombuffer(shard_seed[1024:], dtype="<u2").copy()
            for pos, value in ops:
                tokens[pos % tokens.size] = value
            data = shard_seed[:1024] + tokens.tobytes()
        fuzz.run(kind, repr(spec)[:300], parse_shard_bytes, data, "fineweb_val_000000.bin", VOCAB)

    case()
    fuzz.finish(record_property)


def plan_seed() -> dict:
    """A real preset's plan JSON (helper A's format) when plans.py is there, else a minimal plan."""
    try:
        from pgolf.budget.quant.plans import PRESETS
    except ImportError:
        return {"format": "pgolf-plan-v1", "name": "p", "default": "int6", "rules": [{"pattern": "tok_emb", "scheme": "int8"}]}
    return json.loads(PRESETS["int5-mlp-int6-attn"].to_json())


json_case = st.one_of(
    st.tuples(st.just("text"), byte_ops),
    st.tuples(st.just("tokens"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 100)), min_size=1, max_size=3)),
    st.tuples(st.just("dict"), st.lists(st.tuples(st.sampled_from(("format", "rules", "default", "name", "description",
                                                                    "keep_float_max_numel", "rule-pattern", "rule-scheme")),
                                                  st.integers(0, 100), st.booleans()), min_size=1, max_size=3)))
@pytest.mark.filterwarnings("ignore:Possible nested set")
def test_fuzz_plan_json(tmp_path, record_property):
    from pgolf.budget.quant.plans import Plan, load_plan

    seed = plan_seed()
    text = json.dumps(seed, indent=1)
    generic = Fuzzer("plan JSON (readers.read_json)", lambda obj: None if obj.get("format") == seed["format"]
                     and "rules" in obj else "accepted JSON without its format tag or rules")
    plans = Fuzzer("plan file (plans.load_plan)", lambda plan: None if isinstance(plan, Plan)
                   else f"returned {type(plan).__name__}")
    path = tmp_path / "plan.json"

    @fuzz_settings()
    @given(json_case)
    def case(spec):
        kind, ops = spec
        if kind == "text":
            data = apply_byte_ops(text.encode(), ops)
        elif kind == "tokens":
            s = text
            for pos, which in ops:
                p = pos % (len(s) + 1)
                s = s[:p] + JSON_INSERTS[which % len(JSON_INSERTS)] + s[p:]
            data = s.encode("utf-8")
        else:
            data = json.dumps(mutate_plan(copy.deepcopy(seed), ops)).encode()
        generic.run(kind, repr(spec)[:300], parse_json_bytes, data, "plan.json", seed["format"], ("rules",))
        path.write_bytes(data)
        plans.run(kind, repr(spec)[:300], load_plan, path)

    case()
    generic.finish(record_property)
    plans.finish(record_property)


# --- pgolf's own artifact container (helper A's format, read through load_bytes) ---------------

@pytest.fixture(scope="module")
def artifact_seeds(seeds):
    from pgolf.budget.exact import container
    from pgolf.budget.files.compressors import get_compressor
    from pgolf.budget.exact.build import build_artifact

    gen = torch.Generator().manual_seed(1)
    sd = dict(seeds["sd"], **{"extra.fc.weight": torch.randn(300, 300, generator=gen) * 0.02})
    out = []
    for plan, comp in (("int6", "zstd"), ("ternary", "none"), ("int5-mlp-int6-attn", "zstd"), ("official-int8", "zstd")):
        blob = build_artifact(sd, plan, comp)
        kind, spec, body = container.parse_frame(blob)
        out.append((blob, kind, get_compressor(spec).decompress(body, 10**8)))
    return out


artifact_case = st.one_of(st.tuples(st.just("frame"), byte_ops, st.integers(0, 3)),
                          st.tuples(st.just("body"), byte_ops, st.integers(0, 3)),
                          st.tuples(st.just("payload"), byte_ops, st.integers(0, 3)),
                          st.tuples(st.just("header"), st.lists(container_op, min_size=1, max_size=3), st.integers(0, 2)))


def test_fuzz_pgolf_artifact(artifact_seeds, record_property):
    from pgolf.budget.exact import container

    fuzz = Fuzzer("pgolf artifact", check_loaded)

    @fuzz_settings()
    @given(artifact_case)
    def case(spec):
        kind, ops, pick = spec
        blob, frame_kind, raw = artifact_seeds[pick]
        if kind == "frame":
            data = apply_byte_ops(blob[:40], ops) + blob[40:]
        elif kind == "body":
            data = apply_byte_ops(blob, ops)
        elif kind == "payload":  # the decompressed container/export, edited and re-framed uncompressed
            data = container.frame(frame_kind, "none", apply_byte_ops(raw, ops))
        else:
            data = container.frame(frame_kind, "none", mutate_container_header(raw, ops))
        fuzz.run(kind, repr(spec)[:300], load_bytes, data, "fuzz.pgolf")

    case()
    fuzz.finish(record_property)
