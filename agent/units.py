"""How sizes are written for people (the console's tables, error messages)."""

from __future__ import annotations

import time


def human_bytes(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 MiB``, ``1.1 GiB`` (binary units, GiB at most)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def local_time(t: float | None, unknown: str = "-") -> str:
    """Seconds since the epoch as local time to the second; ``unknown`` for None."""
    if t is None:
        return unknown
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, ValueError, OSError):
        return repr(t)
