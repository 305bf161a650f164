"""
pgolf's trainer for the Parameter Golf baseline GPT: one standalone script, configured by environment
variables with the official names (a record's command line transfers unchanged), plus a few of ours.

    python trainer/train_gpt.py                               # official defaults, 10-minute cap
    DEVICE=cpu NUM_LAYERS=2 MODEL_DIM=128 TRAIN_SEQ_LEN=128 TRAIN_BATCH_TOKENS=4096 \
      ITERATIONS=300 MAX_WALLCLOCK_SECONDS=0 python trainer/train_gpt.py      # CPU "ruler" run
    torchrun --standalone --nproc_per_node=8 trainer/train_gpt.py             # 8 GPUs

Writes OUT_DIR/train.log (key:value lines), OUT_DIR/checkpoints/step_NNNNNN.{safetensors,json,optim.pt},
OUT_DIR/final_model.pt, OUT_DIR/final_model.int8.ptz (the official int8_clean_per_row_v1 + zlib-9
export, reloaded and scored) and OUT_DIR/results.json. Importing this file has no side effects;
it never imports pgolf because a script's own bytes count toward the artifact.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import hashlib
import io
import json
import math
import os
import platform
import random
import secrets
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load, save as safetensors_save
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

# -----------------------------
# HYPERPARAMETERS
# -----------------------------
# Official names and defaults (baseline: 9 blocks x 512, 8 heads / 4 kv heads, MLP x2, vocab 1024,
# seq 1024, 524,288 tokens per step, 20,000 steps or 600 s). Ours follow the official ones.
# MAX_WALLCLOCK_SECONDS=0 gives the fixed-step "ruler" mode: same seed, same machine -> same losses.

OFFICIAL_DATA_PATH = "./data/datasets/fineweb10B_sp1024"
OFFICIAL_TOKENIZER_PATH = "./data/tokenizers/fineweb_1024_bpe.model"
QAT_CHOICES = ("", "ternary") + tuple(f"int{b}" for b in range(2, 9))
CHECKPOINT_FORMAT = "pgolf-checkpoint-v1"


@dataclasses.dataclass
class Hyperparameters:
    data_path: str = ""  # "" -> ./data/datasets/fineweb10B_sp1024 if present, else the embedded default
    tokenizer_path: str = ""
    run_id: str = ""
    seed: int = 1337
    val_batch_size: int = 524_288
    val_loss_every: int = 1000
    train_log_every: int = 200
    iterations: int = 20000
    warmdown_iters: int = 1200
    warmup_steps: int = 20
    train_batch_tokens: int = 524_288
    train_seq_len: int = 1024
    max_wallclock_seconds: float = 600.0
    qk_gain_init: float = 1.5
    vocab_size: int = 1024
    num_layers: int = 9
    num_kv_heads: int = 4
    model_dim: int = 512
    num_heads: int = 8
    mlp_mult: int = 2
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    embed_lr: float = 0.6
    head_lr: float = 0.008
    tied_embed_lr: float = 0.05
    tied_embed_init_std: float = 0.005
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.0
    # ours
    device: str = "auto"  # auto | cpu | cuda
    out_dir: str = ""  # "" -> runs/<RUN_ID>
    checkpoint_every: int = 0  # 0 -> only the final checkpoint
    resume: str = ""  # "" | "latest" | path to a step_NNNNNN.safetensors/.json
    num_unique_layers: int = 0  # 0 -> NUM_LAYERS; fewer -> blocks reused cyclically (depth recurrence)
    qat: str = ""  # "" | int2..int8 | ternary
    qat_start_frac: float = 0.8
    fp16_embed: bool = False  # export tok_emb as fp16 passthrough instead of int8
    val_tokens: int = 0  # 0 -> the whole validation split
    eval_stride: int = 0  # >0: the final roundtrip is also scored in sliding windows with this stride
    autocast: str = "auto"  # auto (bf16 on cuda, off on cpu) | bf16 | off
    compile: str = "auto"  # auto (cuda only) | 1 | 0
    tok_emb_dtype: str = "bf16"  # bf16 (the baseline's) | fp32 (exact gradient sums, e.g. world-size checks)

    @classmethod
    def from_env(cls, env=os.environ) -> "Hyperparameters":
        """Hyperparameters.from_env({"NUM_LAYERS": "2"}).num_layers -> 2"""
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            kind = type(f.default)
            try:
                if kind is bool:
                    values[f.name] = {"1": True, "true": True, "0": False, "false": False}[raw.strip().lower()]
                else:
                    values[f.name] = kind(raw)
            except (KeyError, ValueError):
                raise ValueError(f"{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        args = cls(**values)
        args.validate()
        return args

    def validate(self) -> None:
        if self.qat not in QAT_CHOICES:
            raise ValueError(f"QAT={self.qat!r}: choose one of {', '.join(c or '(empty)' for c in QAT_CHOICES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"DEVICE={self.device!r}: choose auto, cpu or cuda")
        if self.autocast not in ("auto", "bf16", "off"):
            raise ValueError(f"AUTOCAST={self.autocast!r}: choose auto, bf16 or off")
        if self.compile not in ("auto", "1", "0"):
            raise ValueError(f"COMPILE={self.compile!r}: choose auto, 1 or 0")
        if self.tok_emb_dtype not in ("bf16", "fp32"):
            raise ValueError(f"TOK_EMB_DTYPE={self.tok_emb_dtype!r}: choose bf16 or fp32")
        if not 0 <= self.num_unique_layers <= self.num_layers:
            raise ValueError(f"NUM_UNIQUE_LAYERS={self.num_unique_layers} must be in [0, NUM_LAYERS={self.num_layers}]")
        sizes = ("num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "vocab_size", "train_seq_len")
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name.upper()}={getattr(self, name)} must be at least 1")
        if self.model_dim % self.num_heads or self.num_heads % self.num_kv_heads or (self.model_dim // self.num_heads) % 2:
            raise ValueError(f"MODEL_DIM={self.model_dim}, NUM_HEADS={self.num_heads}, NUM_KV_HEADS={self.num_kv_heads}: "
                             f"heads must divide the width, kv heads the heads, and the head dim must be even (RoPE)")

    @property
    def train_files(self) -> str:
        return os.path.join(self.data_path, "fineweb_train_*.bin")

    @property
    def val_files(self) -> str:
        return os.path.join(self.data_path, "fineweb_val_*.bin")


def embedded_data_dir() -> Path:
    """Where `pgolf data prepare` caches the embedded default (Python's own documentation, sp1024)."""
    cache = Path(os.environ.get("PGOLF_CACHE") or Path.home() / ".cache" / "pgolf")
    return cache / f"pydocs-py{sys.version_info.major}{sys.version_info.minor}-sp1024"


def resolve_data(args: Hyperparameters) -> None:
    # DATA_PATH unset: the official folder when present, else the embedded default (built on demand
    # by pgolf's `python -m pgolf.trainer.corpus`, which this script runs but never imports).
    if args.data_path:  # a lone .model beside the shards (pgolf's prepared folders) is their tokenizer
        beside = sorted(Path(args.data_path).glob("*.model"))
        args.tokenizer_path = args.tokenizer_path or (str(beside[0]) if len(beside) == 1 else OFFICIAL_TOKENIZER_PATH)
        return
    if Path(OFFICIAL_DATA_PATH).is_dir():
        args.data_path, args.tokenizer_path = OFFICIAL_DATA_PATH, args.tokenizer_path or OFFICIAL_TOKENIZER_PATH
        return
    if args.vocab_size != 1024:
        raise ValueError(f"VOCAB_SIZE={args.vocab_size}: the embedded default has a 1024-piece tokenizer; "
                         "set DATA_PATH and TOKENIZER_PATH")
    folder = embedded_data_dir()
    if not (folder / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "pgolf.trainer.corpus", "--quiet"], check=False)
        if not (folder / "manifest.json").is_file():
            raise FileNotFoundError(f"no data: set DATA_PATH, or install pgolf and run `pgolf data prepare` ({folder})")
    args.data_path = str(folder)
    args.tokenizer_path = args.tokenizer_path or str(folder / "pydocs_1024_bpe.model")


