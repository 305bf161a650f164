"""Numbers from the command line: one parser for every count and size flag.

Counts accept `16000000`, `16_000_000`, `16,000,000` and `1.6e7`; infinity, NaN, fractions and
numbers beyond `maximum` are refused with argparse's one-line usage error, never a traceback.

>>> count()("1.6e7"), count()("16,000,000")
(16000000, 16000000)
>>> count(maximum=100)("1e999")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a whole number from 1 to 100, got '1e999'
>>> positive_float()("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a finite number above 0 and at most 1e+15, got 'nan'
"""
from __future__ import annotations

import argparse
import math

MAX_COUNT = 10**15  # above any byte count, token count or width pgolf can act on


def count(minimum: int = 1, maximum: int = MAX_COUNT):
    """An argparse `type` for a whole number in [minimum, maximum]."""
    def parse(text: str) -> int:
        problem = argparse.ArgumentTypeError(f"expected a whole number from {minimum:,} to {maximum:,}, got {text!r}")
        clean = text.strip().replace(",", "").replace("_", "")
        try:
            value = float(clean) if any(c in clean.lower() for c in "e.") else int(clean)
        except ValueError:
            raise problem from None
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            raise problem
        value = int(value)
        if not minimum <= value <= maximum:
            raise problem
        return value
    return parse


def positive_float(maximum: float = 1e15):
    """An argparse `type` for a finite number in (0, maximum]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= maximum):
            raise argparse.ArgumentTypeError(f"expected a finite number above 0 and at most {maximum:g}, got {text!r}")
        return value
    return parse


def finite_float():
    """An argparse `type` for any finite number (learning rates, softcaps, seeds of float kind).

    >>> finite_float()("-0.5")
    -0.5
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value
    return parse
