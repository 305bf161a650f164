"""Evaluation slices and BPB evaluation (replay of cached block activations: replay.py).

An `EvalSlice` is a fixed run of validation tokens (whole windows of `seq_len`) plus the UTF-8
byte count of its targets. `evaluate_bpb(model, sl)` scores any `nn.Module` whose
`forward(x, y)` returns the mean loss, accumulating exactly like the official `eval_val`
(per-batch mean loss x tokens, summed in float64; val_bpb = val_loss / ln 2 x tokens / bytes).

Every `EvalResult` keeps the loss sum and byte count of each unit (one window when the model takes
`reduction="none"`, else one batch), so two results on the same slice give a paired difference
with its standard error (`EvalResult.minus`, see `pgolf.inspect.uncertainty`).

>>> sl = make_slice(torch.arange(9) % 4, seq_len=4, luts=byte_luts_uniform(4))
>>> sl.n_tokens, sl.byte_count
(8, 8.0)
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect as pyinspect
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.progress import progress
from pgolf.inspect.uncertainty import Interval, block_sums, block_units, bpb_interval, paired_interval

DEFAULT_TOKENS = 65_536
DEFAULT_BATCH_TOKENS = 8_192
EVAL_CODE_VERSION = "pgolf-eval-v2"  # part of every gap-cache key: bump when evaluation changes


# --- slices -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalSlice:
    """A fixed evaluation slice: `tokens` (n_seqs * seq_len + 1 ids), the targets' byte count."""

    tokens: Tensor = dataclasses.field(repr=False)
    seq_len: int
    byte_count: float
    source: str = ""
    digest: str = ""
    window_bytes: tuple[float, ...] = dataclasses.field(default=(), repr=False)  # targets' bytes per window
    offset: int = 0  # first token's position in the validation stream

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.numel()) - 1

    @property
    def n_seqs(self) -> int:
        return self.n_tokens // self.seq_len

    @property
    def tokens_per_byte(self) -> float:
        return self.n_tokens / self.byte_count

    def batches(self, batch_seqs: int) -> list[tuple[Tensor, Tensor]]:
        """(x, y) int64 pairs of at most `batch_seqs` windows each, always the same split."""
        out = []
        for start in range(0, self.n_seqs, batch_seqs):
            end = min(start + batch_seqs, self.n_seqs)
            local = self.tokens[start * self.seq_len: end * self.seq_len + 1]
            out.append((local[:-1].reshape(-1, self.seq_len), local[1:].reshape(-1, self.seq_len)))
        return out