# -----------------------------
# MUON OPTIMIZER
# -----------------------------
# Momentum whose 2-D update is orthogonalised by a quintic Newton-Schulz iteration
# (modded-nanogpt; https://kellerjordan.github.io/posts/muon/), in bf16 as in the baseline.

def zeropower_via_newtonschulz5(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X = X / (X.norm() + eps)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        distributed = dist.is_available() and dist.is_initialized()
        world_size, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            # Each rank orthogonalises every world_size-th matrix; one all-reduce shares the results.
            # Every rank keeps every momentum buffer (cheap, identical after DDP's gradient average),
            # so rank 0's state alone resumes a multi-process run exactly.
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=torch.bfloat16)
            offset = 0
            for i, p in enumerate(params):
                if p.grad is None:
                    offset += p.numel()
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                if i % world_size == rank:
                    g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                    g = zeropower_via_newtonschulz5(g, steps=group["backend_steps"])
                    g = g * max(1, g.size(0) / g.size(1)) ** 0.5  # keep RMS comparable for tall matrices
                    flat[offset : offset + p.numel()] = g.reshape(-1)
                offset += p.numel()
            if distributed:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()


# -----------------------------
# DATA: SHARDS AND LOADERS
# -----------------------------
# Shard = 256 little-endian int32 (magic 20240520, version 1, token count) + uint16 tokens.

SHARD_MAGIC, SHARD_VERSION, HEADER_INTS = 20240520, 1, 256


def load_data_shard(path) -> Tensor:
    """load_data_shard("fineweb_val_000000.bin") -> uint16 tensor of its tokens; ValueError naming a bad file."""
    path = Path(path)
    size = path.stat().st_size
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS or int(header[0]) != SHARD_MAGIC or int(header[1]) != SHARD_VERSION:
        raise ValueError(f"{path}: not a token shard (expected magic {SHARD_MAGIC} version {SHARD_VERSION})")
    count = int(header[2])
    expected = 4 * HEADER_INTS + 2 * count
    if count < 0 or size != expected:
        raise ValueError(f"{path}: size {size} bytes, header promises {expected} ({count} tokens)")
    tokens = np.fromfile(path, dtype="<u2", count=count, offset=4 * HEADER_INTS)
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


def shard_files(pattern: str) -> list[Path]:
    files = [Path(p) for p in sorted(glob.glob(pattern))]
    if not files:
        raise FileNotFoundError(f"no shards match {pattern}")
    return files


