"""A CAN_RAW socket read without python-can: the cheap path for a live SocketCAN bus.

python-can builds a ``Message`` object for every frame (and checks it) before
bavard turns it into a :class:`~agent.frames.Frame`; here the kernel's
``can_frame`` / ``canfd_frame`` is read into one preallocated buffer and
becomes a Frame directly. The frames are the python-can path's, field for
field (``agent/sources/pycan.py``):

* the timestamp is the kernel's receive time from ``SO_TIMESTAMPNS``, turned
  into a float the way python-can does (seconds + nanoseconds * 1e-9), so that
  a source taking over from a python-can one recognises the frames it read;
* error frames are asked for (every error class, as python-can does) and
  counted (``skipped["error_frame"]``), remote frames counted (``remote``):
  neither is a frame here;
* the selected ids are installed as ``CAN_RAW_FILTER`` exactly as python-can
  installs ``can_filters`` (:func:`~agent.sources.socketcan_abi.raw_filters`);
  CAN FD frames are on when the channel is FD.

The receive queue is made larger than Linux's default (1 MiB where allowed:
about 2,700 classic frames, against 550); frames dropped because it was full
are counted from ``SO_RXQ_OVFL`` into ``skipped["rx_overflow"]`` (the
kernel's count is per socket and cumulative: a reopened socket starts again
from 0).

A read is a burst: the first ``recvmsg_into`` waits (the wait is set in the
kernel with ``SO_RCVTIMEO``, so each read is one system call), the next ones
do not (``MSG_DONTWAIT``), up to :data:`BURST` frames: the per-frame cost of a
busy bus is a system call and a few tuple operations.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

from agent.frames import Frame
from agent.sources.socketcan_abi import (
    CAN_EFF_FLAG,
    CAN_EFF_MASK,
    CAN_ERR_FLAG,
    CAN_ERR_MASK,
    CAN_RAW_ERR_FILTER,
    CAN_RAW_FD_FRAMES,
    CAN_RAW_FILTER,
    CAN_RAW_PROTO,
    CAN_RTR_FLAG,
    CAN_SFF_MASK,
    CANFD_MTU,
    FRAME_HEAD,
    RECEIVE_BUFFER,
    SO_RCVBUF,
    SO_RXQ_OVFL,
    SO_TIMESTAMPNS_OLD,
    SOL_CAN_RAW,
    TIMESPEC,
    U32,
    can_socket,
    raw_filters,
    set_receive_buffer,
    set_timeout,
)

BURST = 512  # frames read in one go once the first one came (a full default queue: ~300)
_ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size) + socket.CMSG_SPACE(U32.size)
_new = tuple.__new__


class KernelReceipts:
    """What a CAN socket reader (this module's, :class:`~agent.sources.bcm.BcmReader`)
    reads besides the frames: the receive time and the socket's drop count, from the
    control messages of ``recvmsg_into``. ``sock``, ``skipped`` and ``dropped`` are
    set by the reader."""

    sock: socket.socket
    skipped: Counter[str]
    dropped: int  # the kernel's drop count for this socket, as last seen

    def _ancillary(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        """The receive time (0.0 if none) of a message with a drop count too (or other
        control messages); the drops counted."""
        timestamp = 0.0
        for _level, kind, value in ancillary:
            if kind == SO_TIMESTAMPNS_OLD:
                seconds, nanoseconds = TIMESPEC.unpack_from(value)
                timestamp = seconds + nanoseconds * 1e-9
            elif kind == SO_RXQ_OVFL:
                self._dropped(U32.unpack_from(value)[0])
        return timestamp

    def _dropped(self, total: int) -> None:
        if total > self.dropped:
            self.skipped["rx_overflow"] += total - self.dropped
        self.dropped = total

    def close(self) -> None:
        self.sock.close()


class RawReader(KernelReceipts):
    """One CAN_RAW socket bound to ``interface``, read into :class:`Frame` objects of
    channel ``name``; errors and remote frames counted in ``skipped``. OSError when it
    cannot be opened (ENODEV: no such interface; EAFNOSUPPORT: no SocketCAN)."""

    kind = "raw"

    def __init__(self, name: str, interface: str, skipped: Counter[str], *, fd: bool = False,
                 can_filters: list[dict[str, Any]] | None = None,
                 receive_buffer: int | None = None) -> None:
        self.name = name
        self.interface = interface
        self.skipped = skipped
        self.dropped = 0  # the kernel's drop count for this socket, as last seen
        sock = can_socket(socket.SOCK_RAW, CAN_RAW_PROTO)
        try:
            sock.setsockopt(SOL_CAN_RAW, CAN_RAW_ERR_FILTER, U32.pack(CAN_ERR_MASK))
            if fd:
                sock.setsockopt(SOL_CAN_RAW, CAN_RAW_FD_FRAMES, 1)
            filters = raw_filters(can_filters)
            if filters is not None:
                sock.setsockopt(SOL_CAN_RAW, CAN_RAW_FILTER, filters)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            if receive_buffer is not None:  # tests: a tiny queue that overflows
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUF, receive_buffer)
            else:
                set_receive_buffer(sock, RECEIVE_BUFFER)
            sock.bind((interface,))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._buffer = bytearray(CANFD_MTU)
        self._view = memoryview(self._buffer)
        self._timeout: float | None = None

    def read(self, timeout: float, limit: int = BURST) -> list[Frame] | None:
        """The frames received: waits at most ``timeout`` s for the first (0: no wait),
        then takes what is queued, up to ``limit``; None when nothing came at all.
        OSError when the interface fails."""
        flags = 0
        if timeout <= 0:
            flags = socket.MSG_DONTWAIT
        elif timeout != self._timeout:
            set_timeout(self.sock, timeout)
            self._timeout = timeout
        recv = self.sock.recvmsg_into
        buffers = (self._view,)
        view = self._view
        head = FRAME_HEAD.unpack_from
        buffer = self._buffer
        stamp = TIMESPEC.unpack_from
        name = self.name
        out: list[Frame] = []
        append = out.append
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
            can_id, length, _ = head(buffer)
            if can_id & (CAN_ERR_FLAG | CAN_RTR_FLAG):
                self.skipped["error_frame" if can_id & CAN_ERR_FLAG else "remote"] += 1
                continue
            if can_id & CAN_EFF_FLAG:
                append(_new(Frame, (timestamp, name, can_id & CAN_EFF_MASK, True,
                                    size == CANFD_MTU, view[8:8 + length].tobytes())))
            else:
                append(_new(Frame, (timestamp, name, can_id & CAN_SFF_MASK, False,
                                    size == CANFD_MTU, view[8:8 + length].tobytes())))
        return out
