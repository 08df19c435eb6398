"""Readiness monitors: what PID 01 of mode 01 says about the emission self-tests.

The four data bytes ``A B C D`` (SAE J1979):

* A: bit 7 the MIL (check engine lamp) is on; bits 0-6 the number of stored
  emission-related DTCs;
* B: the three continuous monitors. Bits 0-2: misfire, fuel system, components
  are *supported*; bits 4-6: the same three are *incomplete* (bit set: not yet
  complete). Bit 3: 0 spark ignition, 1 compression ignition (diesel), which
  decides what C and D mean;
* C: which non-continuous monitors are supported, one bit each;
* D: the same bits, set while that monitor is *incomplete*.

C and D bit by bit, spark ignition: 0 catalyst, 1 heated catalyst, 2 evaporative
system, 3 secondary air system, 4 A/C refrigerant (since dropped from J1979, kept
for older vehicles), 5 oxygen sensor, 6 oxygen sensor heater, 7 EGR and/or VVT
system. Compression ignition: 0 NMHC catalyst, 1 NOx/SCR aftertreatment,
3 boost pressure, 5 exhaust gas sensor, 6 PM filter, 7 EGR and/or VVT system
(bits 2 and 4 reserved).
"""

from __future__ import annotations

from dataclasses import dataclass

CONTINUOUS = ("misfire", "fuel system", "components")
SPARK = ("catalyst", "heated catalyst", "evaporative system", "secondary air system",
         "A/C refrigerant", "oxygen sensor", "oxygen sensor heater", "EGR/VVT system")
COMPRESSION: tuple[str | None, ...] = (
    "NMHC catalyst", "NOx/SCR aftertreatment", None, "boost pressure", None,
    "exhaust gas sensor", "PM filter", "EGR/VVT system")


@dataclass(frozen=True)
class Monitor:
    """One self-test. ``complete`` is True only for a supported monitor that has run
    to completion since the codes were cleared (an unsupported one is never complete)."""

    name: str
    supported: bool
    complete: bool


@dataclass(frozen=True)
class Readiness:
    """The state of PID 01: the MIL, how many DTCs are stored, and every monitor."""

    mil: bool
    dtc_count: int
    compression: bool
    monitors: tuple[Monitor, ...]

    def incomplete(self) -> list[str]:
        """The names of the supported monitors that have not completed (in bit order)."""
        return [m.name for m in self.monitors if m.supported and not m.complete]


def _monitor(name: str, supported_bits: int, incomplete_bits: int, bit: int,
             incomplete_bit: int) -> Monitor:
    supported = bool(supported_bits & (1 << bit))
    return Monitor(name, supported, supported and not incomplete_bits & (1 << incomplete_bit))


def decode_readiness(data: bytes) -> Readiness:
    """The readiness of the four data bytes of PID 01 (not the ``41 01`` before them)."""
    if len(data) != 4:
        raise ValueError(f"PID 01 (monitor status) carries 4 data bytes, got {len(data)}: "
                         f"{data.hex(' ') or '(none)'}")
    a, b, c, d = data
    compression = bool(b & 0x08)
    monitors = [_monitor(name, b, b, bit, bit + 4) for bit, name in enumerate(CONTINUOUS)]
    names = COMPRESSION if compression else SPARK
    monitors += [_monitor(name, c, d, bit, bit)
                 for bit, name in enumerate(names) if name is not None]
    return Readiness(mil=bool(a & 0x80), dtc_count=a & 0x7F, compression=compression,
                     monitors=tuple(monitors))
