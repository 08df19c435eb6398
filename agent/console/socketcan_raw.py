"""Read a SocketCAN interface the way ``candump`` does, for ``bavard record``.

A ``CAN_RAW`` socket with CAN FD frames on, the kernel's receive time as a
``struct timeval`` (``SO_TIMESTAMP``: seconds and microseconds, truncated from the
kernel's nanoseconds exactly as candump gets them; python-can's float of the
nanoseconds cannot give them back to the microsecond), the CAN FD flags byte as the
kernel has it, remote frames and a classic frame's raw DLC above 8 as candump writes
them, and the socket's count of frames dropped because its receive queue was full
(``SO_RXQ_OVFL``, cumulative). Error frames never come (no error mask is set).

The option numbers are Linux's generic ones (x86, ARM, RISC-V; Python's socket module
does not name them).
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from agent.console.candump_writer import classic_tail
from agent.errors import SourceError

SO_TIMESTAMP_OLD = 29  # struct timeval of native longs
SO_RXQ_OVFL = 40  # a u32: frames dropped on this socket so far
CAN_MTU, CANFD_MTU = 16, 72
CAN_EFF_FLAG, CAN_RTR_FLAG = 0x80000000, 0x40000000
CAN_EFF_MASK = 0x1FFFFFFF
_TIMEVAL = struct.Struct("@ll")
_U32 = struct.Struct("=I")
_HEAD = struct.Struct("=IBB")  # can_id, len (or can_dlc), flags (CAN FD)
BURST = 256  # frames read in one go once the first one came


class RawFrame(NamedTuple):
    """One frame as candump sees it."""

    seconds: int
    microseconds: int
    can_id: int
    extended: bool
    fd: bool
    flags: int  # CAN FD flags (BRS 0x1, ESI 0x2, FDF 0x4); 0 for a classic frame
    data: bytes
    tail: str  # after the data: a remote frame's R and DLC, a raw DLC (classic_tail)


class RawCanSocket:
    """A CAN_RAW socket bound to ``interface``; SourceError when it cannot be had."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.dropped = 0  # the kernel's drop counter for this socket
        try:
            sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        except (OSError, AttributeError) as exc:
            raise SourceError(f"cannot open socketcan:{interface}: this system has no "
                              f"SocketCAN ({exc})") from None
        try:
            sock.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FD_FRAMES, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP_OLD, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            sock.bind((interface,))
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot open socketcan:{interface}: "
                              f"{exc.strerror or exc}") from None
        self._sock = sock
        self._ancillary = socket.CMSG_SPACE(_TIMEVAL.size) + socket.CMSG_SPACE(_U32.size)

    def read(self, timeout: float) -> list[RawFrame]:
        """The frames received, waiting at most ``timeout`` s for the first; OSError
        when the interface fails (went down, went away)."""
        frames: list[RawFrame] = []
        self._sock.settimeout(timeout)
        for _ in range(BURST):
            try:
                data, ancillary, _, _ = self._sock.recvmsg(CANFD_MTU, self._ancillary)
            except (TimeoutError, BlockingIOError):
                break
            frames.append(self._frame(data, ancillary))
            self._sock.settimeout(0)
        return frames

    def _frame(self, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> RawFrame:
        seconds = microseconds = 0
        for level, kind, value in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == SO_TIMESTAMP_OLD and len(value) >= _TIMEVAL.size:
                seconds, microseconds = _TIMEVAL.unpack_from(value)
            elif kind == SO_RXQ_OVFL and len(value) >= _U32.size:
                self.dropped = _U32.unpack_from(value)[0]
        can_id, length, flags = _HEAD.unpack_from(data)
        fd = len(data) == CANFD_MTU
        extended = bool(can_id & CAN_EFF_FLAG)
        remote = bool(can_id & CAN_RTR_FLAG)
        payload = b"" if remote else bytes(data[8:8 + length])
        tail = "" if fd else classic_tail(remote, length, data[7])  # can_frame.len8_dlc
        return RawFrame(seconds, microseconds, can_id & (CAN_EFF_MASK if extended else 0x7FF),
                        extended, fd, flags if fd else 0, payload, tail)

    def close(self) -> None:
        self._sock.close()
