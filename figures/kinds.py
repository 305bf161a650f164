"""The plot kinds of `pgolf plot`, what input each needs and which options it takes.

Kept free of matplotlib/pandas imports so building the `pgolf` parser stays fast.

>>> KINDS["headroom"].options
('x', 'y', 'cap')
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class KindInfo:
    needs: str  # the columns the input must have (for --help and error messages)
    options: tuple[str, ...]  # keyword options of the kind's frame function


KINDS: dict[str, KindInfo] = {
    "headroom": KindInfo("plan, compressor, bytes_total (or headroom_bytes), val_bpb [, cap]", ("x", "y", "cap")),
    "tensor-bytes": KindInfo("name, kind, values_bytes, scales_bytes, payload_bytes [, entropy_bytes, "
                             "compressed_bytes, plan, tied_to]", ("group", "depth", "top")),
    "quant-gap": KindInfo("name, gap_only_this_bpb (or --column) [, scheme, proxy_gap_bpb]", ("column", "top")),
    "compressors": KindInfo("scheme, compressor, compressed_bytes, entropy_bytes", ("relative",)),
    "exchange-rate": KindInfo("name, scheme, scheme_next, delta_bytes, delta_bpb", ("top", "budget_bytes")),
    "squeeze": KindInfo("name, entropy_bytes and codec columns (zlib_bytes, ans_bytes, ...): pgolf squeeze --json",
                        ("top",)),
    "training-curve": KindInfo("training logs (ours or official records'), or parse_log CSVs", ("x", "metrics")),
}
