"""Fit the fast estimator's correction and the trained-weight statistics; write them as package data.

    .venv/bin/python benchmarks/fit_estimator.py              # both files
    .venv/bin/python benchmarks/fit_estimator.py --only stats # only budget/data/weight_stats.json

1. Correction (budget/data/estimate_fit.json): seeded synthetic matrices (generalised-normal rows
   of several tail shapes, row-scale spreads and magnitudes) under every scheme family and storage;
   each stream is compressed alone by each fitted compressor and the measured bits per stored byte
   are regressed on the estimator's features per storage class (calibration.fit_classes). Then
   whole artifacts of small seeded models under every preset are built for real, and the
   remainder (container, headers, boundaries) is regressed on the stream count per artifact kind.
   No checkpoint that estimate_accuracy.py scores is used here.
2. Statistics (budget/data/weight_stats.json): calibration.checkpoint_stats over the fixtures'
   final_model.pt and any pgolf checkpoints given with --checkpoints (trained ones only: near-init
   checkpoints with kurtosis under 2.2, i.e. still uniform-initialised, are reported and skipped).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pgolf.budget import calibration
from pgolf.budget.artifact import build_artifact
from pgolf.budget.compressors import get_compressor
from pgolf.budget.estimate import FEATURES, FIT_FORMAT, estimate_model_bytes, estimate_streams
from pgolf.budget.plans import PRESETS
from pgolf.budget.shapes import baseline_specs, synthetic_state_dict
from pgolf.budget.progress import progress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "budget" / "data"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "artifacts"
FIT_COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "brotli+byte-shuffle")
SCHEMES = ("int8_clean_per_row_v1", "int8", "int7", "int6", "int5", "int4", "int3", "int6:amax", "int6:sdclip(12.85)",
           "int8:sdclip(20)", "int5:sdclip(10)", "int6:packed", "int5:packed", "int4:packed", "ternary",
           "ternary:packed", "binary", "fp16", "bf16", "fp8_e4m3", "fp32", "int4:group(64)")
TRAIN_SHAPES = ((512, 256), (256, 512), (384, 384), (1024, 128), (96, 128), (64, 64))
BETAS = (1.0, 1.5, 2.0, 3.0, 8.0)
STDS = (0.01, 0.03, 0.1, 0.35, 1.2)
ROW_LOG_SDS = (0.0, 0.15, 0.5)
SCHEMES_PER_TENSOR = 6  # each tensor gets the next 6 schemes of the cycle: every scheme lands on ~7 tensors


def training_tensors(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Seeded synthetic matrices spanning tail shape, magnitude, row spread and size."""
    rng = np.random.default_rng(seed)
    out = []
    for i, beta in enumerate(BETAS):
        for j, std in enumerate(STDS):
            shape = TRAIN_SHAPES[(i + j) % len(TRAIN_SHAPES)]
            row_sd = ROW_LOG_SDS[(i * len(STDS) + j) % len(ROW_LOG_SDS)]
            m = torch.from_numpy(calibration.sample_matrix(shape, std, beta, row_sd, rng))
            out.append((f"b{beta:g}_s{std:g}_r{row_sd:g}_{shape[0]}x{shape[1]}", m))
    return out


