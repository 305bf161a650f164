"""Report objects of the inspect area: summary, gaps, headroom, allocation.

Each is a `pgolf.budget.report_base.Report` (text for the CLI, HTML for Jupyter, markdown, JSON) with a
tidy DataFrame in the glossary's columns underneath; building one never prints.

>>> r = GapsReport.build({"val_bpb_full": 1.5, "val_bpb_quantized": 1.52, "quant_gap_bpb": 0.02},
...                      pd.DataFrame({"name": ["w"], "gap_only_this_bpb": [0.02]}), source="m.pt")
>>> r.to_dict()["quant_gap_bpb"], r.title
(0.02, 'pgolf gaps: m.pt')
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from pgolf.budget.report_base import Report, _frame_text, _jsonable

EVAL_NOTE = ("evaluated in fp32 on CPU over whole windows of the slice; the official scorer runs bf16 "
             "autocast on GPU over the full validation split, so absolute val_bpb differs slightly")


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
class GapsReport(Report):
    """`pgolf gaps`: whole-model and per-tensor quantization gaps in BPB, proxy and weight metrics.

    >>> import pandas as pd
    >>> GapsReport(title="t", headline={"quant_gap_bpb": 0.01}, frame=pd.DataFrame({"name": ["w"]})).headline
    {'quant_gap_bpb': 0.01}
    """

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, source: str = "", replay: bool = True) -> "GapsReport":
        notes = []
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
                         "tokens; proxy_spearman = rank correlation with gap_only_this_bpb")
        notes.append("bytes: the tensor's payload compressed alone (compressed_bytes); the artifact's total is "
                     "bytes_model")
        notes.append(EVAL_NOTE)
        return cls(title=_title("gaps", source), headline=head, frame=frame, notes=notes)


@dataclasses.dataclass(repr=False)
class HeadroomReport(Report):
    """`pgolf headroom`: cap - code - model, and per tensor the price of one step up or down.

    >>> import pandas as pd
    >>> HeadroomReport(title="t", headline={"headroom_bytes": 5}, frame=pd.DataFrame()).headline["headroom_bytes"]
    5
    """

    @classmethod
    def build(cls, head: dict, frame: pd.DataFrame, source: str = "", notes: list[str] | None = None) -> "HeadroomReport":
        return cls(title=_title("headroom", source), headline=head, frame=frame, notes=list(notes or []))


@dataclasses.dataclass(repr=False)
class AllocationReport(Report):
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
