"""How the insights' sentences write numbers, durations and local times.

The events' ``detail`` is read by people (the owner, a garage) and checked
word for word by the tests, so every number is written here, one way.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

G = 9.80665  # m/s^2 per g


class Finding(NamedTuple):
    """What a watcher found: the event it becomes (channel and priority are the engine's),
    and how long it lasted (speeding time counts in the trip's score)."""

    timestamp: float
    kind: str
    detail: str
    duration: float = 0.0


def duration(seconds: float) -> str:
    """``0.8 s``, ``14 s``, ``23 min 40 s``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest:02d} min"


def minutes(seconds: float) -> str:
    """Whole minutes, at least one when there is any time at all: ``42 min``."""
    if seconds <= 0:
        return "0 min"
    return f"{max(1, round(seconds / 60))} min"


def km(value: float) -> str:
    """``12.4 km``, ``1,480 km`` (whole kilometres from 100 on)."""
    if abs(value) >= 99.95:
        return f"{round(value):,} km"
    return f"{value:.1f} km"


def speed(kmh: float) -> str:
    return f"{round(kmh)} km/h"


def accel(ms2: float) -> str:
    """``5.62 m/s² (0.57 g)``."""
    return f"{abs(ms2):.2f} m/s² ({abs(ms2) / G:.2f} g)"


def volts(value: float) -> str:
    return f"{value:.2f} V"


def celsius(value: float) -> str:
    return f"{round(value)} °C"


def number(value: float) -> str:
    """A threshold as configured: ``3.13``, ``130``, ``12.2``."""
    return f"{value:g}"


def local_date(ts: float, zone: dt.tzinfo | None) -> dt.date:
    """The local date of ``ts`` (the system's time zone when ``zone`` is None)."""
    return dt.datetime.fromtimestamp(ts, zone).date()


def local_moment(day: dt.date, minute: int, zone: dt.tzinfo | None) -> float:
    """The epoch seconds of ``minute`` minutes after local midnight of ``day`` (wall-clock
    minutes: 23:00 is 23:00 on a day when the clocks change)."""
    wall = dt.datetime(day.year, day.month, day.day, tzinfo=zone) + dt.timedelta(minutes=minute)
    return wall.timestamp()
