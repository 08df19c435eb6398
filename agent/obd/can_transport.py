"""Native OBD-II over a CAN interface (ISO 15765-4), without an ELM327.

Addressing (ISO 15765-4)::

                  functional     physical (ECU n)    replies
    11-bit        0x7DF          0x7E0 + n           0x7E8 + n           n = 0..7
    29-bit        0x18DB33F1     0x18DA<ecu>F1       0x18DAF1<ecu>       ecu = 0x00..0xFF

A request is one Single Frame (an OBD request is 7 bytes at most), padded to 8
bytes with 0x00. The answers are ISO-TP messages, multi-frame when longer than 7
bytes (VIN, DTC lists, several PIDs at once): the tester sends each ECU's Flow
Control to that ECU's physical id (0x7E0+n for 0x7E8+n; 0x18DA<ecu>F1), asking
for everything at once (block size 0, STmin 0). Two ISO-TP stacks:

* ``kernel``: the kernel's ``can-isotp`` sockets (:mod:`agent.obd.isotp_kernel`),
  for ``socketcan`` interfaces with 11-bit ids, when the kernel has it;
* ``user-space``: the ``can-isotp`` package's ``TransportLayerLogic`` (MIT) over a
  python-can bus, one per ECU that answers, all driven from the caller's thread
  (no thread of its own): any python-can interface, ``virtual`` included, and
  29-bit ids, and kernels without can-isotp (User-Mode Linux).

``stack="auto"`` picks the kernel's where it can. Collecting the replies: until
``expect`` of them arrived, or ``timeout`` s passed since the last frame (a
reply, or any frame of one); an ECU that began a multi-frame answer is waited
for until it ends, for at most ``cf_timeout`` s between two of its frames (the
kernel's own N_Cr is 1 s). A "response pending" (``7F xx 78``) is not a reply:
it stretches the wait to ``p2_star`` s (ISO 15765-4 P2*: 5 s). No reply is an
empty list, not an error. Every request is bounded (:meth:`CanObd.request` says
by how much). The clock is injected for the arithmetic only: the waits themselves
are the bus's and ``select``'s, in real time, so a test's clock must move with
real time (it may be offset).

Failures of the interface (it cannot be opened, it went down, the bus was shut)
raise :class:`~agent.errors.ObdAdapterError`, naming it; no other exception of
python-can, the sockets or can-isotp leaves this module (a bad argument is a
ValueError: a bug of the caller's).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from agent.errors import ObdAdapterError
from agent.obd.isotp_kernel import KernelIsoTp, kernel_isotp_missing
from agent.obd.transport import ENGINE_REQUEST, Reply

log = logging.getLogger(__name__)

FUNCTIONAL_11, FUNCTIONAL_29 = 0x7DF, 0x18DB33F1
ENGINE_29 = 0x10  # the engine's 29-bit address, which ENGINE_REQUEST means there
PADDING = 0x00
STACKS = ("auto", "kernel", "user-space")
_MAX_FRAMES = 10_000  # frames one request looks at, at most (a bus flooded with replies)
_MAX_PENDING = 10  # "response pending" answers one request waits through, at most


class _Stack(Protocol):
    """What :class:`CanObd` needs of an ISO-TP stack."""

    name: str

    def send(self, can_id: int, data: bytes) -> None: ...
    def discard(self) -> None: ...
    def receive(self, timeout: float) -> tuple[list[Reply], bool]: ...
    def busy(self, ecus: set[int] | None = None) -> bool: ...
    def close(self) -> None: ...


def request_id(ecu: int, extended: bool) -> int:
    """The physical request id for ``ecu``: a request id, a reply id, or (29-bit) an address.

    11-bit: 0x7E0..0x7E7 or 0x7E8..0x7EF; 29-bit: 0x18DAxxF1, 0x18DAF1xx, an address
    0x00..0xFF, or ``ENGINE_REQUEST`` (0x7E0) for the engine at 0x10. ValueError otherwise.
    """
    if not extended:
        if 0x7E0 <= ecu <= 0x7EF:
            return ecu & ~0x8
        raise ValueError(f"not an 11-bit OBD ECU id: 0x{ecu:X} (0x7E0..0x7EF)")
    if ecu == ENGINE_REQUEST:
        ecu = ENGINE_29
    if 0 <= ecu <= 0xFF:
        return 0x18DA00F1 | ecu << 8
    if ecu & 0x1FFF00FF == 0x18DA00F1 and ecu >> 8 & 0xFF != 0xF1:
        return ecu
    if ecu & 0x1FFFFF00 == 0x18DAF100:
        return 0x18DA00F1 | (ecu & 0xFF) << 8
    raise ValueError(f"not a 29-bit OBD ECU id: 0x{ecu:X} (0x18DAxxF1, 0x18DAF1xx, 0x00..0xFF)")


def reply_id(request: int, extended: bool) -> int:
    """The reply id of the ECU whose physical request id is ``request``."""
    return 0x18DAF100 | (request >> 8 & 0xFF) if extended else request + 8


def _is_reply(can_id: int, extended: bool) -> bool:
    return (can_id & 0x1FFFFF00 == 0x18DAF100) if extended else 0x7E8 <= can_id <= 0x7EF


class UserSpaceIsoTp:
    """The ``can-isotp`` package's ISO-TP logic over a python-can bus, one per ECU."""

    name = "user-space"

    def __init__(self, bus: Any, *, extended: bool, padding: int, cf_timeout: float) -> None:
        self._bus = bus
        self._extended = extended
        self._padding = padding
        self._cf_ms = max(1, round(cf_timeout * 1000))
        self._ecus: dict[int, tuple[Any, deque[Any]]] = {}  # reply id -> (logic, inbox)

    def send(self, can_id: int, data: bytes) -> None:
        import can

        self._bus.send(can.Message(arbitration_id=can_id, is_extended_id=self._extended,
                                   data=data))

    def discard(self) -> None:
        for _ in range(_MAX_FRAMES):
            if self._bus.recv(0.0) is None:
                break
        for logic, inbox in self._ecus.values():
            inbox.clear()
            logic.reset()

    def receive(self, timeout: float) -> tuple[list[Reply], bool]:
        import isotp

        message = self._bus.recv(max(0.0, timeout))
        touched = [ecu for ecu, (logic, _) in self._ecus.items() if logic.is_rx_active()]
        activity = False
        if message is not None and not message.is_error_frame and (
                message.is_extended_id == self._extended
                and _is_reply(message.arbitration_id, self._extended)):
            ecu = message.arbitration_id
            _, inbox = self._ecus.get(ecu) or self._add(ecu)
            data = bytes(message.data)
            inbox.append(isotp.CanMessage(arbitration_id=ecu, dlc=len(data), data=data,
                                          extended_id=self._extended))
            touched.append(ecu)
            activity = True
        replies = []
        for ecu in dict.fromkeys(touched):  # each once, in order
            logic = self._ecus[ecu][0]
            logic.process()  # takes the frame; sends the Flow Control; checks N_Cr
            while (data := logic.recv()) is not None:
                replies.append(Reply(ecu, bytes(data)))
        return replies, activity

    def _add(self, ecu: int) -> tuple[Any, deque[Any]]:
        import isotp

        inbox: deque[Any] = deque(maxlen=256)
        mode = (isotp.AddressingMode.Normal_29bits if self._extended
                else isotp.AddressingMode.Normal_11bits)
        request = (0x18DA00F1 | (ecu & 0xFF) << 8) if self._extended else ecu - 8
        logic = isotp.TransportLayerLogic(
            rxfn=lambda timeout: inbox.popleft() if inbox else None,
            txfn=self._tx,
            address=isotp.Address(mode, rxid=ecu, txid=request),
            params={"tx_padding": self._padding, "blocksize": 0, "stmin": 0,
                    "rx_consecutive_frame_timeout": self._cf_ms,
                    "logger_name": f"{__name__}.isotp"})
        self._ecus[ecu] = (logic, inbox)
        return logic, inbox

    def _tx(self, message: Any) -> None:
        import can

        self._bus.send(can.Message(arbitration_id=message.arbitration_id,
                                   is_extended_id=message.is_extended_id, data=message.data))

    def busy(self, ecus: set[int] | None = None) -> bool:
        return any(logic.is_rx_active() for ecu, (logic, _) in self._ecus.items()
                   if ecus is None or ecu in ecus)

    def close(self) -> None:
        self._bus.shutdown()


