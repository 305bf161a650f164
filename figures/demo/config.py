"""The demo's two sizes: `QUICK` (CI and the notebooks: under two minutes on 2 cores) and `FULL`
(`make demo`: a few minutes of CPU training, under 15 minutes in all).

A config is keyword data only: the trainer's environment variables (official names) and what the
analyses sweep (plans, compressors, schemes, evaluation tokens).

>>> QUICK.train_env()["NUM_LAYERS"], QUICK.train_env()["DEVICE"]
('2', 'cpu')
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    name: str
    # the trainer's environment (official names)
    num_layers: int
    model_dim: int
    num_heads: int
    num_kv_heads: int
    mlp_mult: int
    train_seq_len: int
    train_batch_tokens: int
    iterations: int
    warmdown_iters: int
    checkpoint_every: int  # also the validation interval, so every checkpoint carries its val_bpb
    val_tokens: int  # the trainer's validation tokens, and every evaluation's slice: the same numbers
    seed: int = 1337
    # the analyses
    plans: tuple[str, ...] = ("fp16", "official-int8", "fp16-embed", "int6", "int5-mlp-int6-attn",
                              "sdclip-int6-int8emb", "int4", "ternary")
    compressors: tuple[str, ...] = ("zlib", "zstd", "lzma", "brotli")
    headroom_compressors: tuple[str, ...] | None = None  # the headroom plot's points; None: every one measured
    compressor_schemes: tuple[str, ...] = ("fp16", "int8", "int6", "int4", "ternary")  # uniform plans, one per scheme
    gap_schemes: tuple[str, ...] = ("int4", "int6")
    candidates: tuple[str, ...] = ("int4", "int5", "int6", "int8", "fp16")
    headroom_plan: str = "int6"  # the plan whose headroom and exchange rates are priced
    all_but_this: bool = True  # the gap sweeps' second view (one more evaluation per tensor)
    gap_method: str = "measured"  # headroom/allocation gaps: "measured" (replayed evaluations) or "proxy"
    calib_tokens: int = 4_096

    def train_env(self) -> dict[str, str]:
        """The trainer's variables for this config (a fixed-step "ruler" run on the CPU)."""
        env = {
            "NUM_LAYERS": self.num_layers, "MODEL_DIM": self.model_dim, "NUM_HEADS": self.num_heads,
            "NUM_KV_HEADS": self.num_kv_heads, "MLP_MULT": self.mlp_mult, "TRAIN_SEQ_LEN": self.train_seq_len,
            "TRAIN_BATCH_TOKENS": self.train_batch_tokens, "ITERATIONS": self.iterations,
            "WARMDOWN_ITERS": self.warmdown_iters, "CHECKPOINT_EVERY": self.checkpoint_every,
            "VAL_LOSS_EVERY": self.checkpoint_every, "VAL_TOKENS": self.val_tokens,
            "VAL_BATCH_SIZE": 8 * self.val_tokens, "TRAIN_LOG_EVERY": 10,  # the script splits it 8 ways: one batch
            "SEED": self.seed, "MAX_WALLCLOCK_SECONDS": 0, "WARMUP_STEPS": 0, "DEVICE": "cpu",
        }
        return {k: str(v) for k, v in env.items()}

    @staticmethod
    def torch_threads() -> int:
        """Torch threads, here and in the trainer: OMP_NUM_THREADS when set, else 1. The demo's
        matrices are small; on a busy 2-core machine a second (spinning) thread made training 3-10x
        slower, not faster."""
        env = os.environ.get("OMP_NUM_THREADS", "")
        return int(env) if env.isdigit() and int(env) > 0 else 1

    def digest(self) -> str:
        """Short content hash of the training-relevant fields (the trained-model cache key)."""
        return hashlib.sha256(json.dumps(self.train_env(), sort_keys=True).encode()).hexdigest()[:12]


QUICK = DemoConfig(
    name="quick", num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2, train_seq_len=128,
    train_batch_tokens=4_096, iterations=80, warmdown_iters=20, checkpoint_every=20, val_tokens=8_192,
    plans=("fp16", "official-int8", "fp16-embed", "int6", "int5-mlp-int6-attn", "int4", "ternary"),
    compressors=("zlib", "zstd"), compressor_schemes=("fp16", "int8", "int6", "int4", "ternary"),
    gap_schemes=("int4", "int6"), calib_tokens=2_048, all_but_this=False, gap_method="proxy",
)

FULL = DemoConfig(
    name="full", num_layers=4, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2, train_seq_len=256,
    train_batch_tokens=8_192, iterations=300, warmdown_iters=100, checkpoint_every=50, val_tokens=16_384,
    gap_schemes=("int4", "int6"), calib_tokens=8_192,
)

CONFIGS = {c.name: c for c in (QUICK, FULL)}
