"""Fit the fast estimator's correction and the trained-weight statistics; write them as package data.

    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py [--cache DIR]     # both files
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only stats      # only weight_stats.json
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only head       # zstd's overhead_head (~1 min)
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only history --compressors lzma   # (~3 min)
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only compressors --compressors brotli,brotli+byte-shuffle
                                                        # their whole entries, history and container (~13 min)
    nice -n 19 .venv/bin/python benchmarks/fit_estimator.py --only fit      # every compressor's entry (~25 min)

1. Container terms (budget/forecast/data/estimate_fit.json): the one fitted part of the estimate.
   Seeded models of the baseline family (small to 1.3 M parameters; Gaussian "trained-like" weights
   and generalised-normal weights of several scales, tail shapes and row spreads; seeds 10 and up)
   under every preset and compressor: each artifact is built for real, each group of alike streams
   is compressed whole and alone, and what the artifact adds past them (container headers, the
   pickle, boundaries between groups) is regressed on the stream count per artifact kind, with its
   scatter as the term's sd; separately for small artifacts (at most sampled.WHOLE_MAX_BYTES
   stored) whose estimate compresses all stored bytes as one stream; and, for zstd under the
   official export, net of what sampled.lead_in measures the pickle head to add (overhead_head).
   The groups are scaled by their entropy anchor and the history factor
   1 - (a0 + a1 h + a2 / h) log2(N / n) (for lzma and ans net of the learning cost the draws measure,
   sampled.learning_cost), fitted per codec and storage class on the same models
   (a2 only where a class's draws span HISTORY_SPAN_BITS bits per byte). No model that
   estimate_accuracy.py scores (the fixtures, its synthetic grid, the seed-0 17 M baseline, pgolf
   checkpoints) is used here.
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
from pgolf.budget.exact.build import assign
from pgolf.budget.forecast.estimate import FIT_FORMAT, estimate_streams, group_estimates, sampling_settings
from pgolf.budget.forecast.streams import export_head, first_group_sample, whole_payload
from pgolf.budget.quant.plans import PRESETS
from pgolf.budget.progress import progress
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "budget" / "forecast" / "data"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "artifacts"
FIT_COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "brotli+byte-shuffle", "ans")
# brotli-11 takes ~10x longer per byte: measured on small artifacts (compressed whole), on the
# generated models and under the official export. Its codings jump by 1-4 % (codec_stability.py),
# so its history factor needs many groups. ans is as fast as zlib: measured everywhere, as its
# container term (a table per 64 KiB, per zip entry) needs more than a few artifacts to fit
SLOW_COMPRESSORS = ("brotli", "brotli+byte-shuffle")
SLOW_PLANS = ("official-int8",)
HISTORY_SPAN_BITS = 4.0  # bits per byte a class's draws must span for history_factor's 1 / h term


def compressors_for(model: str, plan: str, small: bool) -> tuple[str, ...]:
    if small or model.startswith("generated-") or plan in SLOW_PLANS:
        return FIT_COMPRESSORS
    return tuple(c for c in FIT_COMPRESSORS if c not in SLOW_COMPRESSORS)


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


# synthetic.py cells between the test grid's knob values (benchmarks/estimate_accuracy.py), seeds 100 and up
GENERATED = [((2.0, 4.0, 0.9, 0.15, 0.2), 256, 2), ((3.0, 10.0, 0.25, 0.0, 0.0), 256, 2),
             ((5.0, float("inf"), 0.75, 0.15, 0.1), 256, 2), ((2.0, 10.0, 0.0, 0.0, 0.4), 256, 2),
             ((7.0, float("inf"), 0.25, 0.0, 0.0), 256, 2), ((1.2, 4.0, 0.75, 0.1, 0.2), 256, 2),
             ((2.5, 6.0, 0.9, 0.1, 0.3), 384, 3), ((4.0, 4.0, 0.4, 0.0, 0.1), 384, 3)]
GENERATED_PLANS = ("official-int8", "int6", "sdclip-int6-int8emb", "ternary")


def training_models() -> list[tuple[str, dict, tuple[str, ...]]]:
    """(name, state dict, presets) of every training model (seeds 10 and up: none is scored)."""
    from pgolf.budget.forecast import synthetic
    out = [(f"synthetic-{i}", synthetic_state_dict(baseline_specs(**kw), seed=10 + i), tuple(PRESETS))
           for i, kw in enumerate(SYNTHETIC)]
    out += [(f"varied-{i}-s{std:g}-b{beta:g}-r{row:g}", varied_state_dict(baseline_specs(**kw), 30 + i, std, beta, row),
             tuple(PRESETS)) for i, (kw, std, beta, row) in enumerate(VARIED)]
    for i, (knobs, dim, layers) in enumerate(GENERATED):
        cell = synthetic.Cell(*knobs)
        out.append((f"generated-{cell.name}-d{dim}", synthetic.model(cell, dim=dim, layers=layers, seed=100 + i),
                    GENERATED_PLANS))
    return out


def measure(models, quiet: bool, only: tuple[str, ...] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(draws, artifacts). draws: per (model, plan, compressor, sampled group, draw) the draw's bytes,
    codec bytes and anchor, next to the group compressed whole and alone and its full anchor.
    artifacts: the real artifact's bytes and what it adds past its groups compressed alone (or,
    for a small artifact, past all its stored bytes compressed as one stream), and for zstd under
    the official export also past what estimate.py measures its pickle head to add (sampled.lead_in).
    `only`: these compressors alone (default: compressors_for each model)."""
    jobs = [(m, sd, p) for m, sd, plans in models for p in plans]
    drows, arows = [], []
    for model, sd, plan in progress(jobs, desc="training artifacts", total=len(jobs), quiet=quiet):
        _, streams, kind, _ = estimate_streams(sd, plan)
        _, whole, _, _ = estimate_streams(sd, plan, sample_values=None)  # samples = the full bytes
        blob = whole_payload(whole, kind)
        total = sum(s.n_bytes for s in streams)
        for comp in (c for c in compressors_for(model, plan, blob is not None) if not only or c in only):
            size_of = sampled.sample_codec(comp, total)
            empty = size_of(b"")
            parts = empty
            groups = group_estimates(streams, comp) if blob is None else {}
            for key in dict.fromkeys(s.group for s in whole):
                exact = size_of(b"".join(s.sample for s in whole if s.group == key)) - empty
                parts += exact
                g = groups.get(key)
                for d in (g.draws if g else ()):
                    drows.append({"model": model, "plan": plan, "compressor": comp, "group": key, "full": g.full,
                                  "full_anchor": g.full_anchor, "exact": exact, "n": d.n, "compressed": d.compressed,
                                  "anchor": d.anchor, "learning": g.learning})
            if blob is not None:
                parts = size_of(blob)
            frame = 0 if kind == "official-export" and comp == "zlib" else len(frame_header(0, get_compressor(comp).name))
            exact = len(build_artifact(sd, plan, comp))
            lead = None
            if get_compressor(comp).codec == "zstd" and kind == "official-export" and blob is None:
                first, sample = first_group_sample(streams, kind)
                head = export_head(assign(sd, plan))
                lead = sampled.lead_in(head, sample, groups[first].full, size_of)[0] if first in groups else 0.0
            arows.append({"model": model, "plan": plan, "compressor": comp, "kind": kind, "whole": blob is not None,
                          "n_streams": len(streams), "exact": exact, "residual": exact - parts - frame,
                          "residual_head": None if lead is None else exact - parts - frame - lead})
    return pd.DataFrame(drows), pd.DataFrame(arows)


