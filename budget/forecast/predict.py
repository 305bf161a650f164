"""Predict artifact bytes from a config before any weights exist, and the largest config that fits.

`predict(...)` lists the baseline family's tensors for the config (shapes.py), gives each matrix
the trained-weight statistics of its role (budget/forecast/data/weight_stats.json: overall RMS, tail shape,
row-scale spread, with the range seen across calibration checkpoints), draws seeded rows with
those statistics, quantizes and packs them under the plan, and turns them into compressed bytes
the way the fast estimator does (estimate.py: the real codec on a sample, scaled up with the
fitted correction). Matrices that share role, shape and scheme share one draw, each with rows of
its own. The interval moves each statistic to each end of its calibration range (all roles
together), one statistic at a time, sums the moves on each side, and widens by the estimator's
worst whole-artifact error.

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
from pgolf.budget.forecast.estimate import estimate_model_bytes, fit_entry, load_fit, packed_streams
from pgolf.budget.exact.measure import code_sizes_for
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.quant.plans import resolve_plan
from pgolf.budget.report_base import Report
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


@dataclasses.dataclass(repr=False)
class PredictReport(Report):
    """Predicted bytes for a config: headline with interval, one row per tensor.

    >>> type(predict(layers=2, dim=128, plan="int6")).__name__
    'PredictReport'
    """


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
        rows.append({"name": spec.name, "shape": spec.shape, "numel": spec.numel,
                     "dtype": str(spec.dtype).removeprefix("torch."), "role": key[0], "scheme": scheme.name,
                     "values_bytes": nv, "scales_bytes": ns, "payload_bytes": nv + ns})
    return streams, rows, artifact_kind(schemes)


def predict(layers: int = 9, dim: int = 512, mlp_mult: float = 2, vocab: int = 1024, heads: int = 8, kv_heads: int = 4,
            untied: bool = False, unique_layers: int | None = None, bigram_hash: int = 0, bigram_dim: int = 128,
            plan="official-int8", compressor="zlib", code=None, cap: int = CAP_BYTES, *, code_wrapped: bool = False,
            stats: dict | None = None, fit: dict | None = None, interval: bool = True, scale: str = "long",
            **extra) -> PredictReport:
    """Predicted artifact bytes (with an interval) for a baseline-family config, plan and compressor.

    `scale`: "long" (a record-length run: weights LONG_RUN_STD_GAIN x the calibrated scale, no
    scale floor binds; the interval reaches down to the calibrated scale) or "calibrated" (the
    scale our short calibration runs reached).

    >>> r = predict(layers=9, dim=512, mlp_mult=2, vocab=1024, plan="int6", compressor="zstd")
    >>> r.headline["params"], r.headline["bytes_model_low"] <= r.headline["bytes_model"] <= r.headline["bytes_model_high"]
    (17059912, True)
    """
    stats, fit = stats or load_weight_stats(), fit or load_fit()
    plan, comp = resolve_plan(plan), get_compressor(compressor)
    key, entry = fit_entry(fit, comp.name)
    specs = config_specs(layers, dim, heads, kv_heads, mlp_mult, vocab, untied, unique_layers, bigram_hash, bigram_dim,
                         **extra)
    if scale not in SCALES:
        raise PgolfInputError(None, f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    gain = LONG_RUN_STD_GAIN if scale == "long" else 1.0
    cache: dict = {}  # one sample per (role, shape, scheme, statistics), shared by all evaluations
    streams, rows, kind = _streams_for(specs, plan, stats, None, cache, gain)
    central, per_tensor = estimate_model_bytes(streams, kind, comp.name, fit)
    low = high = central
    moves = {}
    if interval:
        # one statistic at a time, every role together (a longer or differently regularised run
        # moves all matrices the same way)
        roles = {r["role"] for r in rows} & set(ROLES)
        for stat in STAT_NAMES:
            for end in ("lo", "hi"):
                moved, _ = estimate_model_bytes(
                    _streams_for(specs, plan, stats, {(role, stat): end for role in roles}, cache, gain)[0],
                    kind, comp.name, fit)
                moves[f"{stat}.{end}"] = moved - central
        if scale == "long":  # a run as short as ours: scale floors may bind
            moved, _ = estimate_model_bytes(_streams_for(specs, plan, stats, None, cache, 1.0)[0], kind, comp.name, fit)
            moves["std.calibrated"] = moved - central
        low = central + sum(min(0.0, d) for d in moves.values())
        high = central + sum(max(0.0, d) for d in moves.values())
    err = float(entry.get("artifact_rel_err_max", 0.0))
    low, high = low * (1 - err), high * (1 + err)
    frame = pd.DataFrame(rows)
    frame["compressed_bytes"] = [int(round(per_tensor.get(n, 0.0))) for n in frame["name"]]
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
            "artifact": kind, "estimated": True, "scale": scale}
    notes = [f"PREDICTED (no weights): bytes_model and its interval, bytes_total, headroom_bytes, compressed_bytes "
             f"come from seeded samples with the trained-weight statistics of weight_stats.json "
             f"({', '.join(stats['provenance'].get('sources', []))}) and the {key} estimator fit"
             + (f"; scale: a record-length run, weights {LONG_RUN_STD_GAIN:g}x the calibrated scale (no scale floor "
                f"binds)" if scale == "long" else "; scale: as calibrated (short runs: scale floors may bind)"),
             "EXACT: params, payload_bytes, values_bytes, scales_bytes, bytes_code"]
    if moves:
        worst = max(moves, key=lambda k: abs(moves[k]))
        notes.append(f"interval: statistics moved to their calibration range one at a time (largest: {worst} "
                     f"{moves[worst]:+,.0f} bytes), then widened by the estimator's worst error {err:.2%}")
    if not code_sizes:
        notes.append("bytes_code = 0: no code file given (--code FILE adds the script's bytes)")
    title = (f"pgolf predict: {layers} layers x {dim}, mlp x{mlp_mult:g}, vocab {vocab}, heads {heads}/{kv_heads}"
             + (", untied head" if untied else "") + (f", {unique_layers} unique blocks" if unique_layers else "")
             + (f", bigram hash {bigram_hash}" if bigram_hash else ""))
    return PredictReport(title=title, headline=head, frame=frame, notes=notes)


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
