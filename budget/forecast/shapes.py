"""Tensor lists of the baseline GPT family, and seeded trained-like state dicts of that shape.

`baseline_specs(...)` returns the state-dict entries of the official baseline `GPT` (names, order,
shapes and dtypes exactly as `model.state_dict()` yields them after the baseline's dtype casts:
`tok_emb` bf16, everything else fp32), with three options records used: an untied `lm_head`,
depth recurrence (`num_unique_layers` distinct blocks reused, stored once) and a bigram-hash
embedding (named as the records named it: `bigram.embed.weight`, `bigram.proj.weight`,
`bigram.scale`; see records/track_10min_16mb/2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271).

>>> param_count(baseline_specs())
17059912
>>> [s.name for s in baseline_specs(num_layers=2)][:4]
['skip_weights', 'tok_emb.weight', 'blocks.0.attn_scale', 'blocks.0.mlp_scale']
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pgolf.budget.quant.official import is_control_tensor

# Roles drive the synthetic magnitudes and the calibration groups (embedding / attention / MLP).
KINDS = ("embedding", "attention", "mlp", "head", "control")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One state-dict entry: name, shape, dtype (no values)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def kind(self) -> str:
        return tensor_kind(self.name)


def tensor_kind(name: str) -> str:
    """embedding | attention | mlp | head | control, from a state-dict name.

    >>> tensor_kind("blocks.3.mlp.fc.weight"), tensor_kind("blocks.0.attn.q_gain")
    ('mlp', 'control')
    """
    if is_control_tensor(name) or name.endswith(("bigram.scale", "smear.gate", "skip_gates")):
        return "control"
    if name.startswith(("tok_emb", "bigram.")):
        return "embedding"
    if name.startswith("lm_head"):
        return "head"
    if ".mlp." in name:
        return "mlp"
    return "attention"


def _block_specs(i: int, dim: int, num_heads: int, kv_dim: int, hidden: int) -> list[TensorSpec]:
    p = f"blocks.{i}."
    # Module order: a module's own parameters first, then its submodules in registration order.
    return [
        TensorSpec(p + "attn_scale", (dim,)),
        TensorSpec(p + "mlp_scale", (dim,)),
        TensorSpec(p + "resid_mix", (2, dim)),
        TensorSpec(p + "attn.q_gain", (num_heads,)),
        TensorSpec(p + "attn.c_q.weight", (dim, dim)),
        TensorSpec(p + "attn.c_k.weight", (kv_dim, dim)),
        TensorSpec(p + "attn.c_v.weight", (kv_dim, dim)),
        TensorSpec(p + "attn.proj.weight", (dim, dim)),
        TensorSpec(p + "mlp.fc.weight", (hidden, dim)),
        TensorSpec(p + "mlp.proj.weight", (dim, hidden)),
    ]


def baseline_specs(num_layers: int = 9, model_dim: int = 512, num_heads: int = 8, num_kv_heads: int = 4,
                   mlp_mult: float = 2, vocab_size: int = 1024, tie_embeddings: bool = True,
                   num_unique_layers: int | None = None, bigram_hash_size: int = 0, *,
                   bigram_dim: int = 128, smear_gate: bool = False, embed_dim: int | None = None,
                   skip_gates: bool = False) -> list[TensorSpec]:
    """State-dict entries of the baseline GPT in `state_dict()` order.

    `num_layers` is the effective depth (it sets the U-Net skips); with `num_unique_layers=U`
    only U blocks are stored. `bigram_hash_size=N` adds the records' BigramHashEmbedding
    (N x bigram_dim table, a bigram_dim -> model_dim projection unless equal, a scalar scale);
    `smear_gate` adds the records' SmearGate vector; `embed_dim=E` factors the embedding
    (vocab x E table, `embed_proj` E -> dim and `head_proj` dim -> E, as the SP8192 records name
    them); `skip_gates` adds a gate per U-Net skip (skip_gates, same shape as skip_weights).

    >>> [(s.name, s.shape) for s in baseline_specs(2, 64, 4, 2, 1, 16)][:2]
    [('skip_weights', (1, 64)), ('tok_emb.weight', (16, 64))]
    """
    _check_shape_args(num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, vocab_size,
                      num_unique_layers, bigram_hash_size, bigram_dim, embed_dim)
    head_dim = model_dim // num_heads
    kv_dim = num_kv_heads * head_dim
    hidden = int(mlp_mult * model_dim)
    enc = num_layers // 2
    skips = (min(enc, num_layers - enc), model_dim)
    specs = [TensorSpec("skip_weights", skips)] + ([TensorSpec("skip_gates", skips)] if skip_gates else [])
    specs.append(TensorSpec("tok_emb.weight", (vocab_size, embed_dim or model_dim), torch.bfloat16))
    if embed_dim and embed_dim != model_dim:
        specs += [TensorSpec("embed_proj.weight", (model_dim, embed_dim)),
                  TensorSpec("head_proj.weight", (embed_dim, model_dim))]
    if bigram_hash_size:
        specs.append(TensorSpec("bigram.embed.weight", (bigram_hash_size, bigram_dim), torch.bfloat16))
        if bigram_dim != model_dim:
            specs.append(TensorSpec("bigram.proj.weight", (model_dim, bigram_dim)))
        specs.append(TensorSpec("bigram.scale", ()))
    if smear_gate:
        specs.append(TensorSpec("smear.gate", (model_dim,)))
    for i in range(num_unique_layers or num_layers):
        specs += _block_specs(i, model_dim, num_heads, kv_dim, hidden)
    if not tie_embeddings:
        specs.append(TensorSpec("lm_head.weight", (vocab_size, embed_dim or model_dim)))
    return specs


def _check_shape_args(num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, vocab_size,
                      num_unique_layers, bigram_hash_size, bigram_dim, embed_dim=None) -> None:
    problems = []
    if embed_dim is not None and (int(embed_dim) != embed_dim or embed_dim < 1):
        problems.append(f"embed_dim must be a positive integer, got {embed_dim}")
    for name, value in (("num_layers", num_layers), ("model_dim", model_dim), ("num_heads", num_heads),
                        ("num_kv_heads", num_kv_heads), ("vocab_size", vocab_size), ("bigram_dim", bigram_dim)):
        if int(value) != value or value < 1:
            problems.append(f"{name} must be a positive integer, got {value}")
    if not problems and model_dim % num_heads:
        problems.append(f"model_dim {model_dim} must be divisible by num_heads {num_heads}")
    if not problems and num_heads % num_kv_heads:
        problems.append(f"num_heads {num_heads} must be divisible by num_kv_heads {num_kv_heads}")
    if mlp_mult <= 0 or int(mlp_mult * model_dim) != mlp_mult * model_dim:
        problems.append(f"mlp_mult * model_dim must be a positive integer, got {mlp_mult} * {model_dim}")
    if num_unique_layers is not None and not 1 <= num_unique_layers <= num_layers:
        problems.append(f"num_unique_layers must be in 1..num_layers ({num_layers}), got {num_unique_layers}")
    if bigram_hash_size < 0:
        problems.append(f"bigram_hash_size must be >= 0, got {bigram_hash_size}")
    if problems:
        raise ValueError("; ".join(problems))


def param_count(specs: list[TensorSpec]) -> int:
    """Total values over the specs (shared blocks are listed, hence counted, once).

    >>> param_count([TensorSpec("w", (3, 4)), TensorSpec("b", (4,))])
    16
    """
    return sum(s.numel for s in specs)


def infer_config(shapes: dict[str, tuple[int, ...]]) -> dict | None:
    """The baseline-family config (predict's keyword arguments) whose tensor list is exactly these
    names and shapes, or None when the state dict is not of that family. With depth recurrence the
    effective depth is read from the U-Net skips, which depths 2k and 2k+1 share: the smaller is named
    (both store the same tensors).

    >>> infer_config({s.name: s.shape for s in baseline_specs(3, 128, 4, 2, 2, 1024)})
    {'layers': 3, 'dim': 128, 'heads': 4, 'kv_heads': 2, 'mlp_mult': 2.0, 'vocab': 1024}
    """
    try:
        vocab, width = shapes["tok_emb.weight"]
        blocks = 1 + max(int(n.split(".")[1]) for n in shapes if n.startswith("blocks."))
        dim = shapes["blocks.0.attn.c_q.weight"][1]
        heads = shapes["blocks.0.attn.q_gain"][0]
        kv_heads = shapes["blocks.0.attn.c_k.weight"][0] // (dim // heads)
        hidden = shapes["blocks.0.mlp.fc.weight"][0]
        skips = shapes["skip_weights"][0]
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        return None
    config = {"layers": blocks, "dim": dim, "heads": heads, "kv_heads": kv_heads, "mlp_mult": hidden / dim,
              "vocab": vocab}
    extra: dict = {}
    if "lm_head.weight" in shapes:
        extra["untied"] = True
    if width != dim:
        extra["embed_dim"] = width
    if "bigram.embed.weight" in shapes:
        extra["bigram_hash"], extra["bigram_dim"] = shapes["bigram.embed.weight"]
    if "smear.gate" in shapes:
        extra["smear_gate"] = True
    if "skip_gates" in shapes:
        extra["skip_gates"] = True
    enc = blocks // 2
    if skips != min(enc, blocks - enc):  # depth recurrence: the skips count the effective depth
        depth = next((d for d in range(blocks, 4 * blocks + 2) if min(d // 2, d - d // 2) == skips), None)
        if depth is None:
            return None
        extra["layers"], extra["unique_layers"] = depth, blocks
    config.update(extra)
    try:
        specs = baseline_specs(config["layers"], dim, heads, kv_heads, config["mlp_mult"], vocab,
                               not config.get("untied", False), config.get("unique_layers"),
                               config.get("bigram_hash", 0), bigram_dim=config.get("bigram_dim", 128),
                               smear_gate=config.get("smear_gate", False), embed_dim=config.get("embed_dim"),
                               skip_gates=config.get("skip_gates", False))
    except ValueError:
        return None
    if {s.name: tuple(s.shape) for s in specs} != {k: tuple(v) for k, v in shapes.items()}:
        return None
    return config


# Per-kind std of trained weights, roughly what Muon-trained baselines reach (row clip above 1, so
# the official int8 grid is relative): Gaussian rows then give 7.41 bits/param under int8+zlib, the
# published baseline gives 7.42. A sparse set of 3x outliers makes percentile clip rules matter.
_SYNTH_STD = {"embedding": 0.5, "attention": 0.35, "mlp": 0.35, "head": 0.3}
_OUTLIER_RATE = 1e-4
_OUTLIER_GAIN = 3.0


def _control_values(spec: TensorSpec, g: torch.Generator) -> Tensor:
    """Control tensors near the values training leaves them: scales ~1, resid_mix rows ~[1, 0]."""
    noise = torch.randn(spec.shape, generator=g)
    if spec.name.endswith("resid_mix"):
        base = torch.stack((torch.ones(spec.shape[1]), torch.zeros(spec.shape[1])))
        return base + 0.1 * noise
    if spec.name.endswith("q_gain"):
        return 1.5 + 0.2 * noise
    if spec.name.endswith("bigram.scale"):
        return 0.05 + 0.01 * noise
    if spec.name.endswith("smear.gate"):
        return 3.0 + 0.5 * noise
    if spec.name.endswith("skip_gates"):
        return 0.1 * noise
    return 1.0 + 0.1 * noise


def synthetic_state_dict(specs: list[TensorSpec], seed: int = 0) -> dict[str, Tensor]:
    """Deterministic trained-like weights for `specs`, exact dtypes, in spec order.

    Matrices: Gaussian with a per-kind std and rare 3x outliers; control tensors near their trained
    values. Same seed -> bit-identical tensors.

    >>> sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 1, 16))
    >>> sd["tok_emb.weight"].dtype, tuple(sd["blocks.0.mlp.fc.weight"].shape)
    (torch.bfloat16, (64, 64))
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    for spec in specs:
        if spec.kind == "control":
            t = _control_values(spec, g)
        else:
            t = torch.randn(spec.shape, generator=g) * _SYNTH_STD[spec.kind]
            outlier = torch.rand(spec.shape, generator=g) < _OUTLIER_RATE
            t = torch.where(outlier, t * _OUTLIER_GAIN, t)
        out[spec.name] = t.to(spec.dtype).contiguous()
    return out
