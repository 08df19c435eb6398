"""An OBD-II channel: PIDs polled on a schedule, trouble codes watched, the VIN read.

The source asks; the vehicle answers. Each ECU's mode 01 reply is handed on
as a frame (id: the ECU's reply id, data: the whole reply) that
agent.decode.obd turns into ``OBD.<PID name>`` samples, so the selection and
the rules work on them unchanged.

On each connection:

1. the adapter is opened (agent.obd.adapters: an ELM327 or a CAN interface);
2. the ECUs say which PIDs they support (01 00, 01 20, ...): a configured PID
   the engine ECU does not support is left out, with a warning;
3. the VIN (09 02) is read, whole; the service derives the vehicle's
   pseudonym from it (it never leaves the box);
4. the trouble codes (03 stored, 07 pending, 0A permanent) and the readiness
   (01 01: MIL, monitors) are read now and every ``dtc_interval`` seconds. A
   code that appears or clears is an event (``dtc.set``, ``dtc.cleared``,
   priority 3, uploaded first), so is the MIL going on or off (``obd.mil``);
   a new stored code also brings its freeze frame (``dtc.freeze_frame``). An
   ECU that does not answer clears nothing. The codes present are kept in
   ``memory`` (a file in the state directory): a restart announces only
   what changed meanwhile;
5. then the PIDs are polled (agent.obd.scheduler), several per request on CAN.
   A multi-PID request that gets no answer at all is asked again PID by PID;
   if those answer, this ECU takes one PID per request from then on.

Faults never end the source. An adapter that fails (unplugged, garbage, a
command it refuses) is closed and opened again with backoff (1 s doubling to
60 s); a vehicle that stops answering (ignition off: UNABLE TO CONNECT, or no
answer at all for ``SILENT_SECONDS``) is waited for the same way. Each such
stretch counts as a gap in ``stats`` (the service turns gaps into ``bus.down``
and ``bus.up`` events); :class:`ObdStats` counts the rest.

While the vehicle answers, the technician's ``bavard obd`` commands reach the
adapter through the service: :attr:`ObdSource.requests`
(agent.sources.obd_requests) runs them in this source's thread between two polls.

Time: ``clock`` (monotonic) schedules, ``wall`` stamps frames and events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.atomic_file import write_atomically
from agent.errors import ObdAdapterError, ObdError, ObdVehicleError
from agent.frames import Event, Frame
from agent.obd import dtc as dtcs
from agent.obd import pids as pid_table
from agent.obd.client import DTC_MODES, ObdClient, ecu_name, refused
from agent.obd.readiness import decode_readiness
from agent.obd.scheduler import PollScheduler
from agent.obd.settings import ObdSettings
from agent.obd.transport import (
    ENGINE_REPLIES,
    ENGINE_REQUEST,
    Reply,
    Transport,
    physical_request_id,
)
from agent.sources.base import Source
from agent.sources.obd_requests import RequestQueue

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds before opening the adapter again
BACKOFF_MAX = 60.0
SILENT_SECONDS = 5.0  # no answer at all for this long: the vehicle stopped answering
SILENT_REQUESTS = 3  # ... and at least this many requests in a row without one
LOW_VOLTAGE = 12.0  # below this at the OBD port, with no answer: the ignition is off
DTC_PRIORITY = 3
MIL_PRIORITY = 2

Opener = Callable[[ObdSettings], Transport]


@dataclass
class ObdStats:
    """What the OBD conversation cost and met."""

    connects: int = 0  # adapter opened and vehicle answering
    adapter_errors: int = 0  # adapter faults (reopened)
    vehicle_errors: int = 0  # vehicle not answering (waited for)
    dtc_reads: int = 0
    voltage: float | None = None  # the last battery voltage the adapter measured
    unsupported: list[str] = field(default_factory=list)  # configured PIDs left out


class ObdSource(Source):
    """PIDs, trouble codes and the VIN of one vehicle (see the module's docstring)."""

    polled = True

    def __init__(self, name: str, settings: ObdSettings, *, channel: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 opener: Opener | None = None,
                 backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
                 memory: Path | None = None) -> None:
        super().__init__(name)
        self.settings = settings
        self.channel = channel or name
        self.clock = clock
        self.wall = wall
        self.backoff = backoff
        self.obd = ObdStats()
        self._opener = opener
        self._transport: Transport | None = None
        self._lock = threading.Lock()  # the transport, between the reading thread and close()
        # (kind, ecu, code) known to be present, kept in ``memory`` across restarts
        self._memory = memory
        self._known_dtcs, self._mil = _recall(memory)
        self._gap_started: float | None = None
        self.scheduler: PollScheduler | None = None
        #: the technician's requests, run with this source's client (bavard obd)
        self.requests = RequestQueue(name)

    @property
    def where(self) -> str:
        return self.settings.where

    def rates(self) -> dict[str, float]:
        """PID name -> answers per second this connection achieved (the adapter's budget)."""
        scheduler = self.scheduler
        if scheduler is None:
            return {}
        return {pid_table.PIDS[n].name: r for n, r in scheduler.rates().items()}

    # -- the reading thread --------------------------------------------------------------

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        delay = self.backoff[0]
        while not stop.is_set():
            self.requests.disconnected(f"connecting to the adapter ({self.where})")
            try:
                transport = self._open()
            except ObdError as exc:
                self._failed(exc, delay)
            else:
                try:
                    for frame in self._session(transport, stop):
                        delay = self.backoff[0]
                        yield frame
                except ObdError as exc:
                    self._failed(exc, delay)
                finally:
                    if self.requests.state[0]:  # ended by a stop or a bug, not a fault
                        self.requests.disconnected("the session with the vehicle ended")
                    self._close_transport()
            if stop.is_set():
                self.requests.disconnected("the service is stopping this channel")
                return
            if self.on_idle is not None:
                self.on_idle()
            stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])

    def _open(self) -> Transport:
        if self._opener is not None:
            transport = self._opener(self.settings)
        else:
            from agent.obd.adapters import open_transport

            transport = open_transport(self.settings, clock=self.clock)
        with self._lock:
            if self._closed:
                transport.close()
                raise ObdAdapterError(f"{self.where}: the source was closed")
            self._transport = transport
        return transport

    def _close_transport(self) -> None:
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def _failed(self, exc: ObdError, delay: float) -> None:
        vehicle = isinstance(exc, ObdVehicleError)
        if vehicle:
            self.obd.vehicle_errors += 1
        else:
            self.obd.adapter_errors += 1
        what = "the vehicle does not answer" if vehicle else "adapter fault"
        self.requests.disconnected(f"{what}: {exc}; trying again in {delay:g} s")
        stats = self.stats
        if not stats.in_gap:
            stats.gaps += 1
            stats.in_gap = True
            self._gap_started = self.clock()
            log.warning("%s: %s (%s): %s; trying again with backoff", self.name, what,
                        self.where, exc)
        else:
            log.debug("%s: still failing: %s", self.name, exc)

    def _answering(self) -> None:
        stats = self.stats
        if stats.in_gap:
            stats.in_gap = False
            if self._gap_started is not None:
                stats.gap_seconds += self.clock() - self._gap_started
            log.info("%s: the vehicle answers again on %s", self.name, self.where)

    def _session(self, transport: Transport, stop: threading.Event) -> Iterator[Frame]:
        client = ObdClient(transport)
        self.obd.voltage = transport.battery_voltage()
        supported = client.supported(None)
        if not supported:
            raise ObdVehicleError(f"{self.where}: no ECU answered 01 00{self._voltage_note()}")
        self.obd.connects += 1
        self._answering()
        self.requests.connected(client)
        engine = next((supported[e] for e in ENGINE_REPLIES if e in supported),
                      set().union(*supported.values()))
        periods = {}
        self.obd.unsupported = []
        for number, period in self.settings.pids:
            if engine and number not in engine:
                self.obd.unsupported.append(pid_table.PIDS[number].name)
                continue
            periods[number] = period
        if self.obd.unsupported:
            log.warning("%s: the engine ECU does not support %s: left out", self.name,
                        ", ".join(self.obd.unsupported))
        log.info("%s: %s, %s; ECUs %s; polling %d PIDs", self.name, transport.description,
                 transport.protocol, ", ".join(ecu_name(e) for e in sorted(supported)),
                 len(periods))
        vin = client.vin()  # at each connection: the adapter may be in another car now
        if vin is not None:
            self.vin = vin
        scheduler = PollScheduler(periods, per_request=6 if transport.is_can else 1,
                                  clock=self.clock, name=self.name)
        self.scheduler = scheduler
        next_dtc = self.clock()
        last_answer = self.clock()
        silent = 0
        while not stop.is_set():
            if self.clock() >= next_dtc:
                yield from self._check_dtcs(client)
                next_dtc = self.clock() + self.settings.dtc_interval
            # the technician's requests, between two polls; never before the first look
            # at the codes, so that a clear is always seen to clear something
            if self.requests.serve(client):
                next_dtc = self.clock()  # the codes may have been cleared: say so now
                continue
            numbers, wait = scheduler.next()
            if not numbers:
                if self.on_idle is not None:
                    self.on_idle()
                self.requests.wait(stop, min(wait, max(0.0, next_dtc - self.clock()), 1.0),
                                   self.clock)
                continue
            replies = self._ask(client, scheduler, numbers)
            now = self.clock()
            if replies:
                last_answer, silent = now, 0
            else:
                silent += 1
                if silent >= SILENT_REQUESTS and now - last_answer >= SILENT_SECONDS:
                    raise ObdVehicleError(f"{self.where}: no answer for {now - last_answer:.0f} s"
                                          f"{self._voltage_note(transport)}")
            answered: set[int] = set()
            stamp = self.wall()
            for reply in replies:
                if refused(reply):  # 7F 01 12: "not supported", an answer all the same
                    continue
                with contextlib.suppress(ValueError):  # the decoder counts and logs it
                    answered.update(n for n, _ in pid_table.split_mode01(reply.data))
                yield _frame(stamp, self.channel, reply)
            if replies or now - last_answer < SILENT_SECONDS:  # the ECU is alive
                scheduler.asked(numbers, answered)

    def _ask(self, client: ObdClient, scheduler: PollScheduler, numbers: list[int]
             ) -> list[Reply]:
        """One mode 01 request; a multi-PID one nobody answered is asked PID by PID, and
        when those answer, one PID per request it is from then on."""
        replies = client.read(numbers, ENGINE_REQUEST)
        if replies:
            return replies
        singles = client.read_each(numbers, ENGINE_REQUEST)
        if singles:
            log.info("%s: the engine ECU refuses several PIDs in one request: one at a time",
                     self.name)
            scheduler.fewer_per_request(1)
        return singles

    def _voltage_note(self, transport: Transport | None = None) -> str:
        if transport is not None:
            self.obd.voltage = transport.battery_voltage()
        volts = self.obd.voltage
        if volts is None:
            return ""
        if volts < LOW_VOLTAGE:
            return f" (battery {volts:.1f} V: ignition off?)"
        return f" (battery {volts:.1f} V)"

    # -- trouble codes --------------------------------------------------------------------

    def _check_dtcs(self, client: ObdClient) -> Iterator[Frame]:
        """Read the codes and the readiness; events for what changed. The 01 01 replies
        are handed on too (MIL and DTC count samples)."""
        self.obd.dtc_reads += 1
        stamp = self.wall()
        found: set[tuple[str, int, str]] = set()
        answered: set[tuple[str, int]] = set()  # (kind, ECU) that answered this time
        for mode, kind in DTC_MODES.items():
            for ecu, codes in client.dtcs(mode).items():
                answered.add((kind, ecu))
                found.update((kind, ecu, code) for code in codes)
        known = self._known_dtcs
        # an ECU that did not answer (the ignition going off) cleared nothing
        found |= {item for item in known if item[:2] not in answered}
        for kind, ecu, code in sorted(found - known, key=_order):
            self._event(stamp, "dtc.set", f"{code} {kind} (ECU {ecu_name(ecu)}){_about(code)}",
                        DTC_PRIORITY)
            if kind == "stored":
                self._freeze_frame(client, stamp, ecu, code)
        for kind, ecu, code in sorted(known - found, key=_order):
            self._event(stamp, "dtc.cleared",
                        f"{code} {kind} (ECU {ecu_name(ecu)}){_about(code)}", DTC_PRIORITY)
        self._known_dtcs = found
        mil = dict(self._mil)
        for reply in client.everyone(b"\x01\x01"):  # after the codes
            if not refused(reply):
                yield _frame(stamp, self.channel, reply)
                self._mil_event(stamp, reply)
        if found != known or mil != self._mil:
            _remember(self._memory, (found, self._mil))

    def _mil_event(self, stamp: float, reply: Reply) -> None:
        try:
            state = None
            for number, data in pid_table.split_mode01(reply.data):
                if number == 0x01:
                    state = decode_readiness(data)
        except ValueError:  # the decoder counts and logs it
            return
        if state is None:
            return
        before = self._mil.get(reply.ecu)
        self._mil[reply.ecu] = state.mil
        if before is None and not state.mil:
            return
        if before != state.mil:
            incomplete = ", ".join(state.incomplete()) or "none"
            self._event(stamp, "obd.mil",
                        f"MIL {'on' if state.mil else 'off'} (ECU {ecu_name(reply.ecu)}): "
                        f"{state.dtc_count} codes; monitors not complete: {incomplete}",
                        MIL_PRIORITY)

    def _freeze_frame(self, client: ObdClient, stamp: float, ecu: int, code: str) -> None:
        numbers = [n for n, _ in self.settings.pids]
        try:
            frame = client.freeze_frame(numbers, physical_request_id(ecu))
        except ObdVehicleError:
            return
        if frame is None or (frame.dtc is not None and frame.dtc != code):
            return
        shown = " ".join(f"{k}={v:g}" for k, v in frame.values.items())
        self._event(stamp, "dtc.freeze_frame", f"{code} (ECU {ecu_name(ecu)}): {shown}",
                    DTC_PRIORITY - 1)

    def _event(self, stamp: float, kind: str, detail: str, priority: int) -> None:
        log.info("%s: %s %s", self.name, kind, detail)
        if self.on_event is not None:
            self.on_event(Event(stamp, self.channel, kind, detail, priority))

    def _close(self) -> None:
        with self._lock:
            self._closed = True
        self._close_transport()


