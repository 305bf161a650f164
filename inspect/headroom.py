"""Headroom under the cap, and the exchange rate of each tensor's next step up or down in precision.

headroom_bytes = cap - bytes_code - bytes_model (the real artifact, measured). For every tensor the
plan lets a rule choose (float, not a control tensor, above the plan's passthrough size), the
next scheme on a precision ladder (default int4 < int5 < int6 < int8 < fp16) up and down, with
- delta_bytes: exact compressed bytes, either of the whole artifact rebuilt with that one tensor's
  scheme changed ("whole"), or of the tensor's payload compressed alone ("alone", faster);
- delta_bpb: the change in that tensor's only-this gap, measured (replayed evaluations, with the
  paired SE and 95% interval of the two evaluations: delta_bpb_se, _lo, _hi, _significant) or
  from the gradient proxy (no spread: NaN SE);
- bpb_per_kb = delta_bpb / (delta_bytes / 1000).

>>> ladder_steps("int6", DEFAULT_LADDER)
('int5', 'int8')
"""
from __future__ import annotations

import dataclasses
import math
import re

import pandas as pd
import torch
from torch import Tensor, nn

from pgolf.budget.quant import official
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.exact.build import tie_key
from pgolf.budget.exact.build import build_artifact
from pgolf.budget.exact.measure import measure_budget, tensor_table
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.progress import progress
from pgolf.budget.quant.schemes import get_scheme
from pgolf.inspect.evaluate import EvalSlice
from pgolf.inspect.gaps import GapSweep
from pgolf.inspect.proxy import gradient_stats, proxy_gaps
from pgolf.inspect.reports import HeadroomReport
from pgolf.inspect.uncertainty import Interval, significance_note

NO_SPREAD = Interval(math.nan, math.nan, math.nan, math.nan, 0)

DEFAULT_LADDER = ("int4", "int5", "int6", "int8", "fp16")
_FLOAT_PRECISION = {"fp8_e4m3": 7.5, "bf16": 15.5, "fp16": 16.0, "fp32": 32.0, "passthrough": 64.0}


def precision(spec: str) -> float:
    """Precision rank of a scheme: value bits (not storage bits), so int6 < int8 < fp16.

    >>> [precision(s) for s in ("ternary", "int6", "int8_clean_per_row_v1", "fp16")]
    [1.585, 6.0, 8.0, 16.0]
    """
    scheme = get_scheme(spec)
    if scheme.kind in ("float", "passthrough"):
        return _FLOAT_PRECISION.get(scheme.name, 16.0)
    nbits = 8 if scheme.name == official.FORMAT_TAG else getattr(scheme, "nbits", None)
    if nbits is not None:
        return float(nbits)
    return round(float(torch.log2(torch.tensor(float(scheme.levels)))), 3)


def ladder_steps(current: str, ladder: tuple[str, ...] | list[str]) -> tuple[str | None, str | None]:
    """(next lower, next higher) scheme of `ladder` around `current` (None at either end)."""
    ladder = sorted(ladder, key=precision)
    name = get_scheme(current).name
    names = [get_scheme(s).name for s in ladder]
    if name in names:
        i = names.index(name)
        return (ladder[i - 1] if i > 0 else None), (ladder[i + 1] if i + 1 < len(ladder) else None)
    p = precision(current)
    lower = [s for s in ladder if precision(s) < p]
    higher = [s for s in ladder if precision(s) > p]
    return (lower[-1] if lower else None), (higher[0] if higher else None)


def with_scheme(plan: Plan, changes: dict[str, str], name: str | None = None) -> Plan:
    """`plan` with exact-name rules first: tensor -> scheme for each of `changes`."""
    rules = tuple((f"^{re.escape(n)}$", s) for n, s in changes.items())
    return Plan(name=name or plan.name, rules=rules + plan.rules, default=plan.default,
                keep_float_max_numel=plan.keep_float_max_numel, description=plan.description)


def allocatable(sd: dict[str, Tensor], plan: Plan) -> list[str]:
    """Tensors whose scheme a name rule decides (float, not control, above the passthrough size,
    not tied to an earlier entry)."""
    seen, out = set(), []
    for n, t in sd.items():
        key = tie_key(t)
        tied = key is not None and key in seen
        seen.add(key)
        if not tied and plan.kept_as(n, t) is None and not official.is_control(n):
            out.append(n)
    return out


