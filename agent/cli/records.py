"""How samples look in the command line's JSONL and CSV output."""

from __future__ import annotations

import math
from typing import Any

from agent.frames import OUT_OF_RANGE, TRUNCATED


def json_number(value: Any) -> Any:
    """JSON has no NaN or infinities: write them as strings, as protobuf's JSON does."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def flag_names(flags: int) -> list[str]:
    """The names of the known flag bits that are set."""
    names = []
    if flags & OUT_OF_RANGE:
        names.append("out_of_range")
    if flags & TRUNCATED:
        names.append("truncated")
    return names