class CanObd:
    """An OBD-II transport over a CAN interface: ``agent.obd.transport.Transport``.

    ``interface``/``channel``/``bitrate``: python-can's (``socketcan``/``can0``);
    ``extended``: 29-bit ids; ``timeout``: the default wait for replies after the
    last frame (P2: ISO 15765-4 allows an ECU 50 ms); ``stack``: ``auto``,
    ``kernel`` or ``user-space`` (see the module); ``cf_timeout``: the longest
    pause inside a multi-frame answer; ``p2_star``: how long a "response pending"
    extends the wait. :class:`~agent.errors.ObdAdapterError` when the interface
    cannot be opened or the stack asked for cannot be had.
    """

    is_can = True

    def __init__(self, interface: str, channel: str, *, extended: bool = False,
                 bitrate: int | None = None, timeout: float = 0.2, stack: str = "auto",
                 clock: Callable[[], float] = time.monotonic, cf_timeout: float = 1.0,
                 p2_star: float = 5.0) -> None:
        if stack not in STACKS:
            raise ValueError(f"stack must be one of {', '.join(STACKS)}, not {stack!r}")
        if not timeout > 0 or not cf_timeout > 0 or not p2_star > 0:
            raise ValueError("timeout, cf_timeout and p2_star must be above 0")
        self.interface = interface
        self.channel = channel
        self.extended = extended
        self.timeout = timeout
        self._clock = clock
        self._cf_timeout = cf_timeout
        self._p2_star = p2_star
        self._closed = False
        where = f"{interface} {channel}"
        self._stack: _Stack = self._open_stack(interface, channel, stack, bitrate)
        self.stack = self._stack.name
        kbit = (bitrate or 500_000) // 1000
        self.protocol = f"ISO 15765-4 (CAN {29 if extended else 11}/{kbit})"
        self.description = f"{where} ({self.stack} ISO-TP)"

    @classmethod
    def open(cls, interface: str, channel: str, **kw: Any) -> CanObd:
        """The same as the constructor: :class:`ObdAdapterError` when it cannot open."""
        return cls(interface, channel, **kw)

    def _open_stack(self, interface: str, channel: str, stack: str,
                    bitrate: int | None) -> _Stack:
        where = f"{interface} {channel}"
        if stack != "user-space":
            why = None
            if interface != "socketcan":
                why = f"the {interface!r} interface is not SocketCAN"
            elif self.extended:
                why = "29-bit ids need one kernel socket per possible ECU (256)"
            else:
                why = kernel_isotp_missing()
            if why is None:
                try:
                    return KernelIsoTp(channel, padding=PADDING, cf_timeout=self._cf_timeout,
                                       clock=self._clock)
                except (OSError, NotImplementedError, ValueError) as exc:
                    why = getattr(exc, "strerror", None) or str(exc)
                    raise ObdAdapterError(f"cannot open {where}: {why}") from exc
            if stack == "kernel":
                raise ObdAdapterError(f"{where}: no kernel ISO-TP: {why}")
            log.debug("%s: user-space ISO-TP (%s)", where, why)
        import can

        filters = [{"can_id": 0x18DAF100, "can_mask": 0x1FFFFF00, "extended": True}
                   if self.extended else {"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False}]
        options: dict[str, Any] = {"bitrate": bitrate} if bitrate else {}
        try:
            bus = can.Bus(interface=interface, channel=channel, can_filters=filters, **options)
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            raise ObdAdapterError(f"cannot open {where}: {exc}") from exc
        return UserSpaceIsoTp(bus, extended=self.extended, padding=PADDING,
                              cf_timeout=self._cf_timeout)

    def request(self, payload: bytes, *, ecu: int | None = None, expect: int | None = None,
                timeout: float | None = None) -> list[Reply]:
        """Send ``payload``; every whole reply, in the order they arrived (see the module).

        ``ecu`` None: a functional request; else the physical request id (or the reply
        id) of one ECU, whose replies alone count. Waits ``timeout`` s after the last
        frame, longer while an ECU is in the middle of a message; in all at most
        ``max(10 x timeout, timeout + 2 x cf_timeout)``, or ``p2_star`` after the last
        "response pending" (10 of them at most)."""
        if not 1 <= len(payload) <= 7:
            raise ValueError(f"an OBD request is 1 to 7 bytes, not {len(payload)}")
        if expect is not None and expect < 1:
            raise ValueError("expect must be at least 1")
        if self._closed:
            raise ObdAdapterError(f"{self.description}: closed")
        wait = self.timeout if timeout is None else timeout
        if ecu is None:
            target = FUNCTIONAL_29 if self.extended else FUNCTIONAL_11
            wanted: set[int] | None = None
        else:
            target = request_id(ecu, self.extended)
            wanted = {reply_id(target, self.extended)}
        frame = bytes([len(payload)]) + payload
        frame += bytes([PADDING]) * (8 - len(frame))
        try:
            import can
        except ImportError as exc:  # pragma: no cover - python-can is a dependency
            raise ObdAdapterError(f"python-can is missing: {exc}") from exc
        try:
            self._stack.discard()
            self._stack.send(target, frame)
            return self._collect(wanted, expect, wait)
        except (OSError, can.CanError, ValueError, RuntimeError) as exc:
            raise ObdAdapterError(f"{self.description}: {exc}") from exc
        except Exception as exc:  # can-isotp's own errors: none must leave the transport
            raise ObdAdapterError(f"{self.description}: {type(exc).__name__}: {exc}") from exc

    def _collect(self, wanted: set[int] | None, expect: int | None, wait: float) -> list[Reply]:
        clock, stack = self._clock, self._stack
        start = clock()
        quiet_end = start + wait  # nothing heard: give up this long after the last frame
        cap = start + max(10 * wait, wait + 2 * self._cf_timeout)  # a bus that never stops
        pending: dict[int, float] = {}  # ECU -> until when its "response pending" holds
        pendings = 0
        replies: list[Reply] = []
        for _ in range(_MAX_FRAMES):
            now = clock()
            if expect is not None and len(replies) >= expect:
                break
            end = max(quiet_end, *pending.values()) if pending else quiet_end
            if stack.busy(wanted):  # a message in progress: the stack bounds it (N_Cr)
                end = max(end, now + 0.01)
            end = min(end, cap)
            if now >= end:
                break
            got, activity = stack.receive(min(end - now, 0.05))
            now = clock()
            if activity:
                quiet_end = now + wait
            for reply in got:
                if wanted is not None and reply.ecu not in wanted:
                    continue
                data = reply.data
                if len(data) >= 3 and data[0] == 0x7F and data[2] == 0x78:
                    pendings += 1  # "response pending": the answer comes within P2*
                    if pendings <= _MAX_PENDING:
                        pending[reply.ecu] = now + self._p2_star
                        cap = max(cap, pending[reply.ecu])
                    continue
                pending.pop(reply.ecu, None)
                replies.append(reply)
        return replies

    def battery_voltage(self) -> float | None:
        """Unknown on a bare CAN interface (an ELM327 measures it; PID 42 is the vehicle's)."""
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stack.close()
        except Exception as exc:  # closing a bus that is gone already
            log.debug("%s: closing: %s", self.description, exc)

    def __enter__(self) -> CanObd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
