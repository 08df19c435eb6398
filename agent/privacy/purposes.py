"""Purposes: what each kind of recipient may receive (docs/privacy.md).

A purpose names a reason for data to leave the box: ``maintenance`` (the
garage of the owner's choice), ``insurance``, ``repair`` (an independent
repairer), ``fleet``, ``diagnostics`` (the technician at the box: local only,
never a destination's purpose), plus any the configuration names under
``[purposes.NAME]``. Each says which signals (``Message.Signal`` globs, as
``[selection]`` writes them), which event kinds (globs on the kind:
``dtc.*``) and whether the raw frames of ``mode = "raw"`` channels it may
receive, and the geohash precision of positions (0: no position at all).

The built-in defaults follow the EDPB's guidelines on connected vehicles
(01/2020): data minimisation per purpose. The garage and the repairer get the
signals, trouble codes, maintenance events and trip summaries; the insurer gets
driving events and trip summaries (scores), never a signal or a trace; a fleet
gets everything; nobody gets a position unless its ``geohash`` says so. A
``[purposes.NAME]`` table for a built-in purpose replaces only the keys it gives.
A ``[[signals]]`` rule with ``purposes = [...]`` overrides, for the signals it
matches, which purposes receive them.

Consent is separate (agent.privacy.consent): a purpose the owner did not grant
receives nothing, whatever it may receive.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace
from typing import Any

from agent.ranges import Range

MAINTENANCE, INSURANCE, REPAIR, FLEET, DIAGNOSTICS = (
    "maintenance", "insurance", "repair", "fleet", "diagnostics")
LOCAL_ONLY = frozenset({DIAGNOSTICS})  # never a destination's purpose
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_PURPOSES = 64

GEOHASH = Range(0, 12)  # characters; 0 = no position
ZONE = Range(0, 100_000)  # metres
POSITION_SIGNALS = frozenset({"latitude", "longitude"})  # any message, any case


@dataclass(frozen=True)
class Purpose:
    """What one purpose may receive."""

    name: str
    signals: tuple[str, ...] = ()  # Message.Signal globs
    events: tuple[str, ...] = ()  # event kind globs
    frames: bool = False  # the raw frames of mode = "raw" channels
    geohash: int = 0  # precision of positions; 0: none
    zone_min_m: float = 200.0  # privacy zones at each end of a trip: a radius drawn
    zone_max_m: float = 1000.0  # uniformly in [min, max] for each trip
    description: str = ""

    def event_allowed(self, kind: str) -> bool:
        return any(fnmatch.fnmatchcase(kind, glob) for glob in self.events)


_CARE = ("dtc.*", "obd.*", "maintenance.*", "trip.*")
BUILTIN: dict[str, Purpose] = {
    MAINTENANCE: Purpose(MAINTENANCE, ("*",), _CARE,
                         description="the garage of the owner's choice"),
    REPAIR: Purpose(REPAIR, ("*",), _CARE, frames=True,
                    description="an independent repairer"),
    INSURANCE: Purpose(INSURANCE, (), ("driving.*", "trip.*"),
                       description="driving events and trip summaries, not a trace"),
    FLEET: Purpose(FLEET, ("*",), ("*",), frames=True, description="the fleet's operator"),
    DIAGNOSTICS: Purpose(DIAGNOSTICS, ("*",), ("*",), frames=True,
                         description="the technician at the box (local only)"),
}
KEYS = frozenset({"signals", "events", "frames", "geohash", "zone_min_m", "zone_max_m",
                  "description"})


def purposes_of(config: Any) -> dict[str, Purpose]:
    """Every purpose a configuration knows, by name (the built-in ones first)."""
    out = dict(BUILTIN)
    out.update((p.name, p) for p in getattr(config, "purposes", ()))
    return out


def merge(name: str, values: dict[str, Any]) -> Purpose:
    """A purpose from its ``[purposes.NAME]`` keys, over the built-in one of that name."""
    base = BUILTIN.get(name, Purpose(name))
    return replace(base, **values)