Known = tuple[set[tuple[str, int, str]], dict[int, bool]]  # codes (kind, ECU, code); MIL


def _recall(memory: Path | None) -> Known:
    """The codes and MIL states when the service last looked (nothing when never, or
    unreadable: then what is present is announced again, better than missed)."""
    if memory is None:
        return set(), {}
    try:
        saved = json.loads(memory.read_text(encoding="utf-8"))
        codes = {(str(kind), int(ecu), str(code)) for kind, ecu, code in saved["codes"]}
        return codes, {int(ecu): bool(on) for ecu, on in saved["mil"]}
    except FileNotFoundError:
        return set(), {}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable, the present trouble codes are announced again: %s",
                    memory, exc)
        return set(), {}


def _remember(memory: Path | None, known: Known) -> None:
    if memory is None:
        return
    codes, mil = known
    text = json.dumps({"codes": sorted(codes, key=_order), "mil": sorted(mil.items())})
    try:
        write_atomically(memory, [text.encode("utf-8")])
    except OSError as exc:
        log.error("cannot keep the trouble codes in %s: %s", memory, exc)


def _frame(stamp: float, channel: str, reply: Reply) -> Frame:
    return Frame(stamp, channel, reply.ecu, reply.ecu > 0x7FF, False, reply.data)


def _order(item: tuple[str, int, str]) -> tuple[int, int, str]:
    kind, ecu, code = item
    return (list(DTC_MODES.values()).index(kind), ecu, code)


def _about(code: str) -> str:
    text = dtcs.describe(code)
    return f": {text}" if text else ""
