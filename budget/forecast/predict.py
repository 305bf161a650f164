"""Predict artifact bytes from a config before any weights exist, and the largest config that fits.

`predict(...)` lists the baseline family's tensors for the config (shapes.py), gives each matrix
the trained-weight statistics of its role (budget/forecast/data/weight_stats.json: overall RMS, tail shape,
row-scale spread, with the range seen across calibration checkpoints), draws seeded rows with
those statistics, quantizes and packs them under the plan, and turns them into compressed bytes
the way the fast estimator does (estimate.py: the real codec on a sample, scaled up with the
fitted correction). Matrices that share role, shape and scheme share one draw, each with rows of
its own. The interval moves each statistic to each end of its calibration range (all roles
together), one statistic at a time, sums the moves on each side, and widens by the estimator's
worst whole-artifact error. `like=` (like.py) replaces the statistics with a checkpoint's own
values, priced by like_bytes.py; `predict_delta` pairs two predictions (configs or plans) draw by draw.

>>> r = predict(layers=9, dim=512, mlp_mult=2, vocab=1024, plan="official-int8", compressor="zlib")
>>> r.headline["params"], r.headline["bytes_model_low"] <= r.headline["bytes_model"] <= r.headline["bytes_model_high"]
(17059912, True)
"""
from __future__ import annotations

import dataclasses
import math
import zlib as _crc
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from pgolf.budget.exact.build import artifact_kind
from pgolf.budget.forecast.calibration import ROLES, STAT_NAMES, load_weight_stats, role_of, role_params, sample_matrix
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.estimate import estimate_model_bytes, fit_entry, load_fit
from pgolf.budget.forecast.streams import packed_streams
from pgolf.budget.forecast.like import Recipe
from pgolf.budget.forecast.like_bytes import like_bytes, prediction_half_width
from pgolf.budget.forecast.predict_report import DeltaReport, PredictReport
from pgolf.budget.exact.measure import code_sizes_for, tensor_row
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.quant.plans import resolve_plan
from pgolf.budget.quant.schemes import get_scheme
from pgolf.budget.forecast.shapes import TensorSpec, baseline_specs, synthetic_state_dict

PREDICT_SAMPLE_VALUES = 1 << 15  # values drawn per distinct (role, shape, scheme)
# Our calibration runs are short (at most 300 steps) and their weights grow at every step we
# measured (3x over 300 steps); a record-length run (10^4 steps) is taken to have outgrown every
# scale floor (int6 floor(1), the official int8 floor 1/127). x8 puts row clips well above 1,
# where the stored symbols of every clip rule no longer depend on the scale.
LONG_RUN_STD_GAIN = 8.0
SCALES = ("long", "calibrated")
DIMENSIONS = {  # --fit dimension -> (config key, smallest value, step)
    "layers": ("layers", 1, 1), "dim": ("dim", 64, 64), "mlp-mult": ("mlp_mult", 0.5, 0.5), "vocab": ("vocab", 256, 128),
}


def config_specs(layers=9, dim=512, heads=8, kv_heads=4, mlp_mult=2, vocab=1024, untied=False,
                 unique_layers=None, bigram_hash=0, bigram_dim=128, **extra) -> list[TensorSpec]:
    """The tensor list of a config (extra: smear_gate, embed_dim, skip_gates; see baseline_specs)."""
    return baseline_specs(layers, dim, heads, kv_heads, mlp_mult, vocab, not untied, unique_layers, bigram_hash,
                          bigram_dim=bigram_dim, **extra)


def _draw(spec: TensorSpec, params: dict, scheme_name: str, copies: int) -> torch.Tensor:
    """Rows of a trained-like matrix for `copies` tensors (all rows if few), seeded by
    role/shape/scheme/statistics: each tensor of that kind gets its own rows (identical rows
    would hand the codec matches a real model never has)."""
    rows, cols = spec.shape
    n_rows = min(rows, max(1, math.ceil(PREDICT_SAMPLE_VALUES / cols)))
    key = f"{role_of(spec.name)}|{spec.shape}|{scheme_name}|{sorted(params.items())}"
    rng = np.random.default_rng(_crc.crc32(key.encode()))
    m = sample_matrix((n_rows * copies, cols), params["std"], params["beta"], params["row_log_sd"], rng)
    return torch.from_numpy(m).to(spec.dtype)


