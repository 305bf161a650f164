"""Fast size estimate: the real codec on a ~1 % sample of the stored bytes, anchored on entropy.

For each tensor the plan's scheme quantizes a sample of its rows (every row of a small tensor;
per-row and per-group schemes treat rows independently, so sampled rows get exactly the symbols
the full tensor would) and packs them in the scheme's storage: each tensor gives a values and a
scales stream with exact full byte counts. sampled.py groups alike streams, deals evenly spaced
pieces of them into K disjoint draws (about 1 % of the artifact together) and compresses each
with the real compressor at the artifact's settings. A draw's codec bytes per bit of windowed
order-0 entropy (its anchor) times the full streams' anchor estimates the group; that ratio is
measured on the sample, in whatever regime the weights are. Where rows differ (floors binding
for some, untrained embedding rows, outliers), a sample of rows can misstate its tensor's bits by
several percent: rows.py corrects each tensor's anchor by a regression on two statistics of every
row (RMS and max |value|) and carries the correction's standard error. Two fitted terms remain
(budget/forecast/data/estimate_fit.json, written by benchmarks/fit_estimator.py on models none
of the benchmarks score): the history factor (a long stream codes better per anchor bit than a
short draw, more so at low entropy; for lzma and ans net of the start-up cost the sample measures,
sampled.learning_cost) and the container term (headers, pickle, boundaries between groups: c0 + c1
per stream). The interval is INTERVAL_Z standard errors: the draws' spread over sqrt(K) with the
row correction's error, the history factor's and the container term's scatter on the fit's
models. Under zstd the official export's pickle head steers the parser for the whole first group:
estimate_budget measures that on the sample (export_head, sampled.lead_in) and takes the
container term fitted net of it. An artifact of at most sampled.WHOLE_MAX_BYTES stored bytes is
built for real by estimate_budget (about one sample's cost): its bytes_model is exact and
labelled so (estimate_model still compresses its stored bytes whole, whole_payload, for
predict's callers). Raw payload and scale byte counts are exact. Each tensor's share of its group
(the compressed_bytes column) follows its order-0 entropy. The streams themselves: streams.py.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.build import artifact_kind, assign, build
from pgolf.budget.exact.container import frame_header
from pgolf.budget.exact.measure import BudgetReport, code_sizes_for, tensor_row
from pgolf.budget.exact.threads import one_torch_thread
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.forecast import sampled
from pgolf.budget.forecast.rows import CODE_VALUES as ROW_CODE_VALUES
from pgolf.budget.forecast.streams import (SAMPLE_VALUES, Stream, export_head, first_group_sample, tensor_streams,
                                           whole_payload)
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.progress import progress
from pgolf.budget.report_base import LabelledReport, carried_intervals
from pgolf.budget.quant.plans import resolve_plan
from pgolf.budget.quant.schemes import get_scheme

FIT_FORMAT = "pgolf-estimate-fit-v4"  # v4: container terms only; groups scale by their entropy anchor
# The interval: this many standard errors either side. The draws' spread has DRAWS - 1 degrees of
# freedom; Student's t at 97.5 % with 3 is 3.18.
INTERVAL_Z = 3.2


def sampling_settings() -> dict:
    """The sampling constants a fit is only valid for (stored in the fit, checked on load)."""
    return {"fraction": sampled.SAMPLE_FRACTION, "min_bytes": sampled.SAMPLE_MIN_BYTES,
            "max_bytes": sampled.SAMPLE_MAX_BYTES, "group_min_bytes": sampled.GROUP_MIN_BYTES,
            "piece_bytes": sampled.PIECE_BYTES, "tensor_values": SAMPLE_VALUES,
            "whole_max_bytes": sampled.WHOLE_MAX_BYTES, "draws": sampled.DRAWS,
            "windows": dict(sampled.WINDOW_BYTES), "lead_in": list(sampled.LEAD_IN_BYTES),
            "learning_codecs": list(sampled.LEARNING_CODECS),
            "row_correction": {"statistics": ["log2 rms", "log2 max abs"], "code_values": ROW_CODE_VALUES}}


# --- the fitted container term ------------------------------------------------------------------
def load_fit(path: str | Path | None = None) -> dict:
    """The shipped container terms (budget/forecast/data/estimate_fit.json) or a file of that format."""
    # the namespace package hides its data from importlib.resources: read beside this file
    where = str(Path(__file__).resolve().parent / "data" / "estimate_fit.json" if path is None else path)
    try:
        fit = json.loads(Path(where).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PgolfInputError(where, f"cannot read the estimator fit ({exc.__class__.__name__}); "
                                     f"run benchmarks/fit_estimator.py") from None
    if not isinstance(fit, dict) or fit.get("format") != FIT_FORMAT or not isinstance(fit.get("compressors"), dict):
        raise PgolfInputError(where, f"not a {FIT_FORMAT} file")
    if fit.get("sampling") != sampling_settings():
        raise PgolfInputError(where, "estimator fit was made with other sampling settings; "
                                     "rerun benchmarks/fit_estimator.py")
    return fit


def fit_entry(fit: dict, compressor: str) -> tuple[str, dict]:
    """(key used, coefficients) for a compressor spec; falls back to its codec at default level."""
    name = get_compressor(compressor).name
    if name in fit["compressors"]:
        return name, fit["compressors"][name]
    base = get_compressor(name.split("+")[0].split(":")[0]).name
    if base in fit["compressors"]:
        return base, fit["compressors"][base]
    raise PgolfInputError(None, f"no estimator fit for compressor {name!r} (fitted: {', '.join(fit['compressors'])})")


def container_bytes(n_streams: int, container: str, entry: dict, whole: bool = False,
                    head: bool = False) -> tuple[float, float]:
    """(bytes, sd) the container adds past its groups compressed alone: c0 + c1 n_streams, fitted on
    benchmarks/fit_estimator.py's models (none of them scored), sd its scatter there. `head`: the
    term fitted net of sampled.lead_in (zstd), where the fit has one for this container."""
    table = "overhead_whole" if whole else "overhead_head" if head and container in entry.get("overhead_head", {}) \
        else "overhead"
    over = entry[table].get(container, {"c0": 0.0, "c1": 0.0, "sd": 0.0})
    return over["c0"] + over["c1"] * n_streams, over.get("sd", 0.0)


def group_estimates(streams: list[Stream], compressor: str, coef: dict | None = None) -> dict[str, sampled.GroupEstimate]:
    """group -> GroupEstimate (sampled.estimate_group) of every group of alike streams."""
    groups: dict[str, list[sampled.StreamSample]] = {}
    for s in streams:
        groups.setdefault(s.group or sampled.group_key(s.cls, "", ""), []).append(
            sampled.StreamSample(s.n_bytes, s.sample, s.anchor_factor, s.anchor_rel_se))
    total = sum(s.n_bytes for s in streams)
    return sampled.compress_groups(sampled.sample_plan(groups, total), compressor, total, coef)


# --- whole-model estimate -----------------------------------------------------------------------
@one_torch_thread()
def estimate_streams(sd: dict[str, Tensor], plan="official-int8", sample_values: int | None = SAMPLE_VALUES,
                     quiet: bool = True) -> tuple[pd.DataFrame, list[Stream], str, str]:
    """(per-tensor rows, streams, artifact kind, plan name) for a state dict under a plan."""
    return _estimate_parts(sd, plan, sample_values, quiet)[:4]


def _estimate_parts(sd: dict[str, Tensor], plan, sample_values: int | None, quiet: bool
                    ) -> tuple[pd.DataFrame, list[Stream], str, str, list]:
    """estimate_streams' four and the items (build.assign) they come from."""
    plan = resolve_plan(plan)
    items = assign(sd, plan)
    stored = sum(sum(i.scheme.payload_bytes(i.shape, i.dtype)) for i in items if i.tied_to is None)
    if stored <= sampled.WHOLE_MAX_BYTES:
        sample_values = None  # small: quantize every row, whole_payload compresses it all
    rows, streams = [], []
    for item in progress(items, desc="estimate", total=len(items), quiet=quiet):
        if item.tied_to is not None:
            rows.append({**tensor_row(item.name, item.shape, item.dtype, item.scheme, tied=True),
                         "entropy_bytes": 0, "sampled_fraction": 1.0, "tied_to": item.tied_to})
            continue
        row, tensor_streams_ = tensor_streams(item.name, item.tensor, item.scheme.name, sample_values)
        rows.append({**row, "tied_to": None})
        streams += tensor_streams_
    return pd.DataFrame(rows), streams, artifact_kind(items), plan.name, items