def load_validation_tokens(pattern: str, seq_len: int, max_tokens: int = 0) -> Tensor:
    # Whole windows only (the baseline's rule); VAL_TOKENS caps the evaluated targets for CPU runs.
    tokens = torch.cat([load_data_shard(f) for f in shard_files(pattern)])
    usable = (tokens.numel() - 1) // seq_len * seq_len
    if max_tokens > 0:
        usable = min(usable, max_tokens // seq_len * seq_len)
    if usable <= 0:
        raise ValueError(f"{pattern}: validation split too short for TRAIN_SEQ_LEN={seq_len}")
    return tokens[: usable + 1].contiguous()


class TokenStream:
    # Reads shards in order and wraps around forever: deterministic, no sampling, resumable.
    def __init__(self, pattern: str):
        self.files = shard_files(pattern)
        self.load_state({"file_idx": 0, "pos": 0})

    def state(self) -> dict:
        return {"file_idx": self.file_idx, "pos": self.pos}

    def load_state(self, state: dict) -> None:
        self.file_idx, self.pos = int(state["file_idx"]), int(state["pos"])
        self.tokens = load_data_shard(self.files[self.file_idx])

    def take(self, n: int) -> Tensor:
        chunks = []
        while n > 0:
            if self.pos >= self.tokens.numel():
                self.load_state({"file_idx": (self.file_idx + 1) % len(self.files), "pos": 0})
                continue
            k = min(n, self.tokens.numel() - self.pos)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


class DistributedTokenLoader:
    # Every micro-step takes one contiguous chunk of the shared stream; rank r keeps span r of it,
    # so the global batch is the same tokens whatever the world size.
    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = rank, world_size, device
        self.stream = TokenStream(pattern)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        local = global_tokens // (self.world_size * grad_accum_steps)
        if local <= 0 or local % seq_len:
            raise ValueError(f"TRAIN_BATCH_TOKENS={global_tokens} must split into {self.world_size * grad_accum_steps} "
                             f"micro-batches of whole TRAIN_SEQ_LEN={seq_len} sequences")
        chunk = self.stream.take((local + 1) * self.world_size)
        span = chunk[self.rank * (local + 1) : (self.rank + 1) * (local + 1)].to(torch.int64)
        x, y = span[:-1].reshape(-1, seq_len), span[1:].reshape(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


# -----------------------------
# TOKENIZER-AGNOSTIC EVALUATION (val_bpb)
# -----------------------------
# bits per byte = (val_loss / ln 2) * tokens / bytes, where a token's bytes are its piece's UTF-8
# length without the leading "▁", plus one for that space unless the previous token is a boundary
# (control/unknown/unused). Byte-fallback pieces count 1. Sums in float64.

def load_tokenizer(path: str, vocab_size: int) -> spm.SentencePieceProcessor:
    if not path.endswith(".model") or not Path(path).is_file():
        raise ValueError(f"{path}: not a SentencePiece .model file")
    try:
        sp = spm.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: unreadable SentencePiece model ({exc})") from None
    if int(sp.vocab_size()) != vocab_size:
        raise ValueError(f"{path}: vocab_size {sp.vocab_size()} does not match VOCAB_SIZE={vocab_size}")
    return sp


def build_sentencepiece_luts(sp, vocab_size: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """(base_bytes int16, has_leading_space bool, is_boundary_token bool), each of max(vocab sizes) entries."""
    size = max(int(sp.vocab_size()), vocab_size)
    base_bytes = np.zeros(size, dtype=np.int16)
    leading_space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base_bytes[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            leading_space[i], piece = True, piece[1:]
        base_bytes[i] = len(piece.encode("utf-8"))
    return tuple(torch.tensor(a, device=device) for a in (base_bytes, leading_space, boundary))


def eval_windows(n_targets: int, seq_len: int, stride: int | None) -> list[tuple[int, int]]:
    """(start, first scored offset) per window. Non-overlapping windows score whole windows only (the
    baseline's rule); sliding ones score every target once. eval_windows(8, 4, 2) -> [(0,0),(2,2),(4,2)]"""
    if n_targets < seq_len:
        raise ValueError(f"{n_targets} validation targets are fewer than one window of {seq_len}")
    sliding = bool(stride) and stride < seq_len
    starts = list(range(0, n_targets - seq_len + 1, stride if sliding else seq_len))
    if sliding and starts[-1] + seq_len < n_targets:
        starts.append(n_targets - seq_len)
    windows, covered = [], 0
    for s in starts:
        windows.append((s, max(0, covered - s)))
        covered = s + seq_len
    return windows


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def eval_val_bpb(model, val_tokens: Tensor, luts, seq_len: int, batch_tokens: int = 524_288, device=None,
                 stride: int | None = None, autocast_dtype="auto") -> tuple[float, float]:
    """(val_loss in nats per token, val_bpb) over val_tokens; shared across ranks when distributed."""
    base_bytes, leading_space, boundary = luts
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if autocast_dtype == "auto":
        autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    distributed = dist.is_available() and dist.is_initialized()
    world_size, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    windows = eval_windows(val_tokens.numel() - 1, seq_len, stride)
    mine = windows[len(windows) * rank // world_size : len(windows) * (rank + 1) // world_size]
    per_batch = max(1, batch_tokens // seq_len)
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, tokens, bytes
    positions = torch.arange(seq_len)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(mine), per_batch):
            starts = torch.tensor([s for s, _ in mine[i : i + per_batch]])
            first = torch.tensor([o for _, o in mine[i : i + per_batch]], device=device)
            lo = int(starts[0])  # windows are sorted: one contiguous slice covers the whole batch
            span = val_tokens[lo : int(starts[-1]) + seq_len + 1].to(device=device, dtype=torch.int64)
            idx = (starts - lo)[:, None] + positions[None, :]
            x, y = span[idx.to(device)], span[idx.to(device) + 1]  # [B, T]
            with autocast(device, autocast_dtype):
                losses = model(x, y, reduction="none").detach()  # [B, T]
            scored = positions.to(device)[None, :] >= first[:, None]
            nbytes = base_bytes[y].to(torch.int16) + (leading_space[y] & ~boundary[x]).to(torch.int16)
            sums[0] += losses.to(torch.float64)[scored].sum()
            sums[1] += scored.sum()
            sums[2] += nbytes.to(torch.float64)[scored].sum()
    if distributed:
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    model.train(was_training)
    val_loss = (sums[0] / sums[1]).item()
    return float(val_loss), float(val_loss / math.log(2.0) * (sums[1] / sums[2]).item())


# -----------------------------
# QUANTIZATION: THE OFFICIAL EXPORT AND QAT
# -----------------------------
# int8_clean_per_row_v1: float tensors of <= 65,536 values pass through (control tensors fp32, the
# rest fp16 with the original dtype recorded); larger ones become int8 with one fp16 scale per row
# (clip at the 99.99984th percentile of |w|, scale floored at 1/127); then torch.save + zlib-9.

CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix",
                                "resid_mixes", "q_gain", "skip_weight", "skip_weights")
INT8_KEEP_FLOAT_MAX_NUMEL = 65_536
INT8_CLIP_Q = 99.99984 / 100.0


def is_control(name: str) -> bool:
    return any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)


def keep_float_tensor(name: str, t: Tensor, orig_dtypes: dict[str, str]) -> Tensor:
    if is_control(name):
        return t.float().contiguous()
    if t.dtype in (torch.float32, torch.bfloat16):
        orig_dtypes[name] = str(t.dtype).removeprefix("torch.")
        return t.to(torch.float16).contiguous()
    return t


def quantile_rows(a: Tensor, q: float) -> Tensor:
    """torch.quantile(a, q, dim=1), bit for bit, from a top-k of each row instead of a full sort.

    A high percentile depends only on the few largest values of a row; rank, weight and lerp are
    computed as torch.quantile computes them, so the result is identical and ~7x faster.
    """
    n = a.shape[1]
    rank = torch.tensor(q, dtype=a.dtype) * (n - 1)
    below, above = int(rank), int(torch.ceil(rank))
    if not a.numel() or n - below > 64:
        return torch.quantile(a, q, dim=1)
    top = a.topk(n - below, dim=1).values  # descending: sorted index i sits at n - 1 - i
    if bool(torch.isnan(top[:, 0]).any()):  # topk ranks NaN above every number
        return torch.quantile(a, q, dim=1)
    lo, hi = top[:, n - 1 - below], top[:, n - 1 - above]
    return torch.lerp(lo, hi, (rank - below).expand_as(lo))


def quantize_float_tensor(t: Tensor) -> tuple[Tensor, Tensor]:
    t32 = t.float()
    if t32.ndim == 2:  # one scale per output row
        clip = quantile_rows(t32.abs(), INT8_CLIP_Q) if t32.numel() else torch.empty(t32.shape[0])
        scale = (clip / 127.0).clamp_min(1.0 / 127.0)
        # clamp(t, -c, c) = max(min(t, c), -c) for c >= 0; then in place, to spare passes over memory
        q = torch.clamp(t32, -clip[:, None], clip[:, None]).div_(scale[:, None]).round_().clamp_(-127, 127)
        return q.to(torch.int8).contiguous(), scale.to(torch.float16).contiguous()
    clip = float(torch.quantile(t32.abs().flatten(), INT8_CLIP_Q).item()) if t32.numel() else 0.0
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip, clip) / scale), -127, 127).to(torch.int8)
    return q.contiguous(), scale


