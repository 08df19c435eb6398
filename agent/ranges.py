"""The allowed range of each number of the configuration, worded one way.

A value outside its range, or NaN or infinity, is described by the same rule
whatever side it is on (``upload.timeout: must be > 0 and at most 3_600, got
-1``, and the same words for ``0``): the rule, then the value. Integers are
written with ``_`` between thousands, which TOML accepts as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
DAY = 86_400


def show(value: float) -> str:
    """A number as the messages write it: ``1_048_576``, ``0.5``, ``1e+308``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:_}"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f"{int(value):_}"
    return f"{value:g}"


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``low < value`` when ``open_low``)."""

    low: float
    high: float
    open_low: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        return bool(above and value <= self.high)

    @property
    def rule(self) -> str:
        """``from 1 to 65_535``, or ``> 0 and at most 3_600``."""
        if self.open_low:
            return f"> {show(self.low)} and at most {show(self.high)}"
        return f"from {show(self.low)} to {show(self.high)}"

    def problem(self, value: float, extra: str = "") -> str | None:
        """None when ``value`` is in range, else ``must be <rule><extra>, got <value>``."""
        if value in self:
            return None
        return f"must be {self.rule}{extra}, got {show(value)}"