def _learning(d: pd.DataFrame) -> np.ndarray:
    """Each draw's group learning cost (sampled.learning_cost; 0 where not measured, as in older caches)."""
    return d["learning"].fillna(0.0).to_numpy(float) if "learning" in d else np.zeros(len(d))


def _group_estimate(g: pd.DataFrame, coef: dict | None) -> float:
    """One group's estimate from its draws' rows, as sampled.estimate_group makes it (0 without draws)."""
    if g.empty:
        return 0.0
    full, fa = int(g["full"].iloc[0]), float(g["full_anchor"].iloc[0])
    return float(np.mean([sampled.scaled_draw(sampled.Draw(int(n), int(c), a), full, fa, coef, lc)
                          for n, c, a, lc in zip(g["n"], g["compressed"], g["anchor"], _learning(g))]))


def _fit_slope(d: pd.DataFrame) -> dict:
    """a0, a1 of sampled.history_factor by least squares over draws, and the relative scatter of the
    groups' estimates after it (sd: root mean square; also median and max)."""
    x = np.log2(d["full"] / d["n"]).to_numpy()
    h = (d["anchor"] / d["n"]).to_numpy()
    learning = _learning(d)
    # full codec bytes per anchor bit over the draw's, both net of the learning cost, less one:
    # -(a0 + a1 h + a2 / h) x
    y = (((d["exact"] - learning) / d["full_anchor"]) / ((d["compressed"] - learning) / d["anchor"]) - 1).to_numpy()
    terms = [-x, -h * x, -x / np.maximum(h, sampled.H_FLOOR)]
    # the 1 / h term only where h spans enough to tell it from the others (else they are collinear)
    wide = np.ptp(h) >= HISTORY_SPAN_BITS
    (a0, a1, *a2), *_ = np.linalg.lstsq(np.stack(terms if wide else terms[:2], axis=1), y, rcond=None)
    coef = {"a0": float(a0), "a1": float(a1), "a2": float(a2[0]) if wide else 0.0}
    rel = np.asarray([_group_estimate(g, coef) / g["exact"].iloc[0] - 1
                      for _, g in d.groupby(["model", "plan", "group"])])
    coef.update(sd=float(np.sqrt((rel ** 2).mean())), rel_err_median=float(np.median(np.abs(rel))),
                rel_err_max=float(np.abs(rel).max()), groups=int(len(rel)))
    return coef