def quantize_state_dict_int8(state_dict: dict[str, Tensor], keep_float: tuple[str, ...] = ()):
    """(export object, byte stats). keep_float names (FP16_EMBED) pass through whatever their size."""
    quantized, scales, dtypes, passthrough, orig_dtypes, qmeta = {}, {}, {}, {}, {}, {}
    stats = dict.fromkeys(("param_count", "num_tensors", "num_float_tensors", "num_nonfloat_tensors",
                           "baseline_tensor_bytes", "int8_payload_bytes"), 0)
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        stats["param_count"] += t.numel()
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += nbytes(t)
        if not t.is_floating_point():
            stats["num_nonfloat_tensors"] += 1
            passthrough[name] = t
            stats["int8_payload_bytes"] += nbytes(t)
        elif t.numel() <= INT8_KEEP_FLOAT_MAX_NUMEL or name in keep_float:
            passthrough[name] = keep_float_tensor(name, t, orig_dtypes)
            stats["int8_payload_bytes"] += nbytes(passthrough[name])
        else:
            stats["num_float_tensors"] += 1
            quantized[name], scales[name] = quantize_float_tensor(t)
            if scales[name].ndim > 0:
                qmeta[name] = {"scheme": "per_row", "axis": 0}
            dtypes[name] = str(t.dtype).removeprefix("torch.")
            stats["int8_payload_bytes"] += nbytes(quantized[name]) + nbytes(scales[name])
    obj = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized, "scales": scales,
           "dtypes": dtypes, "passthrough": passthrough}
    if qmeta:
        obj["qmeta"] = qmeta
    if orig_dtypes:
        obj["passthrough_orig_dtypes"] = orig_dtypes
    return obj, stats


def dequantize_state_dict_int8(obj: dict) -> dict[str, Tensor]:
    out = {}
    qmeta, orig_dtypes = obj.get("qmeta", {}), obj.get("passthrough_orig_dtypes", {})
    for name, q in obj["quantized"].items():
        dtype, s = getattr(torch, obj["dtypes"][name]), obj["scales"][name]
        if qmeta.get(name, {}).get("scheme") == "per_row" or s.ndim > 0:
            out[name] = (q.float() * s.float().view(q.shape[0], *[1] * (q.ndim - 1))).to(dtype).contiguous()
        else:
            out[name] = (q.float() * float(s.item())).to(dtype).contiguous()
    for name, t in obj["passthrough"].items():
        t = t.detach().to("cpu").contiguous()
        out[name] = t.to(getattr(torch, orig_dtypes[name])).contiguous() if name in orig_dtypes else t
    return out