def float_jobs(tensors) -> list[tuple[str, torch.Tensor, str]]:
    """Float passthrough streams, the bulk of small models: fp16 of fp32 and of bf16 sources
    (bf16 leaves the low 3 mantissa bits of fp16 zero), near-init uniform and two-level rows."""
    rng = np.random.default_rng(1)
    jobs = []
    for i, (name, t) in enumerate(tensors):
        small = t[: max(1, 8192 // t.shape[1])] if i % 2 else t[: max(1, 65536 // t.shape[1])]
        jobs += [(f"{name}_fp16", small, "fp16"), (f"{name}_bf16src", small.to(torch.bfloat16), "fp16")]
    for std in (0.004, 0.05, 0.3):
        u = torch.from_numpy(rng.uniform(-std * 3 ** 0.5, std * 3 ** 0.5, size=(128, 256)).astype(np.float32))
        two = torch.from_numpy((std * np.sign(rng.standard_normal((256, 256)))).astype(np.float32))
        jobs += [(f"uniform_s{std:g}", u, "fp16"), (f"uniform_s{std:g}_bf16src", u.to(torch.bfloat16), "fp16"),
                 (f"twolevel_s{std:g}_bf16src", (two + 0.05 * std * torch.from_numpy(
                     rng.standard_normal((256, 256)).astype(np.float32))).to(torch.bfloat16), "fp16"),
                 (f"uniform_s{std:g}_fp32", u, "fp32")]
    return jobs


def fit_streams(quiet: bool, cache: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Measure (or reload from `cache`, a CSV of a previous run) and fit the stream corrections."""
    if cache and Path(cache).is_file():
        frame = pd.read_csv(cache)
    else:
        comps = [get_compressor(c) for c in FIT_COMPRESSORS]
        rows = []
        tensors = training_tensors()
        jobs = [(n, t, SCHEMES[(i * SCHEMES_PER_TENSOR + k) % len(SCHEMES)])
                for i, (n, t) in enumerate(tensors) for k in range(SCHEMES_PER_TENSOR)]
        jobs += float_jobs(tensors)
        for name, t, spec in progress(jobs, desc="streams", total=len(jobs), quiet=quiet):
            rows += calibration.stream_sample(name, t, spec, comps)
        frame = pd.DataFrame(rows)
        if cache:
            from pgolf.budget.atomic import write_text_atomic
            write_text_atomic(cache, frame.to_csv(index=False))
    return frame, {c: {"classes": calibration.fit_classes(frame[frame["compressor"] == c])} for c in FIT_COMPRESSORS}


def overhead_models() -> list[tuple[str, dict]]:
    """Small seeded models of the baseline family (held apart from every scored checkpoint)."""
    shapes = [dict(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=1, vocab_size=1024),
              dict(num_layers=3, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=1024),
              dict(num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=512),
              dict(num_layers=3, model_dim=256, num_heads=4, num_kv_heads=2, mlp_mult=3, vocab_size=1024),
              dict(num_layers=1, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=2, vocab_size=1024),
              dict(num_layers=1, model_dim=96, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=512),
              dict(num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2, vocab_size=256)]
    return [(f"synthetic-{i}", synthetic_state_dict(baseline_specs(**kw), seed=10 + i)) for i, kw in enumerate(shapes)]


def measure_artifacts(quiet: bool, cache: str | None = None) -> pd.DataFrame:
    """Exact bytes of every overhead model x preset x compressor (or reloaded from `cache`)."""
    old = pd.read_csv(cache) if cache and Path(cache).is_file() else pd.DataFrame(columns=["model", "plan", "compressor"])
    done = set(zip(old["model"], old["plan"], old["compressor"]))
    rows = []
    jobs = [(m, sd, p, c) for m, sd in overhead_models() for p in PRESETS for c in FIT_COMPRESSORS
            if (m, p, c) not in done]
    for model, sd, plan, comp in progress(jobs, desc="artifacts", total=len(jobs), quiet=quiet):
        rows.append({"model": model, "plan": plan, "compressor": comp, "exact": len(build_artifact(sd, plan, comp))})
    frame = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if rows else old
    if cache:
        from pgolf.budget.atomic import write_text_atomic
        write_text_atomic(cache, frame.to_csv(index=False))
    return frame


def fit_overheads(fit: dict, quiet: bool, cache: str | None = None) -> pd.DataFrame:
    exact = measure_artifacts(quiet, cache)
    models = dict(overhead_models())
    streams = {(m, p): estimate_streams(models[m], p, sample_values=None) for m, p in
               exact[["model", "plan"]].drop_duplicates().itertuples(index=False)}
    rows = []
    for r in exact.itertuples():
        _, st, kind, _ = streams[r.model, r.plan]
        fit["compressors"][r.compressor].setdefault("overhead", {})
        est, _ = estimate_model_bytes(st, kind, r.compressor, fit)
        rows.append({"model": r.model, "plan": r.plan, "compressor": r.compressor, "kind": kind,
                     "n_streams": len(st), "exact": r.exact, "residual": r.exact - est})
    frame = pd.DataFrame(rows)
    for comp in FIT_COMPRESSORS:
        sub = frame[frame["compressor"] == comp]
        over = calibration.fit_overhead(sub.to_dict("records"))
        fit["compressors"][comp]["overhead"] = over
        # in-sample whole-artifact error after the overhead fit: the estimate's stated spread
        fitted = sub["exact"] - sub["residual"] + [over[k]["c0"] + over[k]["c1"] * n
                                                    for k, n in zip(sub["kind"], sub["n_streams"])]
        rel = (fitted - sub["exact"]).abs() / sub["exact"]
        fit["compressors"][comp]["artifact_rel_err_max"] = float(rel.max())
        fit["compressors"][comp]["artifact_rel_err_median"] = float(rel.median())
    return frame


def versions() -> dict:
    import brotli
    import zlib
    import zstandard
    return {"python": platform.python_version(), "torch": torch.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION,
            "zstandard": zstandard.__version__, "zstd": zstandard.ZSTD_VERSION, "brotli": getattr(brotli, "__version__", "?"),
            "lzma": "liblzma (python stdlib)"}


def fit_estimator(quiet: bool, cache: str | None = None, artifact_cache: str | None = None) -> dict:
    t0 = time.perf_counter()
    fit = {"format": FIT_FORMAT, "features": list(FEATURES), "compressors": {}}
    frame, fit["compressors"] = fit_streams(quiet, cache)
    for comp in fit["compressors"].values():
        comp["overhead"] = {}
    overheads = fit_overheads(fit, quiet, artifact_cache)
    fit["provenance"] = {
        "script": "benchmarks/fit_estimator.py", "date": datetime.date.today().isoformat(), "versions": versions(),
        "training_streams": int(len(frame) // len(FIT_COMPRESSORS)), "schemes": list(SCHEMES),
        "tensors": "seeded generalised-normal matrices: beta %s, std %s, row log-sd %s, shapes %s" % (
            BETAS, STDS, ROW_LOG_SDS, TRAIN_SHAPES),
        "overhead_artifacts": int(len(overheads)), "seconds": round(time.perf_counter() - t0, 1)}
    return fit


# --- weight statistics ----------------------------------------------------------------------------
def stats_sources(checkpoints: list[str]) -> list[tuple[str, dict]]:
    from pgolf.budget.readers import load_input
    out = []
    for model in ("sp1024-2L-d64", "sp1024-3L-d128"):
        path = FIXTURES / model / "final_model.pt"
        if path.exists():
            out.append((f"fixture:{model}", torch.load(path, weights_only=True, map_location="cpu")))
    for path in checkpoints:
        out.append((f"pgolf:{Path(path).parent.parent.name}/{Path(path).stem}", load_input(path).state_dict))
    return out


def fit_stats(checkpoints: list[str]) -> dict:
    frames, skipped = [], []
    for source, sd in stats_sources(checkpoints):
        f = calibration.checkpoint_stats(sd, source)
        if f.empty:
            continue
        kurt = float(f["kurtosis"].median())
        if kurt < 2.2:  # uniform init has kurtosis 1.8: not a trained weight distribution yet
            skipped.append(f"{source} (median kurtosis {kurt:.2f})")
            continue
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    prov = {"script": "benchmarks/fit_estimator.py --only stats", "date": datetime.date.today().isoformat(),
            "sources": sorted(frame["source"].unique().tolist()), "skipped_untrained": skipped,
            "matrices": int(len(frame))}
    return calibration.summarise(frame, prov)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("fit", "stats"), help="write only one of the two files")
    ap.add_argument("--checkpoints", nargs="*", default=[], help="pgolf checkpoints (.safetensors) for the statistics")
    ap.add_argument("--out", default=str(DATA), help="folder for the JSON files (default: the package's data folder)")
    ap.add_argument("--stream-cache", help="CSV of measured streams: reused when present, written when not")
    ap.add_argument("--artifact-cache", help="CSV of measured artifact bytes: reused when present, written when not")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.only in (None, "stats"):
        stats = fit_stats(args.checkpoints)
        calibration.save_weight_stats(stats, out / "weight_stats.json")
        print(f"weight_stats.json: {len(stats['roles'])} roles from {', '.join(stats['provenance']['sources'])}")
    if args.only in (None, "fit"):
        fit = fit_estimator(args.quiet, args.stream_cache, args.artifact_cache)
        from pgolf.budget.atomic import write_text_atomic
        write_text_atomic(out / "estimate_fit.json", json.dumps(fit, indent=1) + "\n")
        for name, comp in fit["compressors"].items():
            cls = ", ".join(f"{k}: med {v['rel_err_median']:.2%} max {v['rel_err_max']:.2%}" for k, v in comp["classes"].items())
            print(f"{name}: {cls}")
            print(f"  overhead: {comp['overhead']}")
        print(f"fit took {fit['provenance']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