def fit_history(draws: pd.DataFrame) -> dict:
    """Per storage class (groups of at least sampled.GROUP_MIN_BYTES; smaller ones weigh nothing
    in an artifact) and pooled: the history coefficients of one compressor."""
    d = draws[(draws["anchor"] > 0) & (draws["full"] > draws["n"]) & (draws["full"] >= sampled.GROUP_MIN_BYTES)]
    d = d.assign(cls=[sampled.group_class(k) for k in d["group"]])
    classes = {cls: _fit_slope(g) for cls, g in d.groupby("cls") if g["group"].nunique() and len(g) >= 12}
    return {"classes": classes, "all": _fit_slope(d)}


def artifact_errors(draws: pd.DataFrame, rows: pd.DataFrame, entry: dict) -> np.ndarray:
    """Relative error of the whole estimate on each fit artifact: its sampled groups' errors after
    the history factor plus the container term's miss."""
    err: dict[tuple, float] = {}
    for (model, plan, group), g in draws.groupby(["model", "plan", "group"]):
        est = _group_estimate(g[g["anchor"] > 0], sampled.class_coef(entry["history"], group))
        err[(model, plan)] = err.get((model, plan), 0.0) + est - g["exact"].iloc[0]
    out = []
    for r in rows.itertuples():
        over = entry["overhead_whole" if r.whole else "overhead"].get(r.kind)
        if over:
            miss = over["c0"] + over["c1"] * r.n_streams - r.residual
            out.append((err.get((r.model, r.plan), 0.0) + miss) / r.exact)
    return np.asarray(out)


