"""Allocation: a scheme per tensor that minimises the predicted BPB gap within the cap.

Options per tensor are the candidate schemes, each with its payload's compressed-alone bytes and
its only-this gap (measured or proxy), made non-increasing with precision (`monotone`). The whole artifact compresses a little differently from
the sum of its tensors, so the estimate is calibrated: offset = measured artifact bytes - sum of
alone bytes, from real builds. A greedy multiple-choice knapsack starts from every tensor's
smallest option and repeatedly takes the upgrade with the best gap reduction per byte that still
fits. The result is then built and measured for real (`measure_budget`); while it overshoots
the cap minus the margin it is repaired by the downgrade that costs the least BPB per byte
saved. Finally the uniform plans that fit are evaluated too; a uniform plan replaces the
allocation only when it is significantly better (95%) on the selection slice.

Measured gaps whose 95% interval contains 0 count as gap 0 (no gain): the knapsack does not buy
noise. The plan is chosen on the oracle's slice (selection) and, given a `report` sweep on a
disjoint slice, its val_bpb and gap are reported on that held-out slice (the headline), the
selection numbers beside them (select_*).

>>> greedy({"a": [Option("int4", 10, 0.5), Option("int8", 20, 0.1)],
...         "b": [Option("int4", 10, 0.2), Option("int8", 20, 0.19)]}, budget=30)
{'a': 'int8', 'b': 'int4'}
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
from torch import Tensor

from pgolf.budget.files.codebytes import code_bytes
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.exact.build import build_artifact, fake_quantize
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.progress import progress
from pgolf.budget.quant.schemes import get_scheme
from pgolf.budget.quant.plans import quantize_small
from pgolf.inspect.headroom import DEFAULT_LADDER, GapOracle, allocatable, alone_bytes, precision, with_scheme
from pgolf.inspect.reports import AllocationReport
from pgolf.inspect.uncertainty import significance_note

MAX_REPAIRS = 500
MAX_ROUNDS = 4


class CapTooSmall(PgolfInputError):
    """No candidate fits: even the smallest uniform plan (with code and margin) reaches the cap.
    The message names no flag; each caller adds the advice that fits it (the CLI: --candidates).

    >>> str(CapTooSmall(1_000, "int4", 51_881))
    'cap 1,000 is below the smallest candidate plan (uniform int4: 51,881 bytes with code and margin)'
    """

    def __init__(self, cap: int, smallest: str, need: int):
        self.cap, self.smallest, self.need = int(cap), smallest, int(need)
        super().__init__(None, f"cap {self.cap:,} is below the smallest candidate plan (uniform {smallest}: "
                               f"{self.need:,} bytes with code and margin)")


@dataclasses.dataclass(frozen=True)
class Option:
    scheme: str
    bytes: int
    gap: float


def monotone(options: list[Option]) -> list[Option]:
    """Gaps made non-increasing with precision (options ordered low to high precision): a coarser
    scheme is never predicted better than a finer one. Measured gaps below the evaluation's
    resolution (and first-order proxy terms) can be negative; without this the knapsack would
    "buy" noise by choosing coarse schemes that happened to help on the slice.

    >>> [o.gap for o in monotone([Option("int4", 1, -0.2), Option("int6", 2, 0.1), Option("int8", 3, 0.0)])]
    [0.1, 0.1, 0.0]
    """
    out, running = [], float("-inf")
    for o in reversed(options):
        running = max(running, o.gap)
        out.append(dataclasses.replace(o, gap=running))
    return out[::-1]


def greedy(options: dict[str, list[Option]], budget: float) -> dict[str, str]:
    """Multiple-choice knapsack: from every tensor's smallest option, repeatedly take the upgrade
    with the best gap reduction per byte that fits; then spend what is left on upgrades that
    cost no predicted BPB (ties), fewest bytes first, preferring precision when the cap allows."""
    for n, opts in options.items():
        for o in opts:
            if math.isnan(o.gap):
                raise PgolfInputError(None, f"the gap of {n} under {o.scheme} is NaN (its evaluation gave no "
                                            f"number); nothing can be chosen against it")
    choice = {n: min(opts, key=lambda o: (o.bytes, o.gap)) for n, opts in options.items()}
    used = sum(o.bytes for o in choice.values())
    for ties in (False, True):
        while True:
            best, best_key = None, None
            for n, opts in options.items():
                cur = choice[n]
                for o in opts:
                    extra, gain = o.bytes - cur.bytes, cur.gap - o.gap
                    # written so a NaN gain (inf - inf, a NaN gap) is never a move: every move
                    # strictly lowers a gap or, among ties, strictly adds bytes, so the loop ends
                    if used + extra > budget or not (gain > 0 or (gain == 0 and ties and extra > 0)):
                        continue
                    key = (-extra, n) if ties else (float("inf") if extra <= 0 else gain / extra, n)
                    if best_key is None or key > best_key:
                        best, best_key = (n, o), key
            if best is None:
                break
            n, o = best
            used += o.bytes - choice[n].bytes
            choice[n] = o
    return {n: o.scheme for n, o in choice.items()}


def _cheapest_downgrade(options: dict[str, list[Option]], choice: dict[str, str]) -> tuple[str, str] | None:
    """The step to a smaller option that loses the least predicted BPB per byte saved."""
    best, best_rate = None, float("inf")
    for n, opts in options.items():
        cur = next(o for o in opts if o.scheme == choice[n])
        for o in opts:
            saved = cur.bytes - o.bytes
            if saved <= 0:
                continue
            rate = (o.gap - cur.gap) / saved
            if rate < best_rate:
                best, best_rate = (n, o.scheme), rate
    return best


def _code_total(code, code_wrapped: bool) -> int:
    if code is None:
        return 0
    sizes = code if isinstance(code, dict) else code_bytes(code)
    return int(sizes["wrapped" if code_wrapped else "raw"])


def allocate(sd: dict[str, Tensor], cap: int = CAP_BYTES, *, oracle: GapOracle, code=None, code_wrapped: bool = False,
             candidates: tuple[str, ...] = DEFAULT_LADDER, margin: int = 0, compressor: str = "zlib",
             base: str | Plan = "official-int8", quiet: bool = False, source: str = "",
             report=None) -> AllocationReport:
    """A plan for `sd` whose measured bytes_total + margin < cap, with the least predicted gap.

    `oracle`: a GapOracle (its slice, the selection slice, also measures val_bpb), or any object
    with `label` and `gaps(pairs, desc) -> {(name, scheme): gap}` (no `sweep`: no val_bpb
    reported). `report`: a GapSweep of the same model on a held-out slice, disjoint from the
    oracle's, where the chosen plan is scored. Raises CapTooSmall when even the smallest uniform
    candidate plan does not fit.

    >>> allocation = allocate(sd, cap, oracle=oracle)  # doctest: +SKIP
    >>> allocation.headline["bytes_total"] < cap  # doctest: +SKIP
    True
    """
    base = quantize_small(resolve_plan(base))
    names = allocatable(sd, base)
    candidates = tuple(sorted(dict.fromkeys(get_scheme(c).name for c in candidates), key=precision))
    limit = int(cap) - int(margin) - 1  # the artifact must be strictly below the cap
    code_total = _code_total(code, code_wrapped)
    pairs = [(n, s) for n in names for s in candidates]
    sizes = alone_bytes(sd, pairs, compressor)
    gaps = oracle.gaps(pairs, "allocation gaps")
    raw = {n: monotone([Option(s, sizes[(n, s)], gaps[(n, s)]) for s in candidates]) for n in names}
    noise = set()
    if getattr(oracle, "method", "") == "measured":
        noise = {k for k in pairs if gaps[k] != 0 and not oracle.difference(k).significant}
    options = {n: monotone([Option(s, sizes[(n, s)], 0.0 if (n, s) in noise else gaps[(n, s)]) for s in candidates])
               for n in names}
    plan_for = lambda ch, name="allocated": with_scheme(base, ch, name)  # noqa: E731
    builds = 0

    def model_bytes(choice: dict[str, str]) -> int:
        nonlocal builds
        builds += 1
        return len(build_artifact(sd, plan_for(choice), compressor))

    uniform = {}
    for s in progress(candidates, desc="uniform plans", total=len(candidates), quiet=quiet):
        choice = {n: s for n in names}
        uniform[s] = {"choice": choice, "bytes_model": model_bytes(choice)}
    fitting = [s for s in candidates if uniform[s]["bytes_model"] + code_total <= limit]
    if not fitting:
        smallest = min(candidates, key=lambda s: uniform[s]["bytes_model"])
        need = uniform[smallest]["bytes_model"] + code_total + int(margin) + 1
        raise CapTooSmall(cap, smallest, need)
    # calibrate the alone-sum to the real artifact with the uniform plan nearest the cap
    near = min(candidates, key=lambda s: abs(uniform[s]["bytes_model"] + code_total - limit))
    offset = uniform[near]["bytes_model"] - sum(sizes[(n, near)] for n in names)
    best_fit, rounds = None, 0
    for rounds in range(1, MAX_ROUNDS + 1):
        choice = greedy(options, limit - code_total - offset)
        measured = model_bytes(choice)
        alone_sum = sum(sizes[(n, choice[n])] for n in names)
        if measured + code_total <= limit:
            if best_fit is None or _predicted(options, choice) < _predicted(options, best_fit[0]):
                best_fit = (choice, measured)
            if limit - measured - code_total < 0.002 * limit:
                break
        new_offset = measured - alone_sum
        if new_offset == offset:
            break
        offset = new_offset
    repairs = 0
    if best_fit is None:
        while measured + code_total > limit and repairs < MAX_REPAIRS:
            step = _cheapest_downgrade(options, choice)
            if step is None:
                break
            choice = {**choice, step[0]: step[1]}
            measured, repairs = model_bytes(choice), repairs + 1
        best_fit = (choice, measured) if measured + code_total <= limit else None
    # what noise would have bought: the knapsack on the raw gaps at the same byte budget
    moves = 0
    if best_fit is not None and noise:
        raw_choice = greedy(raw, limit - code_total - offset)
        moves = sum(raw_choice[n] != best_fit[0][n] for n in names)
    result = _finish(sd, base, names, options, uniform, fitting, best_fit, oracle, compressor, code, code_wrapped, cap,
                     margin, candidates, rounds, repairs, builds, source, report)
    if getattr(oracle, "method", "") == "measured":
        result.headline.update(insignificant_options=len(noise), insignificant_moves=moves)
        result.notes.insert(0, significance_note(len(noise), "(tensor, scheme) gaps") + f"; {moves:,} tensors' "
                            "schemes differ from what the raw gaps would have chosen")
    return result


def _predicted(options: dict[str, list[Option]], choice: dict[str, str]) -> float:
    return sum(next(o.gap for o in opts if o.scheme == choice[n]) for n, opts in options.items())


def _better(a, b) -> bool:
    """Evaluation `a` is significantly better (lower val_bpb) than `b` on the same slice."""
    return a.minus(b).hi < 0


def _choose(scored: list[tuple[str, dict, object]], measured: bool) -> tuple[str, dict, object]:
    """The allocation, unless a uniform plan beats it significantly (then the best such plan)."""
    alloc = next((e for e in scored if e[0] == "allocation"), None)
    if not measured:
        return min(scored, key=lambda e: (e[2], 0 if e[0] == "allocation" else 1))
    if alloc is None:
        return min(scored, key=lambda e: e[2].val_bpb)
    better = [e for e in scored if e[0] != "allocation" and _better(e[2], alloc[2])]
    return min(better, key=lambda e: e[2].val_bpb) if better else alloc


def _finish(sd, base, names, options, uniform, fitting, best_fit, oracle, compressor, code, code_wrapped, cap, margin,
            candidates, rounds, repairs, builds, source, report=None) -> AllocationReport:
    """Evaluate the allocation and the fitting uniform plans on the oracle's slice (selection);
    keep the allocation unless a uniform plan is significantly better; then score the final plan
    through its real artifact (build, read back, evaluate) on the held-out `report` slice (and on
    the selection slice beside it). An oracle without a slice (no `sweep`) ranks by predicted gap
    and reports no val_bpb."""
    entries = [(f"uniform {s}", uniform[s]["choice"]) for s in fitting]
    if best_fit is not None:
        entries.insert(0, ("allocation", best_fit[0]))
    sweep = getattr(oracle, "sweep", None)
    if sweep is not None:
        scored = [(label, choice, sweep.evaluate_state(fake_quantize(sd, with_scheme(base, choice, label)), label))
                  for label, choice in entries]
    else:
        scored = [(label, choice, _predicted(options, choice)) for label, choice in entries]
    label, choice, _ = _choose(scored, sweep is not None)
    plan = with_scheme(base, choice, "allocated")
    plan = Plan(name="allocated", rules=plan.rules, default=base.default, keep_float_max_numel=0,
                description=f"pgolf allocate: cap {int(cap):,}, margin {int(margin):,}, candidates "
                            f"{','.join(candidates)}, {label}")
    budget = measure_budget(sd, plan, compressor, code=code, cap=cap, code_wrapped=code_wrapped, per_tensor=False)
    head = {"plan": plan.name, "chosen": label, "cap": int(cap), "margin": int(margin),
            "candidates": ",".join(candidates), "compressor": compressor,
            **{k: budget.headline[k] for k in ("bytes_model", "bytes_code", "bytes_total", "headroom_bytes")},
            "fits": bool(budget.headline["headroom_bytes"] > margin),
            "gap_source": oracle.label, "predicted_gap_bpb": _predicted(options, choice)}
    notes = []
    if sweep is not None:
        # the final plan's own artifact (the bytes just measured), decoded and evaluated: the
        # reported val_bpb is the real path's, and it must equal the in-memory one it was chosen by
        decoded = read_artifact(budget.artifact, max(64 * len(budget.artifact), 4 * CAP_BYTES))
        decoded = {n: decoded[n] for n in sd}
        sel, sel_full = sweep.evaluate_state(decoded, label), sweep.reference(record=False)
        matches = sel.val_bpb == next(e[2].val_bpb for e in scored if e[0] == label)
        held = report if report is not None else sweep
        final, full = held.evaluate_state(decoded, label), held.reference(record=False)
        gap = final.minus(full)
        head.update(val_bpb_full=full.val_bpb, val_bpb_quantized=final.val_bpb, **gap.columns("quant_gap_bpb"),
                    artifact_matches=matches, report_tokens=held.sl.n_tokens,
                    select_val_bpb_full=sel_full.val_bpb, select_val_bpb_quantized=sel.val_bpb,
                    **sel.minus(sel_full).columns("select_quant_gap_bpb"), select_tokens=sweep.sl.n_tokens)
        if report is not None:
            notes.append(f"headline val_bpb: the held-out slice ({held.sl.n_tokens:,} tokens, disjoint from the "
                         f"{sweep.sl.n_tokens:,}-token selection slice the plan was chosen on); select_*: the "
                         "selection slice, optimistic because the choice was made there")
        else:
            notes.append("val_bpb measured on the same slice the plan was chosen on (no held-out slice): optimistic")
        if gap.value < 0:
            notes.append("the allocated plan scores below the unquantized model on the held-out slice: "
                         + ("significant (95%)" if gap.significant else "within noise, not a gain"))
    head.update(rounds=rounds, repairs=repairs, builds=builds)
    frame = pd.DataFrame([{"name": n, "numel": sd[n].numel(), "scheme": choice[n],
                           "bytes": next(o.bytes for o in options[n] if o.scheme == choice[n]),
                           **_gap_columns(oracle, n, choice[n], options)}
                          for n in names], columns=ALLOCATION_COLUMNS)
    what = "val_bpb" if sweep is not None else "predicted gap"
    scores = {e[0]: (e[2].val_bpb if sweep is not None else e[2]) for e in scored}
    notes += [f"uniform {s}: bytes_model {uniform[s]['bytes_model']:,}, "
              + (f"selection {what} {scores['uniform ' + s]:.6f}" if s in fitting else "does not fit")
              for s in candidates]
    if best_fit is not None:
        notes.append(f"allocation: selection {what} {scores['allocation']:.6f}; kept: {label}"
                     + (" (a uniform plan replaces the allocation only when significantly better)"
                        if sweep is not None else ""))
    if sweep is None:
        notes.append("no evaluation slice: plans ranked by predicted gap, no val_bpb measured")
    if best_fit is None:
        notes.append("the knapsack's plan could not be repaired under the cap; the best fitting uniform plan is used")
    notes.append("bytes: each tensor's payload compressed alone; bytes_model: the whole artifact, measured")
    notes.append("gap_only_this_bpb: the option's gap as the knapsack used it (within-noise gaps as 0), on the "
                 "selection slice")
    return AllocationReport.build(head, frame, plan, source=source, notes=notes)


ALLOCATION_COLUMNS = ["name", "numel", "scheme", "bytes", "gap_only_this_bpb", "gap_only_this_bpb_se",
                      "gap_only_this_bpb_lo", "gap_only_this_bpb_hi", "gap_only_this_bpb_significant"]


def _gap_columns(oracle, name: str, scheme: str, options) -> dict:
    gap = next(o.gap for o in options[name] if o.scheme == scheme)
    if getattr(oracle, "method", "") != "measured":
        return {"gap_only_this_bpb": gap, "gap_only_this_bpb_se": float("nan"), "gap_only_this_bpb_lo": float("nan"),
                "gap_only_this_bpb_hi": float("nan"), "gap_only_this_bpb_significant": True}
    spread = oracle.difference((name, scheme))
    return {**spread.columns("gap_only_this_bpb"), "gap_only_this_bpb": gap}
