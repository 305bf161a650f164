"""Read any artifact back to tensors, and compare them bit for bit with what was expected.

`read_artifact(blob)` takes pgolf's framed artifacts (container.py) and the baseline's plain zlib
`.ptz`; decompression is bounded and every problem is a ValueError with one line.

>>> import torch
>>> bits_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
False
"""
from __future__ import annotations

import torch
from torch import Tensor

from pgolf.budget.exact import container

from pgolf.budget.quant import official
from pgolf.budget.files.compressors import get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.quant.schemes import get_scheme
from pgolf.budget.exact.threads import one_torch_thread

DEFAULT_MAX_OUTPUT = 4 * CAP_BYTES


def _decode_export(raw: bytes, limit: int) -> dict[str, Tensor]:
    from pgolf.budget.exact.inputs import torch_load_bytes
    from pgolf.budget.files.validate import validate_export

    try:
        obj = torch_load_bytes(raw, None, limit)
        validate_export(obj, None)
    except PgolfInputError as exc:
        raise ValueError(exc.problem) from None
    return official.dequantize_state_dict_int8(obj)


def _decode_container(raw: bytes) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for rec in container.decode(raw):
        if rec.tied_to:
            out[rec.name] = out[rec.tied_to]
            continue
        scheme = get_scheme(rec.scheme)
        out[rec.name] = scheme.dequantize(scheme.unpack(rec.values, rec.scales, rec.shape, rec.dtype))
    return out


@one_torch_thread()
def read_artifact(blob: bytes, max_output_bytes: int = DEFAULT_MAX_OUTPUT) -> dict[str, Tensor]:
    """Dequantized tensors of an artifact (pgolf-framed, or an official zlib `.ptz`).

    Decompression stops past `max_output_bytes`; any problem raises ValueError with one line.
    """
    blob = bytes(blob)
    if container.is_artifact(blob):
        kind, spec, body = container.parse_frame(blob)
        try:
            comp = get_compressor(spec)
            comp.require()
        except PgolfInputError as exc:
            raise ValueError(exc.problem) from None
        raw = comp.decompress(body, max_output_bytes)
        return _decode_container(raw) if kind == container.KIND_CONTAINER else _decode_export(raw, max_output_bytes)
    if blob[:1] == b"\x78":  # zlib header byte: the baseline's .ptz
        return _decode_export(get_compressor("zlib").decompress(blob, max_output_bytes), max_output_bytes)
    raise ValueError(f"unknown artifact format (first bytes {blob[:8].hex(' ') or 'none'}): expected pgolf's "
                     f"PGOLF frame or an official zlib .ptz")


def bits_equal(a: Tensor, b: Tensor) -> bool:
    """Bitwise equality; a wider decoded dtype counts when the cast back is exact (fp32 controls)."""
    if a.shape != b.shape:
        return False
    if a.dtype != b.dtype:
        narrowed = a.to(b.dtype)
        if not torch.equal(narrowed.to(a.dtype).reshape(-1).view(torch.uint8), a.reshape(-1).view(torch.uint8)):
            return False
        a = narrowed
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def roundtrip_mismatches(decoded: dict[str, Tensor], expected: dict[str, Tensor]) -> list[str]:
    """Names whose decoded tensor is missing, extra or not bitwise equal to the expected one."""
    names = list(dict.fromkeys(list(expected) + list(decoded)))
    return [n for n in names if n not in decoded or n not in expected or not bits_equal(decoded[n], expected[n])]