@dataclasses.dataclass(frozen=True)
class ModelEstimate:
    """Estimated artifact bytes with their standard error and the parts they come from."""

    total: float
    sd: float
    per_tensor: dict
    whole: bool          # every stored byte compressed (a small artifact): no sampling error
    sampling_sd: float   # from the spread of the draws
    container_sd: float  # the container term's scatter on the fit's models
    history_sd: float = 0.0  # the history factor's scatter on the fit's groups
    lead_in: float = 0.0     # what the export's head does to the group behind it (sampled.lead_in)
    lead_in_sd: float = 0.0


def estimate_model(streams: list[Stream], kind: str, compressor: str, fit: dict | None = None,
                   head: bytes | None = None) -> ModelEstimate:
    """Estimated artifact bytes from sampled streams: groups (sampled.estimate_group) + container + frame.

    `head`: the official export's bytes before its first tensor data (export_head). Given, zstd's
    sampled estimate measures what it does to the first group (sampled.lead_in) and takes the
    container term fitted net of that ("overhead_head"); None keeps the older term, which averages
    it over the fit's models."""
    fit = fit or load_fit()
    comp = get_compressor(compressor)
    _, entry = fit_entry(fit, comp.name)
    size_of = sampled.sample_codec(comp.name, 1)
    blob = whole_payload(streams, kind)
    if blob is not None:
        c = float(sampled.sample_codec(comp.name, len(blob))(blob))
        groups, group_of = {"": sampled.GroupEstimate(int(c), len(blob), len(blob), c, 0.0)}, (lambda s: "")
        empty = 0
    else:
        groups, group_of = group_estimates(streams, comp.name, entry.get("history")), (lambda s: s.group)
        empty = size_of(b"")  # the codec's own header and trailer, paid once
    lead, lead_sd = 0.0, 0.0
    with_head = head is not None and blob is None and comp.codec == "zstd" and "overhead_head" in entry
    if with_head and head:
        first, sample = first_group_sample(streams, kind)
        if first in groups:
            lead, lead_sd = sampled.lead_in(head, sample, groups[first].full,
                                            sampled.sample_codec(comp.name, sum(s.n_bytes for s in streams)))
            groups[first] = dataclasses.replace(groups[first], estimate=groups[first].estimate + lead)
    per_tensor = entropy_shares(streams, {g: e.estimate for g, e in groups.items()}, group_of)
    plain_official = kind == "official-export" and comp.name == "zlib"
    frame = 0 if plain_official else len(frame_header(0, comp.name))
    over, over_sd = container_bytes(len(streams), kind, entry, blob is not None, with_head)
    sampling_sd = math.sqrt(sum(g.sd ** 2 for g in groups.values()))
    # the history factor's scatter on the fit's groups, the same for every group of one artifact
    history_sd = sum((sampled.class_coef(entry.get("history"), k) or {}).get("sd", 0.0) * g.estimate
                     for k, g in groups.items() if g.draws)
    total = sum(g.estimate for g in groups.values()) + empty + over + frame
    sd = math.sqrt(sampling_sd ** 2 + over_sd ** 2 + history_sd ** 2 + lead_sd ** 2)
    return ModelEstimate(total, sd, per_tensor, blob is not None, sampling_sd, over_sd, history_sd, lead, lead_sd)


