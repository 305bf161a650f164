"""Progress bars: tqdm on a terminal, silent when asked (`--quiet`) or when not a TTY."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str = "", total: int | None = None, quiet: bool = False) -> Iterable[T]:
    disable = quiet or not sys.stderr.isatty()
    return tqdm(items, desc=desc, total=total, disable=disable, leave=False, file=sys.stderr)
