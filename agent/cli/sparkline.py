"""A terminal sparkline: a series of numbers as one line of Unicode block characters.

``sparkline([0, 3, 7, 7, 2])`` gives ``▁▄██▃``: where no display exists
(a serial console, ssh into the box), ``bavard status`` and ``bavard live`` show a
rate's recent history this way. The lowest value of the series draws ``▁``, the
highest ``█``; a flat series draws its middle block (``▄``), or ``▁`` when it is all
zeros, so an idle bus looks idle. Values that are not finite (NaN, inf) draw a space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int | None = None) -> str:
    """One block character per value; with ``width``, the last ``width`` values (the
    newest), or the series padded on the left with spaces when it is shorter.

    ValueError for a negative ``width``."""
    if width is not None:
        if width < 0:
            raise ValueError(f"width must be at least 0, got {width}")
        values = list(values)[-width:] if width else []
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        line = " " * len(values)
    else:
        low, high = min(finite), max(finite)
        span = high - low
        top = len(BLOCKS) - 1
        chars = []
        for v in values:
            if not _finite(v):
                chars.append(" ")
            elif span == 0:
                chars.append(BLOCKS[0] if high == 0 else BLOCKS[top // 2])
            else:
                chars.append(BLOCKS[round((float(v) - low) / span * top)])
        line = "".join(chars)
    if width is not None and len(line) < width:
        line = " " * (width - len(line)) + line
    return line


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:
        return False
