"""The SocketCAN kernel interface, as bytes: what the raw and BCM readers share.

Python's socket module opens CAN sockets but does not lay out their messages,
and python-can has no CAN_BCM receive side, so the structures are built here
from ``linux/can.h``, ``linux/can/raw.h`` and ``linux/can/bcm.h``:

* ``struct can_frame`` (16 bytes) and ``struct canfd_frame`` (72 bytes): an id
  word with its EFF/RTR/ERR flags, a length, the CAN FD flags, data from byte 8;
* ``struct bcm_msg_head``: three u32, two ``struct bcm_timeval`` (two C
  ``long`` each), the id and the frame count, then the frames, which are
  8-aligned (``can_frame``'s data carry ``aligned(8)``). Its size therefore
  depends on the ABI: 56 bytes where a long is 8 bytes, 40 where it is 4.
  :func:`bcm_head` computes it for the running Python (or, to test the 32-bit
  case on a 64-bit kernel, for ILP32) instead of hard-coding one platform.

A 32-bit user space on a 64-bit kernel (Raspberry Pi OS 32-bit on its ``-v8``
kernel) writes the 40-byte head where the kernel reads 56: every BCM write
fails with EINVAL. :func:`compat_mismatch` tells when that is the likely cause.

Socket option numbers are Linux's generic ones (x86, ARM, RISC-V).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

# linux/can.h
CAN_EFF_FLAG = 0x80000000  # 29-bit id
CAN_RTR_FLAG = 0x40000000  # remote frame
CAN_ERR_FLAG = 0x20000000  # error frame
CAN_SFF_MASK = 0x7FF
CAN_EFF_MASK = 0x1FFFFFFF
CAN_ERR_MASK = 0x1FFFFFFF  # every error class
CAN_MTU, CANFD_MTU = 16, 72
CAN_MAX_DLEN, CANFD_MAX_DLEN = 8, 64
DATA_OFFSET = 8  # data start in both frame structures
# linux/can/raw.h (SOL_CAN_RAW = SOL_CAN_BASE + CAN_RAW = 101)
SOL_CAN_RAW = 101
CAN_RAW_FILTER, CAN_RAW_ERR_FILTER, CAN_RAW_FD_FRAMES = 1, 2, 5
# asm-generic/socket.h
SO_RCVBUF = 8
SO_RCVBUFFORCE = 33  # root (CAP_NET_ADMIN): past net.core.rmem_max
RECEIVE_BUFFER = 1 << 20  # bytes asked for a reader's receive queue (Linux's default: 208 KiB)
SO_RCVTIMEO_OLD = 20  # struct timeval of native longs
SO_TIMESTAMPNS_OLD = 35  # the receive time as struct timespec of native longs
SO_RXQ_OVFL = 40  # a u32 in each message: frames dropped on this socket so far
CAN_RAW_PROTO, CAN_BCM_PROTO = 1, 2

# linux/can/bcm.h: opcodes
RX_SETUP, RX_DELETE, RX_TIMEOUT, RX_CHANGED = 5, 6, 11, 12
# ... and flags
SETTIMER = 0x0001
STARTTIMER = 0x0002
RX_FILTER_ID = 0x0020
RX_CHECK_DLC = 0x0040
RX_ANNOUNCE_RESUME = 0x0100
CAN_FD_FRAME = 0x0800
MAX_NFRAMES = 256  # frames one RX_SETUP may carry

FRAME_HEAD = struct.Struct("=IBB")  # can_id, len, flags (CAN FD); data at DATA_OFFSET
U32 = struct.Struct("=I")
TIMESPEC = struct.Struct("@ll")  # what SO_TIMESTAMPNS_OLD gives (native longs)
TIMEVAL = struct.Struct("@ll")  # what SO_RCVTIMEO_OLD takes
FILTER = struct.Struct("=II")  # struct can_filter: can_id, can_mask


class BcmHead(NamedTuple):
    """The layout of ``struct bcm_msg_head`` for one ABI."""

    struct: struct.Struct  # opcode, flags, count, ival1 (s, us), ival2 (s, us), can_id, nframes
    size: int  # the struct's size: where the first frame starts (8-aligned)
    long_bits: int  # the C long the layout was built for


def bcm_head(layout: str = "native") -> BcmHead:
    """``struct bcm_msg_head`` for the running Python (``"native"``) or for a 32-bit
    user space (``"ilp32"``, 4-byte longs, as Raspberry Pi OS 32-bit writes it)."""
    if layout == "native":
        fmt, long_bits = "@IIIllllII", struct.calcsize("@l") * 8
    elif layout == "ilp32":
        fmt, long_bits = "=IIIiiiiII", 32
    else:
        raise ValueError(f"unknown BCM head layout {layout!r} (native or ilp32)")
    size = struct.calcsize(fmt)
    size += -size % 8  # the frames after it are 8-aligned
    return BcmHead(struct.Struct(fmt + f"{size - struct.calcsize(fmt)}x"), size, long_bits)


def kernel_is_64bit(machine: str | None = None) -> bool:
    """True when the kernel (``uname -m``) is a 64-bit one."""
    machine = machine if machine is not None else os.uname().machine
    return machine in {"x86_64", "aarch64", "arm64", "ppc64", "ppc64le", "s390x", "riscv64",
                       "mips64", "loongarch64", "sparc64", "alpha", "ia64"} or "64" in machine


def compat_mismatch(head: BcmHead, machine: str | None = None) -> bool:
    """True when ``head`` was built for 32-bit longs on a 64-bit kernel: the layout the
    kernel refuses (EINVAL) on every BCM write."""
    return head.long_bits == 32 and kernel_is_64bit(machine)


def frame_bytes(can_id: int, data: bytes, fd: bool) -> bytes:
    """A ``can_frame`` (or ``canfd_frame``) holding ``data`` (``can_id`` with its flags)."""
    size, room = (CANFD_MTU, CANFD_MAX_DLEN) if fd else (CAN_MTU, CAN_MAX_DLEN)
    if len(data) > room:
        raise ValueError(f"{len(data)} bytes do not fit in a {'CAN FD' if fd else 'CAN'} frame")
    return (FRAME_HEAD.pack(can_id, len(data), 0).ljust(DATA_OFFSET, b"\0")
            + data.ljust(size - DATA_OFFSET, b"\0"))


def raw_filters(can_filters: list[dict[str, int | bool]] | None) -> bytes | None:
    """``CAN_RAW_FILTER``'s value for python-can style filters (``can_id``, ``can_mask``,
    ``extended``), as python-can's socketcan interface installs them: with ``extended``
    given, the EFF bit joins the mask (and the id when true). None: no filter (all)."""
    if not can_filters:
        return None
    out = []
    for f in can_filters:
        can_id, mask = int(f["can_id"]), int(f["can_mask"])
        if "extended" in f:
            mask |= CAN_EFF_FLAG
            if f["extended"]:
                can_id |= CAN_EFF_FLAG
        out.append(FILTER.pack(can_id & 0xFFFFFFFF, mask & 0xFFFFFFFF))
    return b"".join(out)


def can_socket(kind: int, proto: int) -> socket.socket:
    """A new AF_CAN socket; OSError (EAFNOSUPPORT) where Python or the kernel has none."""
    family = getattr(socket, "AF_CAN", None)
    if family is None:
        import errno

        raise OSError(errno.EAFNOSUPPORT, "this Python has no AF_CAN")
    return socket.socket(family, kind, proto)


def set_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocking read on ``sock`` give up (EAGAIN) after ``seconds``: in the kernel,
    so that a read is one system call (Python's own timeout polls before each read)."""
    whole = int(seconds)
    micro = int((seconds - whole) * 1e6)
    if whole == 0 and micro == 0:
        micro = 1  # a zero timeval would mean "wait forever"
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO_OLD, TIMEVAL.pack(whole, micro))


def set_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a receive queue of ``size`` bytes: forced past ``net.core.rmem_max`` when
    allowed (root), else as large as that limit lets (a busy bus read in bursts needs
    room for a burst and a slow moment)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # EPERM: not allowed to force it
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUF, size)
