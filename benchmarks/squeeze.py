"""Bytes per codec on the same stored symbols, ANS against its floor, ANS speed (pgolf squeeze).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/squeeze.py [--quick] [--json OUT]

Models: the seeded baseline-shaped 17M model (shapes.synthetic_state_dict, 9 x 512, vocab 1024)
under sdclip-int6-int8emb and official-int8, and the fixture checkpoints
(../shared/fixtures/artifacts/*/final_model.pt, skipped when absent) under the same plans.
Per model: totals per codec over tensors coded alone (squeeze), brotli-11 + byte-shuffle on all
values as one stream (what an artifact compresses), the best choice net of the decoder's code
bytes against both, and order-0 ANS against floor + tables (target: within 0.1%). Speed: ANS
encode + decode of every tensor's symbols (constriction, one thread), scaled to 36M symbols
(target: 10 s). --quick: the synthetic model under sdclip-int6-int8emb only, no zpaq.
--artifacts: instead, whole artifacts of the synthetic model under ans, ans:row16, ans:col16,
brotli+byte-shuffle and best (build_artifact bytes, build and read-back seconds, the emitted
decoder's bytes). --planes: byte-plane coding of the fixtures' fp16 passthrough tensors
(brotli-11 + byte-shuffle against order-0 ANS per plane, and conditional floors). --fp16-models:
adaptive context models of the fixtures' fp16 passthrough matrices (fp16_models.py; ideal code
lengths, an order-0 range coder run for real, bounds) against brotli-11 + byte-shuffle on the same
bytes, and whole artifacts net of their decoders (docs/squeeze.md). --codecs A,B: only these codecs (squeeze) or compressors (--artifacts).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import torch

import fp16_models

from pgolf.budget.exact.build import assign, build_artifact, quantize_item
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.exact.decoder import decoder_source
from pgolf.budget.exact.squeeze import DEFAULT_CODECS, squeeze
from pgolf.budget.files import entropy
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

PLANS = ("sdclip-int6-int8emb", "official-int8")
ARTIFACT_COMPRESSORS = ("ans", "ans:row16", "ans:col16", "brotli+byte-shuffle", "best")
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "artifacts"


def ans_speed(sd, plan) -> dict:
    values = [np.frombuffer(quantize_item(i).values, np.uint8) for i in assign(sd, plan) if i.tied_to is None]
    n = sum(v.size for v in values)
    t0 = time.perf_counter()
    blobs = [entropy.encode(v) for v in values]
    t1 = time.perf_counter()
    out = [entropy.decode(b) for b in blobs]
    t2 = time.perf_counter()
    assert all(np.array_equal(a, b) for a, b in zip(values, out))
    return {"symbols": n, "encode_s": round(t1 - t0, 3), "decode_s": round(t2 - t1, 3),
            "per_36m_s": round((t2 - t0) * 36e6 / n, 2)}


def one(label, sd, plan, codecs) -> dict:
    t0 = time.perf_counter()
    r = squeeze(sd, plan, codecs)
    h, f = dict(r.headline), r.frame
    stream = b"".join(quantize_item(i).values for i in assign(sd, plan) if i.tied_to is None)
    h["brotli_shuffle_stream_bytes"] = len(get_compressor("brotli+byte-shuffle").compress(stream))
    floor_tables = float((f.entropy_bytes + f.ans_table_bytes).sum())
    h["ans_over_floor_tables"] = round(h["ans_bytes"] / floor_tables - 1, 6)
    net = h["best_bytes"] + h["bytes_code_decoder"]
    h["best_vs_brotli_tensors"] = round(net / h["brotli_shuffle_bytes"] - 1, 5)
    h["best_vs_brotli_stream"] = round(net / h["brotli_shuffle_stream_bytes"] - 1, 5)
    general = [h[c] for c in ("zlib_bytes", "zstd_bytes", "lzma_bytes", "brotli_shuffle_bytes", "zpaq_bytes") if c in h]
    h["best_not_above_general"] = net <= min(general + [h["brotli_shuffle_stream_bytes"]])
    h["ans_speed"] = ans_speed(sd, plan)
    h["seconds"] = round(time.perf_counter() - t0, 1)
    h["source"] = label
    h["best_codec_counts"] = f.best_codec.value_counts().to_dict()
    return h


def fp16_planes(label, sd, plan) -> dict:
    """Byte-plane coding of the 2-D fp16 passthrough tensors (>= 8 KiB): brotli-11 + byte-shuffle
    against order-0 ANS of the low and high byte planes apart (tables counted), and two floors
    without table costs: the high byte given its row (one table per row, free) and the low byte
    given the exponent bits. `ans_planes_shared_G{1,4}`: all low planes as one ANS stream, the high
    planes' rows in G classes by mean exponent across every tensor, one stream per class (labels and
    tables counted): byte planes with tables shared by the whole model."""
    out = {"source": label, "plan": plan, "tensors": 0, "brotli_shuffle": 0, "ans_planes": 0, "floor_planes": 0.0,
           "floor_hi_given_row_free": 0.0, "floor_lo_given_exponent_free": 0.0}
    bits = lambda a: entropy.entropy_bits(np.ascontiguousarray(a).reshape(-1)) / 8  # noqa: E731
    los, his = [], []
    for item in assign(sd, plan):
        if item.tied_to is None and item.scheme.name == "fp16" and len(item.shape) == 2:
            v = quantize_item(item).values
            if len(v) < 8192:
                continue
            planes = np.frombuffer(v, np.uint8).reshape(item.shape[0], item.shape[1], 2)
            lo, hi = planes[..., 0], planes[..., 1]
            out["tensors"] += 1
            out["brotli_shuffle"] += len(get_compressor("brotli+byte-shuffle").compress(v))
            out["ans_planes"] += len(entropy.encode(lo.reshape(-1))) + len(entropy.encode(hi.reshape(-1)))
            los.append(lo.reshape(-1))
            his.append(np.ascontiguousarray(hi))
            out["floor_planes"] += bits(lo) + bits(hi)
            out["floor_hi_given_row_free"] += bits(lo) + sum(bits(r) for r in hi)
            exp = hi & 0x7C
            out["floor_lo_given_exponent_free"] += bits(hi) + sum(bits(lo[exp == e]) for e in np.unique(exp))
    if his:
        mags = np.concatenate([(h & 0x7F).mean(1) for h in his])
        all_rows = [r for h in his for r in h]
        for groups in (1, 4):
            label = np.searchsorted(np.quantile(mags, np.arange(1, groups) / groups), mags, side="right")
            coded = len(entropy.encode(np.concatenate(los))) + -(-len(all_rows) * (groups - 1).bit_length() // 8)
            coded += sum(len(entropy.encode(np.concatenate([r for r, g in zip(all_rows, label) if g == k])))
                         + 4 for k in range(groups) if (label == k).any())
            out[f"ans_planes_shared_G{groups}"] = coded
    return {k: round(v) if isinstance(v, float) else v for k, v in out.items()}


def fp16_models_report(label, sd) -> list[dict]:
    """Adaptive context models (fp16_models.py) on every fp16 passthrough matrix of `sd` against
    brotli-11 + byte-shuffle of the same bytes (one stream, as in an artifact), the order-0 floor
    (per tensor, tables free), the Gaussian scale bound (per tensor the smaller of it and the high
    bytes' order-0 floor; low bytes at their floor) and an optimistic causal model: per tensor the
    smaller of the causal Gaussian (float) and the order-0 floor for the high bytes, the low bytes at
    their floor; then per plan the whole artifacts under
    brotli + byte-shuffle and best with their decoders, and an optimistic estimate of an artifact
    whose fp16 bytes take the best counting model: brotli + byte-shuffle's artifact less the fp16
    bytes' brotli stream plus the model's bytes, its decoder brotli's + the order-0 range decoder
    + 100 bytes of dispatch and sizes; the same with the optimistic causal model and no extra code."""
    items = [i for i in assign(sd, PLANS[1]) if i.tied_to is None and i.scheme.name == "fp16"]
    mats = [np.frombuffer(quantize_item(i).values, np.uint16).reshape(i.shape[0], -1) for i in items]
    raw = b"".join(m.tobytes() for m in mats)
    h = {"source": label, "tensors": len(mats), "values": len(raw) // 2,
         "brotli_shuffle": len(get_compressor("brotli+byte-shuffle").compress(raw))}
    planes = [(m >> 8).astype(np.uint8) for m in mats], [(m & 255).astype(np.uint8) for m in mats]
    h["floor_order0_tables_free"] = round(sum(entropy.entropy_bits(x) for p in planes for x in p) / 8)
    hi_floor = [entropy.entropy_bits(x) / 8 for x in planes[0]]
    lo_floor = sum(entropy.entropy_bits(x) for x in planes[1]) / 8
    h["bound_hi_gaussian_scales_free"] = round(sum(min(fp16_models.gaussian_bound(m), f)
                                                   for m, f in zip(mats, hi_floor)) + lo_floor)
    h["optimistic_gaussian_causal"] = round(sum(min(fp16_models.gaussian_causal(m), f)
                                                for m, f in zip(mats, hi_floor)) + lo_floor)
    h["models"] = {name: round(fp16_models.ideal_bytes(mats, name)) for name in fp16_models.CONFIGS}
    t0 = time.perf_counter()
    blob = fp16_models.encode(mats)
    t1 = time.perf_counter()
    assert fp16_models.decode(blob, [m.size for m in mats]) == raw
    h["order0_coded"] = {"bytes": len(blob), "encode_s": round(t1 - t0, 1),
                         "decode_s": round(time.perf_counter() - t1, 1),
                         "decoder_bytes": len(fp16_models.DECODER_SOURCE.encode())}
    best_name = min(h["models"], key=h["models"].get)
    h["best_model"] = best_name
    h["best_model_vs_brotli"] = round(h["models"][best_name] / h["brotli_shuffle"] - 1, 5)
    out = [h]
    for plan in PLANS:
        row = {"source": label, "plan": plan}
        for comp in ("brotli+byte-shuffle", "best"):
            row[comp] = [len(build_artifact(sd, plan, comp)), len(decoder_source(plan, comp, sd).encode())]
        base = sum(row["brotli+byte-shuffle"])
        row["best_vs_brotli_net"] = round(sum(row["best"]) / base - 1, 5)
        rest = row["brotli+byte-shuffle"][0] - h["brotli_shuffle"]  # the artifact less its fp16 bytes' share
        est = rest + h["models"][best_name] + row["brotli+byte-shuffle"][1] + h["order0_coded"]["decoder_bytes"] + 100
        row["fp16_model_estimate_net"] = est
        row["fp16_model_vs_brotli_net"] = round(est / base - 1, 5)
        free = rest + h["optimistic_gaussian_causal"] + row["brotli+byte-shuffle"][1]
        row["optimistic_gaussian_vs_brotli_no_extra_code"] = round(free / base - 1, 5)
        out.append(row)
    return out


def artifacts(sd, comps=ARTIFACT_COMPRESSORS) -> list[dict]:
    out = []
    for plan in PLANS:
        for comp in comps:
            t0 = time.perf_counter()
            blob = build_artifact(sd, plan, comp)
            t1 = time.perf_counter()
            read_artifact(blob)
            out.append({"plan": plan, "compressor": comp, "bytes_model": len(blob), "build_s": round(t1 - t0, 1),
                        "read_s": round(time.perf_counter() - t1, 1),
                        "bytes_decoder": len(decoder_source(plan, comp, sd).encode())})
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--artifacts", action="store_true")
    ap.add_argument("--planes", action="store_true")
    ap.add_argument("--fp16-models", action="store_true")
    ap.add_argument("--codecs", help="comma-separated squeeze codecs (default: all) or, with --artifacts, "
                                     "compressor specs (default: " + ",".join(ARTIFACT_COMPRESSORS) + ")")
    args = ap.parse_args()
    torch.set_num_threads(1)
    chosen = tuple(args.codecs.split(",")) if args.codecs else None
    if args.artifacts:
        results = artifacts(synthetic_state_dict(baseline_specs(), seed=0), chosen or ARTIFACT_COMPRESSORS)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
        return
    if args.fp16_models:
        results = []
        for p in sorted(FIXTURES.glob("*/final_model.pt")):
            for r in fp16_models_report(p.parent.name, torch.load(p, weights_only=True, map_location="cpu")):
                results.append(r)
                print(json.dumps(r), flush=True)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
        return
    if args.planes:
        results = [fp16_planes(p.parent.name, torch.load(p, weights_only=True, map_location="cpu"), plan)
                   for p in sorted(FIXTURES.glob("*/final_model.pt")) for plan in PLANS]
        print("\n".join(json.dumps(r) for r in results))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
        return
    codecs = chosen or tuple(c for c in DEFAULT_CODECS if not (args.quick and c == "zpaq"))
    models = [("synthetic-17M", synthetic_state_dict(baseline_specs(), seed=0))]
    if not args.quick:
        for p in sorted(FIXTURES.glob("*/final_model.pt")):
            models.append((p.parent.name, torch.load(p, weights_only=True, map_location="cpu")))
    results = []
    for label, sd in models:
        for plan in PLANS[:1] if args.quick else PLANS:
            h = one(label, sd, plan, codecs)
            results.append(h)
            print(json.dumps(h), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
