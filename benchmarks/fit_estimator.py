"""Fit the fast estimator's correction and the trained-weight statistics; write them as package data.

    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py [--cache DIR]     # both files
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only stats      # only weight_stats.json

1. Correction (budget/forecast/data/estimate_fit.json). Seeded training models of the baseline family
   (small to 5.5 M parameters; Gaussian "trained-like" weights and generalised-normal weights of
   several scales, tail shapes and row spreads) under every preset: each group of alike streams
   (sampled.group_key) is compressed whole by each fitted compressor and compared with what the
   estimator gets from its sample, giving per compressor and storage class the alpha/beta of
   sampled.scaled_bytes (calibration.fit_corrections). Then each training artifact is built for
   real and the remainder (container, headers, boundaries) is regressed on the stream count per
   artifact kind; separately for small artifacts (at most sampled.WHOLE_MAX_BYTES stored), whose
   estimate compresses all stored bytes as one stream (estimate.whole_payload). No model that estimate_accuracy.py scores (the fixtures, the seed-0 17 M
   baseline, pgolf checkpoints) is used here.
2. Statistics (budget/forecast/data/weight_stats.json): calibration.checkpoint_stats over the fixtures'
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

from pgolf.budget.forecast import calibration, sampled
from pgolf.budget.exact.build import build_artifact
from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.exact.container import frame_header
from pgolf.budget.forecast.estimate import (FIT_FORMAT, estimate_streams, group_estimates, sampling_settings,
                                   whole_compressed)
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.progress import progress
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "budget" / "forecast" / "data"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "artifacts"
FIT_COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "brotli+byte-shuffle")
LARGE_PLANS = ("official-int8", "int6", "sdclip-int6-int8emb", "ternary")


def _shape(layers, dim, mlp, vocab, heads=4, kv=2):
    return dict(num_layers=layers, model_dim=dim, num_heads=heads, num_kv_heads=kv, mlp_mult=mlp, vocab_size=vocab)


SYNTHETIC = [_shape(2, 64, 1, 1024), _shape(3, 128, 2, 1024), _shape(2, 256, 2, 512), _shape(3, 256, 3, 1024),
             _shape(1, 512, 2, 1024, 8, 4), _shape(1, 96, 2, 512), _shape(4, 64, 2, 256),
             _shape(1, 64, 2, 2048), _shape(2, 48, 2, 2048)]  # last two: small pgolf containers (int6 embedding)
# (shape, std, beta, row log-sd): short-training scales (official int8 floor active), near-init
# uniform-like tails, heavy tails, spread rows
VARIED = [(_shape(3, 128, 2, 1024), 0.05, 2.0, 0.1), (_shape(2, 256, 2, 1024), 0.15, 1.5, 0.3),
          (_shape(4, 192, 2, 512), 0.02, 8.0, 0.0), (_shape(2, 128, 3, 2048), 0.3, 1.0, 0.2),
          (_shape(3, 256, 2, 1024), 0.1, 3.0, 0.5), (_shape(1, 384, 2, 1024, 8, 4), 0.5, 2.0, 0.1)]
LARGE = [(_shape(6, 384, 2, 1024, 8, 4), None), (_shape(3, 512, 2, 1024, 8, 4), (0.1, 1.8, 0.2))]


def varied_state_dict(specs, seed: int, std: float, beta: float, row_sd: float) -> dict[str, torch.Tensor]:
    """synthetic_state_dict with every matrix redrawn from a generalised normal (calibration.sample_matrix)."""
    sd = synthetic_state_dict(specs, seed=seed)
    rng = np.random.default_rng(seed)
    for spec in specs:
        if spec.kind != "control" and len(spec.shape) == 2:
            gain = 2.0 if spec.kind == "embedding" else 1.0
            m = calibration.sample_matrix(spec.shape, std * gain, beta, row_sd, rng)
            sd[spec.name] = torch.from_numpy(m).to(spec.dtype)
    return sd


def training_models() -> list[tuple[str, dict, tuple[str, ...]]]:
    """(name, state dict, presets) of every training model (seeds 10 and up: none is scored)."""
    out = [(f"synthetic-{i}", synthetic_state_dict(baseline_specs(**kw), seed=10 + i), tuple(PRESETS))
           for i, kw in enumerate(SYNTHETIC)]
    out += [(f"varied-{i}-s{std:g}-b{beta:g}-r{row:g}", varied_state_dict(baseline_specs(**kw), 30 + i, std, beta, row),
             tuple(PRESETS)) for i, (kw, std, beta, row) in enumerate(VARIED)]
    for i, (kw, stats) in enumerate(LARGE):
        sd = (synthetic_state_dict(baseline_specs(**kw), seed=50 + i) if stats is None
              else varied_state_dict(baseline_specs(**kw), 50 + i, *stats))
        out.append((f"large-{i}", sd, LARGE_PLANS))
    return out


def _cached(path: Path | None) -> pd.DataFrame:
    return pd.read_csv(path) if path and path.is_file() else pd.DataFrame(columns=["model", "plan", "compressor"])


def measure(models, quiet: bool, cache: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (model, plan, compressor): every group's whole compressed bytes and the real artifact's
    bytes (the slow part, reloaded from `cache` when a previous run left them), next to what the
    estimator's sample of that group compresses to (cheap, always measured afresh)."""
    wpath, apath = (cache / "groups-whole.csv", cache / "artifacts.csv") if cache else (None, None)
    wholes, arts = _cached(wpath), _cached(apath)
    wdone = set(zip(wholes["model"], wholes["plan"], wholes["compressor"]))
    adone = set(zip(arts["model"], arts["plan"], arts["compressor"]))
    jobs = [(m, sd, p) for m, sd, plans in models for p in plans]
    wrows, arows, srows, whole_rows = [], [], [], []
    for model, sd, plan in progress(jobs, desc="training artifacts", total=len(jobs), quiet=quiet):
        _, streams, kind, _ = estimate_streams(sd, plan)
        whole = None
        for comp in FIT_COMPRESSORS:
            small = whole_compressed(streams, kind, comp)  # None unless the estimator compresses it whole
            if small is not None:
                whole_rows.append({"model": model, "plan": plan, "compressor": comp, "kind": kind,
                                   "n_streams": len(streams), "whole": small})
            for key, (c, n, full, _) in group_estimates(streams, comp, {}).items():
                srows.append({"model": model, "plan": plan, "compressor": comp, "group": key, "compressed": c,
                              "sample": n, "kind": kind, "n_streams": len(streams)})
            if (model, plan, comp) not in wdone:
                whole = whole or estimate_streams(sd, plan, sample_values=None)[1]  # samples = the full bytes
                codec = get_compressor(comp)
                for key in dict.fromkeys(s.group for s in whole):
                    blob = b"".join(s.sample for s in whole if s.group == key)
                    wrows.append({"model": model, "plan": plan, "compressor": comp, "group": key,
                                  "cls": sampled.group_class(key), "full": len(blob), "exact": len(codec.compress(blob))})
            if (model, plan, comp) not in adone:
                arows.append({"model": model, "plan": plan, "compressor": comp,
                              "exact": len(build_artifact(sd, plan, comp))})
        if cache and (wrows or arows):  # after every model: an interrupted run resumes here
            cache.mkdir(parents=True, exist_ok=True)
            write_text_atomic(wpath, pd.concat([wholes, pd.DataFrame(wrows)]).to_csv(index=False))
            write_text_atomic(apath, pd.concat([arts, pd.DataFrame(arows)]).to_csv(index=False))
    wholes = pd.concat([wholes, pd.DataFrame(wrows)], ignore_index=True)
    groups = pd.DataFrame(srows).merge(wholes, on=["model", "plan", "compressor", "group"], validate="one_to_one")
    return groups, pd.concat([arts, pd.DataFrame(arows)], ignore_index=True), pd.DataFrame(whole_rows)


