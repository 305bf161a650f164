"""Every pgolf figure in one place: `plot_<kind>(data, ax=None, **opts) -> Axes` and the registry
`PLOTS` that `pgolf plot KIND` and the demo draw from.

Each kind pairs a frame function (the exact rows drawn, also written as CSV) with a draw function.
Data is a pgolf DataFrame with glossary columns, a Report (or its JSON dict), or rows.

>>> sorted(PLOTS)
['compressors', 'exchange-rate', 'headroom', 'quant-gap', 'squeeze', 'tensor-bytes', 'training-curve']
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pgolf.figures.budget_plots import (
    compressors_frame, draw_compressors, draw_headroom, draw_tensor_bytes, headroom_frame,
    plot_compressors_vs_entropy, plot_headroom_vs_bpb, plot_tensor_bytes, tensor_bytes_frame,
)
from pgolf.figures.curve_plots import draw_training_curve, plot_training_curve, training_curve_frame
from pgolf.figures.gap_plots import (
    draw_exchange_rate, draw_quant_gap, exchange_rate_frame, plot_exchange_rate, plot_quant_gap, quant_gap_frame,
)
from pgolf.figures.kinds import KINDS
from pgolf.figures.squeeze_plots import draw_squeeze, plot_squeeze, squeeze_frame

__all__ = [
    "PLOTS", "PlotKind", "plot_headroom_vs_bpb", "plot_tensor_bytes", "plot_quant_gap",
    "plot_compressors_vs_entropy", "plot_exchange_rate", "plot_training_curve", "plot_squeeze",
]


@dataclasses.dataclass(frozen=True)
class PlotKind:
    name: str
    plot: Callable  # plot_<kind>(data, ax=None, **options) -> Axes
    frame: Callable  # <kind>_frame(data, **options) -> DataFrame of exactly what is drawn
    draw: Callable  # draw_<kind>(frame, ax=None, title=None) -> Axes

    @property
    def needs(self) -> str:
        return KINDS[self.name].needs

    @property
    def options(self) -> tuple[str, ...]:
        return KINDS[self.name].options


PLOTS: dict[str, PlotKind] = {
    "headroom": PlotKind("headroom", plot_headroom_vs_bpb, headroom_frame, draw_headroom),
    "tensor-bytes": PlotKind("tensor-bytes", plot_tensor_bytes, tensor_bytes_frame, draw_tensor_bytes),
    "quant-gap": PlotKind("quant-gap", plot_quant_gap, quant_gap_frame, draw_quant_gap),
    "compressors": PlotKind("compressors", plot_compressors_vs_entropy, compressors_frame, draw_compressors),
    "exchange-rate": PlotKind("exchange-rate", plot_exchange_rate, exchange_rate_frame, draw_exchange_rate),
    "training-curve": PlotKind("training-curve", plot_training_curve, training_curve_frame, draw_training_curve),
    "squeeze": PlotKind("squeeze", plot_squeeze, squeeze_frame, draw_squeeze),
}