def fit_overhead(rows: pd.DataFrame, column: str = "residual") -> dict:
    """Per artifact kind: least squares c0 + c1 n_streams of the container residual, and its scatter."""
    out = {}
    for kind, g in rows.groupby("kind"):
        g = g[g[column].notna()]
        if g.empty:
            continue
        x, y = g["n_streams"].to_numpy(float), g[column].to_numpy(float)
        if len(g) >= 3 and np.ptp(x) > 0:
            c1, c0 = np.polyfit(x, y, 1)
        else:
            c0, c1 = float(y.mean()), 0.0
        left = y - (c0 + c1 * x)
        out[kind] = {"c0": float(c0), "c1": float(c1), "n": int(len(g)),
                     "sd": float(np.sqrt((left ** 2).sum() / max(len(g) - 2, 1)))}
    return out


def compressor_entry(draws: pd.DataFrame, rows: pd.DataFrame, comp: str) -> dict:
    """One compressor's history factors and container terms, and its whole-artifact error on the fit's models."""
    draws, sub = draws[draws["compressor"] == comp], rows[rows["compressor"] == comp]
    sub = sub.assign(whole=sub["whole"].astype(bool))
    entry = {"history": fit_history(draws), "overhead": fit_overhead(sub[~sub["whole"]]),
             "overhead_whole": fit_overhead(sub[sub["whole"]])}
    if "residual_head" in sub and sub["residual_head"].notna().any():
        entry["overhead_head"] = fit_overhead(sub[~sub["whole"]], "residual_head")
    rel = artifact_errors(draws, sub, entry)
    # whole-artifact error on the fit's models (pgolf predict widens its interval by the max)
    entry["artifact_rel_err_median"] = float(np.median(np.abs(rel))) if len(rel) else 0.0
    entry["artifact_rel_err_max"] = float(np.abs(rel).max()) if len(rel) else 0.0
    return entry


def _cached(cache: Path | None, names: tuple[str, ...], measured) -> tuple[pd.DataFrame, ...]:
    """The frames `measured()` returns: read from cache/NAME when every one is there, else measured
    and, with a cache, written there."""
    paths = [cache / name for name in names] if cache else []
    if paths and all(p.is_file() for p in paths):
        return tuple(pd.read_csv(p) for p in paths)
    frames = measured()
    if paths:
        cache.mkdir(parents=True, exist_ok=True)
        for path, frame in zip(paths, frames):
            write_text_atomic(path, frame.to_csv(index=False))
    return frames


def fit_estimator(quiet: bool, cache: Path | None = None) -> dict:
    """The container terms: what an artifact adds past its groups compressed alone, per compressor,
    artifact kind and mode (sampled or compressed whole)."""
    t0 = time.perf_counter()
    models = training_models()
    draws, rows = _cached(cache, ("draws.csv", "container.csv"), lambda: measure(models, quiet))
    fit = {"format": FIT_FORMAT, "sampling": sampling_settings(),
           "compressors": {comp: compressor_entry(draws, rows, comp) for comp in FIT_COMPRESSORS}}
    fit["provenance"] = {
        "script": "benchmarks/fit_estimator.py", "date": datetime.date.today().isoformat(), "versions": versions(),
        "models": [m for m, _, _ in models], "artifacts": int(len(rows)),
        "seconds": round(time.perf_counter() - t0, 1)}
    return fit


def fit_compressors_only(fit: dict, compressors: tuple[str, ...], quiet: bool, cache: Path | None = None) -> dict:
    """`fit` with the whole entry of `compressors` (history factors, container terms) refitted on
    the fit's models, measured anew or read from cache/compressors.csv; other compressors kept."""
    t0 = time.perf_counter()
    draws, rows = _cached(cache, ("compressors_draws.csv", "compressors.csv"),
                          lambda: measure(training_models(), quiet, only=compressors))
    fit = {**fit, "sampling": sampling_settings()}
    for comp in compressors:
        fit["compressors"][comp] = compressor_entry(draws, rows, comp)
    fit["provenance"] = {**fit["provenance"], "compressors": {
        "script": f"benchmarks/fit_estimator.py --only compressors --compressors {','.join(compressors)}",
        "date": datetime.date.today().isoformat(), "artifacts": int(len(rows)),
        "seconds": round(time.perf_counter() - t0, 1)}}
    return fit


