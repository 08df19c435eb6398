"""Bit-exact numbers: the integer bounds of the format, and the checks that a float
rebuilt from integers is the very float it stands for (NaN bits, ``-0.0``, int versus
float)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from agent.errors import BatchFormatError

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_EXACT = 1 << 53  # every integer up to this converts to float64 exactly


def as_float(x: Any, what: str) -> float:
    """``x`` as a float: ints too (when they fit), never bools."""
    if type(x) is float:
        return x
    if isinstance(x, int | float) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:
            pass
    raise BatchFormatError(f"{what} must be a float, not {x!r}")


def same(a: float, b: float) -> bool:
    """Bit for bit equal (NaN never, ``-0.0`` is not ``0.0``), for a and b floats."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def exact_multiples(values: Sequence[float], inverse: float, offset: float = 0.0,
                    scale: float | None = None) -> list[int] | None:
    """The fast path for a whole column: ints n with ``n * scale + offset`` (or
    ``n / inverse`` without a scale) equal to every value bit for bit; None when any value
    does not fit."""
    try:
        ns = [round((v - offset) * inverse) for v in values]
    except (OverflowError, ValueError):  # NaN, infinities
        return None
    if ns and max(max(ns), -min(ns)) > MAX_EXACT:
        return None
    back = [n * scale + offset for n in ns] if scale is not None else [n / inverse for n in ns]
    if array("d", back).tobytes() != array("d", values).tobytes():  # bit for bit
        return None
    return ns
