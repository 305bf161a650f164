"""pgolf: byte budgets, quantization gaps and headroom for OpenAI's Parameter Golf challenge.

The notebook front door. `import pgolf as pg` and every name below is one attribute away; each is
the function or class of the area that owns it (budget, inspect, trainer, figures), loaded on first
use so that `import pgolf` stays cheap.

>>> import torch, pgolf as pg
>>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
>>> pg.measure_budget(sd, "int6", "zlib").headline["roundtrip_exact"]
True

- open any input: load_input (weights, checkpoints, artifacts), open_model (+ its architecture),
  load_model (the model that evaluates it: built in, or the participant's own train_gpt.py),
  open_checkpoint (+ the trainer's model), eval_slice (validation tokens for it)
- budget: measure_budget, measure_input, compare, compare_input, build_artifact, read_artifact,
  fake_quantize, totals, half_fp16_cap, compressor_frame
- lossless coding: squeeze (order-0 and conditional floors, every codec's exact bytes, the best per tensor)
- estimate and predict: estimate_budget, predict, predict_delta, load_recipe (predict's like=)
- plans: resolve_plan, load_plan, small_plans, quantize_small
- quality and headroom: plan_bpb, checkpoint_frame, measure_gaps, GapSweep (paired evaluations on
  one slice; a held-out one for allocate's report), GapOracle, headroom, allocate
- plots: plot_headroom_vs_bpb, plot_tensor_bytes, plot_quant_gap, plot_compressors_vs_entropy,
  plot_exchange_rate, plot_training_curve, plot_squeeze, plan_points (the headroom plot's input)
- reports: Report, BudgetReport, CompareReport, EstimateReport, PredictReport, InspectReport,
  GapsReport, HeadroomReport, AllocationReport, SqueezeReport
- training logs and the demo model: parse_log, demo_run, demo_checkpoint
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# In a source checkout (an editable install) the areas are folders beside src/, mapped by
# pyproject's package-dir; a regular package's __path__ would hide them, so it lists the checkout.
# A built wheel holds them inside this package and needs nothing.
_CHECKOUT = Path(__file__).resolve().parents[2]
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "budget" / "exact").is_dir():
    __path__.append(str(_CHECKOUT))

try:
    __version__ = version("pgolf")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> the module that owns it
_HOMES = {
    "load_input": "pgolf.budget.exact.inputs",
    "open_model": "pgolf.inspect.load",
    "load_model": "pgolf.inspect.load",
    "open_checkpoint": "pgolf.inspect.checkpoints",
    "eval_slice": "pgolf.inspect.checkpoints",
    "measure_budget": "pgolf.budget.exact.measure",
    "measure_input": "pgolf.budget.exact.measure",
    "half_fp16_cap": "pgolf.budget.exact.measure",
    "compare": "pgolf.budget.exact.compare",
    "compare_input": "pgolf.budget.exact.compare",
    "compressor_frame": "pgolf.budget.exact.compare",
    "squeeze": "pgolf.budget.exact.squeeze",
    "build_artifact": "pgolf.budget.exact.build",
    "fake_quantize": "pgolf.budget.exact.build",
    "read_artifact": "pgolf.budget.exact.decode",
    "totals": "pgolf.budget.glossary",
    "estimate_budget": "pgolf.budget.forecast.estimate",
    "predict": "pgolf.budget.forecast.predict",
    "predict_delta": "pgolf.budget.forecast.predict",
    "load_recipe": "pgolf.budget.forecast.like",
    "resolve_plan": "pgolf.budget.quant.plans",
    "load_plan": "pgolf.budget.quant.plans",
    "small_plans": "pgolf.budget.quant.plans",
    "quantize_small": "pgolf.budget.quant.plans",
    "plan_bpb": "pgolf.inspect.checkpoints",
    "checkpoint_frame": "pgolf.inspect.checkpoints",
    "measure_gaps": "pgolf.inspect.gaps",
    "GapOracle": "pgolf.inspect.headroom",
    "GapSweep": "pgolf.inspect.gaps",
    "headroom": "pgolf.inspect.headroom",
    "allocate": "pgolf.inspect.allocate",
    "plot_headroom_vs_bpb": "pgolf.figures.plots",
    "plot_tensor_bytes": "pgolf.figures.plots",
    "plot_quant_gap": "pgolf.figures.plots",
    "plot_compressors_vs_entropy": "pgolf.figures.plots",
    "plot_exchange_rate": "pgolf.figures.plots",
    "plot_training_curve": "pgolf.figures.plots",
    "plot_squeeze": "pgolf.figures.squeeze_plots",
    "plan_points": "pgolf.figures.frames",
    "Report": "pgolf.budget.report_base",
    "BudgetReport": "pgolf.budget.exact.measure",
    "CompareReport": "pgolf.budget.exact.compare",
    "SqueezeReport": "pgolf.budget.exact.squeeze",
    "EstimateReport": "pgolf.budget.forecast.estimate",
    "PredictReport": "pgolf.budget.forecast.predict",
    "DeltaReport": "pgolf.budget.forecast.predict",
    "InspectReport": "pgolf.inspect.reports",
    "GapsReport": "pgolf.inspect.reports",
    "HeadroomReport": "pgolf.inspect.reports",
    "AllocationReport": "pgolf.inspect.reports",
    "parse_log": "pgolf.trainer.logs",
    "demo_run": "pgolf.figures.demo.train",
    "demo_checkpoint": "pgolf.figures.demo.train",
}

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pgolf' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
