"""How long exact bytes take, next to the bare compressor on the same bytes (and the official export).

    .venv/bin/python benchmarks/budget_speed.py [--quick | --full] [--reference /tmp/official_train_gpt.py]

Model: a seeded baseline-shaped state dict (9 x 512, vocab 1024, 17,059,912 params,
shapes.synthetic_state_dict). For each preset x compressor it times `build_artifact` (quantize,
serialize, compress: the exact bytes) and the bare `Compressor.compress` of the very bytes that
artifact compresses, back to back, as many pairs as fit in about 6 s per side (at most 60; at
least 15 for zlib and 2 for the slow codecs: zstd-22, lzma-9e and brotli-11 take up to tens of
seconds on 17 MB here). The ratio is the median over pairs of ours / bare (target <= 1.15);
best-of-each-side is printed beside it. Why pairs: identical zlib calls ranged 0.41-0.56 s within a minute here,
and the ratio of two separate minima moved between 0.97 and 1.16 over eight blocks of 15 pairs
of the same call while the paired median stayed at 1.04-1.07.

Every build after a plan's first reuses export_object's cached official layout: the first build of
a model under an official-export plan also quantizes one 65,537-value specimen per int8 tensor
(~0.5 ms each, ~30-60 ms for the 55 of this model on this VM).

Pairs: default = every preset with zlib, plus int6 and ternary with zstd, lzma, brotli (a few
minutes); --quick = every preset with zlib plus ternary with the rest; --full = every preset x
every compressor (about a quarter of an hour on 2 cores).

--reference PATH imports the official train_gpt.py (not part of pgolf; needs no CUDA to import)
and times its quantize_state_dict_int8 + torch.save + zlib-9 on the same model in the same run,
prints ours / theirs for official-int8 + zlib (target <= 1.0) and checks that both exports hold
identical tensors and identical bytes.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import zlib

import torch

from pgolf.budget.exact.build import assign, build, build_artifact, export_object, quantize_item, serialize
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.forecast.shapes import baseline_specs, param_count, synthetic_state_dict

SLOW = ("zstd", "lzma", "brotli")


def pairs_for(mode: str) -> list[tuple[str, str]]:
    pairs = [(p, "zlib") for p in PRESETS]
    extra = {"quick": ("ternary",), "default": ("int6", "ternary"), "full": tuple(PRESETS)}[mode]
    return pairs + [(p, c) for p in extra for c in SLOW]


def best_time(fn, repeats: int):
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def paired_tries(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float], object, object]:
    """Time `fn_a` and `fn_b` back to back `repeats` times, swapping which goes first every round.

    Each pair runs within a second or so, so a drift in machine load hits both of its sides alike;
    swapping the order cancels what one call leaves behind for the next (here a build right after a
    bare compress took ~3 % longer than one right after another build).
    """
    sides = {"a": (fn_a, []), "b": (fn_b, [])}
    last = {}
    for i in range(repeats):
        for key in ("ab" if i % 2 == 0 else "ba"):
            fn, times = sides[key]
            t, last[key] = best_time(fn, 1)
            times.append(t)
    return sides["a"][1], sides["b"][1], last["a"], last["b"]


def paired_ratio(times_a: list[float], times_b: list[float]) -> float:
    """Median over pairs of a / b: what the estimate of the overhead rests on."""
    return statistics.median(a / b for a, b in zip(times_a, times_b))


def time_pair(sd, plan: str, comp_name: str) -> dict:
    comp = get_compressor(comp_name)
    kind, raw = serialize(assign(sd, plan), plan)           # the same bytes, untimed
    # As many pairs as fit in about 6 s per side, at least 15 for zlib (identical zlib calls here
    # range 0.41-0.56 s) and 2 for the slow codecs (brotli-11 on 17 MB takes ~40 s here), at most 60.
    once, _ = best_time(lambda: comp.compress(raw), 1)
    repeats = max(15 if comp.codec == "zlib" else 2, min(60, math.ceil(6.0 / once)))
    ours, bare, blob, body = paired_tries(lambda: build_artifact(sd, plan, comp), lambda: comp.compress(raw), repeats)
    return {"plan": plan, "compressor": comp.name, "serialized_bytes": len(raw), "bytes_model": len(blob),
            "t_ours_s": round(min(ours), 3), "t_bare_s": round(min(bare), 3), "tries": repeats,
            "overhead": round(paired_ratio(ours, bare), 3), "best_of_ratio": round(min(ours) / min(bare), 3),
            "same_body": blob.endswith(body)}


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("official_train_gpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_check(sd, path: str, repeats: int = 3) -> dict:
    ref = load_reference(path)

    def theirs():
        obj, _ = ref.quantize_state_dict_int8(sd)
        buf = io.BytesIO()
        torch.save(obj, buf)
        return obj, zlib.compress(buf.getvalue(), level=9)

    ours_t, theirs_t, blob_ours, (obj, blob_theirs) = paired_tries(
        lambda: build_artifact(sd, "official-int8", "zlib"), theirs, repeats)
    ours = export_object([quantize_item(i) for i in assign(sd, "official-int8")])
    same = all(torch.equal(ours[k][n], t) and ours[k][n].dtype == t.dtype
               for k in ("quantized", "scales", "passthrough") for n, t in obj[k].items())
    same = same and list(ours) == list(obj) and all(ours.get(k) == obj.get(k) for k in
                                                     ("dtypes", "qmeta", "passthrough_orig_dtypes"))
    return {"t_ours_s": round(min(ours_t), 3), "t_reference_s": round(min(theirs_t), 3),
            "ratio": round(paired_ratio(ours_t, theirs_t), 3),
            "identical_tensors": same, "identical_bytes": blob_ours == blob_theirs, "bytes_model": len(blob_ours)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="every preset with zlib, ternary with the slow codecs")
    mode.add_argument("--full", action="store_true", help="every preset x every compressor (~15 min)")
    ap.add_argument("--reference", metavar="PATH", help="the official train_gpt.py to time against")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    args = ap.parse_args(argv)
    sd = synthetic_state_dict(baseline_specs(), seed=0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"budget_speed: baseline-shaped model, {param_count(baseline_specs()):,} params; torch {torch.__version__}, "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, load average {load:.2f}, "
          f"{platform.python_version()}")
    build(assign(sd, "official-int8"), "official-int8", "zlib")  # warm-up: imports, allocator
    rows = []
    print(f"{'plan':<22}{'compressor':<12}{'serialized':>13}{'bytes_model':>13}{'ours s':>9}{'bare s':>9}"
          f"{'tries':>6}{'ratio':>7}{'best/best':>10}")
    for plan, comp in pairs_for("quick" if args.quick else "full" if args.full else "default"):
        r = time_pair(sd, plan, comp)
        rows.append(r)
        print(f"{r['plan']:<22}{r['compressor']:<12}{r['serialized_bytes']:>13,}{r['bytes_model']:>13,}"
              f"{r['t_ours_s']:>9.2f}{r['t_bare_s']:>9.2f}{r['tries']:>6}{r['overhead']:>7.3f}"
              f"{r['best_of_ratio']:>10.3f}", flush=True)
    worst = max(rows, key=lambda r: r["overhead"])
    middle = sorted(r["overhead"] for r in rows)[len(rows) // 2]
    print(f"overhead (exact bytes / bare compressor, median over back-to-back pairs): median {middle:.3f}, "
          f"worst {worst['overhead']:.3f} ({worst['plan']} + {worst['compressor']}); target <= 1.15")
    t_full, report = best_time(lambda: measure_budget(sd, "official-int8", "zlib"), 1)
    print(f"full `pgolf budget` path (per-tensor compression + bit-exact read-back) official-int8 + zlib: "
          f"{t_full:.2f} s, roundtrip_exact={report.headline['roundtrip_exact']}")
    out = {"pairs": rows, "measure_budget_s": round(t_full, 3), "load_average": load}
    if args.reference:
        ref = reference_check(sd, args.reference)
        out["reference"] = ref
        print(f"official export ({args.reference}) quantize_state_dict_int8 + torch.save + zlib-9: "
              f"{ref['t_reference_s']:.2f} s; pgolf build_artifact official-int8 + zlib: {ref['t_ours_s']:.2f} s; "
              f"ratio {ref['ratio']:.3f} (target <= 1.0); identical tensors: {ref['identical_tensors']}, "
              f"identical bytes: {ref['identical_bytes']} ({ref['bytes_model']:,} bytes)")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
