"""Frame sources: live CAN buses, log replay, the simulated vehicle, OBD-II, GPS.

Implementations are found through a name-keyed registry and imported lazily,
so a missing optional dependency only fails when that source is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.sources.base import Source, SourceStats

# kind -> "module:Class"
REGISTRY: dict[str, str] = {
    "can": "agent.sources.can_bus:CanBusSource",
    "replay": "agent.sources.replay:ReplaySource",
    "simulator": "agent.sources.simulator:SimulatorSource",
    "obd": "agent.sources.obd:ObdSource",
    "gpsd": "agent.sources.gpsd:GpsdSource",
    "nmea": "agent.sources.nmea:NmeaSource",
}


def source_class(kind: str) -> type[Source]:
    """The Source class registered under ``kind``, imported on first use."""
    try:
        target = REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown source kind {kind!r} (known: {known})") from None
    module_name, _, class_name = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    return cls


__all__ = ["REGISTRY", "Source", "SourceStats", "source_class"]
