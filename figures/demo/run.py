"""`pgolf demo`: the whole story on the embedded default, into one folder.

Prepare the data, train a small model on the CPU (checkpoints along the way), measure exact bytes
for every plan x compressor, evaluate each plan's roundtrip BPB, measure per-tensor gaps with the
proxy beside them, price every tensor's next precision step, allocate a plan under a cap (half the
model's fp16 bytes unless given), draw every figure, and write report.md, a self-contained
report.html and report.json (the same numbers for a machine):

    out/report.md  out/report.html  out/report.json  out/plans/allocated.json
    out/figures/<kind>.png .svg .csv   out/train/ (the trainer's OUT_DIR)   out/cache/ (evaluations)

>>> result = run_demo("runs/demo", quick=True, quiet=True)      # doctest: +SKIP
>>> result.report.headline["cap"] == result.measured.cap      # doctest: +SKIP
True
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.compare import compare, compressor_frame
from pgolf.budget.exact.measure import half_fp16_cap, measure_budget
from pgolf.budget.progress import progress
from pgolf.budget.quant.plans import small_plans
from pgolf.figures.demo.config import FULL, QUICK, DemoConfig
from pgolf.figures.demo.measured import Measured
from pgolf.figures.demo.report import build_report, write_outputs
from pgolf.figures.demo.train import DemoRun, train_demo
from pgolf.figures.export import export_plot
from pgolf.figures.frames import plan_points
from pgolf.figures.report_md import DemoReport, Figure
from pgolf.inspect.allocate import allocate
from pgolf.inspect.checkpoints import checkpoint_frame, eval_slice, open_checkpoint, plan_bpb
from pgolf.inspect.gaps import GapSweep, measure_gaps
from pgolf.inspect.headroom import GapOracle, headroom
from pgolf.trainer.corpus import prepare_default
from pgolf.trainer.logs import parse_log

STAGES = ("prepare data", "train", "budget", "plan BPB", "compressors", "gaps", "headroom", "allocate",
          "checkpoints", "figures", "report")


@dataclasses.dataclass
class DemoResult:
    out_dir: Path
    run: DemoRun
    measured: Measured
    report: DemoReport
    paths: dict[str, Path]  # report_md, report_html, report_json, plan, figures, train_log
    seconds: dict[str, float]  # wall time per stage


class _Stages:
    """One progress bar over the demo's stages, and the wall time each one took."""

    def __init__(self, quiet: bool):
        self.bar = progress(None, desc="demo", total=len(STAGES), quiet=quiet)
        self.seconds: dict[str, float] = {}
        self._name, self._t0 = None, time.perf_counter()

    def start(self, name: str) -> None:
        self._close()
        self._name, self._t0 = name, time.perf_counter()
        self.bar.set_description(f"demo: {name}")

    def _close(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._t0, 2)
            self.bar.update(1)

    def finish(self) -> dict[str, float]:
        self._close()
        self.bar.close()
        return self.seconds


