"""The reports of `pgolf predict`: every number labelled exact or predicted, predicted ones with their interval.

Text, markdown and HTML print each headline value as `value (exact)` or `value (predicted,
interval low .. high)`; JSON adds `exactness` (headline key or frame column -> "exact" |
"predicted"), `interval` (key -> [low, high]) and the notes, which say where the numbers come from.

>>> import pandas as pd
>>> r = PredictReport(headline={"params": 10, "bytes_model": 50, "bytes_model_low": 45, "bytes_model_high": 56},
...                   frame=pd.DataFrame({"name": ["w"], "compressed_bytes": [50]}))
>>> print(r.to_text(max_rows=0).splitlines()[:2])
['params: 10 (exact)', 'bytes_model: 50 (predicted, interval 45 .. 56)']
>>> r.to_dict()["exactness"]["compressed_bytes"], r.to_dict()["interval"]["bytes_model"]
('predicted', [45, 56])
"""
from __future__ import annotations

import dataclasses

from pgolf.budget.report_base import LabelledReport, Report, carried_intervals

# Counted from the shape and the plan alone (or measured on the checkpoint), never predicted.
EXACT = ("params", "params_b", "delta_params", "payload_bytes", "payload_bytes_b", "delta_payload_bytes",
         "values_bytes", "scales_bytes", "bits_per_value", "numel", "bytes_code", "cap", "measured_share")
PREDICTED = ("bytes_model", "bytes_model_low", "bytes_model_high", "bytes_total", "bytes_total_high",
             "headroom_bytes", "bits_per_param", "bytes_model_b", "delta_bytes_model", "delta_bytes_model_low",
             "delta_bytes_model_high", "compressed_bytes", "compressed_bytes_b")


@dataclasses.dataclass(repr=False)
class PredictedReport(LabelledReport, Report):
    """A Report whose headline numbers are labelled exact or predicted; `ranges` holds the
    intervals of predicted numbers beyond the headline's own (--delta: A's and B's bytes)."""

    word = "predicted"
    ranges: dict = dataclasses.field(default_factory=dict, repr=False)

    def exactness(self) -> dict[str, str]:
        keys = list(self.headline) + [c for c in self.frame.columns if c not in self.headline]
        return {k: "exact" if k in EXACT else "predicted" for k in keys if k in EXACT or k in PREDICTED}

    def intervals(self) -> dict[str, list]:
        h, out = self.headline, {k: [int(lo), int(hi)] for k, (lo, hi) in self.ranges.items()}
        if "bytes_model_low" in h:
            lo, hi = h["bytes_model_low"], h["bytes_model_high"]
            out.update(carried_intervals(h, lo, hi))
            if h.get("params"):
                out["bits_per_param"] = [round(8 * lo / h["params"], 4), round(8 * hi / h["params"], 4)]
        if "delta_bytes_model_low" in h:
            out["delta_bytes_model"] = [h["delta_bytes_model_low"], h["delta_bytes_model_high"]]
        return out

    def to_dict(self) -> dict:
        return {**super().to_dict(), "notes": self.notes}


@dataclasses.dataclass(repr=False)
class PredictReport(PredictedReport):
    """Predicted bytes for a config: headline with interval, one row per tensor.

    `variants` (not rendered) holds the model bytes of every evaluation behind the interval
    (central and each moved statistic, or each --like draw), which `predict_delta` pairs up.

    >>> from pgolf.budget.forecast.predict import predict
    >>> r = predict(layers=2, dim=128, plan="int6", compressor="zstd")
    >>> type(r).__name__, r.to_dict()["exactness"]["params"], r.to_dict()["exactness"]["bytes_model"]
    ('PredictReport', 'exact', 'predicted')
    """

    variants: dict = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(repr=False)
class DeltaReport(PredictedReport):
    """The change in bytes from config/plan A to B under the same statistics, one row per role.

    >>> from pgolf.budget.forecast.predict import predict_delta
    >>> r = predict_delta({"layers": 2, "dim": 128}, {"layers": 3}, plan="int6", compressor="zstd")
    >>> i = r.to_dict()["interval"]
    >>> i["delta_bytes_model"][0] <= r.headline["delta_bytes_model"] <= i["delta_bytes_model"][1], sorted(i)
    (True, ['bytes_model', 'bytes_model_b', 'delta_bytes_model'])
    """