def roundtrip(t: Tensor, spec: str) -> Tensor:
    """What the artifact decodes `t` to under scheme `spec` (same as fake_quantize)."""
    scheme = get_scheme(spec)
    return scheme.dequantize(scheme.quantize(t))


class GapOracle:
    """Only-this gaps of (tensor, scheme) pairs, measured by replayed evaluations or by the proxy.

    >>> oracle = GapOracle(model, sd, sl, method="proxy")  # doctest: +SKIP
    >>> oracle.method  # doctest: +SKIP
    'proxy'
    """

    def __init__(self, model: nn.Module, sd: dict[str, Tensor], sl: EvalSlice, method: str = "proxy",
                 cache_dir=None, quiet: bool = False, calib_tokens: int | None = None, batch_seqs: int | None = None,
                 max_replay_bytes: int | None = None):
        if method not in ("measured", "proxy"):
            raise ValueError(f"gap method must be 'measured' or 'proxy', got {method!r}")
        self.model, self.sd, self.sl, self.method, self.quiet = model, sd, sl, method, quiet
        # also evaluates (and caches) whole plans
        self.sweep = GapSweep(model, sd, sl, cache_dir, quiet, batch_seqs, max_replay_bytes)
        self.stats = None
        self.calib_tokens = calib_tokens
        self.reference_result = self.sweep.reference(record=method == "measured")
        self.reference_bpb = self.reference_result.val_bpb
        self.results: dict[tuple[str, str], object] = {}  # measured only-this evaluations by (name, scheme)

    @property
    def label(self) -> str:
        return "measured only-this gaps" if self.method == "measured" else "gradient proxy (first + second order)"

    def gaps(self, pairs: list[tuple[str, str]], desc: str = "gaps") -> dict[tuple[str, str], float]:
        values = {(n, s): roundtrip(self.sd[n], s) for n, s in dict.fromkeys(pairs)}
        exact = {k for k, v in values.items() if v.dtype == self.sd[k[0]].dtype and torch.equal(v, self.sd[k[0]])}
        out = {k: 0.0 for k in exact}
        if self.method == "measured":
            self.results.update({k: self.reference_result for k in exact})
        todo = [k for k in values if k not in exact]
        if not todo:
            return out
        if self.method == "measured":
            results = self.sweep.only_this([(n, get_scheme(s).name, values[(n, s)]) for n, s in todo], desc)
            self.results.update(zip(todo, results))
            out.update({k: r.val_bpb - self.reference_bpb for k, r in zip(todo, results)})
            return out
        if self.stats is None:
            self.stats = gradient_stats(self.model, self.sl, self.calib_tokens)
        for n, s in todo:
            out[(n, s)] = proxy_gaps(self.stats, self.sd, {n: values[(n, s)]}, self.sl.tokens_per_byte)[n]
        return out

    def difference(self, a: tuple[str, str], b: tuple[str, str] | None = None) -> Interval:
        """gap(a) - gap(b) (b None: gap(a) itself) with its paired SE; NO_SPREAD for the proxy.
        Call `gaps` on both pairs first."""
        if self.method != "measured":
            return NO_SPREAD
        other = self.results[b] if b is not None else self.reference_result
        return self.results[a].minus(other)

    def release(self) -> None:
        if self.sweep is not None:
            self.sweep.release()


def alone_bytes(sd: dict[str, Tensor], pairs: list[tuple[str, str]], compressor: str) -> dict[tuple[str, str], int]:
    """Compressed-alone payload bytes of each (tensor, scheme) pair."""
    out = {}
    for n, s in dict.fromkeys(pairs):
        single = Plan(name=s, default=s, keep_float_max_numel=0)
        out[(n, s)] = int(tensor_table({n: sd[n]}, single, compressor)["compressed_bytes"].iloc[0])
    return out


