"""`predict --like` where its draws cross LIKE_EXACT_MAX_BYTES: exact bytes against the two ways of going past it.

    .venv/bin/python benchmarks/like_switch.py [--like CKPT] [--plan P] [--compressors zlib,zstd,lzma,brotli]
                                               [--shapes 8x256,10x256,3x512] [--limit BYTES] [--csv OUT]

For each compressor and shape (LAYERSxDIM, the rest from the checkpoint's config) one state dict is
drawn from the checkpoint as `predict --like` draws it (seed 0), and its bytes are taken three ways:
- exact: the whole draw built as an artifact and measured (what predict does below the switch);
- checkpoint ratio: the draw estimated, times the checkpoint's exact / estimated bytes (what
  predict did above the switch before the sub-model);
- sub-model: like_bytes.price_draw above the switch (an exact sub-model of whole tensors over its
  share of the draw's estimate), with its share and derived bound (1 - share) 2e / (1 - e).
The jump at the switch for that shape is a method's error against exact. `--limit` moves the
switch (default LIKE_EXACT_MAX_BYTES) to put a shape just above it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.forecast import like_bytes
from pgolf.budget.forecast.estimate import estimate_model, estimate_streams, fit_entry, load_fit
from pgolf.budget.forecast.like import like_state_dict, load_recipe
from pgolf.budget.forecast.predict import config_specs
from pgolf.budget.quant.plans import resolve_plan

ROOT = Path(__file__).resolve().parents[1]
D128 = ROOT.parent / "shared" / "fixtures" / "artifacts" / "sp1024-3L-d128" / "final_model.pt"


def measure(recipe, plan, comp: str, layers: int, dim: int, limit: int, fit: dict, ckpt: dict) -> dict:
    """One row: exact, checkpoint-ratio and sub-model bytes of the seed-0 draw of one shape."""
    sd, _ = like_state_dict(config_specs(**{**recipe.config, "layers": layers, "dim": dim}), recipe, 0)
    rows, streams, kind, _ = estimate_streams(sd, plan)
    t = time.perf_counter()
    exact = measure_budget(sd, plan, comp, per_tensor=False, verify=False).headline["bytes_model"]
    t_exact = time.perf_counter() - t
    if comp not in ckpt:
        c_exact = measure_budget(recipe.tensors, plan, comp, per_tensor=False, verify=False).headline["bytes_model"]
        _, c_streams, c_kind, _ = estimate_streams(recipe.tensors, plan)
        ckpt[comp] = c_exact / estimate_model(c_streams, c_kind, comp, fit).total
    old = estimate_model(streams, kind, comp, fit).total * ckpt[comp]
    like_bytes.LIKE_EXACT_MAX_BYTES = limit
    t = time.perf_counter()
    new, _, share = like_bytes.price_draw(sd, rows, streams, kind, plan, comp, fit)
    share = 1.0 if share is None else share  # the draw fits under the switch: measured whole
    t_new = time.perf_counter() - t
    err = float(fit_entry(fit, comp)[1].get("artifact_rel_err_max", 0.0))
    return {"compressor": comp, "shape": f"{layers}x{dim}", "stored": int(rows["payload_bytes"].sum()),
            "exact": int(exact), "ckpt_ratio_pct": 100 * (old / exact - 1), "sub_model_pct": 100 * (new / exact - 1),
            "share": share, "bound_pct": 100 * like_bytes.sub_model_bound(share, err), "s_exact": t_exact,
            "s_sub": t_new}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--like", default=str(D128), help="checkpoint (default: the d128 fixture)")
    ap.add_argument("--plan", default="official-int8")
    ap.add_argument("--compressors", default="zlib,zstd,lzma,brotli")
    ap.add_argument("--shapes", default="8x256,10x256,3x512", help="LAYERSxDIM, comma-separated")
    ap.add_argument("--limit", type=int, default=like_bytes.LIKE_EXACT_MAX_BYTES, help="the switch, stored bytes")
    ap.add_argument("--csv", help="also write the table here")
    args = ap.parse_args(argv)
    recipe, plan, fit, ckpt = load_recipe(args.like), resolve_plan(args.plan), load_fit(), {}
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    out = []
    for comp in args.compressors.split(","):
        for layers, dim in shapes:
            out.append(measure(recipe, plan, comp, layers, dim, args.limit, fit, ckpt))
            print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in out[-1].items()),
                  flush=True)
    frame = pd.DataFrame(out)
    print(f"\n== {args.like}, {plan.name}, switch at {args.limit:,} stored bytes (error against exact, %)")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for method in ("ckpt_ratio_pct", "sub_model_pct"):
        print(f"{method}: median |error| {frame[method].abs().median():.2f} %, worst {frame[method].abs().max():.2f} %")
    print(f"sub-model inside its bound: {int((frame['sub_model_pct'].abs() <= frame['bound_pct']).sum())}/{len(frame)}")
    if args.csv:
        write_text_atomic(args.csv, frame.to_csv(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