def fake_quantize(w: Tensor, spec: str) -> Tensor:
    """QAT's forward view of a weight: per-row symmetric intN (abs-max scale), or ternary {-1,0,1}
    with an abs-mean scale per group of 128 inputs (the ternary records' layout)."""
    if spec == "ternary":
        rows, cols = w.shape
        groups = w.reshape(rows, -1, 128 if cols % 128 == 0 else cols)
        scale = groups.abs().mean(dim=-1, keepdim=True).clamp_min(1e-8)
        return (torch.round(groups / scale).clamp(-1, 1) * scale).reshape(rows, cols)
    qmax = 2 ** (int(spec[3:]) - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / qmax
    return torch.round(w / scale).clamp(-qmax, qmax) * scale


# -----------------------------
# TRANSFORMER MODULES
# -----------------------------

class RMSNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    # fp32 master weights cast to the activation dtype at matmul time; `qat` switches on fake-quant
    # with a straight-through gradient (the forward sees quantized weights, the update the raw ones).
    qat: str = ""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.qat:
            with torch.no_grad():
                delta = fake_quantize(w, self.qat) - w
            w = w + delta
        return F.linear(x, w.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim),
                             persistent=False)
        self._key, self._cos, self._sin = None, None, None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self._key != (seq_len, device):
            freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), self.inv_freq.to(device))
            self._cos, self._sin = freqs.cos()[None, None], freqs.sin()[None, None]  # [1, 1, T, hd/2]
            self._key = (seq_len, device)
        return self._cos.to(dtype), self._sin.to(dtype)


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float, qk_gain_init: float):
        super().__init__()
        if dim % num_heads or num_heads % num_kv_heads or (dim // num_heads) % 2:
            raise ValueError(f"MODEL_DIM={dim}, NUM_HEADS={num_heads}, NUM_KV_HEADS={num_kv_heads}: heads must "
                             "divide the width, kv heads the heads, and the head dim must be even (RoPE)")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, base=rope_base)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.c_k(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, KV, T, hd]
        v = self.c_v(x).reshape(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        cos, sin = self.rotary(T, x.device, q.dtype)
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int, mlp_mult: float):
        super().__init__()
        hidden = int(mlp_mult * dim)  # records use fractional multipliers too (e.g. 2.5)
        self.fc = CastedLinear(dim, hidden, bias=False)
        self.proj = CastedLinear(hidden, dim, bias=False)
        self.proj._zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.fc(x))
        return self.proj(h * h)  # ReLU^2; h * h has a cheaper backward than h.square(), same values


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_mult: int, rope_base: float,
                 qk_gain_init: float):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(), RMSNorm()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, rope_base, qk_gain_init)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))  # [2, dim]: x and x0 weights

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """The baseline GPT with its state-dict names, shapes and dtypes (tok_emb bf16, the rest fp32).
    num_unique_layers < num_layers stores that many blocks and loops them to the full depth."""

    def __init__(self, vocab_size: int, num_layers: int, model_dim: int, num_heads: int, num_kv_heads: int,
                 mlp_mult: int, tie_embeddings: bool, tied_embed_init_std: float, logit_softcap: float,
                 rope_base: float, qk_gain_init: float, num_unique_layers: int | None = None,
                 tok_emb_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        if logit_softcap <= 0:
            raise ValueError(f"LOGIT_SOFTCAP must be positive, got {logit_softcap}")
        self.num_unique_layers = num_unique_layers or num_layers
        if not 1 <= self.num_unique_layers <= num_layers:
            raise ValueError(f"num_unique_layers={num_unique_layers} must be in [1, {num_layers}]")
        self.tie_embeddings, self.logit_softcap = tie_embeddings, logit_softcap
        self.num_encoder_layers = num_layers // 2  # U-Net: encoder outputs feed the decoder in reverse
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder_layers, self.num_decoder_layers), model_dim))
        self.blocks = nn.ModuleList(Block(model_dim, num_heads, num_kv_heads, mlp_mult, rope_base, qk_gain_init)
                                    for _ in range(self.num_unique_layers))
        self.final_norm = RMSNorm()
        self.lm_head = None if tie_embeddings else CastedLinear(model_dim, vocab_size, bias=False)
        if self.lm_head is not None:
            self.lm_head._zero_init = True
        if tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=tied_embed_init_std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and getattr(m, "_zero_init", False):
                nn.init.zeros_(m.weight)
        self.tok_emb.to(tok_emb_dtype)  # the baseline trains and saves the embedding in bf16

    def block_for_layer(self, i: int) -> Block:
        return self.blocks[i % self.num_unique_layers]

    def forward(self, input_ids: Tensor, target_ids: Tensor, reduction: str = "mean") -> Tensor:
        x = self.tok_emb(input_ids)
        if not torch.is_autocast_enabled(x.device.type):
            x = x.float()  # fp32 runs: bf16 table, fp32 activations
        x = x0 = F.rms_norm(x, (x.size(-1),))  # [B, T, C]
        skips = []
        for i in range(self.num_encoder_layers):
            x = self.block_for_layer(i)(x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = self.block_for_layer(self.num_encoder_layers + i)(x, x0)
        x = self.final_norm(x)
        logits = self.lm_head(x) if self.lm_head is not None else F.linear(x, self.tok_emb.weight.to(x.dtype))
        logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)  # [B, T, V]
        loss = F.cross_entropy(logits.float().flatten(0, 1), target_ids.flatten(), reduction=reduction)
        return loss if reduction != "none" else loss.view_as(target_ids)


def build_model(args: Hyperparameters) -> GPT:
    return GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
               num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
               tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
               logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init,
               num_unique_layers=args.num_unique_layers or None,
               tok_emb_dtype=torch.float32 if args.tok_emb_dtype == "fp32" else torch.bfloat16)


def set_qat(model: nn.Module, spec: str) -> None:
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.qat = spec


# -----------------------------
# CHECKPOINTS
# -----------------------------
# step_NNNNNN.safetensors (weights, official names/dtypes) + .json sidecar (config, metrics,
# provenance) + .optim.pt (optimizer, loader and RNG state for RESUME; loads with weights_only=True).
# Every file is written to a hidden temp name and renamed, so readers never see half a file.