HEAD_PLANS = ("official-int8", "fp16-embed")  # the presets whose artifact is the official export


def fit_head(fit: dict, quiet: bool, cache: Path | None = None) -> dict:
    """`fit` with zstd's container term net of the export's pickle head (overhead_head) measured
    anew on the fit's models under the official-export presets; the rest of `fit` kept as it is."""
    t0 = time.perf_counter()
    models = [(m, sd, tuple(p for p in plans if p in HEAD_PLANS)) for m, sd, plans in training_models()]
    rows, = _cached(cache, ("head.csv",), lambda: measure(models, quiet, only=("zstd",))[1:])
    sampled_rows = rows[~rows["whole"].astype(bool)]
    fit = {**fit, "sampling": sampling_settings()}
    fit["compressors"]["zstd"]["overhead_head"] = fit_overhead(sampled_rows, "residual_head")
    fit["provenance"] = {**fit["provenance"], "overhead_head": {
        "script": "benchmarks/fit_estimator.py --only head", "date": datetime.date.today().isoformat(),
        "artifacts": int(len(sampled_rows)), "seconds": round(time.perf_counter() - t0, 1)}}
    return fit


def fit_history_only(fit: dict, compressors: tuple[str, ...], quiet: bool, cache: Path | None = None) -> dict:
    """`fit` with the history factors of `compressors` refitted on the fit's models (their draws
    measured anew, or read from cache/history_draws.csv); container terms and the rest kept."""
    t0 = time.perf_counter()
    draws, = _cached(cache, ("history_draws.csv",),
                     lambda: measure(training_models(), quiet, only=compressors)[:1])
    fit = {**fit, "sampling": sampling_settings()}
    for comp in compressors:
        fit["compressors"][comp]["history"] = fit_history(draws[draws["compressor"] == comp])
    fit["provenance"] = {**fit["provenance"], "history": {
        "script": f"benchmarks/fit_estimator.py --only history --compressors {','.join(compressors)}",
        "date": datetime.date.today().isoformat(), "draws": int(len(draws)),
        "seconds": round(time.perf_counter() - t0, 1)}}
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
    ap.add_argument("--only", choices=("fit", "stats", "head", "history", "compressors"),
                    help="write only one of the two files (head: only zstd's overhead_head in the shipped fit; "
                         "history: only the history factors of --compressors; compressors: their whole entries)")
    ap.add_argument("--compressors", default="lzma", help="with --only history or compressors: whose terms to refit")
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
    cache = Path(args.cache) if args.cache else None
    comps = tuple(args.compressors.split(","))
    updates = {"history": lambda fit: fit_history_only(fit, comps, args.quiet, cache),  # the shipped fit, in part
               "compressors": lambda fit: fit_compressors_only(fit, comps, args.quiet, cache),
               "head": lambda fit: fit_head(fit, args.quiet, cache)}
    if args.only in updates:
        shipped = json.loads((DATA / "estimate_fit.json").read_text(encoding="utf-8"))
        fit = updates[args.only](shipped)
        write_text_atomic(out / "estimate_fit.json", json.dumps(fit, indent=1) + "\n")
        for comp in ("zstd",) if args.only == "head" else comps:
            entry = fit["compressors"][comp]
            print(f"{comp}: {entry['overhead_head'] if args.only == 'head' else entry}")
    if args.only in (None, "fit"):
        fit = fit_estimator(args.quiet, cache)
        write_text_atomic(out / "estimate_fit.json", json.dumps(fit, indent=1) + "\n")
        for name, comp in fit["compressors"].items():
            print(f"{name}: history {comp['history']}")
            print(f"  container {comp['overhead']}; small artifacts (compressed whole): {comp['overhead_whole']}")
        print(f"fit took {fit['provenance']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