def exchange_rates(sd: dict[str, Tensor], plan: str | Plan, oracle: GapOracle | None = None,
                   ladder: tuple[str, ...] = DEFAULT_LADDER, compressor: str = "zlib", delta_bytes: str = "whole",
                   quiet: bool = False) -> pd.DataFrame:
    """One row per tensor and direction: name, scheme, direction, scheme_next, delta_bytes,
    delta_bpb (NaN without an oracle) with _se, _lo, _hi, _significant, bpb_per_kb."""
    plan = resolve_plan(plan)
    if delta_bytes not in ("whole", "alone"):
        raise ValueError(f"delta_bytes must be 'whole' or 'alone', got {delta_bytes!r}")
    steps = []
    for n in allocatable(sd, plan):
        cur = plan.scheme_for(n, sd[n])
        down, up = ladder_steps(cur, ladder)
        steps += [(n, cur, d, nxt) for d, nxt in (("up", up), ("down", down)) if nxt is not None]
    pairs = [(n, c) for n, c, _, _ in steps] + [(n, x) for n, _, _, x in steps]
    gaps = oracle.gaps(pairs, "exchange-rate gaps") if oracle else {}
    if delta_bytes == "alone":
        sizes = alone_bytes(sd, pairs, compressor)
        db = [sizes[(n, x)] - sizes[(n, c)] for n, c, _, x in steps]
    else:
        base = len(build_artifact(sd, plan, compressor))
        db = [len(build_artifact(sd, with_scheme(plan, {n: x}), compressor)) - base
              for n, _, _, x in progress(steps, desc="exchange-rate bytes", total=len(steps), quiet=quiet)]
    rows = []
    for (n, c, d, x), dbytes in zip(steps, db):
        dbpb = gaps[(n, x)] - gaps[(n, c)] if gaps else float("nan")
        spread = oracle.difference((n, x), (n, c)) if oracle else NO_SPREAD
        stats = dataclasses.replace(spread, value=dbpb).columns("delta_bpb")
        if not math.isfinite(spread.se):
            stats["delta_bpb_significant"] = bool(gaps)  # the proxy has no spread: taken as it is
        rows.append({"name": n, "scheme": get_scheme(c).name, "direction": d, "scheme_next": get_scheme(x).name,
                     "delta_bytes": int(dbytes), **stats,
                     "bpb_per_kb": dbpb / (dbytes / 1000) if dbytes else float("nan")})
    return pd.DataFrame(rows, columns=EXCHANGE_COLUMNS)


EXCHANGE_COLUMNS = ["name", "scheme", "direction", "scheme_next", "delta_bytes", "delta_bpb", "delta_bpb_se",
                    "delta_bpb_lo", "delta_bpb_hi", "delta_bpb_significant", "bpb_per_kb"]


def headroom(sd: dict[str, Tensor], plan: str | Plan = "official-int8", *, compressor: str = "zlib", code=None,
             cap: int = CAP_BYTES, oracle: GapOracle | None = None, ladder: tuple[str, ...] = DEFAULT_LADDER,
             delta_bytes: str = "whole", quiet: bool = False, source: str = "") -> HeadroomReport:
    """Headroom of `sd` under `plan` and the exchange rates of every tensor's next step.

    >>> room = headroom(sd, small_plans(["int6"])[0], cap=cap, oracle=oracle)  # doctest: +SKIP
    >>> room.headline["headroom_bytes"] > 0  # doctest: +SKIP
    True
    """
    plan = resolve_plan(plan)
    budget = measure_budget(sd, plan, compressor, code=code, cap=cap, per_tensor=False)
    head = {k: budget.headline[k] for k in ("params", "plan", "compressor", "bytes_model", "bytes_code",
                                            "bytes_total", "cap", "headroom_bytes")}
    frame = exchange_rates(sd, plan, oracle, ladder, compressor, delta_bytes, quiet)
    head.update(ladder=" < ".join(get_scheme(s).name for s in sorted(ladder, key=precision)),
                delta_bytes_method="whole artifact rebuilt" if delta_bytes == "whole" else "tensor compressed alone",
                delta_bpb_source=oracle.label if oracle else "none (no evaluation slice)")
    notes = [f"delta_bytes: {head['delta_bytes_method']} with {compressor}",
             "bpb_per_kb = delta_bpb / (delta_bytes / 1000): negative up-steps gain BPB per KB spent"]
    if oracle is not None:
        head["tokens"] = oracle.sl.n_tokens
        if oracle.method == "measured" and len(frame):
            head["insignificant_steps"] = int((~frame["delta_bpb_significant"].astype(bool)).sum())
            notes.append(significance_note(head["insignificant_steps"], "steps") + " by the exchange-rate ranking")
        elif len(frame):
            notes.append("delta_bpb from the gradient proxy, a first + second order prediction, not a measurement: "
                         "no standard error; use --gaps measured for intervals")
    if not len(frame):
        notes.append("no tensor is decided by a name rule under this plan (all passthrough); "
                     "try --quantize-small")
    return HeadroomReport.build(head, frame, source=source, notes=notes)