def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(folder: Path, step: int, model: GPT, optimizers, loader_state: dict, info: dict) -> Path:
    stem = folder / f"step_{step:06d}"
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = safetensors_save(weights, metadata={"format": CHECKPOINT_FORMAT})
    rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {"format": CHECKPOINT_FORMAT, "step": step, "optimizers": [o.state_dict() for o in optimizers],
             "loader": loader_state, "rng": rng, "training_time_ms": info["elapsed_s"] * 1000.0}
    write_atomic(stem.with_suffix(".optim.pt"), torch_bytes(state))
    write_atomic(stem.with_suffix(".safetensors"), blob)
    sidecar = {"format": CHECKPOINT_FORMAT, "step": step, **info, "weights_sha256": hashlib.sha256(blob).hexdigest(),
               "tensor_names": list(weights)}  # state-dict order (safetensors stores them sorted)
    write_atomic(stem.with_suffix(".json"), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return stem.with_suffix(".safetensors")


def find_checkpoint(spec: str, folder: Path) -> Path:
    # The sidecar is written last, so a checkpoint counts only once its .json exists.
    if spec in ("1", "latest", "auto"):
        found = sorted(folder.glob("step_*.json"))
        if not found:
            raise FileNotFoundError(f"RESUME={spec}: no checkpoint in {folder}")
        return found[-1].with_suffix("")
    path = Path(spec)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    if stem.suffix == ".optim":
        stem = stem.with_suffix("")
    if not stem.with_suffix(".json").is_file():
        raise FileNotFoundError(f"RESUME={spec}: {stem.with_suffix('.json')} not found")
    return stem


SHAPE_KEYS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "tie_embeddings",
              "num_unique_layers", "train_batch_tokens", "train_seq_len", "tok_emb_dtype")


def load_checkpoint(stem: Path, args: Hyperparameters, model: GPT, optimizers) -> dict:
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    if sidecar.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{stem}.json: not a {CHECKPOINT_FORMAT} sidecar")
    changed = [k for k in SHAPE_KEYS if sidecar["config"].get(k) != getattr(args, k)]
    if changed:
        raise ValueError(f"{stem}: checkpoint config differs in {', '.join(changed)}; resume with the same settings")
    weights = safetensors_load(stem.with_suffix(".safetensors").read_bytes())
    model.load_state_dict(weights, strict=True)
    state = torch.load(stem.with_suffix(".optim.pt"), weights_only=True, map_location="cpu")
    for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate((3, tuple(state["rng"]["python"]), None))
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


# -----------------------------
# TRAINING
# -----------------------------

def library_versions() -> str:
    import safetensors  # noqa: PLC0415 - only for its version string

    return (f"python:{platform.python_version()} torch:{torch.__version__} numpy:{np.__version__} "
            f"sentencepiece:{spm.__version__} safetensors:{safetensors.__version__} platform:{platform.platform()}")


