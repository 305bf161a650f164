"""Fast size estimate: order-0 entropy of the stored bytes plus a fitted per-compressor correction.

For each tensor the plan's scheme quantizes a sample of its rows (every row of a small tensor;
per-row and per-group schemes treat rows independently, so sampled rows get exactly the symbols
the full tensor would); the symbols are packed in the scheme's storage and reduced to byte
statistics per stream (values, scales): the order-0 entropy `h` in bits per stored byte, the gap
to the collision entropy `d2` (how peaked the histogram is, which LZ matching feeds on), the gap
to the entropy of 16 KiB chunks `dl` (non-stationarity an adaptive coder exploits) and, for
float bytes, the gap to the per-byte-lane entropy `dlane`. A correction fitted on our own
measurements (budget/data/estimate_fit.json, written by benchmarks/fit_estimator.py) maps these
to compressed bits per stored byte, per compressor and storage class; container overhead is a
fitted constant plus a per-stream term. Raw payload and scale byte counts are exact.

>>> import torch
>>> s = byte_stats(np.frombuffer(bytes(range(256)) * 64, dtype=np.uint8))
>>> round(s["h"], 3), round(s["d2"], 3)
(8.0, 0.0)
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

from pgolf.budget.compressors import get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.plans import resolve_plan
from pgolf.budget.schemes import get_scheme

FIT_FORMAT = "pgolf-estimate-fit-v1"
KNOTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # h, bits per stored byte
FEATURES = tuple(f"k{k:g}" for k in KNOTS) + ("d2", "dl", "dlane", "dlane_h", "dsym", "inv_n")
CHUNK_BYTES = 1 << 14
# Values quantized per tensor at most, rows taken in evenly spaced blocks. Rows differ (a row's
# max sets its grid), so the sampled entropy of a tensor is off by ~0.5 % (1 sd) at 64 rows of
# 512; independent across tensors, it averages down in a whole model.
SAMPLE_VALUES = 1 << 15
SAMPLE_BLOCK_BYTES = 1 << 12


def _entropy(counts: np.ndarray) -> tuple[float, float]:
    """(Shannon, collision) entropy in bits per symbol of a histogram (last axis)."""
    n = counts.sum(axis=-1, keepdims=True).astype(np.float64)
    p = counts / np.maximum(n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=-1)
    h2 = -np.log2(np.maximum((p * p).sum(axis=-1), 1e-300))
    return h, h2


def byte_stats(data: np.ndarray, lanes: int = 1) -> dict[str, float]:
    """Entropy features of a byte stream, in bits per byte: h, d2 = h - h2, dl, dlane (see module)."""
    n = int(data.size)
    if n == 0:
        return {"h": 0.0, "d2": 0.0, "dl": 0.0, "dlane": 0.0}
    counts = np.bincount(data, minlength=256)
    h, h2 = _entropy(counts)
    # Miller-Madow: estimates from a sample of rows must not read low by (K-1)/(2 n ln 2)
    h = min(8.0, float(h) + (np.count_nonzero(counts) - 1) / (2 * n * math.log(2)))
    nchunks = math.ceil(n / CHUNK_BYTES)
    if nchunks > 1:
        idx = (np.arange(n, dtype=np.int64) // CHUNK_BYTES) * 256 + data
        counts = np.bincount(idx, minlength=nchunks * 256).reshape(nchunks, 256)
        hc, _ = _entropy(counts)
        sizes = counts.sum(axis=1)
        # Miller-Madow: the plug-in entropy of a 16 KiB chunk is biased low by (K-1)/(2 n ln 2).
        hc = hc + (np.count_nonzero(counts, axis=1) - 1) / (2 * np.maximum(sizes, 1) * math.log(2))
        h_local = float((hc * sizes).sum() / n)
    else:
        h_local = float(h)
    h_lane = float(h)
    if lanes > 1 and n % lanes == 0:
        per_lane = np.stack([np.bincount(data[i::lanes], minlength=256) for i in range(lanes)])
        h_lane = float(_entropy(per_lane)[0].mean())
    return {"h": float(h), "d2": float(h - h2), "dl": max(0.0, float(h) - h_local), "dlane": max(0.0, float(h) - h_lane)}


def storage_class(storage: str, element_size: int) -> str:
    """byte | packed | base3 | bits | raw1 | raw2 | raw4 | raw8 (values): how the compressor sees the
    bytes; scales streams are classes scale2 / scale4."""
    return f"raw{element_size}" if storage == "raw" else storage


@dataclasses.dataclass(frozen=True)
class Stream:
    """One contiguous byte stream of the artifact (a tensor's values or its scales), as features."""

    tensor: str
    part: str
    cls: str
    n_bytes: int
    h: float
    d2: float
    dl: float
    dlane: float
    dsym: float = 0.0

    def features(self) -> np.ndarray:
        """Design row of the correction: hat functions of h, then d2, dl, dlane, dlane*h/8, dsym, 8/n."""
        return np.concatenate([_hats(self.h), [self.d2, self.dl, self.dlane, self.dlane * self.h / 8, self.dsym,
                                               8.0 / max(self.n_bytes, 1)]])


def _hats(h: float) -> np.ndarray:
    out = np.zeros(len(KNOTS))
    h = min(max(h, KNOTS[0]), KNOTS[-1])
    j = int(np.searchsorted(KNOTS, h, side="right")) - 1
    if j >= len(KNOTS) - 1:
        out[-1] = 1.0
        return out
    w = (h - KNOTS[j]) / (KNOTS[j + 1] - KNOTS[j])
    out[j], out[j + 1] = 1.0 - w, w
    return out


def _sample_rows(t: Tensor, sample_values: int | None) -> tuple[Tensor, float]:
    """(rows to quantize, full/sampled ratio): evenly spaced blocks of contiguous rows."""
    if sample_values is None or t.ndim < 2 or t.numel() <= sample_values:
        return t, 1.0
    rows, cols = t.shape[0], t.numel() // t.shape[0]
    block = max(1, min(rows, SAMPLE_BLOCK_BYTES // max(cols, 1)))
    nblocks = max(1, min(rows // block, sample_values // (block * cols)))
    starts = np.linspace(0, rows - block, nblocks).round().astype(np.int64)
    idx = torch.from_numpy((starts[:, None] + np.arange(block)[None, :]).reshape(-1))
    return t.index_select(0, idx), rows / idx.numel()


def symbol_entropy_bits(symbols: Tensor) -> float:
    """Order-0 entropy of integer symbols, total bits (a histogram, no sort).

    >>> symbol_entropy_bits(torch.tensor([-1, 0, 1, 1], dtype=torch.int8))
    6.0
    """
    flat = symbols.detach().reshape(-1)
    if flat.numel() == 0:
        return 0.0
    if flat.element_size() <= 2:
        view = torch.uint8 if flat.element_size() == 1 else torch.int16
        raw = flat.contiguous().view(view).numpy()
        counts = np.bincount(raw.view(np.uint8 if flat.element_size() == 1 else np.uint16))
    else:
        counts = np.unique(flat.numpy(), return_counts=True)[1]
    h, _ = _entropy(counts)
    return float(h) * flat.numel()


def packed_streams(name: str, scheme, q, values: bytes, scales: bytes, full_values: int, full_scales: int,
                   lanes: bool = True, symbol_bits: float | None = None) -> list[Stream]:
    """Stream features of one quantized tensor's packed bytes; byte counts are the full tensor's."""
    streams = []
    raw_values = scheme.storage == "raw"
    for part, blob, full in (("values", values, full_values), ("scales", scales, full_scales)):
        if not full or not blob:
            continue
        el = (q.symbols.element_size() if raw_values else 1) if part == "values" else q.scales.element_size()
        # scales (positive, similar, few) compress unlike float values: their own class
        cls = storage_class(scheme.storage, el) if part == "values" else f"scale{el}"
        stats = byte_stats(np.frombuffer(blob, dtype=np.uint8), lanes=el if lanes else 1)
        if part == "values" and not raw_values:
            # symbols entropy spread over the bytes they occupy: the floor a packed layout hides
            h_sym = (symbol_entropy_bits(q.symbols) if symbol_bits is None else symbol_bits) / len(blob)
            stats["dsym"] = max(0.0, stats["h"] - h_sym)
        streams.append(Stream(name, part, cls, int(full), **stats))
    return streams


def tensor_streams(name: str, t: Tensor, spec: str, sample_values: int | None = SAMPLE_VALUES) -> tuple[dict, list[Stream]]:
    """Exact byte counts and stream features of one tensor under one scheme spec."""
    scheme = get_scheme(spec)
    values_bytes, scales_bytes = scheme.payload_bytes(tuple(t.shape), t.dtype)
    if sample_values is not None:
        # wide alphabets (int7/int8: 127-255 levels) need more values before their rare levels show
        sample_values *= max(1, int(getattr(scheme, "levels", 0) or 0) // 64)
    part, ratio = _sample_rows(t, sample_values if scheme.kind == "quantized" else None)
    q = scheme.quantize(part)
    values, scales = scheme.pack(q)
    sym_bits = symbol_entropy_bits(q.symbols) if scheme.kind == "quantized" else None
    streams = packed_streams(name, scheme, q, values, scales, values_bytes, scales_bytes, symbol_bits=sym_bits)
    entropy_bits = sum(s.h * s.n_bytes for s in streams if s.part == "values")
    if sym_bits is not None:
        entropy_bits = sym_bits * ratio
    row = {"name": name, "shape": tuple(t.shape), "numel": int(t.numel()), "dtype": str(t.dtype).removeprefix("torch."),
           "scheme": scheme.name, "storage": scheme.storage, "values_bytes": int(values_bytes),
           "scales_bytes": int(scales_bytes), "payload_bytes": int(values_bytes + scales_bytes),
           "entropy_bytes": int(round(entropy_bits / 8)), "sampled_fraction": 1.0 / ratio}
    return row, streams


# --- the fitted correction ----------------------------------------------------------------------
def load_fit(path: str | Path | None = None) -> dict:
    """The shipped correction (budget/data/estimate_fit.json) or a file of the same format."""
    # the namespace package hides its data from importlib.resources: read beside this file
    where = str(Path(__file__).resolve().parent / "data" / "estimate_fit.json" if path is None else path)
    try:
        fit = json.loads(Path(where).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PgolfInputError(where, f"cannot read the estimator fit ({exc.__class__.__name__}); "
                                     f"run benchmarks/fit_estimator.py") from None
    if not isinstance(fit, dict) or fit.get("format") != FIT_FORMAT or fit.get("features") != list(FEATURES):
        raise PgolfInputError(where, f"not a {FIT_FORMAT} file with this pgolf's features")
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


def stream_bytes(stream: Stream, entry: dict) -> float:
    """Estimated compressed bytes of one stream inside an artifact."""
    fallback = {"scale2": "raw2", "scale4": "raw4", "raw8": "raw4"}
    coef = entry["classes"].get(stream.cls) or entry["classes"].get(fallback.get(stream.cls, "byte")) \
        or entry["classes"]["byte"]
    bits_per_byte = float(np.dot(stream.features()[:-1], np.asarray(coef["w"])[:-1]))
    return max(0.0, bits_per_byte) * stream.n_bytes / 8


def container_bytes(n_streams: int, container: str, entry: dict) -> float:
    over = entry["overhead"].get(container, {"c0": 0.0, "c1": 0.0})
    return over["c0"] + over["c1"] * n_streams


# --- whole-model estimate -----------------------------------------------------------------------
def estimate_streams(sd: dict[str, Tensor], plan="official-int8", sample_values: int | None = SAMPLE_VALUES,
                     quiet: bool = True) -> tuple[pd.DataFrame, list[Stream], str, str]:
    """(per-tensor rows, streams, artifact kind, plan name) for a state dict under a plan."""
    from pgolf.budget.artifact import artifact_kind, assign
    from pgolf.budget.progress import progress

    plan = resolve_plan(plan)
    items = assign(sd, plan)
    rows, streams = [], []
    for item in progress(items, desc="estimate", total=len(items), quiet=quiet):
        if item.tied_to is not None:
            rows.append({"name": item.name, "shape": item.shape, "numel": math.prod(item.shape),
                         "dtype": str(item.dtype).removeprefix("torch."), "scheme": item.scheme.name,
                         "storage": item.scheme.storage, "values_bytes": 0, "scales_bytes": 0, "payload_bytes": 0,
                         "entropy_bytes": 0, "sampled_fraction": 1.0, "tied_to": item.tied_to})
            continue
        row, tensor_streams_ = tensor_streams(item.name, item.tensor, item.scheme.name, sample_values)
        rows.append({**row, "tied_to": None})
        streams += tensor_streams_
    return pd.DataFrame(rows), streams, artifact_kind(items), plan.name


def estimate_model_bytes(streams: list[Stream], kind: str, compressor: str, fit: dict | None = None
                         ) -> tuple[float, dict[str, float]]:
    """(estimated artifact bytes, estimated compressed bytes per tensor) from stream features."""
    from pgolf.budget.container import frame_header

    fit = fit or load_fit()
    comp = get_compressor(compressor)
    _, entry = fit_entry(fit, comp.name)
    per_tensor: dict[str, float] = {}
    for s in streams:
        per_tensor[s.tensor] = per_tensor.get(s.tensor, 0.0) + stream_bytes(s, entry)
    plain_official = kind == "official-export" and comp.name == "zlib"
    frame = 0 if plain_official else len(frame_header(0, comp.name))
    total = sum(per_tensor.values()) + container_bytes(len(streams), kind, entry) + frame
    return total, per_tensor


ESTIMATED_COLUMNS = ("compressed_bytes", "entropy_bytes")
ESTIMATED_HEADLINE = ("bytes_model", "bytes_total", "headroom_bytes", "bits_per_param", "bytes_model_low",
                      "bytes_model_high")


def _report_class():
    from pgolf.budget.measure import BudgetReport

    @dataclasses.dataclass(repr=False)
    class EstimateReport(BudgetReport):
        """A BudgetReport whose model bytes are estimated (headline `estimated`: True)."""
    return EstimateReport


def estimate_budget(sd: dict[str, Tensor], plan="official-int8", compressor="zlib", code=None,
                    cap: int | None = None, *, code_wrapped: bool = False, sample_values: int | None = SAMPLE_VALUES,
                    fit: dict | None = None, quiet: bool = True, source: str = ""):
    """Fast estimate of what `measure_budget` measures: same headline keys, `estimated` True.

    Exact: params, payload/values/scales bytes, bytes_code. Estimated: bytes_model (and what
    derives from it), per-tensor compressed_bytes (its share inside the artifact) and, when rows
    are sampled, entropy_bytes. bytes_model_low/high spread the fit's worst whole-artifact error.
    """
    from pgolf.budget.glossary import CAP_BYTES
    from pgolf.budget.measure import _code_sizes

    cap = CAP_BYTES if cap is None else int(cap)
    fit = fit or load_fit()
    comp = get_compressor(compressor)
    frame, streams, kind, plan_name = estimate_streams(sd, plan, sample_values, quiet)
    key, entry = fit_entry(fit, comp.name)
    total, per_tensor = estimate_model_bytes(streams, kind, comp.name, fit)
    frame["kind"] = ["quantized" if get_scheme(s).kind == "quantized" else "passthrough" for s in frame["scheme"]]
    frame["bits_per_value"] = [get_scheme(s).bits_for(getattr(torch, d)) for s, d in zip(frame["scheme"], frame["dtype"])]
    frame["compressed_bytes"] = [int(round(per_tensor.get(n, 0.0))) for n in frame["name"]]
    frame["tied_to"] = frame["tied_to"].fillna("")
    code_sizes = _code_sizes(code)
    bytes_code = code_sizes.get("wrapped" if code_wrapped else "raw", 0)
    bytes_model = int(round(total))
    params = int(frame.loc[frame["tied_to"] == "", "numel"].sum())
    err = float(entry.get("artifact_rel_err_max", 0.0))
    head = {"params": params, "plan": plan_name, "compressor": comp.name, "bytes_model": bytes_model,
            "bytes_code": bytes_code, "bytes_total": bytes_model + bytes_code, "cap": cap,
            "headroom_bytes": cap - bytes_model - bytes_code,
            "bits_per_param": round(8 * bytes_model / params, 4) if params else float("nan"),
            "payload_bytes": int(frame["payload_bytes"].sum()), "artifact": kind, "estimated": True,
            "bytes_model_low": int(bytes_model * (1 - err)), "bytes_model_high": int(math.ceil(bytes_model * (1 + err)))}
    if code_sizes:
        head.update(bytes_code_raw=code_sizes["raw"], bytes_code_wrapped=code_sizes["wrapped"])
    sampled = bool((frame["sampled_fraction"] < 1).any())
    notes = [f"ESTIMATED (not measured): {', '.join(k for k in ESTIMATED_HEADLINE if k in head)} and the "
             f"compressed_bytes column (each tensor's share inside the artifact), from order-0 entropy of the "
             f"stored bytes + the {key} correction fitted in estimate_fit.json; `pgolf budget` without --estimate "
             f"measures them",
             "MEASURED/EXACT: params, payload_bytes, values_bytes, scales_bytes, bytes_code"
             + (" (entropy_bytes from a sample of rows where sampled_fraction < 1)" if sampled else "")]
    if key != comp.name:
        notes.append(f"no fit for {comp.name}: used the {key} correction")
    if not code_sizes:
        notes.append("bytes_code = 0: no code file given (--code FILE adds the script's bytes)")
    title = f"pgolf budget --estimate: {source}" if source else "pgolf budget --estimate"
    return _report_class()(title=title, headline=head, frame=frame, notes=notes)
