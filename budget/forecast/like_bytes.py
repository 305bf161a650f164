"""`predict --like` priced: each drawn state dict measured exactly, or in part when it is large.

A draw storing at most LIKE_EXACT_MAX_BYTES is built as an artifact and measured exactly. A
larger one is split into a sub-model of whole tensors that stores at most that many bytes
(`sub_model`: every kind of tensor at about the same share, spread over depth, then filled), the
sub-model is measured exactly, and the draw's bytes are the sub-model's exact bytes over its
share `c` of the draw's estimated bytes (the fast estimator, run once on the whole draw):

    bytes = exact(sub) / c,   c = sum of the estimator's per-tensor bytes over the sub-model / their total

Only the part the sub-model leaves out is priced by the estimator, and only relative to the part
it measured: if the estimator is off by at most e (relative) on any part, the result is off by at
most (1 - c) * 2e / (1 - e) of itself (`sub_model_bound`). Just above the switch c is close to 1,
so the prediction meets the exact one below it; far above it the same draw's sub-model, not the
checkpoint, corrects the estimator.

>>> sizes = {"tok_emb.weight": 400, **{f"blocks.{i}.mlp.fc.weight": 100 for i in range(6)}}
>>> sub_model(sizes, limit=700)
['tok_emb.weight', 'blocks.0.mlp.fc.weight', 'blocks.5.mlp.fc.weight', 'blocks.2.mlp.fc.weight']
"""
from __future__ import annotations

import math
import re

import numpy as np

from pgolf.budget.forecast.calibration import role_of
from pgolf.budget.forecast.estimate import estimate_model, estimate_streams
from pgolf.budget.forecast.like import Recipe, like_state_dict, recipe_table

LIKE_DRAWS = 3  # independent draws of a --like state dict: their spread is the interval
# A draw (or the sub-model of a larger one) storing at most this many bytes is built and measured
# exactly: a second or two with zlib/zstd, up to ~25 s with brotli-11 on 2 cores.
LIKE_EXACT_MAX_BYTES = 1 << 22
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # Student t, 97.5th percentile, by degrees of freedom
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_GOLDEN = (math.sqrt(5) - 1) / 2


