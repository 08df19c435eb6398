"""The kernel's ISO-TP (``can-isotp``, mainline since Linux 5.10) for native OBD-II.

One ``CAN_ISOTP`` socket per ECU pair of ISO 15765-4's 11-bit table (receive
0x7E8+n, transmit 0x7E0+n, n = 0..7): the kernel reassembles each ECU's
multi-frame answer and sends the Flow Control to that ECU's physical id itself,
at kernel speed (an ECU waits 75 ms at most for it, N_Bs). Requests are single
frames (an OBD request is 7 bytes at most) sent on one raw CAN socket, which
also watches the replies go by (filter 0x7E8/0x7F8): a Single or First Frame
seen there and not yet delivered by its ISO-TP socket is a message in progress,
and the transport waits for it (bounded) instead of giving up in the middle.

29-bit addressing (0x18DAF1xx) has 256 possible ECUs, one socket each: that is
left to the user-space stack (``agent.obd.can_transport``), which sees every id.

:func:`kernel_isotp_missing` says whether this kernel has it: creating a
``CAN_ISOTP`` socket loads the module (``can-isotp``) where it is not built in.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import Callable

from agent.obd.transport import Reply

ECUS = 8  # ISO 15765-4: 0x7E8..0x7EF
_FRAME = struct.Struct("=IB3x8s")  # struct can_frame
_MAX_READS = 512  # frames read from one socket in one go, at most
# what an ISO-TP socket reports for a message it gave up on (wrong sequence number, a
# Consecutive Frame that never came, too long): that message is over
_BROKEN = frozenset({errno.ECOMM, errno.EILSEQ, errno.ETIMEDOUT, errno.EMSGSIZE, errno.EBADMSG})


def kernel_isotp_missing() -> str | None:
    """Why the kernel's ISO-TP cannot be used here, or None when it can."""
    if not hasattr(socket, "CAN_ISOTP") or not hasattr(socket, "AF_CAN"):
        return "this Python has no CAN_ISOTP sockets"
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_DGRAM, socket.CAN_ISOTP).close()
    except OSError as exc:
        return f"this kernel has no can-isotp ({exc.strerror or exc})"
    return None


class KernelIsoTp:
    """The kernel's ISO-TP sockets on one SocketCAN interface (11-bit ids only).

    Raises OSError when the interface or the sockets cannot be had: the caller
    wraps it into its own error with the interface's name.
    """

    name = "kernel"

    def __init__(self, channel: str, *, padding: int, cf_timeout: float,
                 clock: Callable[[], float]) -> None:
        import isotp

        self._clock = clock
        self._cf_timeout = cf_timeout
        self._sockets: list[isotp.socket] = []
        self._raw = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        try:
            # replies only, 11-bit data frames: the EFF and RTR bits are in the mask
            mask = 0x7F8 | socket.CAN_EFF_FLAG | socket.CAN_RTR_FLAG
            self._raw.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FILTER,
                                 struct.pack("=II", 0x7E8, mask))
            self._raw.bind((channel,))
            self._raw.setblocking(False)
            for n in range(ECUS):
                sock = isotp.socket()
                self._sockets.append(sock)
                sock.set_opts(txpad=padding)  # the Flow Control frames, padded to 8 bytes
                sock.set_fc_opts(bs=0, stmin=0)  # "send the rest at once"
                sock.bind(channel, isotp.Address(isotp.AddressingMode.Normal_11bits,
                                                 rxid=0x7E8 + n, txid=0x7E0 + n))
                sock.settimeout(0.0)
        except BaseException:
            self.close()
            raise
        self._fds = {sock.fileno(): 0x7E8 + n for n, sock in enumerate(self._sockets)}
        self._started = [0] * ECUS  # Single/First Frames seen on the raw socket, per ECU
        self._done = [0] * ECUS  # messages the ISO-TP socket delivered, per ECU
        self._last = [0.0] * ECUS  # when the ECU's last frame went by

    def send(self, can_id: int, data: bytes) -> None:
        """One 8-byte frame (``data`` padded already) with an 11-bit id."""
        self._raw.send(_FRAME.pack(can_id, len(data), data))

    def discard(self) -> None:
        """Drop whatever arrived before the request (late answers to an earlier one)."""
        for sock in (self._raw, *(s.real_socket() for s in self._sockets)):
            for _ in range(_MAX_READS):
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
                except OSError as exc:  # an earlier message that broke: over already
                    if exc.errno not in _BROKEN:
                        raise
        self._started = [0] * ECUS
        self._done = [0] * ECUS

    def receive(self, timeout: float) -> tuple[list[Reply], bool]:
        """The messages completed within ``timeout`` s, and whether any frame went by."""
        fds = [self._raw.fileno(), *self._fds]
        readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if not readable:
            return [], False
        activity = False
        if fds[0] in readable:  # first: a message is seen starting before it is delivered
            activity = self._watch()
        replies = []
        for fd in readable:
            if fd == fds[0]:
                continue
            ecu = self._fds[fd]
            sock = self._sockets[ecu - 0x7E8]
            for _ in range(_MAX_READS):
                try:
                    data = sock.recv()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _BROKEN:
                        self._done[ecu - 0x7E8] += 1
                        continue
                    raise
                self._done[ecu - 0x7E8] += 1
                replies.append(Reply(ecu, bytes(data)))
                activity = True
        return replies, activity

    def _watch(self) -> bool:
        seen = False
        now = self._clock()
        for _ in range(_MAX_READS):
            try:
                frame = self._raw.recv(16)
            except BlockingIOError:
                break
            can_id, length, data = _FRAME.unpack(frame)
            n = (can_id & 0x7FF) - 0x7E8
            if not 0 <= n < ECUS or not length:
                continue
            seen = True
            self._last[n] = now
            if data[0] >> 4 in (0, 1):  # a Single or a First Frame: a message begins
                self._started[n] += 1
        return seen

    def busy(self, ecus: set[int] | None = None) -> bool:
        """A message began (on the raw socket) that its ISO-TP socket has not delivered yet,
        and its last frame is less than ``cf_timeout`` s old."""
        now = self._clock()
        return any(self._started[n] > self._done[n] and now - self._last[n] < self._cf_timeout
                   for n in range(ECUS) if ecus is None or 0x7E8 + n in ecus)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._raw.close()
