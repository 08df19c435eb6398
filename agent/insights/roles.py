"""Which samples the insights read, and in which units.

A signal plays a *role* (speed, acceleration, odometer...) when one of the
role's globs matches it (:class:`~agent.insights.settings.InsightsConfig`);
its value is converted to the role's unit (km/h, m/s², km, V, °C) from the
DBC's unit (``mph``, ``m/s``, ``g``, ``mi``, ``degF``...; an empty or unknown
unit is taken as the role's own).

One signal feeds a role at a time: a car with a CAN bus and an OBD adapter
reports its speed twice, slightly apart in time, and a derivative of the two
interleaved would be noise. The first signal seen keeps the role while it
keeps reporting; another takes over after :data:`TAKE_OVER` seconds of its
silence.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

from agent.frames import Sample
from agent.globs import GlobSet
from agent.insights.settings import ROLES, InsightsConfig

log = logging.getLogger(__name__)

TAKE_OVER = 5.0  # seconds of silence after which another signal takes a role
MAX_NAMES = 100_000  # signal names remembered (a bounded cache)

_Convert = Callable[[float], float]


def _scale(factor: float) -> _Convert:
    return lambda v: v * factor


_SAME: _Convert = float
_SPEED = {"km/h": _SAME, "kph": _SAME, "kmh": _SAME, "mph": _scale(1.609344),
          "m/s": _scale(3.6)}
_UNITS: dict[str, dict[str, _Convert]] = {
    "speed": _SPEED,
    "speed_limit_signal": _SPEED,
    "acceleration": {"m/s^2": _SAME, "m/s2": _SAME, "m/s²": _SAME, "m/s/s": _SAME,
                     "g": _scale(9.80665)},
    "odometer": {"km": _SAME, "mi": _scale(1.609344), "miles": _scale(1.609344),
                 "m": _scale(0.001)},
    "battery_voltage": {"v": _SAME, "mv": _scale(0.001)},
    "coolant": {"degc": _SAME, "°c": _SAME, "c": _SAME, "deg c": _SAME,
                "degf": lambda v: (v - 32.0) * 5.0 / 9.0,
                "°f": lambda v: (v - 32.0) * 5.0 / 9.0, "f": lambda v: (v - 32.0) * 5.0 / 9.0,
                "k": lambda v: v - 273.15},
    "ignition": {},
}


# ignition labels (DBC choices), lower case; without a known label, 0 is off
IGNITION_ON = frozenset({"run", "on", "crank", "start", "running", "cranking", "starting",
                         "ign_on", "ignition_on"})
IGNITION_OFF = frozenset({"off", "lock", "locked", "acc", "accessory", "ign_off",
                          "ignition_off", "sleep"})


def ignition_on(value: float, label: str | None) -> bool:
    """Whether an ignition sample says run (or crank): by its label, else non-zero."""
    if label is not None:
        word = label.strip().lower()
        if word in IGNITION_ON:
            return True
        if word in IGNITION_OFF:
            return False
    return value != 0


class Reading(NamedTuple):
    """One sample that plays a role, its value in the role's unit."""

    timestamp: float
    role: str
    value: float
    label: str | None


class Roles:
    """Picks the samples that play a role out of each chunk (see the module's docstring)."""

    def __init__(self, config: InsightsConfig) -> None:
        self._sets = [(role, GlobSet(getattr(config, role))) for role in ROLES]
        self._names: dict[tuple[str, str], str | None] = {}
        # message -> signal -> role: the chunk's first pass, without a tuple per sample
        self._by_message: dict[str, dict[str, str | None]] = {}
        # role -> (channel, message, signal) feeding it, and when it last did
        self._owner: dict[str, tuple[str, str, str]] = {}
        self._owner_ts: dict[str, float] = {}
        self._converters: dict[tuple[str, str], _Convert] = {}
        self._warned: set[tuple[str, str]] = set()

    def role(self, message: str, signal: str) -> str | None:
        """The role of ``message.signal``, or None."""
        key = (message, signal)
        names = self._names
        if key in names:
            return names[key]
        found = next((role for role, globs in self._sets if globs.matches(message, signal)),
                     None)
        if len(names) >= MAX_NAMES:
            names.clear()
            self._by_message.clear()
        names[key] = found
        self._by_message.setdefault(message, {})[signal] = found
        return found

    def owners(self) -> dict[str, str]:
        """``role -> "channel message.signal"`` of the signals feeding each role now."""
        return {role: f"{c} {m}.{s}" for role, (c, m, s) in self._owner.items()}

    def pick(self, samples: Iterable[Sample]) -> list[Reading]:
        """The chunk's readings, in the chunk's order."""
        out: list[Reading] = []
        names = self._names
        by_message = self._by_message
        # most samples play no role: one dictionary look-up each sets them aside (a
        # sample of a message or signal not seen yet goes on, to be looked at below)
        playing = [s for s in samples
                   if (m := by_message.get(s[2])) is None or m.get(s[3], s) is not None]
        for sample in playing:
            key = (sample[2], sample[3])
            role = names[key] if key in names else self.role(*key)
            if role is None:
                continue
            ts = sample[0]
            who = (sample[1], sample[2], sample[3])
            owner = self._owner.get(role)
            if owner != who:
                if owner is not None and ts - self._owner_ts[role] < TAKE_OVER:
                    continue
                if owner is not None:
                    log.info("insights: %s now read from %s.%s (channel %s)", role, who[1],
                             who[2], who[0])
                self._owner[role] = who
            self._owner_ts[role] = ts
            value = sample[4]
            if isinstance(value, float) and not math.isfinite(value):
                continue
            out.append(Reading(ts, role, self._convert(role, sample[5])(value), sample[6]))
        return out

    def _convert(self, role: str, unit: str) -> _Convert:
        key = (role, unit)
        found = self._converters.get(key)
        if found is None:
            table = _UNITS[role]
            found = table.get(unit.strip().lower()) if unit.strip() else _SAME
            if found is None:
                if role != "ignition" and key not in self._warned:
                    self._warned.add(key)
                    log.warning("insights: unknown unit %r for %s: taken as %s", unit, role,
                                next(iter(table), "is"))
                found = _SAME
            self._converters[key] = found
        return found