def prediction_half_width(values) -> float:
    """Half-width of a 95% prediction interval for one more draw, from the draws' spread (Student t).

    >>> round(prediction_half_width([10.0, 12.0, 14.0]), 3)
    9.937
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return 0.0
    return T95[len(v) - 1] * float(v.std(ddof=1)) * math.sqrt(1 + 1 / len(v))


def _spread(name: str) -> float:
    """Order key: tensors outside the blocks first, then blocks in a low-discrepancy order of depth
    (the first k blocks taken are spread over the whole depth)."""
    m = _BLOCK.match(name)
    return -1.0 if m is None else (int(m.group(1)) * _GOLDEN) % 1.0


def sub_model(sizes: dict[str, int], limit: int, groups: dict[str, str] | None = None) -> list[str]:
    """Names of whole tensors storing at most `limit` bytes: first each group (default: the role)
    up to about its share limit/total of its own bytes (the group furthest below its share takes its
    next tensor in `_spread` order, when that brings it nearer its share); then whatever still
    fits, in `_spread` order.

    >>> sub_model({"a": 5, "b": 5}, limit=20)
    ['a', 'b']
    """
    groups = groups or {n: role_of(n) or "control" for n in sizes}
    total = sum(sizes.values())
    share = min(1.0, limit / total) if total else 1.0
    group_total: dict[str, int] = {}
    for n, b in sizes.items():
        group_total[groups[n]] = group_total.get(groups[n], 0) + b
    order = sorted(sizes, key=_spread)
    queue = {g: [n for n in order if groups[n] == g] for g in group_total}
    chosen, taken, used = [], {g: 0 for g in group_total}, 0
    while True:  # the group furthest below its share takes its next tensor, while that brings it nearer
        ready = [g for g, q in queue.items() if q and used + sizes[q[0]] <= limit
                 and taken[g] + sizes[q[0]] / 2 <= share * group_total[g]]
        if not ready:
            break
        g = min(ready, key=lambda k: (taken[k] / group_total[k] if group_total[k] else 1.0, k))
        n = queue[g].pop(0)
        chosen.append(n)
        taken[g] += sizes[n]
        used += sizes[n]
    for n in order:
        if n not in chosen and used + sizes[n] <= limit:
            chosen.append(n)
            used += sizes[n]
    return chosen


def sub_model_bound(share: float, err: float) -> float:
    """Largest relative error of exact(sub) / share when the estimator errs by at most `err` on any
    part: the left-out part (1 - share) priced at a ratio off by at most 2 err / (1 - err).

    >>> sub_model_bound(1.0, 0.02), round(sub_model_bound(0.9, 0.02), 5)
    (0.0, 0.00408)
    """
    return (1.0 - share) * 2 * err / (1 - err)


def price_draw(sd: dict, rows, streams, kind: str, plan, comp_name: str, fit) -> tuple[float, dict, float | None]:
    """(bytes, per-tensor bytes, share measured exactly) of one draw; share None: measured whole."""
    from pgolf.budget.exact.measure import measure_budget

    stored = int(rows["payload_bytes"].sum())
    if stored <= LIKE_EXACT_MAX_BYTES:
        measured = measure_budget(sd, plan, comp_name, verify=False)
        return (float(measured.headline["bytes_model"]),
                dict(zip(measured.frame["name"], measured.frame["compressed_bytes"])), None)
    est = estimate_model(streams, kind, comp_name, fit)
    sizes = {n: int(b) for n, b, tied in zip(rows["name"], rows["payload_bytes"], rows["tied_to"])
             if not isinstance(tied, str)}
    chosen = sub_model(sizes, LIKE_EXACT_MAX_BYTES)
    covered = sum(est.per_tensor.get(n, 0.0) for n in chosen)
    share = covered / max(sum(est.per_tensor.values()), 1e-9)
    if not chosen or share <= 0:  # no tensor fits whole: the estimate as it is
        return est.total, dict(est.per_tensor), 0.0
    kept = set(chosen)  # in the draw's own order: the codecs see the same neighbours
    exact = measure_budget({n: t for n, t in sd.items() if n in kept}, plan, comp_name, per_tensor=False, verify=False)
    value = exact.headline["bytes_model"] / share
    return value, {n: b * value / est.total for n, b in est.per_tensor.items()}, share


def like_bytes(specs, plan, comp_name: str, like: Recipe, fit: dict, interval: bool, err: float) -> dict:
    """The mean over LIKE_DRAWS seeded state dicts drawn from the checkpoint (`price_draw` each).

    The interval is the draws' 95% prediction interval, widened by (a) the estimator's worst error
    times |ln(stored bytes / the checkpoint's)| (at most 1): an allowance for carrying the recipe to
    another shape, none at the checkpoint's own size; and (b) `sub_model_bound` where a draw was
    measured only in part. Returns rows (the first draw's estimator rows), per_tensor, central,
    low, high, variants (bytes per draw, "kind"), whole (every draw measured whole), share
    (smallest over the draws) and notes.
    """
    variants, shares, rows, per_tensor, missing, kind = {}, [], None, {}, [], ""
    for seed in range(LIKE_DRAWS if interval else 1):
        sd, missing = like_state_dict(specs, like, seed)
        draw_rows, streams, kind, _ = estimate_streams(sd, plan)
        value, tensors, share = price_draw(sd, draw_rows, streams, kind, plan, comp_name, fit)
        variants[f"draw{seed}"] = value
        shares.append(share)
        if rows is None:
            rows, per_tensor = draw_rows, tensors
    draws = list(variants.values())
    central, half = float(np.mean(draws)), prediction_half_width(draws)
    stored = int(rows["payload_bytes"].sum())
    stored_ckpt = like.stored_bytes(plan)
    transfer = err * min(1.0, abs(math.log(max(stored, 1) / max(stored_ckpt, 1))))
    whole = all(s is None for s in shares)
    share = min(1.0 if s is None else s for s in shares)
    part = sub_model_bound(share, err)
    low = (central - half) * (1 - transfer) * (1 - part)
    high = (central + half) * (1 + transfer) * (1 + part)
    table = recipe_table(like, plan)
    shown = "; ".join(f"{r.role} {r.entropy_bits_per_value:.2f} bits/value"
                      + ("" if math.isnan(r.floor_bound_frac) else f", floor binds {r.floor_bound_frac:.0%}")
                      for r in table.itertuples() if not math.isnan(r.entropy_bits_per_value))
    if whole:
        how = f"each draw built as an artifact and measured exactly (it stores at most {LIKE_EXACT_MAX_BYTES:,} bytes)"
    else:
        how = (f"each draw stores {stored:,} bytes (> {LIKE_EXACT_MAX_BYTES:,}): a sub-model of its whole tensors "
               f"storing at most {LIKE_EXACT_MAX_BYTES:,} bytes measured exactly, over its share of the draw's "
               f"estimated bytes (measured_share {share:.2%} at least)")
    notes = [f"PREDICTED from {like.source}: the mean of {len(draws)} state dict(s) drawn from the checkpoint's "
             f"own values (same name at the same relative depth, else the same role), {how}",
             f"checkpoint statistics under {plan.name}: {shown or 'no quantized matrix'}",
             f"interval: a 95% prediction interval from the spread of {len(draws)} independent draw(s) (Student t), "
             f"widened by {transfer:.2%} (the estimator's worst error {err:.2%} x |ln(stored bytes {stored:,} / "
             f"checkpoint's {stored_ckpt:,})|, at most 1)"
             + ("" if whole else f" and by {part:.2%} (the part not measured, {1 - share:.2%}, "
                                        f"x 2 x {err:.2%} / (1 - {err:.2%}))")]
    if missing:
        notes.append(f"no counterpart in the checkpoint, default synthetic values: {', '.join(missing[:4])}"
                     + (" ..." if len(missing) > 4 else ""))
    return {"rows": rows, "per_tensor": per_tensor, "central": central, "low": low, "high": high,
            "variants": {**variants, "kind": kind}, "whole": whole, "share": share,
            "notes": notes}