def entropy_shares(streams: list[Stream], group_bytes: dict[str, float], group_of) -> dict[str, float]:
    """tensor -> its share of its group's bytes (`group_bytes`: group -> bytes) by order-0 entropy bits.

    >>> s = [Stream("a", "values", "byte", 100, 2.0), Stream("b", "values", "byte", 100, 6.0)]
    >>> entropy_shares(s, {"": 80.0}, lambda s: "")
    {'a': 20.0, 'b': 60.0}
    """
    weight: dict[str, float] = {}
    for s in streams:
        weight[group_of(s)] = weight.get(group_of(s), 0.0) + s.n_bytes * max(s.h, 0.05)
    per_tensor: dict[str, float] = {}
    for s in streams:
        g = group_of(s)
        total = group_bytes.get(g)
        share = total * s.n_bytes * max(s.h, 0.05) / weight[g] if total is not None else 0.0
        per_tensor[s.tensor] = per_tensor.get(s.tensor, 0.0) + share
    return per_tensor


def estimate_model_bytes(streams: list[Stream], kind: str, compressor: str, fit: dict | None = None
                         ) -> tuple[float, dict[str, float]]:
    """(estimated artifact bytes, estimated compressed bytes per tensor) from sampled streams."""
    m = estimate_model(streams, kind, compressor, fit)
    return m.total, m.per_tensor


