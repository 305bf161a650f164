"""The official export format `int8_clean_per_row_v1`, bit-exact with the challenge's baseline.

Pure functions: `quantize_state_dict_int8(sd) -> (export_obj, stats)` and
`dequantize_state_dict_int8(export_obj) -> sd`; `serialize_export` / `compress_export` build the
exact `.ptz` bytes. Rules (see shared/reference/official_format.md §2): per-row clip at the
99.99984th percentile of |w|, scale = clip/127 floored at 1/127 stored as fp16, values in
[-127, 127]; float tensors with <= 65,536 values pass through (control tensors as fp32, other
fp32/bf16 as fp16 with the original dtype recorded); non-float tensors pass through unchanged.

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

FORMAT_TAG = "int8_clean_per_row_v1"
CONTROL_TENSOR_NAME_PATTERNS = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
    "q_gain", "skip_weight", "skip_weights",
)
KEEP_FLOAT_MAX_NUMEL = 65_536
CLIP_PERCENTILE = 99.99984
CLIP_Q = CLIP_PERCENTILE / 100.0
QMAX = 127
ZLIB_LEVEL = 9


def is_control_tensor(name: str) -> bool:
    return any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS)


def is_passthrough(name: str, t: Tensor) -> bool:
    """True where the official rule stores the tensor as-is (non-float or small)."""
    return (not t.is_floating_point()) or t.numel() <= KEEP_FLOAT_MAX_NUMEL


def keep_float_tensor(name: str, t: Tensor, orig_dtypes: dict[str, str]) -> Tensor:
    if is_control_tensor(name):
        return t.float().contiguous()
    if t.dtype in (torch.float32, torch.bfloat16):
        orig_dtypes[name] = str(t.dtype).removeprefix("torch.")
        return t.to(dtype=torch.float16).contiguous()
    return t


def quantize_float_tensor(t: Tensor) -> tuple[Tensor, Tensor]:
    """int8 values and scales for one tensor: per row for 2-D, one fp32 0-d scale otherwise."""
    t32 = t.float()
    if t32.ndim == 2:
        clip = (torch.quantile(t32.abs(), CLIP_Q, dim=1) if t32.numel()
                else torch.empty((t32.shape[0],), dtype=torch.float32))
        clipped = torch.maximum(torch.minimum(t32, clip[:, None]), -clip[:, None])
        scale = (clip / QMAX).clamp_min(1.0 / QMAX)
        q = torch.clamp(torch.round(clipped / scale[:, None]), -QMAX, QMAX).to(torch.int8).contiguous()
        return q, scale.to(dtype=torch.float16).contiguous()
    clip_abs = float(torch.quantile(t32.abs().flatten(), CLIP_Q).item()) if t32.numel() else 0.0
    scale = torch.tensor(clip_abs / QMAX if clip_abs > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip_abs, clip_abs) / scale), -QMAX, QMAX)
    return q.to(torch.int8).contiguous(), scale


def _nbytes(t: Tensor) -> int:
    return int(t.numel()) * int(t.element_size())


def quantize_state_dict_int8(state_dict: dict[str, Tensor]) -> tuple[dict, dict[str, int]]:
    """The official export object and its byte statistics (payload = q + scales + passthrough)."""
    quantized, scales, dtypes, passthrough = {}, {}, {}, {}
    orig_dtypes: dict[str, str] = {}
    qmeta: dict[str, dict] = {}
    stats = dict.fromkeys(("param_count", "num_tensors", "num_float_tensors", "num_nonfloat_tensors",
                           "baseline_tensor_bytes", "int8_payload_bytes"), 0)
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        stats["param_count"] += int(t.numel())
        stats["num_tensors"] += 1
        stats["baseline_tensor_bytes"] += _nbytes(t)
        if not t.is_floating_point():
            stats["num_nonfloat_tensors"] += 1
            passthrough[name] = t
            stats["int8_payload_bytes"] += _nbytes(t)
            continue
        if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
            kept = keep_float_tensor(name, t, orig_dtypes)
            passthrough[name] = kept
            stats["int8_payload_bytes"] += _nbytes(kept)
            continue
        stats["num_float_tensors"] += 1
        q, s = quantize_float_tensor(t)
        if s.ndim > 0:
            qmeta[name] = {"scheme": "per_row", "axis": 0}
        quantized[name], scales[name] = q, s
        dtypes[name] = str(t.dtype).removeprefix("torch.")
        stats["int8_payload_bytes"] += _nbytes(q) + _nbytes(s)
    obj: dict[str, object] = {"__quant_format__": FORMAT_TAG, "quantized": quantized,
                              "scales": scales, "dtypes": dtypes, "passthrough": passthrough}
    if qmeta:
        obj["qmeta"] = qmeta
    if orig_dtypes:
        obj["passthrough_orig_dtypes"] = orig_dtypes
    return obj, stats


def dequantize_state_dict_int8(obj: dict) -> dict[str, Tensor]:
    """Inverse of the export: q * scale (row-broadcast), cast back to the recorded dtype."""
    out: dict[str, Tensor] = {}
    qmeta = obj.get("qmeta", {})
    orig_dtypes = obj.get("passthrough_orig_dtypes", {})
    for name, q in obj["quantized"].items():
        dtype = getattr(torch, obj["dtypes"][name])
        s = obj["scales"][name]
        if qmeta.get(name, {}).get("scheme") == "per_row" or s.ndim > 0:
            s = s.to(dtype=torch.float32)
            out[name] = (q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))).to(dtype=dtype).contiguous()
        else:
            out[name] = (q.float() * float(s.item())).to(dtype=dtype).contiguous()
    for name, t in obj["passthrough"].items():
        restored = t.detach().to("cpu").contiguous()
        if isinstance(orig_dtypes.get(name), str):
            restored = restored.to(dtype=getattr(torch, orig_dtypes[name])).contiguous()
        out[name] = restored
    return out


def serialize_export(obj: dict) -> bytes:
    """`torch.save` bytes of the export object, as the baseline writes them before zlib."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def compress_export(raw: bytes, level: int = ZLIB_LEVEL) -> bytes:
    return zlib.compress(raw, level=level)
