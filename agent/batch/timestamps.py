"""Timestamp columns: integer microseconds as step deltas (``time_us``), or the float64s
themselves (``time_s``) when they are not all whole microseconds.

``time_us`` is ``[first µs, step, (delta - step)...]``: the first timestamp absolute,
then each difference to the previous one minus the typical (median) step, so a steady
cycle stores as a run of zeros.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from agent.batch.exact import INT64_MAX, INT64_MIN, MAX_EXACT, exact_multiples, same
from agent.batch.validate import fail, get, int_list


def encode_times(timestamps: Sequence[float]) -> dict[str, Any]:
    """``time_us``: [first µs, step, (delta - step)...] when every timestamp is exactly
    ``µs / 1e6``; otherwise ``time_s``: the float64s themselves."""
    us = exact_multiples(timestamps, 1e6)
    if us is not None:
        return _step_deltas(us)
    us = []
    for ts in timestamps:
        if not math.isfinite(ts) or abs(ts) > 9e9:
            return {"time_s": list(timestamps)}
        guess = round(ts * 1e6)
        for u in (guess, guess - 1, guess + 1):
            if same(u / 1e6, ts):
                us.append(u)
                break
        else:
            return {"time_s": list(timestamps)}
    return _step_deltas(us)


def _step_deltas(us: list[int]) -> dict[str, Any]:
    if not us:
        return {"time_us": []}
    deltas = [b - a for a, b in itertools.pairwise(us)]
    step = sorted(deltas)[len(deltas) // 2] if deltas else 0
    return {"time_us": [us[0], step, *(d - step for d in deltas)]}


def decode_times(m: dict[str, Any], n: int, where: str) -> list[float]:
    """The ``n`` timestamps of the map ``m`` (a group, the events or the frames)."""
    if ("time_us" in m) == ("time_s" in m):
        fail(where, "needs exactly one of 'time_us' and 'time_s'")
    if "time_s" in m:
        ts = get(m, "time_s", list, where)
        if len(ts) != n or not all(type(t) is float for t in ts):
            fail(f"{where}.time_s", f"expected {n} floats, got {len(ts)} entries")
        return ts
    enc = int_list(m, "time_us", where, lo=INT64_MIN, hi=INT64_MAX)
    if len(enc) != (n + 1 if n else 0):
        fail(f"{where}.time_us", f"{len(enc)} entries for {n} timestamps "
                                 f"(expected {n + 1 if n else 0})")
    if not n:
        return []
    step = enc[1]
    us = list(itertools.accumulate(enc[2:], lambda acc, r: acc + step + r, initial=enc[0]))
    if not all(-MAX_EXACT <= u <= MAX_EXACT for u in us):
        fail(f"{where}.time_us", "a timestamp beyond ±2**53 µs")
    return [u / 1e6 for u in us]