def _streams_for(specs, plan, stats, overrides: dict[tuple[str, str], str] | None = None, cache: dict | None = None,
                 std_gain: float = 1.0):
    """Streams (with full-tensor byte counts) and per-tensor rows for the specs under `plan`."""
    overrides = overrides or {}
    cache = {} if cache is None else cache
    controls = synthetic_state_dict([s for s in specs if role_of(s.name) is None or len(s.shape) != 2], seed=0)
    plans = []  # (spec, scheme, key, params)
    for spec in specs:
        role = role_of(spec.name) if len(spec.shape) == 2 else None
        meta = torch.empty(spec.shape, dtype=spec.dtype, device="meta")
        scheme = get_scheme(plan.scheme_for(spec.name, meta))
        if role is None:
            plans.append((spec, scheme, ("control", spec.name), None))
            continue
        which = {stat: overrides.get((role, stat), "median") for stat in STAT_NAMES}
        params = {stat: role_params(stats, role, which[stat])[stat] for stat in STAT_NAMES}
        params["std"] *= std_gain
        plans.append((spec, scheme, (role, spec.shape, scheme.name, tuple(sorted(params.items()))), params))
    copies: dict = {}
    for spec, _, key, _ in plans:
        copies[key] = copies.get(key, 0) + 1
    streams, rows, schemes, seen = [], [], [], {}
    for spec, scheme, key, params in plans:
        index = seen[key] = seen.get(key, -1) + 1
        schemes.append(SimpleNamespace(scheme=scheme))
        nv, ns = scheme.payload_bytes(spec.shape, spec.dtype)
        if (key, index) not in cache:
            if params is None:
                part = controls[spec.name]
            else:
                if key not in cache:
                    cache[key] = _draw(spec, params, scheme.name, copies[key])
                drawn = cache[key]
                n = drawn.shape[0] // copies[key]
                part = drawn[index * n:(index + 1) * n]
            q = scheme.quantize(part)
            values, scales = scheme.pack(q)
            cache[key, index] = packed_streams("", scheme, q, values, scales, 1, 1, spec.dtype)
        for s in cache[key, index]:
            full = nv if s.part == "values" else ns
            streams.append(dataclasses.replace(s, tensor=spec.name, n_bytes=int(full)))
        rows.append({**tensor_row(spec.name, spec.shape, spec.dtype, scheme), "role": key[0]})
    return streams, rows, artifact_kind(schemes)


