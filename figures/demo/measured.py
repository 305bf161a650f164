"""What the demo measured: one record the report and the figures read."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from pgolf.budget.exact.compare import CompareReport
from pgolf.budget.exact.measure import BudgetReport
from pgolf.inspect.reports import AllocationReport, GapsReport, HeadroomReport


@dataclasses.dataclass
class Measured:
    """Everything the demo measured on the final checkpoint (and across the checkpoints)."""

    cap: int
    cap_rule: str
    eval_tokens: int  # the selection slice: gaps, headroom, the allocator's choice, checkpoints
    report_tokens: int  # the held-out slice after it: every plan's and the allocation's reported val_bpb
    compared: CompareReport
    plan_bpb: pd.DataFrame  # plan, val_bpb (roundtrip; "none" = unquantized), plan_gap_bpb ± (held-out)
    points: pd.DataFrame  # compare rows + val_bpb: the headroom plot's input
    compressor_rows: pd.DataFrame
    gaps: list[GapsReport]
    headroom: HeadroomReport
    allocation: AllocationReport
    allocation_path: Path  # the allocated plan, saved (pgolf budget --plan reads it)
    allocated_budget: BudgetReport
    checkpoints: pd.DataFrame

    def gap_rows(self) -> pd.DataFrame:
        """Per-tensor gap rows of every scheme, only the tensors each plan stores in its scheme
        (control tensors stay fp32 under every plan and have gap 0)."""
        return pd.concat([r.to_dataframe().query("scheme == @r.headline['plan'].removesuffix('+small')")
                          for r in self.gaps], ignore_index=True)
