"""What the simulated vehicle's OBD-II ECUs answer (SAE J1979), without any bus.

The bus side, ISO-TP included, is :mod:`agent.sources.simulator.obd_ecu`.

Two ECUs, as on a real car (ISO 15765-4, 500 kbit/s)::

    ECU            11-bit request / reply    29-bit request / reply
    engine         0x7E0 / 0x7E8             0x18DA10F1 / 0x18DAF110
    transmission   0x7E1 / 0x7E9             0x18DA18F1 / 0x18DAF118
    both answer functional requests on 0x7DF (29-bit: 0x18DB33F1)

They answer for the demo vehicle's state: the simulator's own
:class:`~agent.sources.simulator.vehicle.VehicleModel` (same seed, same drive
plan), stepped to the vehicle time ``t0 + (clock() - created) * speed``. Its
noise comes from its own ``random.Random(seed)``, so the values follow the same
drive as ``bavard simulate`` but are not bit-identical to the DBC frames'.

Services:

* 01 current data: the PIDs of :data:`ENGINE_PIDS` / :data:`TRANSMISSION_PIDS`,
  the supported-PID bitmaps (00, 20, 40, ...) and 01 (MIL, confirmed DTC count,
  readiness monitors); up to 6 PIDs in one request, answered in one reply
  (multi-frame when longer than 7 bytes);
* 02 freeze frame (frame 0 only): PID 02 is the DTC that stored it (0000 when
  none), the PIDs of :data:`FREEZE_PIDS` their values at that moment; up to 3
  (PID, frame) pairs a request;
* 03 / 07 / 0A stored, pending, permanent DTCs, with the ISO 15765-4 count byte;
* 04 clear: stored and pending DTCs, the freeze frame, the MIL; the readiness
  monitors read "incomplete" for :data:`READINESS_AFTER_CLEAR` s of vehicle
  time; permanent DTCs stay (an ECU erases those itself once its monitor passes);
* 09 00 bitmap, 09 02 VIN (engine only: 49 02 01 + 17 characters, multi-frame),
  09 0A ECU name (20 bytes, NUL padded).

The trouble code: **P0500** (vehicle speed sensor "A"). In each drive cycle's
harsh brake the wheels lock until ABS steps in and the speed signal drops
implausibly fast: the engine ECU sets P0500 *pending* when ABS first engages
(about 1.3 s into the brake, 205.1 s into the default 300 s cycle), then
*confirmed* (stored, MIL on, freeze frame taken, permanent) when the harsh brake
ends (208.3 s). :func:`harsh_brake` gives the brake's start and end for any cycle
length. A clear before the next cycle's harsh brake lets it come back then.

What a real ECU does with what it does not support, and so does this one: a
functional request is left unanswered (J1979: no reply, so that the ECUs that do
support it are not drowned out); a physical one gets a negative response,
``7F <service> 11`` for an unknown service, ``7F <service> 12`` for PIDs it has
none of. With the ignition off (the last 70 s of each drive cycle) no ECU
answers anything, as on a car whose key is out.

The replies are encoded here, by this module's own tables, never by
``agent.obd``: a test that decodes them with ``agent.obd`` checks the decoder
against an independent encoder. :meth:`Ecu.state` (``SimulatedEcus.state()`` on
the bus side) is the ground truth: the physical values a correct decoder gets
from the answers right now.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from agent.sources.simulator.plan import DEFAULT_CYCLE_LENGTH, IGN_OFF, RUN, drive_plan
from agent.sources.simulator.vehicle import STEP_US, VehicleModel

log = logging.getLogger(__name__)

#: the default VIN: valid (check digit 9, model year T = 2026) and it begins with
#: ``1`` and ends with ``0012``: python-obd 0.7.3 strips it to ``BAVARD29TD``
DEFAULT_VIN = "1BAVARD29TD100012"
VIN_ALPHABET = frozenset("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")  # no I, O, Q

ENGINE_REPLY, TRANSMISSION_REPLY = 0x7E8, 0x7E9  # 11-bit reply ids: the keys of state()
FUNCTIONAL_11, FUNCTIONAL_29 = 0x7DF, 0x18DB33F1
ADDRESSES_29 = (0x10, 0x18)  # 29-bit ECU addresses: engine, transmission

DTC = "P0500"  # vehicle speed sensor "A": see the module docstring
READINESS_AFTER_CLEAR = 120.0  # vehicle seconds the monitors read incomplete after a clear
PADDING = 0xAA

_STEP = STEP_US / 1e6
_MAX_CATCH_UP = 3600.0  # vehicle seconds stepped at most per call (a clock that jumps far)


class _Pid(NamedTuple):
    """One mode 01 PID: ``raw = round((value - offset) * div / mul)`` in ``size`` bytes."""

    size: int
    mul: int
    div: int
    offset: int
    value: Callable[[Vehicle], float]


def _signal(name: str) -> Callable[[Vehicle], float]:
    return lambda vehicle: vehicle.model.values[name]


_PERCENT = (100, 255)
ENGINE_PIDS: dict[int, _Pid] = {
    0x04: _Pid(1, *_PERCENT, 0, _signal("EngineLoad")),  # calculated engine load, %
    0x05: _Pid(1, 1, 1, -40, _signal("CoolantTemp")),  # degC
    0x0C: _Pid(2, 1, 4, 0, _signal("EngineSpeed")),  # rpm
    0x0D: _Pid(1, 1, 1, 0, _signal("VehicleSpeed")),  # km/h
    0x0F: _Pid(1, 1, 1, -40, _signal("IntakeAirTemp")),  # degC
    0x11: _Pid(1, *_PERCENT, 0, _signal("AccelPedalPosition")),  # throttle (drive by wire), %
    0x1F: _Pid(2, 1, 1, 0, lambda vehicle: vehicle.run_time),  # s since engine start
    0x2F: _Pid(1, *_PERCENT, 0, _signal("FuelLevel")),  # %
    0x33: _Pid(1, 1, 1, 0, _signal("BarometricPressure")),  # kPa
    0x42: _Pid(2, 1, 1000, 0, _signal("BatteryVoltage")),  # control module voltage, V
    0x46: _Pid(1, 1, 1, -40, _signal("OutsideTemp")),  # ambient air, degC
    0x5C: _Pid(1, 1, 1, -40, _signal("EngineOilTemp")),  # degC
    0x5E: _Pid(2, 1, 20, 0, _signal("FuelRate")),  # L/h
    0xA6: _Pid(4, 1, 10, 0, _signal("Odometer")),  # km
}
TRANSMISSION_PIDS: dict[int, _Pid] = {0x0D: ENGINE_PIDS[0x0D]}
FREEZE_PIDS = (0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x11, 0x1F)  # what the freeze frame holds

# 01 01, bytes B..D: spark ignition; misfire, fuel system, components monitored (B);
# catalyst, evaporative system, O2 sensor, O2 heater supported (C); D: which are incomplete
_MONITORS_B, _MONITORS_C = 0x07, 0x65


def _raw(pid: _Pid, value: float) -> int:
    raw = math.floor((value - pid.offset) * pid.div / pid.mul + 0.5)
    return min(max(raw, 0), (1 << (8 * pid.size)) - 1)


def _physical(pid: _Pid, raw: int) -> float:
    return raw * pid.mul / pid.div + pid.offset


def encode_pid(pid: int, value: float, table: dict[int, _Pid] = ENGINE_PIDS) -> bytes:
    """The data bytes of mode 01 ``pid`` for a physical value (no service nor PID byte)."""
    spec = table[pid]
    return _raw(spec, value).to_bytes(spec.size, "big")


def bitmap(supported: Iterable[int], base: int) -> bytes:
    """The 4-byte bitmap "PIDs supported [base+1, base+32]" (bit 31 = base+1).

    ``supported`` holds data PIDs; the range PIDs (0x20, 0x40, ...) are added here:
    each is supported when some PID above it is."""
    pids = set(supported)
    top = max(pids, default=0)
    pids.update(range(0x20, top, 0x20))
    bits = sum(1 << (32 - (p - base)) for p in pids if base < p <= base + 32)
    return bits.to_bytes(4, "big")


def _ranges(supported: Iterable[int]) -> set[int]:
    """The range PIDs (00, 20, ...) an ECU answers: 00, and each one its bitmap chain reaches."""
    top = max(supported, default=0)
    return set(range(0, top, 0x20)) | {0}


def dtc_bytes(code: str) -> bytes:
    """SAE J2012 ``P0500`` -> ``b"\\x05\\x00"``: 2 bits system, then 14 bits of digits."""
    system = "PCBU".index(code[0])
    return bytes([system << 6 | int(code[1], 16) << 4 | int(code[2], 16), int(code[3:5], 16)])


def harsh_brake(cycle_length: float = DEFAULT_CYCLE_LENGTH) -> tuple[float, float]:
    """(start, end) of the drive cycle's harsh brake, vehicle seconds from the cycle's start.

    P0500 turns pending inside it (when ABS engages) and is stored at its end."""
    phases, _ = drive_plan(cycle_length)
    brake = next(p for p in phases if p.label == "harsh_brake")
    return brake.start, brake.end


@dataclass(frozen=True)
class EcuState:
    """What one ECU answers right now, as physical values (the ground truth)."""

    name: str  # the 09 0A name
    pids: dict[int, float]  # mode 01 PID -> value, quantised as answered
    mil: bool
    monitors: bytes  # the 4 bytes of 01 01
    stored: tuple[str, ...]  # mode 03
    pending: tuple[str, ...]  # mode 07
    permanent: tuple[str, ...]  # mode 0A
    freeze_dtc: str | None  # mode 02 PID 02
    freeze_frame: dict[int, float]  # mode 02 PID -> value ({} when none stored)
    vin: str | None  # 09 02 (the engine only)
    ignition: bool  # False: the ECU answers nothing


class Vehicle:
    """The model, stepped forward only, plus what the ECUs keep: run time, DTCs, freeze frame."""

    def __init__(self, seed: int, cycle_length: float) -> None:
        self.model = VehicleModel(random.Random(seed), cycle_length)
        self.run_time: float = 0.0
        self.pending: list[str] = []
        self.stored: list[str] = []
        self.permanent: list[str] = []
        self.freeze: dict[int, bytes] = {}  # PID -> data bytes, when a DTC stored it
        self.freeze_dtc: str | None = None
        self.cleared_at: float | None = None
        self._braking = False
        self._lagging = False

    def advance(self, t: float) -> None:
        """Step the model up to vehicle time ``t`` (never back)."""
        model = self.model
        steps = min(int((t - model.t) / _STEP + 1e-9), int(_MAX_CATCH_UP / _STEP))
        if steps * _STEP < t - model.t - _STEP and not self._lagging:
            self._lagging = True
            log.warning("simulated ECU: the clock jumped %.0f s ahead; catching up in steps",
                        t - model.t)
        for _ in range(max(0, steps)):
            model.step()
            self._after_step()

    def _after_step(self) -> None:
        model = self.model
        self.run_time = self.run_time + _STEP if model.phase.engine == RUN else 0.0
        if model.phase.label == "harsh_brake":
            self._braking = True
            if model.values["ABSActive"] and DTC not in self.pending:
                self.pending.append(DTC)
        elif self._braking:  # the harsh brake just ended: the fault is confirmed
            self._braking = False
            if DTC not in self.pending:
                self.pending.append(DTC)
            if DTC not in self.stored:
                self.stored.append(DTC)
            if DTC not in self.permanent:
                self.permanent.append(DTC)
            if self.freeze_dtc is None:
                self.freeze_dtc = DTC
                self.freeze = {p: encode_pid(p, ENGINE_PIDS[p].value(self)) for p in FREEZE_PIDS}

    def clear(self) -> None:
        self.pending.clear()
        self.stored.clear()
        self.freeze.clear()
        self.freeze_dtc = None
        self.cleared_at = self.model.t

    @property
    def ignition(self) -> bool:
        return self.model.phase.ignition != IGN_OFF

    def incomplete(self) -> int:
        """01 01 byte D: every supported monitor incomplete for a while after a clear."""
        recent = self.cleared_at is not None and (
            self.model.t - self.cleared_at < READINESS_AFTER_CLEAR)
        return _MONITORS_C if recent else 0x00


class Ecu:
    """One ECU's services on the shared :class:`Vehicle`: payload in, reply out (or None)."""

    def __init__(self, name: str, vehicle: Vehicle, pids: dict[int, _Pid],
                 vin: str | None, emissions: bool) -> None:
        self.name = name
        self.vehicle = vehicle
        self.pids = pids
        self.vin = vin
        self.emissions = emissions  # the engine: monitors, DTCs, freeze frame
        self.mode01 = set(pids) | {0x01}
        self.mode01_ranges = _ranges(self.mode01)
        self.freeze_set = {0x02, *FREEZE_PIDS} if emissions else set()
        self.freeze_ranges = _ranges(self.freeze_set) if emissions else set()
        self.mode09 = {0x02, 0x0A} if vin else {0x0A}

    def answer(self, payload: bytes, functional: bool) -> bytes | None:
        """The reply to ``payload``; None for silence (see the module on what is answered)."""
        if not payload or not self.vehicle.ignition:
            return None
        service, args = payload[0], payload[1:]
        handler = {0x01: self._current, 0x02: self._freeze_frame, 0x03: self._dtcs,
                   0x04: self._clear, 0x07: self._dtcs, 0x09: self._vehicle_info,
                   0x0A: self._dtcs}.get(service)
        if handler is None:
            return None if functional else bytes([0x7F, service, 0x11])
        body = handler(service, args)
        if body is None:
            return None if functional else bytes([0x7F, service, 0x12])
        return bytes([service + 0x40]) + body

    def _pid_data(self, pid: int) -> bytes | None:
        if pid in self.mode01_ranges:
            return bitmap(self.mode01, pid)
        if pid == 0x01:
            return self.monitors()
        spec = self.pids.get(pid)
        return None if spec is None else _raw(spec, spec.value(self.vehicle)).to_bytes(
            spec.size, "big")

    def _current(self, service: int, args: bytes) -> bytes | None:
        if not 1 <= len(args) <= 6:
            return None
        out = b""
        for pid in args:
            data = self._pid_data(pid)
            if data is not None:
                out += bytes([pid]) + data
        return out or None

    def _freeze_frame(self, service: int, args: bytes) -> bytes | None:
        if not self.emissions or len(args) % 2 or not 2 <= len(args) <= 6:
            return None
        out = b""
        for pid, frame in zip(args[::2], args[1::2], strict=True):
            data: bytes | None = None
            if frame != 0:  # frame 0 is the only one kept
                pass
            elif pid in self.freeze_ranges:
                data = bitmap(self.freeze_set, pid)
            elif pid == 0x02:
                vehicle = self.vehicle
                data = dtc_bytes(vehicle.freeze_dtc) if vehicle.freeze_dtc else b"\x00\x00"
            else:
                data = self.vehicle.freeze.get(pid)
            if data is not None:
                out += bytes([pid, frame]) + data
        return out or None

    def _dtcs(self, service: int, args: bytes) -> bytes | None:
        if args:
            return None
        codes = self.codes(service)
        return bytes([len(codes)]) + b"".join(dtc_bytes(code) for code in codes)

    def codes(self, service: int) -> list[str]:
        if not self.emissions:
            return []
        vehicle = self.vehicle
        return {0x03: vehicle.stored, 0x07: vehicle.pending, 0x0A: vehicle.permanent}[service]

    def _clear(self, service: int, args: bytes) -> bytes | None:
        if args:
            return None
        if self.emissions:
            self.vehicle.clear()
        return b""

    def _vehicle_info(self, service: int, args: bytes) -> bytes | None:
        if len(args) != 1:
            return None
        pid = args[0]
        if pid == 0x00:
            return b"\x00" + bitmap(self.mode09, 0)
        if pid == 0x02 and self.vin:
            return b"\x02\x01" + self.vin.encode("ascii")
        if pid == 0x0A:
            return b"\x0a\x01" + self.name.encode("ascii").ljust(20, b"\x00")
        return None

    def monitors(self) -> bytes:
        if not self.emissions:
            return bytes(4)
        vehicle = self.vehicle
        stored = len(vehicle.stored)
        return bytes([(0x80 if stored else 0) | min(stored, 0x7F), _MONITORS_B, _MONITORS_C,
                      vehicle.incomplete()])

    def state(self) -> EcuState:
        vehicle = self.vehicle
        pids = {p: _physical(s, _raw(s, s.value(vehicle))) for p, s in self.pids.items()}
        freeze = {p: _physical(ENGINE_PIDS[p], int.from_bytes(data, "big"))
                  for p, data in vehicle.freeze.items()} if self.emissions else {}
        return EcuState(
            name=self.name, pids=pids, mil=bool(self.monitors()[0] & 0x80),
            monitors=self.monitors(), stored=tuple(self.codes(0x03)),
            pending=tuple(self.codes(0x07)), permanent=tuple(self.codes(0x0A)),
            freeze_dtc=vehicle.freeze_dtc if self.emissions else None, freeze_frame=freeze,
            vin=self.vin, ignition=vehicle.ignition)
