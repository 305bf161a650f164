"""The demo's report from its measurements: headline, sections, and the three files written
(report.md for reading, report.html self-contained, report.json for a machine).

>>> report = build_report(run, measured, figures)             # doctest: +SKIP
>>> [s.title for s in report.sections][:2]                  # doctest: +SKIP
['Training', 'Byte budget: plans x compressors']
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from pgolf.budget.atomic import write_text_atomic
from pgolf.figures.demo.measured import Measured
from pgolf.figures.demo.train import DemoRun
from pgolf.figures.report_html import render_html
from pgolf.figures.report_md import DemoReport, Figure, Link, Section, Table, render_markdown
from pgolf.inspect.reports import with_intervals

DEMO_FORMAT = "pgolf-demo-v1"


def _versus_unquantized(gap: float, se: float, significant: bool) -> str:
    """How a held-out val_bpb compares with the unquantized one, in words a reader can trust.

    >>> _versus_unquantized(-0.0008, 0.0005, False)
    'within noise of unquantized: -0.0008 ± 0.0005 BPB'
    """
    if not significant:
        return f"within noise of unquantized: {gap:.2g} ± {se:.1g} BPB"
    return f"{'better' if gap < 0 else 'worse'} than unquantized by {abs(gap):.2g} ± {se:.1g} BPB"


def headline(run: DemoRun, m: Measured) -> dict:
    """The numbers a reader wants first: the model, its training, the cap and what fits under it.
    Every val_bpb here is the held-out slice's; a plan is called better than unquantized only when
    that is significant there."""
    c, final = run.config, run.results
    pairs = m.compared.to_dataframe().merge(m.plan_bpb, on="plan")
    best = pairs[pairs["headroom_bytes"] >= 0].nsmallest(1, "select_val_bpb")  # chosen on selection
    best_text = "none fits"
    if len(best):
        b = best.iloc[0]
        best_text = (f"{b['plan']} + {b['compressor']} (chosen on the selection slice; held-out val_bpb "
                     f"{b['val_bpb']:.4f}, "
                     f"{_versus_unquantized(b['plan_gap_bpb'], b['plan_gap_bpb_se'], b['plan_gap_bpb_significant'])})")
    alloc = m.allocation.headline
    return {
        "model": f"{c.num_layers} layers x {c.model_dim}, {c.num_heads}/{c.num_kv_heads} heads, MLP x{c.mlp_mult}",
        "params": m.compared.headline["params"], "steps": final["step"],
        "tokens_trained": final["step"] * c.train_batch_tokens,
        "train_seconds": round(final["train_time_ms"] / 1000, 1),
        "val_bpb": final["val_bpb"], "official_int8_roundtrip_val_bpb": final["roundtrip_val_bpb"],
        "cap": m.cap, "cap_rule": m.cap_rule, "eval_tokens": m.eval_tokens, "report_tokens": m.report_tokens,
        "best_plan_under_cap": best_text,
        "allocated_bytes_model": alloc["bytes_model"], "allocated_val_bpb": alloc.get("val_bpb_quantized"),
        "allocated_vs_unquantized": _versus_unquantized(alloc["quant_gap_bpb"], alloc["quant_gap_bpb_se"],
                                                        alloc["quant_gap_bpb_significant"]),
        **{f"allocated_{k}": alloc[k] for k in ("quant_gap_bpb", "quant_gap_bpb_se", "quant_gap_bpb_lo",
                                                "quant_gap_bpb_hi", "quant_gap_bpb_significant",
                                                "select_val_bpb_quantized")},
        "allocated_chosen": alloc["chosen"],
    }


def build_report(run: DemoRun, m: Measured, figs: dict[str, Figure]) -> DemoReport:
    c = run.config
    ckpt_cols = ["step", "tokens_seen", "train_loss", "val_bpb_full", "val_bpb_quantized", "bytes_model",
                 "bits_per_param"]
    sections = [
        Section("Training", f"trainer/train_gpt.py on the CPU ({c.iterations} steps of {c.train_batch_tokens:,} "
                f"tokens, a checkpoint every {c.checkpoint_every}); each checkpoint's exact bytes under "
                "official-int8+small + zlib and its val_bpb before and after that roundtrip.",
                [figs["training-curve"], Table("checkpoints", m.checkpoints[ckpt_cols])]),
        Section("Byte budget: plans x compressors", "Exact artifact bytes (built, compressed, read back and "
                "checked bit for bit) of every plan and compressor, and each plan's roundtrip val_bpb.",
                [m.compared, figs["headroom"], Table(f"roundtrip val_bpb per plan (held-out slice, {m.report_tokens:,} "
                                                     "tokens; plan_gap_bpb ± SE, (n.s.) = within noise)",
                                                     with_intervals({}, m.plan_bpb.drop(columns="val_bpb_se"))[1]),
                 figs["compressors"]]),
        Section("Quantization gaps per tensor", "ΔBPB of quantizing one tensor at a time, and the gradient "
                "proxy that predicts it without an evaluation per tensor.", [figs["quant-gap"], *m.gaps]),
        Section("Headroom and exchange rates", "Bytes left under the cap, and the price in BPB of each "
                "tensor's next precision step up or down.", [m.headroom, figs["exchange-rate"]]),
        Section("Allocation under the cap", f"A scheme per tensor that fits {m.cap:,} bytes ({m.cap_rule}), "
                "built and measured for real, compared with every uniform plan that fits.",
                [m.allocation, Link("allocated plan (pgolf budget --plan accepts it)", m.allocation_path),
                 figs["tensor-bytes"], m.allocated_budget]),
    ]
    notes = [f"plans end in '+small': on a {c.model_dim}-wide model the official passthrough rule (floats of "
             "<= 65,536 values stay fp16) would keep every block matrix unquantized, so small matrices follow "
             "the plan too and only control tensors stay fp32",
             f"selection slice: the first {m.eval_tokens:,} tokens of the embedded default's val split in windows "
             f"of {c.train_seq_len} (gaps, exchange rates, the allocator's choice, checkpoints); held-out slice: "
             f"the next {m.report_tokens:,} tokens (every plan's val_bpb and the allocation's headline numbers)",
             "x ± s: a BPB difference and its standard error, paired over the same windows (blocks of 4,096 "
             "tokens, at least 8 blocks); a plan is called better than unquantized only when its 95% interval "
             "excludes 0",
             "bytes_code = 0 throughout: this small model is not a submission"]
    return DemoReport(f"pgolf demo ({c.name}) on the embedded default", headline(run, m), sections, notes)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN -> null, numpy scalars -> Python numbers)."""
    return json.loads(frame.to_json(orient="records"))


