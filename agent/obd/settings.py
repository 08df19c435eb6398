"""The settings of an OBD-II channel (``obd = true`` in a ``[[channels]]`` table).

Two kinds of adapter, chosen by the keys given:

* ``port``: an ELM327 (or clone) on a serial device, or a pyserial URL
  (``socket://192.168.0.10:35000`` for a Wi-Fi adapter); ``baudrate`` (absent:
  found by trying 38400, 9600, 115200, 500000) and ``protocol`` ("auto" or the
  ELM327's protocol number, "6" for ISO 15765-4 CAN 11-bit 500 kbit/s);
* ``interface`` and ``channel``: native OBD on a CAN interface python-can knows
  (``socketcan`` ``can0``), ``extended = true`` for 29-bit identifiers.

``pids`` maps PID names (or numbers, "0x0C") to their period in seconds
(0: as often as the adapter allows); ``dtc_interval``: seconds between two
reads of the trouble codes (stored, pending, permanent) and the readiness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.obd import pids as pid_table
from agent.ranges import DAY, Range

PERIOD = Range(0, DAY)
DTC_INTERVAL = Range(1, DAY)
BAUDRATE = Range(300, 4_000_000)
TIMEOUT = Range(0.01, 60)
MAX_PIDS = 256
PROTOCOLS = ("auto", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C")

# what a channel without ``pids`` asks for: the engine's state, and what it burns
DEFAULT_PIDS: dict[int, float] = {
    0x0C: 1.0,  # engine speed
    0x0D: 1.0,  # vehicle speed
    0x04: 1.0,  # engine load
    0x11: 1.0,  # throttle position
    0x05: 10.0,  # coolant temperature
    0x2F: 30.0,  # fuel level
}


@dataclass(frozen=True)
class ObdSettings:
    """An OBD-II channel's adapter and what it asks for."""

    port: str | None = None  # ELM327: device or pyserial URL
    baudrate: int | None = None  # None: detected
    protocol: str = "auto"
    interface: str | None = None  # native: python-can interface and channel
    channel: str | None = None
    extended: bool = False  # native: 29-bit identifiers
    pids: tuple[tuple[int, float], ...] = tuple(DEFAULT_PIDS.items())
    dtc_interval: float = 300.0
    timeout: float | None = None  # seconds for one request's replies (None: the adapter's)

    @property
    def adapter(self) -> str:
        """``elm327`` or ``can``."""
        return "elm327" if self.port is not None else "can"

    @property
    def where(self) -> str:
        if self.port is not None:
            return self.port
        return f"{self.interface} {self.channel}"


def parse_pids(value: Any, key: str, problem: Callable[[str, str], None]
               ) -> tuple[tuple[int, float], ...] | None:
    """``pids = {ENGINE_RPM = 1.0, "0x0D" = 0.5}``, each problem reported with its key."""
    if not isinstance(value, Mapping) or not value:
        problem(key, "expected a table of PID names and periods in seconds, e.g. "
                     "{ENGINE_RPM = 1.0, VEHICLE_SPEED = 1.0}")
        return None
    if len(value) > MAX_PIDS:
        problem(key, f"at most {MAX_PIDS} PIDs, got {len(value)}")
        return None
    out: dict[int, float] = {}
    for name, period in value.items():
        pkey = f"{key}.{name}"
        try:
            pid = pid_table.lookup(str(name))
        except KeyError as exc:
            problem(pkey, str(exc.args[0]) if exc.args else f"unknown PID {name!r}")
            continue
        if not pid.fields:
            problem(pkey, f"PID {pid.number:02X} ({pid.name}) says which PIDs exist: "
                          "it is read on its own")
            continue
        if isinstance(period, bool) or not isinstance(period, int | float):
            problem(pkey, f"expected a period in seconds, got {type(period).__name__}")
            continue
        bad = PERIOD.problem(period)
        if bad is not None:
            problem(pkey, bad)
            continue
        if pid.number in out:
            problem(pkey, f"PID {pid.number:02X} ({pid.name}) is listed twice")
            continue
        out[pid.number] = float(period)
    return tuple(out.items())
