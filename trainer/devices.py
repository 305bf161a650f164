"""Where and how a model is evaluated: `--device auto|cpu|cuda[:N]`, precision, batch size.

On the CPU a model is evaluated in float32 (stored bf16/fp16 values are exact in fp32); on CUDA
it runs under bf16 autocast like the official evaluation. `prepare_model` puts a model in that
state and makes its forward follow the evaluation contract, `forward(input_ids, target_ids) ->
mean loss`: a forward that returns logits gets its cross-entropy computed by pgolf.

>>> resolve_device("cpu")
device(type='cpu')
>>> batch_seqs_for(8192, 1024)
8
"""
from __future__ import annotations

import contextlib
import functools
import inspect as pyinspect

import torch
import torch._dynamo
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.budget.errors import PgolfInputError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def resolve_device(text: str | torch.device | None = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda`/`cuda:N` must exist here."""
    text = str(text or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PgolfInputError(None, f"--device {text}: expected {DEVICE_CHOICES}") from None
    if device.type not in ("cpu", "cuda"):
        raise PgolfInputError(None, f"--device {text}: expected {DEVICE_CHOICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PgolfInputError(None, f"--device {text}: this machine has no usable CUDA device "
                                        f"(torch.cuda.is_available() is False); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PgolfInputError(None, f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def batch_seqs_for(batch_tokens: int | None, seq_len: int) -> int | None:
    """Windows per evaluation batch for `--batch-tokens` (None keeps pgolf's default)."""
    return None if batch_tokens is None else max(1, int(batch_tokens) // int(seq_len))


def _forward_arity(model: nn.Module) -> int:
    """How many positional arguments the model's forward takes (1: logits only, 2: the contract)."""
    try:
        params = list(pyinspect.signature(type(model).forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return 1 if len(required) <= 1 and len(positional) == 1 else 2


def as_loss(out, target_ids: Tensor, where: str = "the model", reduction: str = "mean") -> Tensor:
    """The loss from what a forward returned: a scalar mean loss as is, logits [..., V] -> cross-entropy.

    `reduction="none"` (per-token losses, what the trainer's scorer asks for) needs logits; a mean
    loss is then spread over the positions (its sum is unchanged: exact for whole-window scoring).
    """
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        out = out[0]  # (loss, aux) or (logits, cache): the first is what counts
    if isinstance(out, dict):
        out = out.get("loss", out.get("logits"))
    if not isinstance(out, Tensor):
        raise PgolfInputError(None, f"{where}'s forward returned {type(out).__name__}, not a loss or logits")
    if out.numel() == 1:
        loss = out.reshape(())
        return loss if reduction == "mean" else loss.expand(target_ids.shape)
    if out.dim() >= 2 and out.shape[:-1].numel() == target_ids.numel():
        # F.cross_entropy looked up at call time: the gradient proxy samples targets through it
        losses = F.cross_entropy(out.reshape(-1, out.size(-1)).float(), target_ids.reshape(-1), reduction=reduction)
        return losses if reduction == "mean" else losses.view(target_ids.shape)
    raise PgolfInputError(None, f"{where}'s forward returned shape {tuple(out.shape)} for {target_ids.numel():,} "
                                f"targets: expected a mean loss or logits [batch, seq, vocab]")


def prepare_model(model: nn.Module, device: torch.device | str = "cpu", where: str = "the model",
                  contract: bool = True, eager: bool = False) -> nn.Module:
    """`model` on `device` in eval mode, float tensors fp32, forward under bf16 autocast on CUDA
    and (with `contract`) returning the mean loss whatever the class's forward returns; `eager`
    turns a script's torch.compile calls into no-ops (pgolf evaluates eagerly, no compiler needed).

    The forward is set on the instance, so parameters, state-dict names and `model.blocks` (which
    the replay patches) stay those of the model itself.
    """
    device = torch.device(device)
    model = model.to(device=device)
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            t.data = t.data.float()
    model.eval()
    arity = _forward_arity(model) if contract else 2
    real = type(model).forward

    logits_fn = getattr(type(model), "forward_logits", None)  # records expose it for sliding-window eval

    @functools.wraps(real)
    def forward(input_ids, target_ids=None, *args, reduction: str = "mean", **kwargs):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"), \
                (torch._dynamo.config.patch(disable=True) if eager else contextlib.nullcontext()):
            if not contract or target_ids is None:
                return real(model, input_ids, *args, **kwargs) if target_ids is None else \
                    real(model, input_ids, target_ids, *args, **kwargs)
            if reduction != "mean" and callable(logits_fn):
                out = logits_fn(model, input_ids)
            else:
                out = real(model, input_ids) if arity == 1 else real(model, input_ids, target_ids, *args, **kwargs)
            return as_loss(out, target_ids, where, reduction)

    if contract or eager or device.type == "cuda":
        model.forward = forward
    return model
