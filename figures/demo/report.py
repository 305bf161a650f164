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

DEMO_FORMAT = "pgolf-demo-v1"


def headline(run: DemoRun, m: Measured) -> dict:
    """The numbers a reader wants first: the model, its training, the cap and what fits under it."""
    c, final = run.config, run.results
    pairs = m.compared.to_dataframe().merge(m.plan_bpb, on="plan")
    best = pairs[pairs["headroom_bytes"] >= 0].nsmallest(1, "val_bpb")
    best_text = (f"{best['plan'].iloc[0]} + {best['compressor'].iloc[0]} (val_bpb {best['val_bpb'].iloc[0]:.4f})"
                 if len(best) else "none fits")
    alloc = m.allocation.headline
    return {
        "model": f"{c.num_layers} layers x {c.model_dim}, {c.num_heads}/{c.num_kv_heads} heads, MLP x{c.mlp_mult}",
        "params": m.compared.headline["params"], "steps": final["step"],
        "tokens_trained": final["step"] * c.train_batch_tokens,
        "train_seconds": round(final["train_time_ms"] / 1000, 1),
        "val_bpb": final["val_bpb"], "official_int8_roundtrip_val_bpb": final["roundtrip_val_bpb"],
        "cap": m.cap, "cap_rule": m.cap_rule, "eval_tokens": m.eval_tokens,
        "best_plan_under_cap": best_text,
        "allocated_bytes_model": alloc["bytes_model"], "allocated_val_bpb": alloc.get("val_bpb_quantized"),
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
                [m.compared, figs["headroom"], Table("roundtrip val_bpb per plan", m.plan_bpb),
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
             f"every val_bpb: the first {m.eval_tokens:,} tokens of the embedded default's val split in windows of "
             f"{c.train_seq_len}, as the trainer evaluates them",
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