def main() -> None:
    args = Hyperparameters.from_env()
    code = Path(__file__).read_text(encoding="utf-8")

    # --- distributed + device setup ---
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 0 or 8 % world_size:
        raise ValueError(f"WORLD_SIZE={world_size} must divide 8 so the 8 micro-batches per step split evenly")
    grad_accum_steps = 8 // world_size  # the baseline's rule: the global batch is 8 micro-batches on any world size
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    ruler = args.max_wallclock_seconds <= 0
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if ruler:  # reproducible losses cost a little GPU speed
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
    elif distributed and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world_size))))
    if distributed:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", **({"device_id": device} if use_cuda else {}))
        dist.barrier()
    master = rank == 0
    autocast_dtype = torch.bfloat16 if args.autocast == "bf16" or (args.autocast == "auto" and use_cuda) else None
    use_compile = args.compile == "1" or (args.compile == "auto" and use_cuda)

    resolve_data(args)
    args.run_id = args.run_id or uuid.uuid4().hex
    out_dir = Path(args.out_dir or f"runs/{args.run_id}")
    args.out_dir = str(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    logfile = out_dir / "train.log"
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)

    def log0(msg: str, console: bool = True) -> None:
        if not master:
            return
        if console:
            print(msg, flush=True)
        with open(logfile, "a", encoding="utf-8") as f:
            print(msg, file=f)

    log0("=" * 100, console=False)
    log0(f"pgolf_train_gpt {library_versions()}", console=False)
    log0(f"device:{device} autocast:{autocast_dtype or 'off'} compile:{use_compile} threads:{torch.get_num_threads()} "
         f"mode:{'ruler' if ruler else 'wallclock'}", console=False)
    for key, value in dataclasses.asdict(args).items():
        log0(f"config {key}:{value}", console=False)
    log0("=" * 100, console=False)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    # --- tokenizer, validation data, bpb tables ---
    sp = load_tokenizer(args.tokenizer_path, args.vocab_size)
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len, args.val_tokens)
    luts = build_sentencepiece_luts(sp, args.vocab_size, device)
    log0(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={args.tokenizer_path}")
    log0(f"train_loader:dataset:{Path(args.data_path).resolve().name} "
         f"train_shards:{len(shard_files(args.train_files))}")
    log0(f"val_loader:shards pattern={args.val_files} tokens:{val_tokens.numel() - 1}")

    # --- model and optimizers ---
    base_model = build_model(args).to(device)
    model = torch.compile(base_model, dynamic=False, fullgraph=True) if use_compile else base_model
    if use_compile:
        global zeropower_via_newtonschulz5
        zeropower_via_newtonschulz5 = torch.compile(zeropower_via_newtonschulz5)
    train_model = model
    if distributed:
        train_model = DDP(model, device_ids=[local_rank] if use_cuda else None, broadcast_buffers=False)

    # Muon for the blocks' matrices; Adam for the embedding, an untied head and the control vectors.
    block_params = list(base_model.blocks.named_parameters())
    matrix_params = [p for n, p in block_params if p.ndim == 2 and not is_control(n)]
    scalar_params = [p for n, p in block_params if p.ndim < 2 or is_control(n)] + [base_model.skip_weights]
    token_lr = args.tied_embed_lr if args.tie_embeddings else args.embed_lr
    adam = lambda params, lr: torch.optim.Adam([{"params": params, "lr": lr, "base_lr": lr}],  # noqa: E731
                                               betas=(args.beta1, args.beta2), eps=args.adam_eps, fused=use_cuda)
    optimizer_muon = Muon(matrix_params, lr=args.matrix_lr, momentum=args.muon_momentum,
                          backend_steps=args.muon_backend_steps)
    for group in optimizer_muon.param_groups:
        group["base_lr"] = args.matrix_lr
    optimizers = [adam([base_model.tok_emb.weight], token_lr), optimizer_muon, adam(scalar_params, args.scalar_lr)]
    if base_model.lm_head is not None:
        optimizers.insert(1, adam([base_model.lm_head.weight], args.head_lr))

    n_params = sum(p.numel() for p in base_model.parameters())
    log0(f"model_params:{n_params}")
    log0(f"world_size:{world_size} grad_accum_steps:{grad_accum_steps}")
    log0(f"attention_mode:gqa num_heads:{args.num_heads} num_kv_heads:{args.num_kv_heads} "
         f"num_layers:{args.num_layers} num_unique_layers:{base_model.num_unique_layers}")
    log0(f"tie_embeddings:{args.tie_embeddings} embed_lr:{token_lr} "
         f"head_lr:{args.head_lr if base_model.lm_head is not None else 0.0} "
         f"matrix_lr:{args.matrix_lr} scalar_lr:{args.scalar_lr}")
    log0(f"train_batch_tokens:{args.train_batch_tokens} train_seq_len:{args.train_seq_len} "
         f"iterations:{args.iterations} warmup_steps:{args.warmup_steps} "
         f"max_wallclock_seconds:{args.max_wallclock_seconds:.3f}")
    log0(f"seed:{args.seed}")

    loader = DistributedTokenLoader(args.train_files, rank, world_size, device)
    max_wallclock_ms = 1000.0 * args.max_wallclock_seconds if not ruler else None

    def zero_grad_all() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    def lr_mul(step: int, elapsed_ms: float) -> float:
        # Linear warmdown over the last WARMDOWN_ITERS steps, or over the time they are expected to take.
        if args.warmdown_iters <= 0:
            return 1.0
        if max_wallclock_ms is None:
            start = max(args.iterations - args.warmdown_iters, 0)
            return max((args.iterations - step) / args.warmdown_iters, 0.0) if start <= step < args.iterations else 1.0
        warmdown_ms = args.warmdown_iters * elapsed_ms / max(step, 1)
        remaining_ms = max(max_wallclock_ms - elapsed_ms, 0.0)
        return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0

    def qat_due(step: int, elapsed_ms: float) -> bool:
        if not args.qat:
            return False
        if max_wallclock_ms is None:
            return step >= args.qat_start_frac * args.iterations
        return elapsed_ms >= args.qat_start_frac * max_wallclock_ms

    def train_step(step: int, scale: float) -> Tensor:
        zero_grad_all()
        train_loss = torch.zeros((), device=device)
        for micro in range(grad_accum_steps):
            x, y = loader.next_batch(args.train_batch_tokens, args.train_seq_len, grad_accum_steps)
            last_micro = micro == grad_accum_steps - 1  # DDP all-reduces gradients only on the last one
            with train_model.no_sync() if distributed and not last_micro else contextlib.nullcontext():
                with autocast(device, autocast_dtype):
                    loss = train_model(x, y)
                (loss / grad_accum_steps).backward()
            train_loss += loss.detach()
        frac = min(step / args.muon_momentum_warmup_steps, 1.0) if args.muon_momentum_warmup_steps > 0 else 1.0
        for group in optimizer_muon.param_groups:
            group["momentum"] = (1 - frac) * args.muon_momentum_warmup_start + frac * args.muon_momentum
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        if args.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(base_model.parameters(), args.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        zero_grad_all()
        return train_loss / grad_accum_steps

    def evaluate(stride: int | None = None) -> tuple[float, float]:
        set_qat(base_model, "")  # scores always see the raw weights; QAT shapes training only
        result = eval_val_bpb(model, val_tokens, luts, args.train_seq_len,
                              batch_tokens=args.val_batch_size // (world_size * grad_accum_steps),
                              device=device, stride=stride, autocast_dtype=autocast_dtype)
        set_qat(base_model, args.qat if qat_on else "")
        return result

    # Warmup primes the compiled paths, then restores the initial state (pointless without compile).
    if use_compile and args.warmup_steps > 0:
        initial_model = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
        initial_opts = [copy.deepcopy(o.state_dict()) for o in optimizers]
        for warmup_step in range(args.warmup_steps):
            train_step(0, 1.0)
            if args.warmup_steps <= 20 or (warmup_step + 1) % 10 == 0 or warmup_step + 1 == args.warmup_steps:
                log0(f"warmup_step:{warmup_step + 1}/{args.warmup_steps}")
        base_model.load_state_dict(initial_model, strict=True)
        for opt, state in zip(optimizers, initial_opts, strict=True):
            opt.load_state_dict(state)
        loader = DistributedTokenLoader(args.train_files, rank, world_size, device)

    step, training_time_ms, qat_on = 0, 0.0, False
    if args.resume:
        stem = find_checkpoint(args.resume, ckpt_dir)
        state = load_checkpoint(stem, args, base_model, optimizers)
        loader.stream.load_state(state["loader"])
        step, training_time_ms = int(state["step"]), float(state["training_time_ms"])
        log0(f"resume_from:{stem.name} step:{step} train_time:{training_time_ms:.0f}ms")

    val_loss = val_bpb = train_loss_value = None
    start_step = step

    def checkpoint(step: int) -> None:
        info = {"config": dataclasses.asdict(args) | {"world_size": world_size, "grad_accum_steps": grad_accum_steps},
                "tokens_seen": step * args.train_batch_tokens,
                "train_loss": train_loss.item() if train_loss is not None else train_loss_value,
                "val_loss": val_loss if val_step == step else None, "val_bpb": val_bpb if val_step == step else None,
                "seed": args.seed, "code_bytes": len(code.encode("utf-8")), "torch_version": torch.__version__,
                "elapsed_s": training_time_ms / 1000.0, "params": n_params}
        if master:
            path = save_checkpoint(ckpt_dir, step, base_model, optimizers, loader.stream.state(), info)
            log0(f"checkpoint:{path} step:{step}")

    # --- main loop: validation and checkpoints are outside the timed region, as in the baseline ---
    stop_after_step, val_step, train_loss = None, -1, None
    if use_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    while True:
        last_step = step == args.iterations or (stop_after_step is not None and step >= stop_after_step)
        want_val = last_step or (args.val_loss_every > 0 and step % args.val_loss_every == 0)
        want_ckpt = (not last_step and args.checkpoint_every > 0 and step % args.checkpoint_every == 0
                     and step != start_step)
        if want_val or want_ckpt:
            if use_cuda:
                torch.cuda.synchronize()
            training_time_ms += 1000.0 * (time.perf_counter() - t0)
            if want_val:
                val_loss, val_bpb = evaluate()
                val_step = step
                log0(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                     f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms")
            if want_ckpt:
                checkpoint(step)
            if use_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        if last_step:
            if stop_after_step is not None and step < args.iterations:
                log0(f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms step:{step}/{args.iterations}")
            break

        elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        if qat_due(step, elapsed_ms) and not qat_on:
            qat_on = True
            set_qat(base_model, args.qat)
            log0(f"qat:{args.qat} start_step:{step}")
        train_loss = train_step(step, lr_mul(step, elapsed_ms))
        step += 1
        approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - t0)
        if args.train_log_every > 0 and (step <= 10 or step % args.train_log_every == 0 or stop_after_step is not None):
            train_loss_value = train_loss.item()
            log0(f"step:{step}/{args.iterations} train_loss:{train_loss_value:.4f} "
                 f"train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms")
        reached_cap = max_wallclock_ms is not None and approx_ms >= max_wallclock_ms
        if distributed and max_wallclock_ms is not None:  # every rank must stop on the same step
            flag = torch.tensor(int(reached_cap), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            reached_cap = bool(flag.item())
        if stop_after_step is None and reached_cap:
            stop_after_step = step

    train_loss_value = train_loss.item() if train_loss is not None else train_loss_value
    if use_cuda:
        log0(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 1024 // 1024} MiB "
             f"reserved: {torch.cuda.max_memory_reserved() // 1024 // 1024} MiB")
    checkpoint(step)

    # --- official export, reloaded from disk and scored ---
    set_qat(base_model, "")
    code_bytes = len(code.encode("utf-8"))
    quant_obj, quant_stats = quantize_state_dict_int8(base_model.state_dict(),
                                                      keep_float=("tok_emb.weight",) if args.fp16_embed else ())
    quant_raw = torch_bytes(quant_obj)
    quant_blob = zlib.compress(quant_raw, level=9)
    ptz_path = out_dir / "final_model.int8.ptz"
    if master:
        write_atomic(out_dir / "final_model.pt", torch_bytes(base_model.state_dict()))
        model_bytes = (out_dir / "final_model.pt").stat().st_size
        log0(f"Serialized model: {model_bytes} bytes")
        log0(f"Code size: {code_bytes} bytes")
        log0(f"Total submission size: {model_bytes + code_bytes} bytes")
        write_atomic(ptz_path, quant_blob)
        ratio = quant_stats["baseline_tensor_bytes"] / max(quant_stats["int8_payload_bytes"], 1)
        log0(f"Serialized model int8+zlib: {ptz_path.stat().st_size} bytes (payload:{quant_stats['int8_payload_bytes']} "
             f"raw_torch:{len(quant_raw)} payload_ratio:{ratio:.2f}x)")
        log0(f"Total submission size int8+zlib: {ptz_path.stat().st_size + code_bytes} bytes")
    if distributed:
        dist.barrier()
    quant_state = torch.load(io.BytesIO(zlib.decompress(ptz_path.read_bytes())), weights_only=True, map_location="cpu")
    base_model.load_state_dict(dequantize_state_dict_int8(quant_state), strict=True)
    t_eval = time.perf_counter()
    q_val_loss, q_val_bpb = evaluate()
    log0(f"final_int8_zlib_roundtrip val_loss:{q_val_loss:.4f} val_bpb:{q_val_bpb:.4f} "
         f"eval_time:{1000.0 * (time.perf_counter() - t_eval):.0f}ms")
    log0(f"final_int8_zlib_roundtrip_exact val_loss:{q_val_loss:.8f} val_bpb:{q_val_bpb:.8f}")
    sliding = {}
    if 0 < args.eval_stride < args.train_seq_len:  # the records' sliding-window score, same byte accounting
        s_loss, s_bpb = evaluate(stride=args.eval_stride)
        log0(f"final_int8_zlib_roundtrip_sliding stride:{args.eval_stride} val_loss:{s_loss:.8f} val_bpb:{s_bpb:.8f}")
        sliding = {"roundtrip_sliding_val_loss": s_loss, "roundtrip_sliding_val_bpb": s_bpb}
    if master:
        results = {"format": "pgolf-train-results-v1", "step": step, "train_loss": train_loss_value,
                   "val_loss": val_loss, "val_bpb": val_bpb, "roundtrip_val_loss": q_val_loss,
                   "roundtrip_val_bpb": q_val_bpb, **sliding, "bytes_model": ptz_path.stat().st_size,
                   "bytes_code": code_bytes, "bytes_total": ptz_path.stat().st_size + code_bytes,
                   "model_params": n_params, "train_time_ms": training_time_ms, "out_dir": str(out_dir)}
        write_atomic(out_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    if distributed:
        dist.barrier()  # no rank tears gloo down while another still works (an abort at exit otherwise)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