def _plain(value):
    """numpy scalars as numbers, anything else (paths) as text."""
    return value.item() if hasattr(value, "item") else str(value)


def write_outputs(out: Path, report: DemoReport, run: DemoRun, m: Measured,
                  figs: dict[str, Figure]) -> dict[str, Path]:
    """report.md, report.html and report.json in `out` (atomically); returns every path worth printing."""
    machine = {
        "format": DEMO_FORMAT, "config": run.config.train_env(),
        "headline": {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in report.headline.items()},
        "compare": m.compared.to_dict(), "plan_points": _records(m.points),
        "gaps": [r.to_dict() for r in m.gaps], "headroom": m.headroom.to_dict(),
        "allocation": m.allocation.to_dict(), "checkpoints": _records(m.checkpoints),
        "figures": {k: {fmt: p.relative_to(out).as_posix() for fmt, p in f.paths.items()} for k, f in figs.items()},
    }
    text = json.dumps(machine, indent=2, allow_nan=False, default=_plain)
    return {
        "report_md": write_text_atomic(out / "report.md", render_markdown(report, out)),
        "report_html": write_text_atomic(out / "report.html", render_html(report, out)),
        "report_json": write_text_atomic(out / "report.json", text + "\n"),
        "plan": m.allocation_path, "figures": out / "figures", "train_log": run.log,
    }
