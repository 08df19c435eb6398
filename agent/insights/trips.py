"""A trip: what is counted while it lasts, its summary and its score.

A trip starts when the ignition comes on or the vehicle moves, and ends when
the ignition goes off, after ``stopped_end_s`` at a standstill (it then ended
when the vehicle stopped), or after ``bus_quiet_s`` without a sample (it ended
with the last one). Its distance is the odometer's difference when the
odometer reported twice during the trip, else the integrated speed. Idle time
is the time at a standstill during the trip.

The score (0-100) starts at 100 and loses, rounded down per item:
:data:`PENALTIES` points per harsh braking and per harsh acceleration, one
point per :data:`SPEEDING_SECONDS` seconds of speeding, one point per
:data:`NIGHT_SECONDS` seconds of night driving; never below 0. A trip without
any driving event scores 100, whatever its length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agent.insights import wording

MOVING = 0.5  # km/h: above this the vehicle moves (any OBD reading but 0; CAN noise is not)
MAX_INTEGRATION_GAP = 5.0  # seconds between speed samples beyond which nothing is integrated
PENALTIES = {"driving.harsh_braking": 10, "driving.harsh_acceleration": 5}
SPEEDING_SECONDS = 5.0
NIGHT_SECONDS = 360.0
COUNTED = ("driving.harsh_braking", "driving.harsh_acceleration", "driving.speeding")


@dataclass
class Trip:
    """An open trip; saved in the state file so that a restart continues it."""

    start: float
    how: str  # "ignition" or "moving"
    last: float  # the latest sample seen during the trip
    distance: float = 0.0  # km integrated from the speed
    odometer_first: float | None = None
    odometer_last: float | None = None
    idle: float = 0.0  # seconds at a standstill, stops that ended
    stopped_since: float | None = None  # at a standstill since then
    speed: float | None = None  # the latest speed, km/h
    speed_ts: float | None = None
    top_speed: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    speeding: float = 0.0  # seconds of the speeding episodes

    def moving(self, ts: float, kmh: float) -> None:
        """A speed sample: distance, idle time, top speed."""
        if self.speed is not None and self.speed_ts is not None:
            dt = ts - self.speed_ts
            if 0.0 < dt <= MAX_INTEGRATION_GAP:
                self.distance += (self.speed + kmh) / 2.0 * dt / 3600.0
        if ts >= (self.speed_ts or ts):
            self.speed, self.speed_ts = kmh, ts
        self.top_speed = max(self.top_speed, kmh)
        if kmh > MOVING:
            if self.stopped_since is not None:
                self.idle += max(0.0, ts - self.stopped_since)
                self.stopped_since = None
        elif self.stopped_since is None:
            self.stopped_since = ts

    def odometer(self, km: float) -> None:
        if self.odometer_first is None:
            self.odometer_first = km
        self.odometer_last = km

    def count(self, kind: str, duration: float) -> None:
        if kind in COUNTED:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "driving.speeding":
            self.speeding += duration

    @property
    def km(self) -> float:
        first, last = self.odometer_first, self.odometer_last
        if first is not None and last is not None and last > first:
            return last - first
        return self.distance

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Trip:
        """A saved trip; TypeError or ValueError when it is not one."""
        if not isinstance(data, dict):
            raise TypeError("a trip is a JSON object")
        trip = cls(**data)
        for name in ("start", "last", "distance", "idle", "top_speed", "speeding"):
            if isinstance(getattr(trip, name), bool) or not isinstance(getattr(trip, name),
                                                                      int | float):
                raise TypeError(f"trip.{name} is not a number")
        if trip.how not in ("ignition", "moving") or not isinstance(trip.counts, dict):
            raise ValueError("not a trip")
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in trip.counts.items()):
            raise ValueError("trip.counts is not a table of counts")
        for name in ("odometer_first", "odometer_last", "stopped_since", "speed", "speed_ts"):
            value = getattr(trip, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise TypeError(f"trip.{name} is not a number")
        return trip


def score(trip: Trip, night: float) -> int:
    """The trip's score (see the module's docstring)."""
    penalty = sum(PENALTIES[kind] * trip.counts.get(kind, 0) for kind in PENALTIES)
    penalty += int(trip.speeding // SPEEDING_SECONDS) + int(night // NIGHT_SECONDS)
    return max(0, 100 - penalty)


def summary(trip: Trip, end: float, why: str, night: float) -> str:
    """``trip ended (ignition off): 12.4 km in 23 min 40 s, idle 4 min 10 s; harsh
    braking 1, harsh acceleration 0, speeding 1, night 0 min; score 85/100``."""
    counts = trip.counts
    return (f"trip ended ({why}): {wording.km(trip.km)} in "
            f"{wording.duration(end - trip.start)}, idle {wording.duration(trip.idle)}; "
            f"harsh braking {counts.get('driving.harsh_braking', 0)}, harsh acceleration "
            f"{counts.get('driving.harsh_acceleration', 0)}, speeding "
            f"{counts.get('driving.speeding', 0)}, night {wording.minutes(night)}; "
            f"score {score(trip, night)}/100")
