"""The analyses the demo runs, one function each, shared with the notebooks: every function calls
the budget / inspect / trainer APIs and returns a report object or the tidy DataFrame a plot
function takes.

On the demo's small models the official passthrough rule (floats of <= 65,536 values stay fp16)
would keep every block matrix unquantized; the demo's plans therefore go through
`inspect.gaps.quantize_small` (same rules, small matrices quantized too, control tensors fp32)
and carry a "+small" suffix in their names.

>>> [p.name for p in small_plans(["int6", "official-int8"])]
['int6+small', 'official-int8+small']
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from pgolf.budget.compare import CompareReport
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.measure import fake_quantize, measure_budget
from pgolf.budget.plans import Plan
from pgolf.budget.progress import progress
from pgolf.inspect.evaluate import EvalSlice, evaluate_bpb, load_slice, load_weights
from pgolf.inspect.gaps import quantize_small
from pgolf.inspect.load import OpenedModel, build_model, open_model


def small_plans(names) -> list[Plan]:
    """Presets or scheme names as plans that also quantize small matrices (see module docstring)."""
    return [quantize_small(n) for n in names]


def open_checkpoint(path: str | Path) -> tuple[OpenedModel, nn.Module]:
    """The checkpoint (state dict, sidecar, architecture) and the trainer's GPT holding it."""
    opened = open_model(path)
    return opened, build_model(opened.state_dict, opened.require_arch())


def eval_slice(opened: OpenedModel, tokens: int, quiet: bool = True, offset: int = 0) -> EvalSlice:
    """`tokens` validation tokens of the embedded default from `offset` on, in the model's training
    windows (offset = the selection slice's tokens: the disjoint held-out slice after it)."""
    arch = opened.require_arch()
    return load_slice(tokens=tokens, seq_len=arch.train_seq_len, vocab_size=arch.vocab_size, quiet=quiet,
                      offset=offset)


def half_fp16_cap(sd: dict[str, Tensor], compressor: str = "zlib") -> tuple[int, int]:
    """(cap, fp16 bytes): half the exact artifact bytes of the model stored all in fp16 (control
    tensors fp32) with `compressor`: full precision cannot fit, 8 bits per weight only just."""
    fp16 = measure_budget(sd, quantize_small("fp16"), compressor, per_tensor=False).headline["bytes_model"]
    return int(fp16) // 2, int(fp16)


def plan_bpb(model: nn.Module, sd: dict[str, Tensor], plans: list[Plan], sl: EvalSlice,
             quiet: bool = True) -> pd.DataFrame:
    """val_bpb of each plan's quantize -> dequantize roundtrip on the slice (plus the unquantized
    reference as plan "none"), and plan_gap_bpb = val_bpb - unquantized with its paired SE,
    interval and significance (val_bpb_se = plan_gap_bpb_se); the model holds `sd` again afterwards."""
    try:
        load_weights(model, sd)
        ref = evaluate_bpb(model, sl)
        results = [("none", ref)]
        for plan in progress(plans, desc="evaluate plans", quiet=quiet):
            load_weights(model, fake_quantize(sd, plan))
            results.append((plan.name, evaluate_bpb(model, sl)))
    finally:
        load_weights(model, sd)
    rows = []
    for name, r in results:
        gap = r.minus(ref)
        rows.append({"plan": name, "val_bpb": r.val_bpb, "val_bpb_se": gap.se, **gap.columns("plan_gap_bpb")})
    return pd.DataFrame(rows)


def better_than_unquantized(bpb: pd.DataFrame) -> pd.DataFrame:
    """Plans whose val_bpb is below the unquantized one *significantly* (95%, paired): the only
    ones a report may call better.

    >>> rows = pd.DataFrame({"plan": ["none", "a", "b"], "plan_gap_bpb": [0.0, -0.001, -0.002],
    ...                      "plan_gap_bpb_significant": [False, False, True]})
    >>> better_than_unquantized(rows)["plan"].tolist()
    ['b']
    """
    return bpb[(bpb["plan_gap_bpb"] < 0) & bpb["plan_gap_bpb_significant"].astype(bool)]


def plan_points(report: CompareReport, bpb: pd.DataFrame, compressors=None) -> pd.DataFrame:
    """The compare matrix's rows (only `compressors`, when given) with each plan's roundtrip
    val_bpb: the headroom plot's input. `label` drops the common "+small" to keep labels short."""
    frame = report.to_dataframe().merge(bpb, on="plan", how="left")
    if compressors is not None:
        frame = frame[frame["compressor"].isin(list(compressors))].reset_index(drop=True)
    frame["label"] = frame["plan"].str.removesuffix("+small") + " + " + frame["compressor"]
    frame["cap"] = report.headline["cap"]
    return frame


def compressor_frame(sd: dict[str, Tensor], schemes, compressors, quiet: bool = True) -> pd.DataFrame:
    """Per-tensor rows of `measure_budget` for each uniform scheme x compressor (only the tensors
    stored in that scheme): scheme, compressor, compressed_bytes (alone), entropy_bytes."""
    frames = []
    pairs = [(p, c) for p in small_plans(schemes) for c in compressors]
    for plan, comp in progress(pairs, desc="schemes x compressors", quiet=quiet):
        frame = measure_budget(sd, plan, comp).to_dataframe()
        frames.append(frame[frame["scheme"] == plan.default].assign(plan=plan.name, compressor=comp))
    return pd.concat(frames, ignore_index=True)


def checkpoint_frame(checkpoints, sl: EvalSlice, plan: Plan | str = "official-int8", compressor: str = "zlib",
                     cap: int = CAP_BYTES, quiet: bool = True) -> pd.DataFrame:
    """One row per checkpoint: step, tokens_seen, train_loss (its sidecar), val_bpb_full and
    val_bpb_quantized (unquantized and `plan`'s roundtrip, on the slice) and the exact bytes_model
    under `plan` + `compressor`; `label` names the step, so the headroom plot takes the frame."""
    plan = quantize_small(plan) if isinstance(plan, str) else plan
    rows, model = [], None
    for path in progress(list(checkpoints), desc="checkpoints", quiet=quiet):
        opened = open_model(path)
        sd, meta = opened.state_dict, opened.loaded.metadata
        model = model or build_model(sd, opened.require_arch())
        head = measure_budget(sd, plan, compressor, cap=cap, per_tensor=False).headline
        full = evaluate_bpb(load_weights(model, sd), sl).val_bpb
        quantized = evaluate_bpb(load_weights(model, fake_quantize(sd, plan)), sl).val_bpb
        rows.append({"label": f"step {meta['step']}", "step": meta["step"], "tokens_seen": meta["tokens_seen"],
                     "train_loss": meta.get("train_loss"), "val_bpb_full": full, "val_bpb_quantized": quantized,
                     "plan": plan.name, "compressor": compressor, "bytes_model": head["bytes_model"],
                     "bits_per_param": head["bits_per_param"], "bytes_total": head["bytes_total"], "cap": cap})
    return pd.DataFrame(rows)


def threads(n: int) -> None:
    """Use `n` torch threads in this process (the demo's small matrices gain nothing from more)."""
    torch.set_num_threads(max(1, int(n)))
