"""The simulated vehicle's OBD-II ECUs on a CAN bus: :class:`SimulatedEcus`.

What they answer is :mod:`agent.sources.simulator.obd_answers`; this module puts
them on a python-can bus, in a thread::

    ECU            11-bit request / reply    29-bit request / reply
    engine         0x7E0 / 0x7E8             0x18DA10F1 / 0x18DAF110
    transmission   0x7E1 / 0x7E9             0x18DA18F1 / 0x18DAF118
    both answer functional requests on 0x7DF (29-bit: 0x18DB33F1)

ISO-TP: each ECU runs the ``can-isotp`` package's transport logic
(``isotp.TransportLayerLogic``, no thread of its own) for its physical pair,
which sends First and Consecutive Frames as the tester's Flow Control asks
(block size, STmin); a functional request is a Single Frame parsed here. It
works on any python-can bus: ``virtual`` and SocketCAN alike. Frames are padded
to 8 bytes with 0xAA.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.errors import SourceError
from agent.sources.simulator.obd_answers import (
    ADDRESSES_29,
    DEFAULT_VIN,
    ENGINE_PIDS,
    ENGINE_REPLY,
    FUNCTIONAL_11,
    FUNCTIONAL_29,
    PADDING,
    TRANSMISSION_PIDS,
    TRANSMISSION_REPLY,
    VIN_ALPHABET,
    Ecu,
    EcuState,
    Vehicle,
    bitmap,
    dtc_bytes,
    encode_pid,
    harsh_brake,
)
from agent.sources.simulator.plan import DEFAULT_CYCLE_LENGTH, drive_plan

log = logging.getLogger(__name__)

# what users of the simulated ECUs need, whichever of the two modules defines it
__all__ = ["DEFAULT_VIN", "ENGINE_PIDS", "ENGINE_REPLY", "TRANSMISSION_REPLY", "VIN_ALPHABET",
           "EcuState", "SimulatedEcus", "bitmap", "dtc_bytes", "encode_pid", "harsh_brake"]

_POLL = 0.02  # seconds the ECU thread waits for a frame at most
_RETRY = 0.1  # seconds before it reads a bus that failed again


class _Port:
    """One ECU's physical ISO-TP pair on the bus, through ``isotp.TransportLayerLogic``."""

    def __init__(self, ecu: Ecu, bus: Any, request_id: int, reply_id: int,
                 extended: bool) -> None:
        import isotp

        self.ecu = ecu
        self.request_id = request_id
        self.reply_id = reply_id
        self.inbox: deque[Any] = deque(maxlen=64)
        self._bus = bus
        modes = isotp.AddressingMode
        mode = modes.Normal_29bits if extended else modes.Normal_11bits
        self.logic = isotp.TransportLayerLogic(
            rxfn=self._rx, txfn=self._tx,
            address=isotp.Address(mode, rxid=request_id, txid=reply_id),
            params={"tx_padding": PADDING, "blocksize": 0, "stmin": 0,
                    "logger_name": f"{__name__}.isotp"})

    def _rx(self, timeout: float) -> Any:
        return self.inbox.popleft() if self.inbox else None

    def _tx(self, message: Any) -> None:
        import can

        self._bus.send(can.Message(arbitration_id=message.arbitration_id,
                                   is_extended_id=message.is_extended_id, data=message.data))


