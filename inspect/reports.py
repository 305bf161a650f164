"""Report objects of the inspect area: summary, gaps, headroom, allocation.

Each is a `pgolf.budget.report_base.Report` (text for the CLI, HTML for Jupyter, markdown, JSON) with a
tidy DataFrame in the glossary's columns underneath; building one never prints.

>>> r = GapsReport.build({"val_bpb_full": 1.5, "val_bpb_quantized": 1.52, "quant_gap_bpb": 0.02},
...                      pd.DataFrame({"name": ["w"], "gap_only_this_bpb": [0.02]}), source="m.pt")
>>> r.to_dict()["quant_gap_bpb"], r.title
(0.02, 'pgolf gaps: m.pt')

Text, markdown and HTML show a difference X that has X_se as "X ± SE" (the _se, _lo, _hi and
_significant columns stay in the frame and the JSON), flagged "(n.s.)" when its 95% interval
contains 0:

>>> print(with_intervals({"quant_gap_bpb": 0.02, "quant_gap_bpb_se": 0.004, "quant_gap_bpb_lo": 0.012,
...                       "quant_gap_bpb_hi": 0.028, "quant_gap_bpb_significant": True}, pd.DataFrame())[0])
{'quant_gap_bpb': '0.02 ± 0.004 (95%: 0.012 .. 0.028)'}
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd

from pgolf.budget.report_base import Report, _frame_text, _jsonable, format_value

_STATS = ("_se", "_lo", "_hi", "_significant")
INTERVAL_NOTE = ("x ± s: a difference in BPB and its standard error (paired over the same windows); (n.s.): its "
                 "95% interval contains 0, within noise; JSON and to_dataframe() keep _se, _lo, _hi, _significant")

EVAL_NOTE = ("evaluated in fp32 on CPU over whole windows of the slice; the official scorer runs bf16 "
             "autocast on GPU over the full validation split, so absolute val_bpb differs slightly")


def _pm(value, se, lo=None, hi=None, significant=True, interval: bool = False) -> str:
    """'value ± se' (se to 2 significant digits), with the interval or an (n.s.) flag."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if se is None or (isinstance(se, float) and math.isnan(se)) or (se == 0 and value == 0):
        return format_value(value)  # no spread known (the gradient proxy), or identical in every window
    text = f"{format_value(value)} ± {float(se):.2g}"
    if interval and lo is not None:
        text += f" (95%: {format_value(lo)} .. {format_value(hi)})"
    return text if bool(significant) else text + " (n.s.)"