def fit_estimator(quiet: bool, cache: Path | None = None) -> dict:
    t0 = time.perf_counter()
    models = training_models()
    groups, arts, small = measure(models, quiet, cache)
    fit = {"format": FIT_FORMAT, "sampling": sampling_settings(), "compressors": {}}
    for comp in FIT_COMPRESSORS:
        fit["compressors"][comp] = {"classes": calibration.fit_corrections(groups[groups["compressor"] == comp]),
                                    "overhead": {}}
    # whole artifacts: residual after the corrected groups, per artifact kind
    rows = []
    for (model, plan, comp), g in groups.groupby(["model", "plan", "compressor"]):
        classes = fit["compressors"][comp]["classes"]
        est = sum(sampled.scaled_bytes(r.compressed, r.sample, r.full, classes.get(r.cls)) for r in g.itertuples())
        exact = int(arts.loc[(arts["model"] == model) & (arts["plan"] == plan) & (arts["compressor"] == comp),
                             "exact"].iloc[0])
        kind = g["kind"].iloc[0]
        frame = 0 if kind == "official-export" and comp == "zlib" else len(frame_header(0, get_compressor(comp).name))
        rows.append({"model": model, "plan": plan, "compressor": comp, "kind": kind,
                     "n_streams": int(g["n_streams"].iloc[0]), "exact": exact, "residual": exact - est - frame})
    frame = pd.DataFrame(rows)
    small = small.merge(arts, on=["model", "plan", "compressor"], validate="one_to_one")
    # the estimator never scales a small artifact's groups: its container is fitted on its own
    is_small = set(zip(small["model"], small["plan"], small["compressor"]))
    frame = frame[[k not in is_small for k in zip(frame["model"], frame["plan"], frame["compressor"])]]
    # small artifacts: all stored bytes compressed as one stream; the residual is the container alone
    small["residual"] = small["exact"] - small["whole"] - [
        0 if k == "official-export" and c == "zlib" else len(frame_header(0, get_compressor(c).name))
        for k, c in zip(small["kind"], small["compressor"])]
    for comp in FIT_COMPRESSORS:
        rels = []
        for key, sub in (("overhead", frame[frame["compressor"] == comp]),
                         ("overhead_whole", small[small["compressor"] == comp])):
            over = calibration.fit_overhead(sub.to_dict("records"))
            fit["compressors"][comp][key] = over
            # in-sample whole-artifact error after the overhead fit: the estimate's stated spread
            left = sub["residual"] - [over[k]["c0"] + over[k]["c1"] * n for k, n in zip(sub["kind"], sub["n_streams"])]
            rels.append(left.abs() / sub["exact"])
        rel = pd.concat(rels)
        fit["compressors"][comp]["artifact_rel_err_max"] = float(rel.max())
        fit["compressors"][comp]["artifact_rel_err_median"] = float(rel.median())
    fit["provenance"] = {
        "script": "benchmarks/fit_estimator.py", "date": datetime.date.today().isoformat(), "versions": versions(),
        "models": [m for m, _, _ in models], "groups": int(len(groups) // len(FIT_COMPRESSORS)),
        "artifacts": int(len(frame)), "small_artifacts": int(len(small)), "seconds": round(time.perf_counter() - t0, 1)}
    return fit


def versions() -> dict:
    import zlib

    import brotli
    import zstandard
    return {"python": platform.python_version(), "torch": torch.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION,
            "zstandard": zstandard.__version__, "zstd": zstandard.ZSTD_VERSION, "brotli": getattr(brotli, "__version__", "?"),
            "lzma": "liblzma (python stdlib)"}


# --- weight statistics ----------------------------------------------------------------------------
def stats_sources(checkpoints: list[str]) -> list[tuple[str, dict]]:
    from pgolf.budget.exact.inputs import load_input
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
    ap.add_argument("--cache", help="folder for measured groups/artifacts: reused when present, written when not")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(1)  # beside other work on a shared machine: one core, no spinning
    if args.only in (None, "stats"):
        stats = fit_stats(args.checkpoints)
        calibration.save_weight_stats(stats, out / "weight_stats.json")
        print(f"weight_stats.json: {len(stats['roles'])} roles from {', '.join(stats['provenance']['sources'])}")
    if args.only in (None, "fit"):
        fit = fit_estimator(args.quiet, Path(args.cache) if args.cache else None)
        write_text_atomic(out / "estimate_fit.json", json.dumps(fit, indent=1) + "\n")
        for name, comp in fit["compressors"].items():
            cls = ", ".join(f"{k}: a {v['alpha']:+.4f} b {v['beta']:+.0f} (med {v['rel_err_median']:.2%}, "
                            f"max {v['rel_err_max']:.2%})" for k, v in comp["classes"].items())
            print(f"{name}: {cls}")
            print(f"  overhead: {comp['overhead']}; small artifacts (compressed whole): {comp['overhead_whole']}")
            print(f"  artifact error median {comp['artifact_rel_err_median']:.3%}, "
                  f"max {comp['artifact_rel_err_max']:.3%}")
        print(f"fit took {fit['provenance']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