def interval(m: ModelEstimate) -> tuple[int, int]:
    """(low, high) artifact bytes: INTERVAL_Z standard errors either side of the estimate."""
    half = INTERVAL_Z * m.sd
    return int(math.floor(m.total - half)), int(math.ceil(m.total + half))


ESTIMATED_COLUMNS = ("compressed_bytes", "entropy_bytes")
ESTIMATED_HEADLINE = ("bytes_model", "bytes_total", "headroom_bytes", "bits_per_param", "bytes_model_low",
                      "bytes_model_high", "bytes_model_sd")


EXACT_HEADLINE = ("params", "payload_bytes", "bytes_code", "bytes_code_raw", "bytes_code_wrapped", "cap")


@dataclasses.dataclass(repr=False)
class EstimateReport(LabelledReport, BudgetReport):
    """A BudgetReport whose model bytes are estimated (headline `estimated`: True). Every rendering
    labels each headline number exact or estimated, the estimated bytes with their interval; JSON
    adds `exactness` (key -> "exact" | "estimated") and `interval` (key -> [low, high]).

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 490_000).reshape(700, 700)}  # 490 KB stored: sampled
    >>> r = estimate_budget(sd, "int6", "zlib")
    >>> type(r).__name__, r.to_dict()["exactness"]["bytes_model"], r.to_dict()["exactness"]["params"]
    ('EstimateReport', 'estimated', 'exact')
    """

    def exactness(self) -> dict[str, str]:
        measured = self.headline.get("bytes_model_measured", False)  # a small artifact, built for real
        return {k: "exact" if k in EXACT_HEADLINE or measured else "estimated" for k in self.headline
                if k in EXACT_HEADLINE or k in ESTIMATED_HEADLINE}

    def intervals(self) -> dict[str, list[int]]:
        h = self.headline
        if "bytes_model_low" not in h or h.get("bytes_model_measured"):
            return {}
        return carried_intervals(h, h["bytes_model_low"], h["bytes_model_high"])