def predict(layers: int = 9, dim: int = 512, mlp_mult: float = 2, vocab: int = 1024, heads: int = 8, kv_heads: int = 4,
            untied: bool = False, unique_layers: int | None = None, bigram_hash: int = 0, bigram_dim: int = 128,
            plan="official-int8", compressor="zlib", code=None, cap: int = CAP_BYTES, *, code_wrapped: bool = False,
            stats: dict | None = None, fit: dict | None = None, interval: bool = True, scale: str = "long",
            like: Recipe | None = None, **extra) -> PredictReport:
    """Predicted artifact bytes (with an interval) for a baseline-family config, plan and compressor.

    `scale`: "long" (a record-length run: weights LONG_RUN_STD_GAIN x the calibrated scale, no
    scale floor binds; the interval reaches down to the calibrated scale) or "calibrated" (the
    scale our short calibration runs reached). `like`: a Recipe (like.load_recipe) whose own
    values stand in for the shipped statistics (`scale` then does not apply).

    >>> r = predict(layers=9, dim=512, mlp_mult=2, vocab=1024, plan="int6", compressor="zstd")
    >>> r.headline["params"], r.headline["bytes_model_low"] <= r.headline["bytes_model"] <= r.headline["bytes_model_high"]
    (17059912, True)
    """
    fit = fit or load_fit()
    plan, comp = resolve_plan(plan), get_compressor(compressor)
    key, entry = fit_entry(fit, comp.name)
    specs = config_specs(layers, dim, heads, kv_heads, mlp_mult, vocab, untied, unique_layers, bigram_hash, bigram_dim,
                         **extra)
    if scale not in SCALES:
        raise PgolfInputError(None, f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    err = float(entry.get("artifact_rel_err_max", 0.0))
    if like is not None:
        priced = like_bytes(specs, plan, comp.name, like, fit, interval, err)
        frame = _like_frame(priced["rows"], priced["per_tensor"])
        central, low, high, variants, notes = (priced[k] for k in ("central", "low", "high", "variants", "notes"))
    else:
        frame, central, low, high, variants, notes = _stats_bytes(specs, plan, comp.name, stats or load_weight_stats(),
                                                                  fit, interval, scale, err, key)
    code_sizes = code_sizes_for(code)
    bytes_code = code_sizes.get("wrapped" if code_wrapped else "raw", 0)
    params = int(frame["numel"].sum())
    bytes_model = int(round(central))
    t = totals(bytes_model, bytes_code, params, cap)
    head = {"params": params, "plan": plan.name, "compressor": comp.name, "bytes_model": bytes_model,
            "bytes_model_low": int(math.floor(low)), "bytes_model_high": int(math.ceil(high)),
            "bytes_code": bytes_code, "bytes_total": t.bytes_total,
            "bytes_total_high": totals(math.ceil(high), bytes_code, params, cap).bytes_total, "cap": int(cap),
            "headroom_bytes": t.headroom_bytes, "bits_per_param": t.bits_per_param, "payload_bytes": int(frame["payload_bytes"].sum()),
            "artifact": variants.pop("kind"), "estimated": True, "scale": "like" if like is not None else scale}
    if like is not None:
        head.update(like=like.source, like_path="exact" if priced["whole"] else "sub-model",
                    measured_share=round(priced["share"], 6))
    notes.append("EXACT: params, payload_bytes, values_bytes, scales_bytes, bits_per_value, bytes_code; "
                 "PREDICTED: bytes_model (interval bytes_model_low..bytes_model_high), bytes_total, "
                 "bytes_total_high, headroom_bytes, bits_per_param, compressed_bytes")
    if not code_sizes:
        notes.append("bytes_code = 0: no code file given (--code FILE adds the script's bytes)")
    title = (f"pgolf predict: {layers} layers x {dim}, mlp x{mlp_mult:g}, vocab {vocab}, heads {heads}/{kv_heads}"
             + (", untied head" if untied else "") + (f", {unique_layers} unique blocks" if unique_layers else "")
             + (f", bigram hash {bigram_hash}" if bigram_hash else "") + (f", like {like.source}" if like else ""))
    return PredictReport(title=title, headline=head, frame=frame, notes=notes, variants=variants)


def _frame(rows: list[dict], per_tensor: dict[str, float]) -> pd.DataFrame:
    """Predict's per-tensor rows: the exact path's columns (tensor_row) plus role and compressed_bytes."""
    frame = pd.DataFrame(rows)
    frame["kind"] = ["quantized" if get_scheme(s).kind == "quantized" else "passthrough" for s in frame["scheme"]]
    frame["bits_per_value"] = [get_scheme(s).bits_for(getattr(torch, d)) for s, d in zip(frame["scheme"], frame["dtype"])]
    frame["compressed_bytes"] = [int(round(per_tensor.get(n, 0.0))) for n in frame["name"]]
    return frame


def _like_frame(rows: pd.DataFrame, per_tensor: dict[str, float]) -> pd.DataFrame:
    """Predict's rows for a --like draw: the estimator's rows re-derived with tensor_row, plus role."""
    roles = [role_of(n) or "control" for n in rows["name"]]
    base = [tensor_row(n, tuple(sh), getattr(torch, d), get_scheme(sc))
            for n, sh, d, sc in zip(rows["name"], rows["shape"], rows["dtype"], rows["scheme"])]
    return _frame([{**b, "role": r} for b, r in zip(base, roles)], per_tensor)


def _stats_bytes(specs, plan, comp_name, stats, fit, interval, scale, err, key):
    """Bytes from the shipped statistics: seeded samples, one statistic moved at a time for the interval."""
    gain = LONG_RUN_STD_GAIN if scale == "long" else 1.0
    cache: dict = {}  # one sample per (role, shape, scheme, statistics), shared by all evaluations
    streams, rows, kind = _streams_for(specs, plan, stats, None, cache, gain)
    central, per_tensor = estimate_model_bytes(streams, kind, comp_name, fit)
    variants = {"central": central}
    if interval:
        # one statistic at a time, every role together (a longer or differently regularised run
        # moves all matrices the same way)
        roles = {r["role"] for r in rows} & set(ROLES)
        for stat in STAT_NAMES:
            for end in ("lo", "hi"):
                variants[f"{stat}.{end}"], _ = estimate_model_bytes(
                    _streams_for(specs, plan, stats, {(role, stat): end for role in roles}, cache, gain)[0],
                    kind, comp_name, fit)
        if scale == "long":  # a run as short as ours: scale floors may bind
            variants["std.calibrated"], _ = estimate_model_bytes(_streams_for(specs, plan, stats, None, cache, 1.0)[0],
                                                                 kind, comp_name, fit)
    moves = {k: v - central for k, v in variants.items() if k != "central"}
    low = (central + sum(min(0.0, d) for d in moves.values())) * (1 - err)
    high = (central + sum(max(0.0, d) for d in moves.values())) * (1 + err)
    notes = [f"PREDICTED (no weights): from seeded samples with the trained-weight statistics of weight_stats.json "
             f"({', '.join(stats['provenance'].get('sources', []))}) and the {key} estimator fit"
             + (f"; scale: a record-length run, weights {LONG_RUN_STD_GAIN:g}x the calibrated scale (no scale floor "
                f"binds)" if scale == "long" else "; scale: as calibrated (short runs: scale floors may bind)")]
    if moves:
        worst = max(moves, key=lambda k: abs(moves[k]))
        notes.append(f"interval: statistics moved to their calibration range one at a time (largest: {worst} "
                     f"{moves[worst]:+,.0f} bytes), then widened by the estimator's worst error {err:.2%}")
    return _frame(rows, per_tensor), central, low, high, {**variants, "kind": kind}, notes


def predict_delta(config: dict, change: dict | None = None, plan="official-int8", plan_b=None,
                  compressor="zlib", **kw) -> DeltaReport:
    """Predicted bytes of config B (= config updated by `change`) under plan B (default: plan) minus
    those of config A under plan, with the same statistics and the same draws for both (a
    DeltaReport: one row per role; A's and B's bytes keep their own intervals).

    The interval pairs the evaluations: with the shipped statistics each statistic moved for both
    A and B (the change in the delta, summed on each side); with --like the delta of each draw.
    Then it is widened by the estimator's worst relative error applied to the delta itself.

    >>> r = predict_delta({"layers": 4, "dim": 256}, {"layers": 5}, plan="int6", compressor="zstd")
    >>> r.headline["delta_params"], r.headline["delta_bytes_model_low"] <= r.headline["delta_bytes_model"] <= r.headline["delta_bytes_model_high"]
    (459784, True)
    >>> r = predict_delta({"layers": 2, "dim": 128}, plan="int6", plan_b="int6-floor", compressor="zstd", interval=False)
    >>> r.headline["delta_params"], r.headline["delta_payload_bytes"], r.headline["plan_b"]
    (0, 0, 'int6-floor')
    """
    change = change or {}
    a = predict(**config, plan=plan, compressor=compressor, **kw)
    b = predict(**{**config, **change}, plan=plan if plan_b is None else plan_b, compressor=compressor, **kw)
    va, vb = a.variants, b.variants
    if "central" in va:
        d0 = vb["central"] - va["central"]
        moves = [(vb[k] - vb["central"]) - (va[k] - va["central"]) for k in va if k != "central" and k in vb]
        low, high = d0 + sum(min(0.0, m) for m in moves), d0 + sum(max(0.0, m) for m in moves)
    else:
        deltas = np.array([vb[k] - va[k] for k in va if k in vb])
        d0 = float(deltas.mean())
        half = prediction_half_width(deltas)
        low, high = d0 - half, d0 + half
    _, entry = fit_entry(kw.get("fit") or load_fit(), a.headline["compressor"])
    err = float(entry.get("artifact_rel_err_max", 0.0)) * abs(d0)
    pairs = len(va) - 1 if "central" in va else len(va)
    ha, hb = a.headline, b.headline
    head = {"plan": ha["plan"], "plan_b": hb["plan"], "compressor": ha["compressor"], "params": ha["params"],
            "params_b": hb["params"], "delta_params": hb["params"] - ha["params"],
            "payload_bytes": ha["payload_bytes"], "payload_bytes_b": hb["payload_bytes"],
            "delta_payload_bytes": hb["payload_bytes"] - ha["payload_bytes"],
            "bytes_model": ha["bytes_model"], "bytes_model_b": hb["bytes_model"],
            "delta_bytes_model": int(round(d0)), "delta_bytes_model_low": int(math.floor(low - err)),
            "delta_bytes_model_high": int(math.ceil(high + err)), "estimated": True, "scale": ha["scale"]}
    if "like" in ha:
        head["like"] = ha["like"]
    cols = ["payload_bytes", "compressed_bytes"]
    fa, fb = (f.groupby("role")[cols].sum() for f in (a.frame, b.frame))
    frame = fa.merge(fb, how="outer", left_index=True, right_index=True, suffixes=("", "_b"))
    frame = frame.fillna(0).astype(int).reset_index()
    frame["delta_bytes_model"] = frame["compressed_bytes_b"] - frame["compressed_bytes"]
    what = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in change.items())
    what += ("; " if what and plan_b is not None else "") + (f"plan {ha['plan']} -> {hb['plan']}" if plan_b is not None else "")
    notes = ["EXACT: delta_params, delta_payload_bytes (and params, payload_bytes of A and B, per role too)",
             f"PREDICTED: delta_bytes_model with its interval delta_bytes_model_low..delta_bytes_model_high: paired "
             f"evaluations of A and B ({pairs} each), widened by the estimator's worst error times |delta| "
             f"({err:,.0f} bytes); bytes_model (interval {ha['bytes_model_low']:,} .. {ha['bytes_model_high']:,}) "
             f"and bytes_model_b (interval {hb['bytes_model_low']:,} .. {hb['bytes_model_high']:,}) with their own "
             f"intervals; per role, compressed_bytes, compressed_bytes_b and delta_bytes_model are A's and B's "
             f"predicted per-tensor bytes summed (no interval of their own)",
             "A: " + a.notes[0]] + (["B: " + b.notes[0]] if b.notes[0] != a.notes[0] else [])
    ranges = {"bytes_model": (ha["bytes_model_low"], ha["bytes_model_high"]),
              "bytes_model_b": (hb["bytes_model_low"], hb["bytes_model_high"])}
    return DeltaReport(title=f"pgolf predict --delta: {what or 'no change'} ({a.title.removeprefix('pgolf predict: ')})",
                       headline=head, frame=frame, notes=notes, ranges=ranges)


