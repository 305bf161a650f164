"""The official export format `int8_clean_per_row_v1`, bit-exact with the challenge's baseline.

The rule itself lives once, in trainer/train_gpt.py (the script must carry it, since its own bytes
count and it cannot import pgolf); this module re-exports it for the library and adds the byte
helpers. Rules (shared/reference/official_format.md §2): per-row clip at the 99.99984th percentile
of |w|, scale = clip/127 floored at 1/127 stored as fp16, values in [-127, 127]; float tensors with
<= 65,536 values pass through (control tensors as fp32, other fp32/bf16 as fp16 with the original
dtype recorded); non-float tensors pass through unchanged.

>>> import torch
>>> obj, stats = quantize_state_dict_int8({"w": torch.ones(300, 300)})
>>> obj["quantized"]["w"].unique().tolist(), stats["int8_payload_bytes"]
([127], 90600)
"""
from __future__ import annotations

import io
import zlib

import torch
from torch import Tensor

from pgolf.trainer.train_gpt import (  # noqa: F401  (re-exported)
    CONTROL_TENSOR_NAME_PATTERNS,
    INT8_CLIP_Q as CLIP_Q,
    INT8_KEEP_FLOAT_MAX_NUMEL as KEEP_FLOAT_MAX_NUMEL,
    dequantize_state_dict_int8,
    is_control as is_control_tensor,
    keep_float_tensor,
    quantize_float_tensor,
    quantize_state_dict_int8,
)

FORMAT_TAG = "int8_clean_per_row_v1"
CLIP_PERCENTILE = CLIP_Q * 100.0
QMAX = 127
ZLIB_LEVEL = 9


def is_passthrough(name: str, t: Tensor) -> bool:
    """True where the official rule stores the tensor as-is (non-float or small)."""
    return (not t.is_floating_point()) or t.numel() <= KEEP_FLOAT_MAX_NUMEL


def serialize_export(obj: dict) -> bytes:
    """`torch.save` bytes of the export object, as the baseline writes them before zlib."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def compress_export(raw: bytes, level: int = ZLIB_LEVEL) -> bytes:
    return zlib.compress(raw, level=level)
