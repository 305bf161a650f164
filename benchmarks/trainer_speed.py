"""CPU training throughput (tokens/s) of pgolf's trainer, for the baseline shape and a small shape.

    python benchmarks/trainer_speed.py                                          # ours only
    python benchmarks/trainer_speed.py --reference /tmp/official_train_gpt.py   # ours / official

One training step = forward + backward + Muon (block matrices) + Adam (embedding, control
tensors), the split both scripts use. Two precisions, each like for like:
  fp32  ours as train_gpt.py runs on CPU by default; the official modules built in fp32.
  bf16  ours with AUTOCAST=bf16; the official model cast the way its main() casts it (bf16
        embedding, so bf16 activations; fp32 matrices cast at each matmul).
With --reference the official file's own GPT and Muon are built in this process for the same
shape, batch and seed, and the two are timed alternately (median of the rounds), so machine
load hits both alike. Target: ours / official >= 1.0.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time

import torch

from pgolf.trainer import train_gpt as ours

SHAPES = {
    # name: (num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, seq_len, sequences per step)
    "baseline": (9, 512, 8, 4, 2, 1024, 1),
    "small": (2, 128, 4, 2, 2, 128, 16),
}


def load_reference(path: str):
    """Import the official script as a module (its main() is never called)."""
    spec = importlib.util.spec_from_file_location("official_train_gpt", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"trainer_speed: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(module, shape: tuple, precision: str, seed: int = 0):
    """The module's GPT, its dtype setup for `precision`, and the baseline's optimizer split."""
    layers, dim, heads, kv, mult, _, _ = shape
    torch.manual_seed(seed)
    model = module.GPT(vocab_size=1024, num_layers=layers, model_dim=dim, num_heads=heads, num_kv_heads=kv,
                       mlp_mult=mult, tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0,
                       rope_base=10000.0, qk_gain_init=1.5)
    if module is not ours and precision == "bf16":  # exactly what the official main() does
        model = model.bfloat16()
        for m in model.modules():
            if isinstance(m, module.CastedLinear):
                m.float()
        module.restore_low_dim_params_to_fp32(model)
    control = ours.CONTROL_TENSOR_NAME_PATTERNS
    named = list(model.blocks.named_parameters())
    matrices = [p for n, p in named if p.ndim == 2 and not any(c in n for c in control)]
    scalars = [p for n, p in named if p.ndim < 2 or any(c in n for c in control)] + [model.skip_weights]
    optimizers = [torch.optim.Adam([model.tok_emb.weight], lr=0.05, betas=(0.9, 0.95)),
                  module.Muon(matrices, lr=0.04, momentum=0.95, backend_steps=5),
                  torch.optim.Adam(scalars, lr=0.04, betas=(0.9, 0.95))]
    autocast = module is ours and precision == "bf16"
    return model, optimizers, autocast


def step_seconds(model, optimizers, autocast: bool, x, y, with_optimizer: bool) -> float:
    start = time.perf_counter()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        loss = model(x, y)
    loss.backward()
    if with_optimizer:
        for opt in optimizers:
            opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(shape: tuple, precision: str, modules: dict, rounds: int) -> dict:
    seq_len, seqs = shape[5], shape[6]
    tokens = torch.randint(0, 1024, (seqs, seq_len + 1), generator=torch.Generator().manual_seed(1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    built = {name: build(module, shape, precision) for name, module in modules.items()}
    times = {name: {"step": [], "fwd_bwd": []} for name in modules}
    for model, opts, autocast in built.values():  # one untimed step each: allocator and caches warm
        step_seconds(model, opts, autocast, x, y, True)
    for _ in range(rounds):
        for name, (model, opts, autocast) in built.items():  # alternate, so load changes hit both
            times[name]["step"].append(step_seconds(model, opts, autocast, x, y, True))
            times[name]["fwd_bwd"].append(step_seconds(model, opts, autocast, x, y, False))
    out = {"params": sum(p.numel() for p in built["ours"][0].parameters()), "tokens_per_step": seq_len * seqs}
    for name in modules:
        for kind in ("step", "fwd_bwd"):
            out[f"{name}_{kind}_tokens_per_s"] = seq_len * seqs / statistics.median(times[name][kind])
    if "official" in modules:
        for kind in ("step", "fwd_bwd"):
            out[f"ratio_{kind}"] = out[f"ours_{kind}_tokens_per_s"] / out[f"official_{kind}_tokens_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", metavar="PATH", help="the official train_gpt.py, timed in the same run")
    parser.add_argument("--shapes", default="baseline,small", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per model, shape and precision (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modules = {"ours": ours}
    if args.reference:
        modules["official"] = load_reference(args.reference)
    rows = {f"{shape}/{precision}": measure(SHAPES[shape], precision, modules, args.rounds)
            for shape in args.shapes.split(",") for precision in args.precisions.split(",")}
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}, indent=2))
        return 0
    print(f"CPU training throughput in tokens/s, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"median of {args.rounds} steps; step = fwd + bwd + optimizers")
    for name, r in rows.items():
        line = (f"{name:14s} params {r['params']:>10,}  tokens/step {r['tokens_per_step']:>5,}  "
                f"ours step {r['ours_step_tokens_per_s']:>7,.0f} fwd+bwd {r['ours_fwd_bwd_tokens_per_s']:>7,.0f}")
        if "official" in modules:
            line += (f" | official step {r['official_step_tokens_per_s']:>7,.0f} fwd+bwd "
                     f"{r['official_fwd_bwd_tokens_per_s']:>7,.0f} | ours/official step {r['ratio_step']:.2f}x "
                     f"fwd+bwd {r['ratio_fwd_bwd']:.2f}x")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
