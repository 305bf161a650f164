"""Checkpoints opened for evaluation: the model, a validation slice, and val_bpb per plan or per step.

Each function returns the tidy DataFrame a plot function takes (plan_bpb: plan, val_bpb;
checkpoint_frame: one row per checkpoint with its exact bytes and both val_bpb).

>>> opened, model = open_checkpoint("runs/demo/checkpoints")          # doctest: +SKIP
>>> plan_bpb(model, opened.state_dict, ["int6"], eval_slice(opened, 4096)).columns.tolist()  # doctest: +SKIP
['plan', 'val_bpb']
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import Tensor, nn

from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.exact.build import fake_quantize
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import Plan, quantize_small
from pgolf.budget.progress import progress
from pgolf.inspect.evaluate import EvalSlice, evaluate_bpb, load_slice, load_weights
from pgolf.inspect.load import OpenedModel, build_model, open_model


def open_checkpoint(path: str | Path) -> tuple[OpenedModel, nn.Module]:
    """The checkpoint (state dict, sidecar, architecture) and the trainer's GPT holding it.

    >>> from pgolf.figures.demo.train import demo_checkpoint  # doctest: +SKIP
    >>> opened, model = open_checkpoint(demo_checkpoint())  # doctest: +SKIP
    >>> opened.arch.num_layers, type(model).__name__  # doctest: +SKIP
    (2, 'GPT')
    """
    opened = open_model(path)
    return opened, build_model(opened.state_dict, opened.require_arch())


def eval_slice(opened: OpenedModel, tokens: int, quiet: bool = True, offset: int = 0) -> EvalSlice:
    """`tokens` validation tokens of the embedded default from `offset` on, in the model's training
    windows (offset = the selection slice's tokens: the disjoint held-out slice after it).

    >>> sl = eval_slice(open_model("runs/demo/checkpoints"), tokens=8192)  # doctest: +SKIP
    >>> sl.n_tokens  # doctest: +SKIP
    8192
    """
    arch = opened.require_arch()
    return load_slice(tokens=tokens, seq_len=arch.train_seq_len, vocab_size=arch.vocab_size, quiet=quiet,
                      offset=offset)


def plan_bpb(model: nn.Module, sd: dict[str, Tensor], plans: list[Plan], sl: EvalSlice,
             quiet: bool = True) -> pd.DataFrame:
    """val_bpb of each plan's quantize -> dequantize roundtrip on the slice (plus the unquantized
    reference as plan "none"), and plan_gap_bpb = val_bpb - unquantized with its paired SE,
    interval and significance (val_bpb_se = plan_gap_bpb_se); the model holds `sd` again afterwards.

    >>> plan_bpb(model, sd, small_plans(["int6"]), sl).plan.tolist()  # doctest: +SKIP
    ['none', 'int6+small']
    """
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


def checkpoint_frame(checkpoints, sl: EvalSlice, plan: Plan | str = "official-int8", compressor: str = "zlib",
                     cap: int = CAP_BYTES, quiet: bool = True) -> pd.DataFrame:
    """One row per checkpoint: step, tokens_seen, train_loss (its sidecar), val_bpb_full and
    val_bpb_quantized (unquantized and `plan`'s roundtrip, on the slice) and the exact bytes_model
    under `plan` + `compressor`; `label` names the step, so the headroom plot takes the frame.

    >>> checkpoint_frame(run.checkpoints, sl, "official-int8", "zlib").columns[:3].tolist()  # doctest: +SKIP
    ['label', 'step', 'tokens_seen']
    """
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
