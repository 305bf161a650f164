"""Checks that tell whether a slice's BPB means anything for a model, said in the report.

- Off distribution: a model whose unquantized loss on the slice exceeds ln(vocab), the loss of a
  uniform guess, was trained on other text (participants' models on the embedded default score
  ~10-11 BPB); its quantization gaps are then meaningless.
- Byte accounting: pgolf counts the slice's bytes itself. A script that defines
  `build_sentencepiece_luts` is asked for its tables too; when its count on the same slice
  differs, the report says so (the bug reviewers hunt: a BPB divided by the wrong byte count).

>>> off_distribution_note(7.5, 1024) is not None, off_distribution_note(3.0, 1024)
(True, None)
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from pgolf.inspect.evaluate import EvalSlice


def slice_loss(val_bpb: float, sl: EvalSlice) -> float:
    """The mean loss (nats per token) behind a val_bpb on this slice: bpb x ln 2 x bytes / tokens."""
    return val_bpb * math.log(2.0) / sl.tokens_per_byte


def off_distribution_note(val_loss: float, vocab_size: int | None) -> str | None:
    if not vocab_size or not math.isfinite(val_loss) or val_loss <= math.log(vocab_size):
        return None
    return (f"the slice is off-distribution for this model: its unquantized loss {val_loss:.3f} nats/token is "
            f"above a uniform guess over {vocab_size:,} tokens (ln {vocab_size:,} = {math.log(vocab_size):.3f}), "
            f"so its gaps say little; evaluate on the data it was trained on (--data SHARD_DIR)")


def slice_tokenizer(data=None, tokenizer=None, quiet: bool = True) -> Path | None:
    """The tokenizer `load_slice` uses for these arguments (None when it cannot be told)."""
    from pgolf.inspect.evaluate import _find_tokenizer

    if data is not None:
        return Path(tokenizer) if tokenizer is not None else _find_tokenizer(Path(data))
    from pgolf.trainer.corpus import prepare_default

    return Path(prepare_default(tokenizer=tokenizer, quiet=quiet).tokenizer_path)


def script_byte_count(module, sl: EvalSlice, tokenizer_path, vocab_size: int) -> float | None:
    """The slice's target bytes by the script's own `build_sentencepiece_luts` (None if it has none)."""
    build = getattr(module, "build_sentencepiece_luts", None)
    if build is None or tokenizer_path is None:
        return None
    from pgolf.budget.exact.inputs import read_tokenizer

    sp = read_tokenizer(tokenizer_path)
    try:
        base, space, boundary = (torch.as_tensor(t).cpu() for t in build(sp, vocab_size, torch.device("cpu")))
        prev, tgt = sl.tokens[:-1], sl.tokens[1:]
        per_token = base[tgt].to(torch.float64) + (space[tgt].bool() & ~boundary[prev].bool()).to(torch.float64)
    except Exception:  # an unusual signature: the check is advice, not a requirement
        return None
    return float(per_token.sum())


def byte_accounting_note(script_bytes: float | None, sl: EvalSlice) -> str | None:
    if script_bytes is None:
        return None
    if script_bytes == sl.byte_count:
        return (f"byte accounting: the script's build_sentencepiece_luts counts the same {sl.byte_count:,.0f} "
                f"bytes on this slice as pgolf")
    return (f"byte accounting differs: the script's build_sentencepiece_luts counts {script_bytes:,.0f} bytes on "
            f"this slice, pgolf {sl.byte_count:,.0f} ({script_bytes / sl.byte_count - 1:+.3%}); its own val_bpb "
            f"would be off by that factor (pgolf's count is used)")
