"""Axis units for bytes and BPB: decimal (MB = 10^6 bytes), thousands separators, no scientific
notation. Formatters change only the tick text; the plotted values stay raw bytes, so the CSV
written beside a figure holds exactly what the artists hold.

>>> format_bytes(15863489)
'15,863,489 bytes'
>>> byte_unit(15_863_489)
(1000000, 'MB')
>>> mb_formatter()(15_863_489, 0)
'15.86'
"""
from __future__ import annotations

import math

from matplotlib.axis import Axis
from matplotlib.ticker import Formatter, FuncFormatter, MaxNLocator

UNITS = ((1_000_000, "MB"), (1_000, "KB"), (1, "bytes"))


def format_bytes(n: float) -> str:
    """'15,863,489 bytes' (integers with thousands separators; the challenge counts whole bytes)."""
    return f"{int(round(n)):,} bytes"


def format_mb(n: float, decimals: int = 2) -> str:
    """'15.86 MB' (decimal megabytes, 10^6 bytes)."""
    return f"{n / 1e6:,.{decimals}f} MB"


def byte_unit(max_abs: float) -> tuple[int, str]:
    """Largest decimal unit in which `max_abs` is at least 1: (divisor, name)."""
    for divisor, name in UNITS:
        if abs(max_abs) >= divisor * 1.0:
            return divisor, name
    return 1, "bytes"


def _decimals_for(values) -> int:
    """Fewest decimals (at most 6) that write every tick value exactly: ticks 5, 7.5, 10 need one
    decimal (with none, 7.5 would read '8')."""
    values = [v for v in values if math.isfinite(v)]
    for d in range(7):
        if all(abs(round(v, d) - v) <= 1e-9 * max(1.0, abs(v)) for v in values):
            return d
    return 6


class ScaledFormatter(Formatter):
    """Tick text = value / divisor with thousands separators; decimals: the fewest that write
    every tick exactly (unless fixed)."""

    def __init__(self, divisor: float, decimals: int | None = None):
        self.divisor, self.decimals, self._ticks = divisor, decimals, ()

    def set_locs(self, locs):  # the axis hands over the tick values before asking for text
        self._ticks = tuple(locs)

    def __call__(self, value, pos=None):
        v = value / self.divisor
        if self.decimals is not None:
            return f"{v:,.{self.decimals}f}"
        if len(self._ticks) > 1:
            d = _decimals_for([t / self.divisor for t in self._ticks])
        else:
            d = 0 if abs(v) >= 10 else 2
        return f"{v:,.{d}f}"


def scaled_formatter(divisor: float, decimals: int | None = None) -> ScaledFormatter:
    """Formatter showing value / divisor: scaled_formatter(1e6)(15_500_000) -> '15.50' (2 decimals
    when the spacing of the ticks is unknown)."""
    return ScaledFormatter(divisor, decimals)


def bytes_formatter() -> ScaledFormatter:
    """Whole bytes with thousands separators: 1,500,000."""
    return scaled_formatter(1, 0)


def kb_formatter(decimals: int | None = None) -> ScaledFormatter:
    """Decimal kilobytes (10^3 bytes)."""
    return scaled_formatter(1_000, decimals)


def mb_formatter(decimals: int | None = 2) -> ScaledFormatter:
    """Decimal megabytes (10^6 bytes)."""
    return scaled_formatter(1_000_000, decimals)


def byte_axis(axis: Axis, max_abs: float, what: str = "bytes", nbins: int = 6) -> str:
    """Put bytes on `axis` in the unit that fits `max_abs`; set and return the axis label.

    'bytes_total' over 16,000,000 -> ticks like 15.50 with label 'bytes_total (MB = 10^6 bytes)'.
    """
    divisor, unit = byte_unit(max_abs)
    formatter = scaled_formatter(divisor) if divisor > 1 else bytes_formatter()
    axis.set_major_locator(MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(formatter)
    units = {"MB": "MB = 10⁶ bytes", "KB": "KB = 10³ bytes", "bytes": "bytes"}[unit]
    label = f"{what} ({units})"
    axis.set_label_text(label)
    return label


def count_formatter() -> FuncFormatter:
    """Counts with SI suffix for tokens: 7.2B, 350M, 12k."""

    def fmt(value, pos=None):
        v = abs(value)
        for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{value / div:,.{0 if v >= 10 * div else 1}f}{suffix}"
        return f"{value:,.0f}"

    return FuncFormatter(fmt)
