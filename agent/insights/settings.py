"""The ``[insights]`` settings: which signals the box reads, and its thresholds.

Every default says where it comes from in ``docs/insights.md``. The signal
keys are lists of globs (:mod:`agent.globs`: ``Message.Signal``, or the
signal name alone); the first glob list that matches a signal gives its role,
in the order of :data:`ROLES`. The lead's :mod:`agent.config` calls
:func:`read_insights` for the ``[insights]`` table; each problem is reported
under its key (``insights.speed_limit: must be from 5 to 400, got 0``), and
unknown keys are errors like everywhere in the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.ranges import DAY, Range, show

MAX_GLOBS = 100  # per role

# role -> its glob key of the table (the roles a signal can play, first match wins)
ROLES = ("speed", "acceleration", "odometer", "ignition", "battery_voltage", "coolant",
         "speed_limit_signal")


@dataclass(frozen=True)
class InsightsConfig:
    """What the box works out itself (:mod:`agent.insights`); units in the names."""

    enabled: bool = True
    # signal globs, one list per role
    speed: tuple[str, ...] = ("*.VehicleSpeed", "OBD.VEHICLE_SPEED")
    acceleration: tuple[str, ...] = ("*.LongitudinalAccel",)
    odometer: tuple[str, ...] = ("*.Odometer", "OBD.ODOMETER")
    ignition: tuple[str, ...] = ("*.IgnitionState",)
    battery_voltage: tuple[str, ...] = ("*.BatteryVoltage", "OBD.CONTROL_MODULE_VOLTAGE")
    coolant: tuple[str, ...] = ("*.CoolantTemp", "OBD.COOLANT_TEMPERATURE")
    speed_limit_signal: tuple[str, ...] = ("*.SpeedLimit",)
    # driving
    harsh_braking: float = 3.13  # m/s^2 (0.32 g, 7 mph/s)
    harsh_acceleration: float = 3.13  # m/s^2
    harsh_min_s: float = 0.5  # sustained at least this long
    harsh_min_speed: float = 10.0  # km/h: below it, nothing is harsh
    speed_limit: float = 130.0  # km/h, when no per-road limit is known
    speeding_min_s: float = 10.0
    night: str = "23:00-05:00"  # local time
    timezone: str = ""  # IANA name; "": the system's local time
    # trips
    stopped_end_s: float = 300.0  # a trip ends after this long at a standstill
    bus_quiet_s: float = 60.0  # ... or this long without a sample
    # service
    service_interval_km: float | None = 15_000.0  # None: no reminder by distance
    service_interval_days: int | None = 365  # None: no reminder by time
    last_service_km: float | None = None
    last_service_date: dt.date | None = None
    service_warn_km: float = 1_000.0
    service_warn_days: int = 30
    # battery
    battery_rest_v: float = 12.2  # about 50 % charge for a lead-acid battery
    battery_rest_after_s: float = 60.0  # engine off this long before a rest reading
    battery_crank_v: float = 9.6  # the classic load-test limit
    battery_trend_days: int = 7
    # coolant
    coolant_max: float = 110.0  # degC
    coolant_min_s: float = 5.0
    coolant_recover: float = 105.0  # degC: the episode ends below this

    @property
    def night_window(self) -> tuple[int, int]:
        """The night window as minutes after midnight (start, end); wraps past midnight
        when start > end."""
        window = parse_window(self.night)
        assert window is not None, self.night  # read_insights checked it
        return window

    @property
    def zone(self) -> dt.tzinfo | None:
        """The time zone of the night window and of the days (None: the system's)."""
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else None


# the range of every number of [insights] (docs/config.md and docs/insights.md list them)
RANGES: dict[str, Range] = {
    "harsh_braking": Range(0.5, 20),
    "harsh_acceleration": Range(0.5, 20),
    "harsh_min_s": Range(0, 10),
    "harsh_min_speed": Range(0, 300),
    "speed_limit": Range(5, 400),
    "speeding_min_s": Range(0, 3_600),
    "stopped_end_s": Range(10, DAY),
    "bus_quiet_s": Range(1, 3_600),
    "service_interval_km": Range(100, 1_000_000),
    "service_interval_days": Range(1, 3_650),
    "last_service_km": Range(0, 10_000_000),
    "service_warn_km": Range(0, 100_000),
    "service_warn_days": Range(0, 3_650),
    "battery_rest_v": Range(6, 16),
    "battery_rest_after_s": Range(0, DAY),
    "battery_crank_v": Range(3, 16),
    "battery_trend_days": Range(2, 366),
    "coolant_max": Range(50, 200),
    "coolant_min_s": Range(0, 3_600),
    "coolant_recover": Range(0, 200),
}
INTEGERS = frozenset({"service_interval_days", "service_warn_days", "battery_trend_days"})
OPTIONAL = frozenset({"service_interval_km", "service_interval_days"})  # false: none


def parse_window(text: str) -> tuple[int, int] | None:
    """``"23:00-05:00"`` -> (1380, 300) minutes after midnight; None when malformed or
    empty (start equal to end)."""
    parts = text.split("-")
    if len(parts) != 2:
        return None
    minutes = []
    for part in parts:
        hh, sep, mm = part.strip().partition(":")
        if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2 or len(hh) > 2:
            return None
        h, m = int(hh), int(mm)
        if h > 24 or m > 59 or (h == 24 and m):
            return None
        minutes.append(h * 60 + m)
    start, end = minutes[0] % 1440, minutes[1] % 1440
    return None if start == end else (start, end)


def read_insights(raw: Any, problem: Callable[[str, str], None], key: str = "insights"
                  ) -> InsightsConfig:
    """The ``[insights]`` table ``raw`` as an InsightsConfig; every bad key is reported
    through ``problem(key, message)`` and left at its default."""
    if not isinstance(raw, dict):
        problem(key, f"expected a table, got {_kind(raw)}")
        return InsightsConfig()
    fields = {f.name: f for f in dataclasses.fields(InsightsConfig)}
    values: dict[str, Any] = {}
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(str(name), sorted(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problem(f"{key}.{name}", f"unknown key{hint}")
    for name, value in raw.items():
        if name not in fields:
            continue
        here = f"{key}.{name}"
        checked = _value(name, value, here, problem)
        if checked is not _BAD:
            values[name] = checked
    config = InsightsConfig(**values)
    if config.coolant_recover >= config.coolant_max and (
            "coolant_recover" in values or "coolant_max" in values):
        problem(f"{key}.coolant_recover", f"must be below coolant_max "
                                          f"({show(config.coolant_max)}), got "
                                          f"{show(config.coolant_recover)}")
        config = dataclasses.replace(config, coolant_recover=InsightsConfig.coolant_recover,
                                     coolant_max=InsightsConfig.coolant_max)
    return config


_BAD = object()


def _value(name: str, value: Any, here: str, problem: Callable[[str, str], None]) -> Any:
    """``value`` checked for field ``name``, or _BAD (reported)."""
    if name == "enabled":
        if not isinstance(value, bool):
            problem(here, f"expected true or false, got {_kind(value)}")
            return _BAD
        return value
    if name in ROLES:
        return _globs(value, here, problem)
    if name == "night":
        if not isinstance(value, str) or parse_window(value) is None:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            problem(here, f"expected a local time window \"HH:MM-HH:MM\" (e.g. "
                          f"\"23:00-05:00\"), got {shown}")
            return _BAD
        return value
    if name == "timezone":
        return _zone(value, here, problem)
    if name == "last_service_date":
        return _date(value, here, problem)
    if value is False and name in OPTIONAL:
        return None
    integer = name in INTEGERS
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        what = "an integer" if integer else "a number"
        if name in OPTIONAL:
            what += " or false"
        problem(here, f"expected {what}, got {_kind(value)}")
        return _BAD
    allowed = RANGES.get(name)
    if allowed is not None:
        bad = allowed.problem(value)
        if bad is not None:
            problem(here, bad)
            return _BAD
    return value if integer else float(value)


def _globs(value: Any, here: str, problem: Callable[[str, str], None]) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        problem(here, f"expected a list of signal globs, got {_kind(value)}")
        return _BAD
    if len(items) > MAX_GLOBS:
        problem(here, f"at most {MAX_GLOBS} globs, got {show(len(items))}")
        return _BAD
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item or "\x00" in item:
            shown = repr(item) if isinstance(item, str) else _kind(item)
            problem(f"{here}[{i}]", f"expected a signal glob, got {shown}")
            return _BAD
    return tuple(items)


def _zone(value: Any, here: str, problem: Callable[[str, str], None]) -> Any:
    if not isinstance(value, str):
        problem(here, f"expected a time zone name (\"Europe/Paris\"), got {_kind(value)}")
        return _BAD
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            problem(here, f"unknown time zone {value!r} (an IANA name such as "
                          f"\"Europe/Paris\", or \"\" for the system's)")
            return _BAD
    return value


def _date(value: Any, here: str, problem: Callable[[str, str], None]) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    shown = repr(value) if isinstance(value, str) else _kind(value)
    problem(here, f"expected a date (2026-03-01), got {shown}")
    return _BAD


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table", dt.datetime: "a date and time",
        dt.date: "a date", dt.time: "a time",
    }.get(type(value), type(value).__name__)