def byte_luts_uniform(vocab_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """LUTs where every token is one byte (for tests and synthetic data)."""
    return (torch.ones(vocab_size, dtype=torch.int16), torch.zeros(vocab_size, dtype=torch.bool),
            torch.zeros(vocab_size, dtype=torch.bool))


def make_slice(tokens, seq_len: int, luts: tuple[Tensor, Tensor, Tensor], max_tokens: int | None = None,
               source: str = "", offset: int = 0) -> EvalSlice:
    """The first whole windows of `tokens[offset:]` (at most `max_tokens` targets) and their byte count.

    `luts` = (base_bytes, has_leading_space, is_boundary_token) as build_sentencepiece_luts
    returns them; bytes(t) = base[t] + (space[t] and not boundary[prev]) as the challenge counts.
    Slices at offsets k * tokens are disjoint in their targets (they share one boundary input).
    """
    toks = torch.as_tensor(np.asarray(tokens), dtype=torch.int64).reshape(-1)[int(offset):]
    limit = toks.numel() - 1 if max_tokens is None else min(int(max_tokens), toks.numel() - 1)
    usable = (limit // seq_len) * seq_len
    if seq_len < 1 or usable <= 0:
        raise PgolfInputError(source or None, f"validation tokens too short for one window of seq_len "
                                              f"{seq_len:,} (have {max(toks.numel() - 1, 0):,} targets)") from None
    toks = toks[: usable + 1].contiguous()
    base, space, boundary = (t.cpu() for t in luts)
    if int(toks.max()) >= base.numel():
        raise PgolfInputError(source or None, f"token id {int(toks.max()):,} outside the tokenizer's "
                                              f"{base.numel():,} pieces") from None
    prev, tgt = toks[:-1], toks[1:]
    per_token = base[tgt].to(torch.int64) + (space[tgt] & ~boundary[prev]).to(torch.int64)
    byte_count = float(per_token.to(torch.float64).sum())
    if byte_count <= 0:
        raise PgolfInputError(source or None, "the slice's targets decode to zero bytes") from None
    h = hashlib.sha256(f"{EVAL_CODE_VERSION}|seq_len={seq_len}|".encode())
    h.update(toks.numpy().astype("<i8").tobytes())
    h.update(per_token.numpy().astype("<i8").tobytes())
    window_bytes = tuple(per_token.reshape(-1, seq_len).sum(1).to(torch.float64).tolist())
    return EvalSlice(toks, int(seq_len), byte_count, source, h.hexdigest(), window_bytes, int(offset))


def _val_shards(folder: Path) -> list[Path]:
    files = sorted(folder.glob("fineweb_val_*.bin"))
    if not files:
        raise PgolfInputError(folder, "no fineweb_val_*.bin shards in this folder") from None
    return files


def _find_tokenizer(folder: Path) -> Path | None:
    """A tokenizer beside official shards: in the folder, or data/tokenizers as the challenge lays it out."""
    for where in (folder, folder.parent, folder.parent.parent / "tokenizers"):
        found = sorted(where.glob("*.model")) if where.is_dir() else []
        if len(found) == 1:
            return found[0]
    return None


def load_slice(data: str | Path | None = None, tokenizer: str | Path | None = None,
               tokens: int = DEFAULT_TOKENS, seq_len: int = 1024, vocab_size: int | None = None,
               quiet: bool = False, offset: int = 0) -> EvalSlice:
    """The evaluation slice: official val shards in `data` (tokenizer beside them or `tokenizer`),
    else the embedded default's val split (tokenized with `tokenizer` when given), starting
    `offset` tokens into it.

    >>> load_slice(tokens=4096, seq_len=256).n_tokens   # doctest: +SKIP
    4096
    """
    from pgolf.budget.files.validate import read_shard, read_tokenizer
    from pgolf.trainer.train_gpt import build_sentencepiece_luts

    if data is not None:
        folder = Path(data)
        if not folder.is_dir():
            raise PgolfInputError(folder, "--data must be a folder of fineweb_val_*.bin shards") from None
        tok_path = Path(tokenizer) if tokenizer is not None else _find_tokenizer(folder)
        if tok_path is None:
            raise PgolfInputError(folder, "no tokenizer .model found beside the shards; pass --tokenizer MODEL") from None
        parts, have = [], 0
        for shard in _val_shards(folder):
            arr = read_shard(shard, None)
            parts.append(arr)
            have += arr.size
            if have > tokens + offset:
                break
        val = np.concatenate(parts)
        source = f"{folder} (official val shards, {tok_path.name})"
    else:
        from pgolf.trainer.corpus import prepare_default

        info = prepare_default(tokenizer=tokenizer, quiet=quiet)
        tok_path = Path(info.tokenizer_path)
        val = np.concatenate([read_shard(s, None) for s in _val_shards(Path(info.data_path))])
        source = f"embedded default val split ({tok_path.name})"
    sp = read_tokenizer(tok_path)
    if vocab_size is not None and sp.vocab_size() > vocab_size:
        raise PgolfInputError(tok_path, f"tokenizer has {sp.vocab_size():,} pieces but the model's vocabulary "
                                        f"is {vocab_size:,}") from None
    luts = build_sentencepiece_luts(sp, max(vocab_size or 0, sp.vocab_size()), torch.device("cpu"))
    if offset and val.size - 1 - offset < seq_len:
        where = tok_path if data is None else Path(data)
        raise PgolfInputError(where, f"the validation data has {val.size:,} tokens: nothing left after the first "
                                     f"{offset:,} for another slice (lower --tokens, --select-tokens or "
                                     f"--max-tokens)") from None
    return make_slice(val, seq_len, luts, tokens, source, offset)


# --- evaluation -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalResult:
    """val_loss / val_bpb over `tokens` targets and `bytes` bytes, with each unit's loss sum (nats)
    and bytes; a unit is `unit_windows` consecutive windows of `seq_len`."""

    val_loss: float
    val_bpb: float
    tokens: int
    bytes: float
    unit_loss: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    unit_bytes: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    unit_windows: int = 1
    seq_len: int = 0

    @property
    def block_units(self) -> int:
        return block_units(self.seq_len, self.unit_windows)

    def minus(self, other: "EvalResult") -> Interval:
        """val_bpb(self) - val_bpb(other) with its paired SE and 95% interval (same slice)."""
        if len(self.unit_loss) != len(other.unit_loss) or self.unit_windows != other.unit_windows:
            raise ValueError("paired difference of evaluations on different slices or units")
        return paired_interval(self.unit_loss, other.unit_loss, self.unit_bytes, self.block_units,
                               value=self.val_bpb - other.val_bpb)

    def interval(self) -> Interval:
        """val_bpb with its (unpaired) SE over blocks."""
        return bpb_interval(self.unit_loss, self.unit_bytes, self.block_units, value=self.val_bpb)


def combine(results: list[EvalResult]) -> EvalResult:
    """One result over consecutive disjoint slices (chunks), as if evaluated as one slice.

    >>> a = EvalResult(2.0, 0.0, 4, 8.0, (3.0, 5.0), (4.0, 4.0), 1, 2)
    >>> r = combine([a, a])
    >>> r.val_loss, r.tokens, len(r.unit_loss), round(r.val_bpb, 6)
    (2.0, 8, 4, 1.442695)
    """
    if len(results) == 1:
        return results[0]
    first = results[0]
    if any(r.unit_windows != first.unit_windows or r.seq_len != first.seq_len for r in results):
        raise ValueError("chunks evaluated with different windows cannot be combined")
    loss = tuple(x for r in results for x in r.unit_loss)
    nbytes = tuple(x for r in results for x in r.unit_bytes)
    tokens = sum(r.tokens for r in results)
    byte_count = sum(r.bytes for r in results)
    return _result(math.fsum(loss), tokens, byte_count, loss, nbytes, first.unit_windows, first.seq_len)


def default_batch_seqs(sl: EvalSlice) -> int:
    return max(1, DEFAULT_BATCH_TOKENS // sl.seq_len)


def _result(loss_sum: float, tokens: int, byte_count: float, unit_loss, unit_bytes, unit_windows: int,
            seq_len: int) -> EvalResult:
    val_loss = loss_sum / tokens
    # the official formula and operation order: bits per token x tokens per byte
    return EvalResult(val_loss, val_loss / math.log(2.0) * (tokens / byte_count), tokens, byte_count,
                      tuple(unit_loss), tuple(unit_bytes), int(unit_windows), int(seq_len))


def takes_reduction(model: nn.Module) -> bool:
    """Whether `model.forward` accepts `reduction` (the trainer's GPT does: per-token losses)."""
    try:
        params = pyinspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "reduction" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _run(model: nn.Module, sl: EvalSlice, batch_seqs: int, before_batch=None, desc: str = "",
         quiet: bool = True) -> EvalResult:
    device = _model_device(model)
    was_training = model.training
    model.eval()
    per_window = takes_reduction(model)
    units: list[float] = []
    batches = sl.batches(batch_seqs)
    try:
        # no_grad, not inference_mode: modules cache tensors (RoPE tables) that a later
        # gradient pass (the proxy) must be allowed to use
        with torch.no_grad():
            for b, (x, y) in progress(enumerate(batches), desc=desc, total=len(batches), quiet=quiet or not desc):
                if before_batch is not None:
                    before_batch(b)
                if per_window:
                    loss = model(x.to(device), y.to(device), reduction="none")  # [B, T] nats per target
                    if tuple(loss.shape) != tuple(y.shape):
                        raise ValueError(f"forward(x, y, reduction='none') returned shape {tuple(loss.shape)}, "
                                         f"expected per-token losses {tuple(y.shape)}")
                    if b == 0 and loss.numel() > 1 and bool((loss == loss.flatten()[0]).all()):
                        # a mean loss spread over the positions (a script's model without logits):
                        # its windows are not seen, so the batch is the unit, as below
                        per_window = False
                        units.append(float(loss.detach().to(torch.float64).sum()))
                        continue
                    units += loss.detach().to(torch.float64).sum(1).cpu().tolist()
                else:  # forward(x, y) -> mean loss: the batch is the smallest unit we can see
                    loss = model(x.to(device), y.to(device))
                    units.append(float(loss.detach().to(torch.float64)) * float(y.numel()))
    finally:
        model.train(was_training)
    unit_windows = 1 if per_window else batch_seqs
    unit_bytes = block_sums(sl.window_bytes, unit_windows).tolist()
    return _result(math.fsum(units), sl.n_tokens, sl.byte_count, units, unit_bytes, unit_windows, sl.seq_len)


def evaluate_bpb(model: nn.Module, sl: EvalSlice, batch_seqs: int | None = None) -> EvalResult:
    """val_loss and val_bpb of `model` (forward(x, y) -> mean loss) on the slice, in fp32."""
    return _run(model, sl, batch_seqs or default_batch_seqs(sl))


def load_weights(model: nn.Module, sd: dict[str, Tensor]) -> nn.Module:
    """Load a state dict with strict=True (dtypes cast to the model's, as the official eval does)."""
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise PgolfInputError(None, f"state dict does not fit the model: {str(exc).splitlines()[0]}") from None
    return model


@torch.no_grad()
def set_tensor(model: nn.Module, name: str, value: Tensor) -> None:
    """Overwrite one state-dict entry of `model` in place (tied entries share the storage)."""
    model.state_dict()[name].copy_(value)
