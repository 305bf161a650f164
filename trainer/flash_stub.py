"""A CPU stand-in for FlashAttention's `flash_attn_func`, for scripts that import it at the top.

Records import `flash_attn_interface` (FlashAttention 3) or `flash_attn` (FlashAttention 2),
which exist only on CUDA machines. When such a module cannot be imported, `install_stand_ins`
registers a small module of that name whose `flash_attn_func(q, k, v, causal=...)` computes the
same attention with `scaled_dot_product_attention`, and says so once on stderr. Inputs and
output are (batch, seq, heads, head_dim); grouped key/value heads are repeated to the query heads.

>>> q = torch.randn(1, 5, 4, 8); kv = torch.randn(1, 5, 2, 8)
>>> flash_attn_func(q, kv, kv, causal=True).shape
torch.Size([1, 5, 4, 8])
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types

import torch
import torch.nn.functional as F
from torch import Tensor

FLASH_MODULES = ("flash_attn_interface", "flash_attn")
_announced: set[str] = set()


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0, softmax_scale: float | None = None,
                    causal: bool = False, *args, **kwargs) -> Tensor:
    """FlashAttention's layout and arguments, computed by SDPA (no dropout: evaluation only)."""
    groups = q.size(2) // k.size(2)
    if groups > 1:  # grouped-query attention: each kv head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=causal, scale=softmax_scale)  # [B, H, T, D]
    return y.transpose(1, 2)


def imported_names(source: bytes | str) -> set[str]:
    """Top-level module names a source imports anywhere in its syntax tree.

    >>> sorted(imported_names("import os\\nfrom flash_attn_interface import flash_attn_func"))
    ['flash_attn_interface', 'os']
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _available(name: str) -> bool:
    if name in sys.modules:
        return not getattr(sys.modules[name], "__pgolf_stand_in__", False)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install_stand_ins(source: bytes | str, stream=None) -> list[str]:
    """Register the SDPA stand-in under each FlashAttention module `source` imports and this
    machine lacks; announce each once per process on `stream` (stderr). Returns the names."""
    wanted = [n for n in FLASH_MODULES if n in imported_names(source) and not _available(n)]
    for name in wanted:
        module = types.ModuleType(name, "pgolf's SDPA stand-in for FlashAttention (CPU evaluation)")
        module.flash_attn_func = flash_attn_func
        module.__pgolf_stand_in__ = True
        sys.modules[name] = module
        if name not in _announced:
            _announced.add(name)
            print(f"pgolf: {name} is not installed here; its flash_attn_func runs as "
                  f"torch scaled_dot_product_attention instead (same attention, slower)",
                  file=stream or sys.stderr)
    return wanted