def _grid(dimension: str, config: dict) -> tuple[str, float, float]:
    """(config key, smallest value, step) for a dimension, every grid point a valid shape."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
    key, lo_value, step = DIMENSIONS[dimension]
    if dimension == "dim":  # widths the heads divide
        step = lo_value = math.lcm(64, int(config.get("heads", 8)))
    if dimension == "layers":  # depth recurrence needs at least its unique blocks
        lo_value = max(1, int(config.get("unique_layers") or 1))
    return key, lo_value, step


def fit_largest(max_bytes: int, dimension: str, config: dict, limit: int = 4096, **kw) -> tuple[float | None, PredictReport | None]:
    """Largest value of one dimension whose predicted bytes_total_high stays <= max_bytes.

    Predictions grow with every dimension, so a doubling search then bisection on the dimension's
    grid (layers 1, dim 64 (a multiple of the heads), mlp-mult 0.5, vocab 128) finds it.
    Returns (None, None) when even the smallest value does not fit.

    >>> value, report = fit_largest(16_000_000, "layers", {"dim": 512, "mlp_mult": 2}, plan="int6", compressor="zstd")
    >>> value >= 9, report.headline["bytes_total_high"] <= 16_000_000
    (True, True)
    """
    key, lo_value, step = _grid(dimension, config)
    reports: dict[int, PredictReport] = {}

    def fits(i: int) -> bool:
        if i not in reports:
            reports[i] = predict(**{**config, key: lo_value + i * step}, **kw)
        return reports[i].headline["bytes_total_high"] <= max_bytes

    if not fits(0):
        return None, None
    lo_i, hi_i = 0, 1
    while fits(hi_i):  # doubling: lo_i fits, hi_i does not
        lo_i, hi_i = hi_i, hi_i * 2
        if hi_i > limit:
            return lo_value + lo_i * step, reports[lo_i]
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        lo_i, hi_i = (mid, hi_i) if fits(mid) else (lo_i, mid)
    value = lo_value + lo_i * step
    return (int(value) if float(value).is_integer() else value), reports[lo_i]