class SimulatedEcus:
    """The engine and transmission ECUs on a python-can bus, answering from a thread.

    ``bus``: any python-can bus (``virtual``, ``socketcan``, ...); :meth:`open` opens
    one (with kernel filters for the request ids) that :meth:`stop` shuts down.
    ``speed``: vehicle seconds per clock second (> 0); ``t0``: the vehicle time at
    creation (the model is stepped there at once: 0.1 s of CPU per 150 s of driving);
    ``clock``: where the time comes from (a test moves it by hand, then calls
    :meth:`state` so that the model catches up before the next request, not during it).
    """

    def __init__(self, bus: Any, *, seed: int = 1, speed: float = 1.0, t0: float = 0.0,
                 cycle_length: float = DEFAULT_CYCLE_LENGTH, vin: str = DEFAULT_VIN,
                 extended: bool = False, clock: Callable[[], float] = time.monotonic,
                 own_bus: bool = False) -> None:
        if not speed > 0:
            raise ValueError("the simulated ECUs need a speed above 0")
        if len(vin) != 17 or not set(vin) <= VIN_ALPHABET:
            raise ValueError(f"not a VIN (17 characters, no I, O, Q): {vin!r}")
        drive_plan(cycle_length)  # validates the cycle length
        self.bus = bus
        self.speed = speed
        self.extended = extended
        self.vin = vin
        self.requests = 0  # request frames that reached an ECU
        self.answered = 0  # replies sent (a functional request may get two)
        self.errors = 0  # replies that could not be sent
        self.bus_errors = 0  # receive failures (a link that went down): retried
        self.error: BaseException | None = None  # the last of those
        self._clock = clock
        self._t0 = t0
        self._epoch = clock()
        self._own_bus = own_bus
        self._lock = threading.Lock()
        self._vehicle = Vehicle(seed, cycle_length)
        self._vehicle.advance(t0)  # now, not while the first request waits for its answer
        engine = Ecu("ECM-EngineControl", self._vehicle, ENGINE_PIDS, vin, emissions=True)
        trans = Ecu("TCM-TransmissionCtrl", self._vehicle, TRANSMISSION_PIDS, None,
                     emissions=False)
        self._ports = [_Port(ecu, bus, *self.ids(n, extended), extended)
                       for n, ecu in enumerate((engine, trans))]
        self._by_request = {port.request_id: port for port in self._ports}
        self.functional_id = FUNCTIONAL_29 if extended else FUNCTIONAL_11
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def ids(n: int, extended: bool = False) -> tuple[int, int]:
        """(request id, reply id) of ECU ``n`` (0 engine, 1 transmission)."""
        if extended:
            address = ADDRESSES_29[n]
            return 0x18DA00F1 | address << 8, 0x18DAF100 | address
        return 0x7E0 + n, 0x7E8 + n

    @classmethod
    def open(cls, interface: str, channel: str, *, bitrate: int | None = None,
             **kw: Any) -> SimulatedEcus:
        """The ECUs on a bus opened here (only the request ids pass its filter).

        :class:`~agent.errors.SourceError` when the bus cannot be opened."""
        import can

        extended = bool(kw.get("extended", False))
        ids = [cls.ids(n, extended)[0] for n in range(2)]
        ids.append(FUNCTIONAL_29 if extended else FUNCTIONAL_11)
        filters = [{"can_id": i, "can_mask": 0x1FFFFFFF if extended else 0x7FF,
                    "extended": extended} for i in ids]
        options: dict[str, Any] = {"bitrate": bitrate} if bitrate else {}
        try:
            bus = can.Bus(interface=interface, channel=channel, can_filters=filters, **options)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise SourceError(f"cannot open {interface} channel {channel} for the simulated "
                              f"ECUs: {exc}") from exc
        try:
            return cls(bus, own_bus=True, **kw)
        except BaseException:
            bus.shutdown()
            raise

    # --- the ground truth ------------------------------------------------------------

    def vehicle_time(self) -> float:
        """The vehicle time now: seconds since the drive started (cycles repeat)."""
        return self._t0 + (self._clock() - self._epoch) * self.speed

    def state(self) -> dict[int, EcuState]:
        """Each ECU's answers right now, keyed by its reply id (0x7E8 engine, 0x7E9 trans;
        29-bit: 0x18DAF110, 0x18DAF118)."""
        with self._lock:
            self._vehicle.advance(self.vehicle_time())
            return {port.reply_id: port.ecu.state() for port in self._ports}

    def answer(self, payload: bytes, reply_id: int | None = None,
               functional: bool = False) -> bytes | None:
        """What ECU ``reply_id`` (None: the engine) answers to ``payload`` now, without
        the bus (tests). ValueError for a reply id that is none of these ECUs'."""
        ports = [p for p in self._ports if reply_id in (None, p.reply_id)]
        if not ports:
            raise ValueError(f"no simulated ECU replies on 0x{reply_id:X}")
        port = ports[0]
        with self._lock:
            self._vehicle.advance(self.vehicle_time())
            return port.ecu.answer(payload, functional)

    # --- the thread ------------------------------------------------------------------

    def start(self) -> SimulatedEcus:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="simulated-obd-ecus",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop answering (within ``timeout`` s) and shut the bus down if :meth:`open` made it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("simulated ECUs: the thread did not stop within %.1f s", timeout)
        if self._own_bus:
            try:
                self.bus.shutdown()
            except Exception as exc:  # a bus already gone: nothing left to release
                log.debug("simulated ECUs: shutting the bus down: %s", exc)

    def __enter__(self) -> SimulatedEcus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        import can

        while not self._stop.is_set():
            try:
                message = self.bus.recv(self._wait())
            except (can.CanError, OSError, ValueError) as exc:
                # a link down (ENETDOWN) passes: the ECUs answer again once it is up
                if self._stop.is_set():
                    return
                if not self.bus_errors:
                    log.warning("simulated ECUs: the bus failed (retrying): %s", exc)
                self.bus_errors += 1
                self.error = exc
                self._stop.wait(_RETRY)
                continue
            with self._lock:
                self._vehicle.advance(self.vehicle_time())
                if message is not None:
                    self._on_frame(message)
                for port in self._ports:
                    self._pump(port)

    def _wait(self) -> float:
        delays = [port.logic.next_cf_delay() for port in self._ports]
        due = [d for d in delays if d is not None]
        return max(0.0, min([_POLL, *due]))

    def _on_frame(self, message: Any) -> None:
        if message.is_extended_id != self.extended or message.is_error_frame:
            return
        ident, data = message.arbitration_id, bytes(message.data)
        if ident == self.functional_id:
            length = data[0] if data else 0
            if 1 <= length <= 7 and len(data) > length:  # a Single Frame: all OBD requests are
                self.requests += 1
                for port in self._ports:
                    self._reply(port, port.ecu.answer(data[1:1 + length], functional=True))
            return
        target = self._by_request.get(ident)
        if target is not None:
            import isotp

            target.inbox.append(isotp.CanMessage(arbitration_id=ident, dlc=len(data), data=data,
                                               extended_id=message.is_extended_id))

    def _pump(self, port: _Port) -> None:
        """Let ``port``'s ISO-TP logic take its frames and send what is due."""
        try:
            port.logic.process()
            for _ in range(8):  # bounded: the inbox holds at most 64 frames anyway
                request = port.logic.recv()
                if request is None:
                    break
                self.requests += 1
                self._reply(port, port.ecu.answer(bytes(request), functional=False))
            if port.logic.transmitting():
                port.logic.process()
        except Exception as exc:  # a send that failed: counted, the ECU goes on
            self.errors += 1
            log.warning("simulated ECU %s: %s", port.ecu.name, exc)
            port.logic.reset()

    def _reply(self, port: _Port, reply: bytes | None) -> None:
        if reply is None:
            return
        try:
            port.logic.send(reply)
            port.logic.process()
        except Exception as exc:
            self.errors += 1
            log.warning("simulated ECU %s: cannot answer: %s", port.ecu.name, exc)
            port.logic.reset()
            return
        self.answered += 1