def with_intervals(head: dict, frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Headline and frame for display: each X with X_se becomes one 'X ± SE' entry."""
    shown = {}
    for k, v in head.items():
        if any(k.endswith(s) and k[: -len(s)] in head and f"{k[: -len(s)]}_se" in head for s in _STATS):
            continue
        if f"{k}_se" in head:
            v = _pm(v, head[f"{k}_se"], head.get(f"{k}_lo"), head.get(f"{k}_hi"), head.get(f"{k}_significant", True),
                    interval=True)
        shown[k] = v
    if not len(frame):
        return shown, frame
    out = frame.copy()
    for col in [c for c in frame.columns if f"{c}_se" in frame.columns]:
        sig = frame[f"{col}_significant"] if f"{col}_significant" in frame else [True] * len(frame)
        out[col] = [_pm(v, e, significant=g) for v, e, g in zip(frame[col], frame[f"{col}_se"], sig)]
        out = out.drop(columns=[f"{col}{s}" for s in _STATS if f"{col}{s}" in out.columns])
    return shown, out


class _Intervals:
    """Renders through `with_intervals`; the data (frame, headline, JSON) keeps every column."""

    def _shown(self) -> Report:
        head, frame = with_intervals(self.headline, self.frame)
        notes = list(self.notes) + ([INTERVAL_NOTE] if len(frame.columns) != len(self.frame.columns)
                                    or len(head) != len(self.headline) else [])
        return Report(self.title, head, frame, notes, self.rows_key)

    def to_text(self, max_rows: int | None = 60) -> str:
        return Report.to_text(self._shown(), max_rows)

    def to_markdown(self) -> str:
        return Report.to_markdown(self._shown())

    def _repr_html_(self) -> str:
        return Report._repr_html_(self._shown())


def _title(kind: str, source: str) -> str:
    return f"pgolf {kind}: {source}" if source else f"pgolf {kind}"


@dataclasses.dataclass(repr=False)
class InspectReport(Report):
    """`pgolf inspect`: parameters, tensors, dtypes, bytes under the current format, headroom;
    optionally `metrics`, one row per tensor x scheme (weight-space metrics).

    >>> import pandas as pd
    >>> InspectReport(title="t", headline={"params": 3}, frame=pd.DataFrame({"name": ["w"]})).to_dict()
    {'params': 3, 'tensors': [{'name': 'w'}]}
    """

    metrics: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, source: str = "", notes: list[str] | None = None,
              metrics: pd.DataFrame | None = None) -> "InspectReport":
        return cls(title=_title("inspect", source), headline=head, frame=frame, notes=list(notes or []),
                   metrics=metrics)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.metrics is not None:
            out["metrics"] = [_jsonable(r) for r in self.metrics.to_dict(orient="records")]
        return out

    def to_text(self, max_rows: int | None = 60) -> str:
        text = super().to_text(max_rows)
        if self.metrics is None:
            return text
        shown = self.metrics if max_rows is None else self.metrics.head(max_rows)
        return text + "\n\nweight-space metrics:\n" + _frame_text(shown).to_string(index=False)


@dataclasses.dataclass(repr=False)
class GapsReport(_Intervals, Report):
    """`pgolf gaps`: whole-model and per-tensor quantization gaps in BPB, proxy and weight metrics.

    >>> import pandas as pd
    >>> GapsReport(title="t", headline={"quant_gap_bpb": 0.01}, frame=pd.DataFrame({"name": ["w"]})).headline
    {'quant_gap_bpb': 0.01}
    """

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, source: str = "", replay: bool = True) -> "GapsReport":
        notes = []
        if head.get("quant_gap_bpb_significant") is False and head.get("quant_gap_bpb_se", 0) > 0:
            notes.append(f"the whole-model gap is within noise on these {head.get('tokens', 0):,} tokens (its 95% "
                         "interval contains 0): evaluate more tokens (--tokens) or let --target-se choose them")
        if "artifact_matches" in head:
            notes.append("whole-model gap measured twice: in-memory quantize->dequantize and the real artifact "
                         "(build -> compress -> read back -> evaluate): "
                         + ("identical, bit for bit" if head["artifact_matches"] else "THEY DIFFER"))
        if len(frame) and "gap_only_this_bpb" in frame:
            notes.append("gap 0 exactly where the plan stores a tensor bit for bit (no evaluation needed)")
        if replay:
            notes.append("only-this / all-but-this evaluations restart from the tensor's first block using "
                         "cached activations (exact: same numbers as full evaluations)")
        if "proxy_spearman" in head:
            notes.append("proxy_gap_bpb = (sum(g * dw) + 0.5 * sum(Fisher * dw^2)) / ln 2 * tokens/byte: mean gradient g "
                         "and diagonal Fisher (gradients against targets sampled from the model, proxy_fisher "
                         "'sampled'; else squared per-window gradients, 'empirical') over proxy_tokens calibration "
                         "tokens; proxy_spearman = rank correlation with gap_only_this_bpb. The proxy is a "
                         "prediction, not a measurement: its ± (proxy_gap_bpb_se) is the spread of its per-batch "
                         "terms over the calibration batches")
        notes.append("bytes: the tensor's payload compressed alone (compressed_bytes); the artifact's total is "
                     "bytes_model")
        notes.append(EVAL_NOTE)
        return cls(title=_title("gaps", source), headline=head, frame=frame, notes=notes)


@dataclasses.dataclass(repr=False)
class HeadroomReport(_Intervals, Report):
    """`pgolf headroom`: cap - code - model, and per tensor the price of one step up or down.

    >>> import pandas as pd
    >>> HeadroomReport(title="t", headline={"headroom_bytes": 5}, frame=pd.DataFrame()).headline["headroom_bytes"]
    5
    """

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, source: str = "", notes: list[str] | None = None) -> "HeadroomReport":
        return cls(title=_title("headroom", source), headline=head, frame=frame, notes=list(notes or []))


@dataclasses.dataclass(repr=False)
class AllocationReport(_Intervals, Report):
    """`pgolf allocate`: the chosen scheme per tensor, with bytes and gaps; `plan` is the result.

    >>> import pandas as pd
    >>> AllocationReport(title="t", headline={"bytes_total": 9}, frame=pd.DataFrame()).to_dict()["bytes_total"]
    9
    """

    plan: object = dataclasses.field(default=None, repr=False)

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, plan, source: str = "",
              notes: list[str] | None = None) -> "AllocationReport":
        return cls(title=_title("allocate", source), headline=head, frame=frame, notes=list(notes or []), plan=plan)