def measure(run: DemoRun, config: DemoConfig, cap: int | None, out: Path, stages: _Stages,
            quiet: bool = True) -> Measured:
    """Every measurement of the demo on `run`'s final checkpoint (stages "budget" .. "checkpoints")."""
    opened, model = open_checkpoint(run.final_checkpoint)
    sd, source = opened.state_dict, run.final_checkpoint.name
    sl = eval_slice(opened, config.val_tokens)
    held = eval_slice(opened, config.val_tokens, offset=sl.n_tokens)  # disjoint: reporting only

    stages.start("budget")
    cap_rule = "given with --cap"
    if cap is None:
        cap, fp16_bytes = half_fp16_cap(sd)
        cap_rule = f"half of the model's fp16 artifact ({fp16_bytes:,} bytes, fp16+small + zlib)"
    plans = small_plans(config.plans)
    compared = compare(sd, plans, config.compressors, cap=cap, quiet=quiet)
    stages.start("plan BPB")
    # reported on the held-out slice; "best plan" is chosen on the selection slice (select_val_bpb)
    bpb = plan_bpb(model, sd, plans, held, quiet=quiet).merge(
        plan_bpb(model, sd, plans, sl, quiet=quiet)[["plan", "val_bpb"]].rename(
            columns={"val_bpb": "select_val_bpb"}), on="plan")
    stages.start("compressors")
    compressor_rows = compressor_frame(sd, config.compressor_schemes, config.compressors, quiet=quiet)

    stages.start("gaps")
    cache = out / "cache"  # evaluations shared by the gap sweeps, headroom and allocation
    gaps = [measure_gaps(model, plan, sl, sd=sd, quiet=quiet, calib_tokens=config.calib_tokens,
                         all_but_this=config.all_but_this, cache_dir=cache, source=source)
            for plan in small_plans(config.gap_schemes)]
    stages.start("headroom")
    oracle = GapOracle(model, sd, sl, method=config.gap_method, cache_dir=cache, quiet=quiet,
                       calib_tokens=config.calib_tokens)
    room = headroom(sd, small_plans([config.headroom_plan])[0], cap=cap, oracle=oracle, quiet=quiet,
                    source=source)
    stages.start("allocate")
    try:
        allocation = allocate(sd, cap, oracle=oracle, candidates=config.candidates, quiet=quiet, source=source,
                              report=GapSweep(model, sd, held, cache, quiet))
    except PgolfInputError as exc:  # the allocator's advice names its own CLI; say what the demo can change
        raise PgolfInputError(None, f"--cap {cap:,}: {exc.problem.split(';')[0]}; the demo allocates among "
                                    f"{', '.join(config.candidates)}, so give a larger --cap") from None
    oracle.release()
    plan_path = allocation.plan.save(out / "plans" / "allocated.json")
    allocated_budget = measure_budget(sd, allocation.plan, "zlib", cap=cap, source=source)

    stages.start("checkpoints")
    ckpts = checkpoint_frame(run.checkpoints, sl, "official-int8", "zlib", cap=cap, quiet=quiet)
    points = plan_points(compared, bpb, config.headroom_compressors)
    return Measured(cap, cap_rule, sl.n_tokens, held.n_tokens, compared, bpb, points, compressor_rows,
                    gaps, room, allocation, plan_path, allocated_budget, ckpts)


def draw(run: DemoRun, m: Measured, fig_dir: Path) -> dict[str, Figure]:
    """All six figures (PNG, SVG and the CSV of the plotted rows each) into `fig_dir`."""
    def fig(kind: str, data, caption: str, **options) -> Figure:
        return Figure(kind, export_plot(kind, data, fig_dir, **options), caption)

    compressors = ", ".join(dict.fromkeys(m.points["compressor"]))
    return {
        "training-curve": fig("training-curve", parse_log(run.log),
                              f"train/val loss and val_bpb over {run.config.iterations} steps (train/train.log)"),
        "headroom": fig("headroom", m.points, f"each plan (+small) with each compressor ({compressors}): exact "
                        "bytes vs roundtrip val_bpb; points without room for their name are numbered"),
        "compressors": fig("compressors", m.compressor_rows, "uniform schemes: each compressor vs the entropy floor"),
        "quant-gap": fig("quant-gap", m.gap_rows(), "measured only-this gap per tensor, gradient proxy as ◇"),
        "exchange-rate": fig("exchange-rate", m.headroom, "ΔBPB per KB of each tensor's next precision step",
                             budget_bytes=max(1, m.cap // 10)),
        "tensor-bytes": fig("tensor-bytes", m.allocated_budget,
                            f"payload per tensor under the plan allocated for {m.cap:,} bytes"),
    }


def run_demo(out: str | Path = "runs/demo", quick: bool = False, cap: int | None = None, quiet: bool = False,
             config: DemoConfig | None = None) -> DemoResult:
    """Run every stage (see module docstring) into `out`; returns the report and the written paths."""
    config = config or (QUICK if quick else FULL)
    out = Path(out)
    stages = _Stages(quiet)
    torch.set_num_threads(max(1, int(config.torch_threads())))  # small matrices gain nothing from more
    stages.start("prepare data")
    data = prepare_default(quiet=True)
    stages.start("train")
    run = train_demo(out / "train", config, data, quiet=quiet)
    measured = measure(run, config, cap, out, stages, quiet)
    stages.start("figures")
    figures = draw(run, measured, out / "figures")
    stages.start("report")
    report = build_report(run, measured, figures)
    paths = write_outputs(out, report, run, measured, figures)
    return DemoResult(out, run, measured, report, paths, stages.finish())