@one_torch_thread()
def estimate_budget(sd: dict[str, Tensor], plan="official-int8", compressor="zlib", code=None,
                    cap: int | None = None, *, code_wrapped: bool = False, sample_values: int | None = SAMPLE_VALUES,
                    fit: dict | None = None, quiet: bool = True, source: str = ""):
    """Fast estimate of what `measure_budget` measures: same headline keys, `estimated` True.

    Exact: params, payload/values/scales bytes, bytes_code. Estimated: bytes_model (and what
    derives from it), per-tensor compressed_bytes (its share inside the artifact) and, when rows
    are sampled, entropy_bytes. bytes_model_low/high: INTERVAL_Z standard errors either side
    (bytes_model_sd: the draws' spread and the sampled rows' error, the history factor's and the
    container term's scatter).

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> r = estimate_budget(sd, "int6", "zlib")
    >>> r.headline["estimated"], r.headline["params"]
    (True, 70000)
    """
    cap = CAP_BYTES if cap is None else int(cap)
    fit = fit or load_fit()
    comp = get_compressor(compressor)
    frame, streams, kind, plan_name, items = _estimate_parts(sd, plan, sample_values, quiet)
    key, _ = fit_entry(fit, comp.name)
    if sum(s.n_bytes for s in streams) <= sampled.WHOLE_MAX_BYTES:
        # a small artifact costs about one sample to build: measured, not estimated
        exact = float(len(build(items, plan_name, comp.name).blob))
        m = ModelEstimate(exact, 0.0, entropy_shares(streams, {"": exact}, lambda s: ""), True, 0.0, 0.0)
    else:
        lead_head = export_head(items) if comp.codec == "zstd" and kind == "official-export" else None
        m = estimate_model(streams, kind, comp.name, fit, lead_head)
    frame["kind"] = ["quantized" if get_scheme(s).kind == "quantized" else "passthrough" for s in frame["scheme"]]
    frame["bits_per_value"] = [get_scheme(s).bits_for(getattr(torch, d)) for s, d in zip(frame["scheme"], frame["dtype"])]
    frame["compressed_bytes"] = [int(round(m.per_tensor.get(n, 0.0))) for n in frame["name"]]
    frame["tied_to"] = frame["tied_to"].fillna("")
    code_sizes = code_sizes_for(code)
    bytes_code = code_sizes.get("wrapped" if code_wrapped else "raw", 0)
    bytes_model = int(round(m.total))
    low, high = interval(m)
    params = int(frame.loc[frame["tied_to"] == "", "numel"].sum())
    t = totals(bytes_model, bytes_code, params, cap)
    head = {"params": params, "plan": plan_name, "compressor": comp.name, "bytes_model": bytes_model,
            "bytes_code": bytes_code, "bytes_total": t.bytes_total, "cap": cap,
            "headroom_bytes": t.headroom_bytes, "bits_per_param": t.bits_per_param,
            "payload_bytes": int(frame["payload_bytes"].sum()), "artifact": kind, "estimated": True,
            "bytes_model_low": min(low, bytes_model), "bytes_model_high": max(high, bytes_model),
            "bytes_model_sd": round(m.sd, 1)}
    if m.whole:
        head["bytes_model_measured"] = True
    if code_sizes:
        head.update(bytes_code_raw=code_sizes["raw"], bytes_code_wrapped=code_sizes["wrapped"])
    rows_sampled = bool((frame["sampled_fraction"] < 1).any())
    learnt = (f" (net of the start-up cost {comp.codec} pays once per stream, measured on two draws)"
              if comp.codec in sampled.LEARNING_CODECS else "")
    how = (f"{comp.name} run on up to {sampled.DRAWS} disjoint draws of a ~1 % sample of the stored bytes, each "
           f"scaled by the ratio of the full streams' order-0 entropy to its own{learnt} and by the {key} history "
           f"factor, plus the {key} container term (both fitted in estimate_fit.json on models apart from "
           f"any scored)" + (f", plus {m.lead_in:,.0f} B measured for the export's pickle head in front of "
                             f"zstd's first group" if m.lead_in else ""))
    pct = 100 * INTERVAL_Z * m.sd / max(m.total, 1)
    if m.whole:
        notes = [f"MEASURED (a small artifact: {head['payload_bytes']:,} stored bytes, built for real, which costs "
                 f"about what one sample does): bytes_model and what derives from it are exact; only the "
                 f"compressed_bytes column (each tensor's share, by order-0 entropy) is estimated",
                 "MEASURED/EXACT: params, payload_bytes, values_bytes, scales_bytes, bytes_code, bytes_model"]
    else:
        notes = [f"ESTIMATED (not measured): {', '.join(k for k in ESTIMATED_HEADLINE if k in head)} and the "
                 f"compressed_bytes column (each tensor's share inside the artifact), from {how}; "
                 f"`pgolf budget` without --estimate measures them",
                 f"INTERVAL: bytes_model {head['bytes_model_low']:,} .. {head['bytes_model_high']:,} "
                 f"(+-{pct:.2f} %: {INTERVAL_Z:g} standard errors; sampling sd {m.sampling_sd:,.0f} B from the "
                 f"draws' spread and the sampled rows, history-factor sd {m.history_sd:,.0f} B and container sd "
                 f"{m.container_sd:,.0f} B from the fit's scatter"
                 + (f", head sd {m.lead_in_sd:,.0f} B" if m.lead_in else "") + ")",
                 "MEASURED/EXACT: params, payload_bytes, values_bytes, scales_bytes, bytes_code"
                 + (" (entropy_bytes from a sample of rows where sampled_fraction < 1)" if rows_sampled else "")]
    if key != comp.name:
        notes.append(f"no container term for {comp.name}: used the {key} one")
    if not code_sizes:
        notes.append("bytes_code = 0: no code file given (--code FILE adds the script's bytes)")
    title = f"pgolf budget --estimate: {source}" if source else "pgolf budget --estimate"
    return EstimateReport(title=title, headline=head, frame=frame, notes=notes)
