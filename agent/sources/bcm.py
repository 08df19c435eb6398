"""A CAN_BCM socket: the kernel hands over a selected message's frame only when a
selected bit changed (see :mod:`agent.sources.bcm_plan` for what is selected).

One ``RX_SETUP`` per :class:`~agent.sources.bcm_plan.BcmMessage`:

* a content mask: one mask frame, ``RX_CHECK_DLC`` (a length that changed is a
  change); per-page masks: the multiplexer mask, then one frame per page;
  no mask: ``RX_FILTER_ID``, every frame of the id;
* a timeout: ``SETTIMER | STARTTIMER`` with ``ival1``, and
  ``RX_ANNOUNCE_RESUME`` so that the first frame after a silence is handed
  over even if unchanged: the kernel's ``RX_TIMEOUT`` becomes a
  ``can.message_missing`` event, that first frame a ``can.message_back``;
* a throttle: ``ival2``.

What comes back (``RX_CHANGED``: the head and one frame) becomes a
:class:`~agent.frames.Frame` with the kernel's receive time (``SO_TIMESTAMPNS``
works on BCM sockets: the broadcast manager restores the frame's own receive
time on what it hands over), so a frame read here and the same frame read
through CAN_RAW have the same timestamp.

The head is laid out for the running ABI (:func:`~agent.sources.socketcan_abi.bcm_head`).
A 32-bit user space on a 64-bit kernel writes a layout the kernel refuses:
the first ``RX_SETUP`` fails with EINVAL, raised as it is, and the source
falls back to CAN_RAW (``layout="ilp32"`` forces that layout, for the test).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence

from agent.frames import Frame
from agent.sources.bcm_plan import BcmMessage
from agent.sources.socketcan_abi import (
    CAN_BCM_PROTO,
    CAN_EFF_FLAG,
    CAN_EFF_MASK,
    CAN_FD_FRAME,
    CAN_SFF_MASK,
    CANFD_MTU,
    FRAME_HEAD,
    RECEIVE_BUFFER,
    RX_ANNOUNCE_RESUME,
    RX_CHANGED,
    RX_CHECK_DLC,
    RX_FILTER_ID,
    RX_SETUP,
    RX_TIMEOUT,
    SETTIMER,
    SO_RXQ_OVFL,
    SO_TIMESTAMPNS_OLD,
    STARTTIMER,
    TIMESPEC,
    U32,
    BcmHead,
    bcm_head,
    can_socket,
    frame_bytes,
    set_receive_buffer,
    set_timeout,
)
from agent.sources.socketcan_raw import KernelReceipts

BURST = 512  # messages read in one go once the first one came
_ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size) + socket.CMSG_SPACE(U32.size)
_new = tuple.__new__

# on_message(kind, timestamp, message): a message went missing or came back
OnMessage = Callable[[str, float, BcmMessage], None]


def _interval(seconds: float | None) -> tuple[int, int]:
    """A ``bcm_timeval`` (seconds, microseconds); (0, 0) for none."""
    if not seconds:
        return 0, 0
    micro = max(1, round(seconds * 1e6))
    return micro // 1_000_000, micro % 1_000_000


def rx_setup(message: BcmMessage, head: BcmHead) -> bytes:
    """The ``RX_SETUP`` that filters ``message`` (head and frames) in layout ``head``."""
    flags = CAN_FD_FRAME if message.fd else 0
    frames: Sequence[bytes] = ()
    if message.mask is not None:
        frames = (message.mask,)
        flags |= RX_CHECK_DLC
    elif message.pages is not None:
        frames = message.pages
        flags |= RX_CHECK_DLC
    else:
        flags |= RX_FILTER_ID
    if message.timeout:
        flags |= SETTIMER | STARTTIMER | RX_ANNOUNCE_RESUME
    elif message.throttle:
        flags |= SETTIMER
    ival1 = _interval(message.timeout)
    ival2 = _interval(message.throttle)
    return head.struct.pack(RX_SETUP, flags, 0, *ival1, *ival2, message.can_id,
                            len(frames)) + b"".join(
        frame_bytes(message.can_id, mask, message.fd) for mask in frames)


class BcmReader(KernelReceipts):
    """One CAN_BCM socket connected to ``interface`` with an ``RX_SETUP`` per message of
    ``plan``; frames of channel ``name``. OSError when it cannot be opened, EINVAL
    when the kernel refuses the first ``RX_SETUP`` (see the module's docstring)."""

    kind = "bcm"

    def __init__(self, name: str, interface: str, plan: Sequence[BcmMessage],
                 skipped: Counter[str], on_message: OnMessage | None = None, *,
                 layout: str = "native") -> None:
        self.name = name
        self.interface = interface
        self.skipped = skipped
        self.on_message = on_message
        self.head = bcm_head(layout)
        self.dropped = 0
        self.missing: set[tuple[int, bool]] = set()  # (can_id, fd) gone silent
        self._plan = {(m.can_id, m.fd): m for m in plan}
        sock = can_socket(socket.SOCK_DGRAM, CAN_BCM_PROTO)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            set_receive_buffer(sock, RECEIVE_BUFFER)
            sock.connect((interface,))
            for message in plan:
                sock.send(rx_setup(message, self.head))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._buffer = bytearray(self.head.size + CANFD_MTU)
        self._view = memoryview(self._buffer)
        self._timeout: float | None = None

    def read(self, timeout: float, limit: int = BURST) -> list[Frame] | None:
        """The frames handed over: waits at most ``timeout`` s for the first (0: no
        wait), then takes what is queued, up to ``limit``; None when nothing came at
        all. Timeouts and returns are reported to ``on_message`` as they come. OSError
        when the interface fails."""
        flags = 0
        if timeout <= 0:
            flags = socket.MSG_DONTWAIT
        elif timeout != self._timeout:
            set_timeout(self.sock, timeout)
            self._timeout = timeout
        recv = self.sock.recvmsg_into
        buffers = (self._view,)
        view = self._view
        unpack_head = self.head.struct.unpack_from
        start = self.head.size
        frame_head = FRAME_HEAD.unpack_from
        stamp = TIMESPEC.unpack_from
        name = self.name
        missing = self.missing
        out: list[Frame] = []
        for i in range(limit):
            try:
                size, ancillary, _, _ = recv(buffers, _ANCILLARY, flags)
            except BlockingIOError:  # the wait ended, or nothing more is queued
                if i == 0:
                    return None
                break
            flags = socket.MSG_DONTWAIT
            if len(ancillary) == 1 and ancillary[0][1] == SO_TIMESTAMPNS_OLD:
                seconds, nanoseconds = stamp(ancillary[0][2])  # the usual case, quickly
                timestamp = seconds + nanoseconds * 1e-9
            else:
                timestamp = self._ancillary(ancillary)
            opcode, op_flags, _, _, _, _, _, op_id, nframes = unpack_head(view)
            fd = bool(op_flags & CAN_FD_FRAME)
            if opcode == RX_TIMEOUT:
                self._event("can.message_missing", timestamp or time.time(), op_id, fd)
                continue
            if opcode != RX_CHANGED or nframes < 1 or size < start + 8:
                self.skipped["bcm_other"] += 1  # nothing else is asked for
                continue
            if missing and (op_id, fd) in missing:
                self._event("can.message_back", timestamp, op_id, fd)
            can_id, length, _ = frame_head(view, start)
            data = view[start + 8:start + 8 + length].tobytes()
            if can_id & CAN_EFF_FLAG:
                out.append(_new(Frame, (timestamp, name, can_id & CAN_EFF_MASK, True, fd, data)))
            else:
                out.append(_new(Frame, (timestamp, name, can_id & CAN_SFF_MASK, False, fd, data)))
        return out

    def _event(self, kind: str, timestamp: float, can_id: int, fd: bool) -> None:
        key = (can_id, fd)
        if kind == "can.message_missing":
            self.missing.add(key)
        else:
            self.missing.discard(key)
        message = self._plan.get(key)
        if message is not None and self.on_message is not None:
            self.on_message(kind, timestamp, message)
