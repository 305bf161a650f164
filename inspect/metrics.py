"""Weight-space quantization metrics per tensor and scheme: cheap, no data needed.

For a tensor w and a scheme's roundtrip q(w) (what the artifact decodes to, in w's dtype):
rel_mse = ||w - q(w)||^2 / ||w||^2, sqnr_db = 10 log10(1 / rel_mse), max_abs_err, frac_clipped
(values beyond the top level by more than half a step, where rounding cannot put them: the clip
rule cut them; for fp8, values beyond its +-448 range), and the distinct levels and order-0 entropy of the stored symbols.

>>> row = tensor_metrics("w", torch.linspace(-1, 1, 1000).reshape(10, 100), "int4")
>>> row["levels"], round(row["sqnr_db"], 1), row["frac_clipped"]
(15, 26.7, 0.0)
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from pgolf.budget.exact.measure import symbol_stats
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.quant.schemes import QTensor, get_scheme

METRIC_COLUMNS = ("name", "shape", "numel", "dtype", "scheme", "bits_per_value", "rel_mse", "sqnr_db",
                  "max_abs_err", "frac_clipped", "levels", "entropy_bytes")
_FP8_MAX = 448.0


def error_metrics(w: Tensor, w_hat: Tensor) -> dict[str, float]:
    """rel_mse, sqnr_db (NaN when lossless) and max_abs_err of a reconstruction.

    >>> m = error_metrics(torch.tensor([1.0, -1.0]), torch.tensor([1.0, -0.5]))
    >>> m["rel_mse"], round(m["sqnr_db"], 3), m["max_abs_err"]
    (0.125, 9.031, 0.5)
    """
    w64, e64 = w.detach().double(), (w_hat.detach().double() - w.detach().double())
    err, energy = float(e64.square().sum()), float(w64.square().sum())
    rel = err / energy if energy > 0 else (0.0 if err == 0 else float("inf"))
    sqnr = 10 * math.log10(1 / rel) if 0 < rel < float("inf") else float("nan")
    return {"rel_mse": rel, "sqnr_db": sqnr, "max_abs_err": float(e64.abs().max()) if e64.numel() else 0.0}


def frac_clipped(scheme, t: Tensor, q: QTensor) -> float:
    """Fraction of values beyond the top level + half a step: cut by the clip rule.

    The per-value step is the dequantized symbol 1 (fp32); the top level is qmax steps; binary's
    two levels +-s sit 2s apart, so its half step is s.
    """
    if t.numel() == 0 or scheme.kind == "passthrough":
        return 0.0
    if scheme.kind == "float":
        return int((t.detach().float().abs() > _FP8_MAX).sum()) / t.numel() if scheme.name == "fp8_e4m3" else 0.0
    qmax = getattr(scheme, "qmax", None) or (scheme.levels - 1) // 2
    unit = scheme.dequantize(QTensor(torch.ones_like(q.symbols), q.scales, q.shape, torch.float32, q.scheme))
    unit = unit.float().abs()
    half = unit if scheme.levels == 2 else 0.5 * unit
    beyond = t.detach().float().abs() > (qmax * unit + half) * (1 + 1e-6)
    return int(beyond.sum()) / t.numel()


def tensor_metrics(name: str, t: Tensor, scheme_spec: str) -> dict:
    """One row of METRIC_COLUMNS for tensor `t` under scheme `scheme_spec`."""
    scheme = get_scheme(scheme_spec)
    q = scheme.quantize(t)
    w_hat = scheme.dequantize(q)
    levels, entropy = symbol_stats(q.symbols)
    return {"name": name, "shape": tuple(t.shape), "numel": t.numel(), "dtype": str(t.dtype).removeprefix("torch."),
            "scheme": scheme.name, "bits_per_value": scheme.bits_for(t.dtype), **error_metrics(t, w_hat),
            "frac_clipped": frac_clipped(scheme, t, q), "levels": levels, "entropy_bytes": int(round(entropy))}


def weight_metrics(sd: dict[str, Tensor], schemes: list[str] | tuple[str, ...] | None = None,
                   plan: str | Plan | None = None, names: list[str] | None = None) -> pd.DataFrame:
    """One row per tensor x scheme (every float tensor under each of `schemes`), or one row per
    tensor under the scheme `plan` assigns it (passthrough rules included).

    >>> weight_metrics({"w": torch.ones(4, 4)}, schemes=["int8", "int4"])["scheme"].tolist()
    ['int8', 'int4']
    """
    if (schemes is None) == (plan is None):
        raise ValueError("give either schemes=[...] or plan=...")
    names = list(sd) if names is None else names
    rows = []
    if plan is not None:
        plan = resolve_plan(plan)
        for n in names:
            rows.append(tensor_metrics(n, sd[n], plan.scheme_for(n, sd[n])))
    else:
        for n in names:
            if not sd[n].is_floating_point():
                continue
            rows.extend(tensor_metrics(n, sd[n], s) for s in schemes)
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
