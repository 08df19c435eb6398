"""What the insights keep across restarts: ``insights.json`` in the state directory.

The open trip (so that a restart mid-trip continues it), the odometer (or the
distance integrated since the last service when there is none), since when
the engine is off, and the battery's per-day readings. Written atomically
(:func:`agent.atomic_file.write_atomically`); read tolerantly: a missing file
is a first start, a corrupt or unreadable one is logged and the insights
start afresh (never a crash: a trip summary is not worth a service down).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.atomic_file import write_atomically
from agent.insights.trips import Trip

log = logging.getLogger(__name__)

STATE_FILE = "insights.json"
VERSION = 1
MAX_STATE_BYTES = 1024 * 1024  # a larger file is not one the insights wrote


@dataclass
class Saved:
    trip: Trip | None = None
    last_ts: float | None = None  # the latest sample seen
    odometer: float | None = None  # km, the vehicle's own reading
    estimate: tuple[float, float] | None = None  # (last_service_km, km integrated since)
    off_since: float | None = None  # the engine is off since then (None: running/unknown)
    days: dict[str, dict[str, float]] = field(default_factory=dict)  # battery, per day
    rest_read_for: float | None = None  # the engine stop whose rest voltage was read

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "trip": None if self.trip is None else self.trip.to_json(),
            "last_ts": self.last_ts,
            "odometer": self.odometer,
            "estimate": None if self.estimate is None else list(self.estimate),
            "off_since": self.off_since,
            "battery": {"days": self.days, "rest_read_for": self.rest_read_for},
        }


def load_state(path: Path) -> Saved:
    """The saved state, or a fresh one (see the module's docstring)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return Saved()
    except OSError as exc:
        log.warning("%s: unreadable, the insights start afresh: %s", path, exc.strerror or exc)
        return Saved()
    try:
        if len(data) > MAX_STATE_BYTES:
            raise ValueError(f"over {MAX_STATE_BYTES} bytes")
        return _parse(json.loads(data.decode("utf-8"), parse_constant=_no_constant))
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        log.warning("%s: corrupt (%s), the insights start afresh", path, exc)
        return Saved()


def save_state(path: Path, saved: Saved) -> None:
    """Write the state atomically; OSError when it cannot be written."""
    text = json.dumps(saved.to_json(), sort_keys=True, allow_nan=False)
    write_atomically(path, [text.encode("utf-8")], temp_prefix=".insights-")


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} is not a number")
    return float(value)


def _number(value: Any, name: str) -> float | None:
    return None if value is None else _float(value, name)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(data: Any) -> Saved:
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"not an insights state of version {VERSION}")
    estimate = data["estimate"]
    if estimate is not None:
        if not isinstance(estimate, list) or len(estimate) != 2:
            raise TypeError("estimate is not a pair")
        estimate = (_float(estimate[0], "estimate"), _float(estimate[1], "estimate"))
    battery = data["battery"]
    days = battery["days"]
    if not isinstance(days, dict):
        raise TypeError("battery.days is not a table")
    clean: dict[str, dict[str, float]] = {}
    for day, values in days.items():
        if not isinstance(values, dict) or not set(values) <= {"rest", "crank"}:
            raise TypeError(f"battery.days.{day} is not a reading")
        clean[str(day)] = {k: _float(v, k) for k, v in values.items()}
    trip = data["trip"]
    return Saved(
        trip=None if trip is None else Trip.from_json(trip),
        last_ts=_number(data["last_ts"], "last_ts"),
        odometer=_number(data["odometer"], "odometer"),
        estimate=estimate,
        off_since=_number(data["off_since"], "off_since"),
        days=clean,
        rest_read_for=_number(battery["rest_read_for"], "rest_read_for"),
    )
