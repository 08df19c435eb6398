"""The system clock: is it synchronised, and is it at least not before bavard itself?

A Raspberry Pi has no battery-backed clock: it boots at the time it last saved
(or in 1970) until NTP sets it, and every sample stamped meanwhile carries
that wrong time. The kernel knows whether a time service disciplines the
clock: ``adjtimex(2)`` read-only (``modes`` 0, no privilege needed) returns
``TIME_ERROR`` and sets ``STA_UNSYNC`` in ``status`` while nothing does
(systemd-timesyncd, chrony and ntpd clear it once synchronised), and
``maxerror`` bounds the error in microseconds.

Whatever the kernel says, a wall clock earlier than the installed bavard's own
files is certainly wrong (systemd uses its build time as the same floor).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from agent.doctor.result import Result, failed, passed, skipped, warned

TIME_ERROR = 5  # adjtimex's return: the clock is not synchronised
STA_UNSYNC = 0x0040  # status bit: the clock is not synchronised
SYNC_FIX = ("enable a time service (sudo timedatectl set-ntp true) and give the box a "
            "network; a Pi without a real-time clock is wrong until it syncs")


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (glibc; the kernel reads it the same way)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


class Sync(NamedTuple):
    """What ``adjtimex`` said."""

    state: int  # TIME_OK (0) ... TIME_ERROR (5)
    status: int  # STA_* bits
    maxerror_us: int  # the kernel's bound on the clock's error

    @property
    def synchronised(self) -> bool:
        return self.state != TIME_ERROR and not self.status & STA_UNSYNC


def adjtimex() -> Sync:
    """Ask the kernel (read only). OSError when this system has no adjtimex."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(name, use_errno=True)
    tx = _Timex()  # modes 0: read, change nothing
    state = libc.adjtimex(ctypes.byref(tx))
    if state < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex: {errno}")
    return Sync(state, tx.status, tx.maxerror)


def package_time() -> float:
    """When this bavard was built or installed: the newest of its package's ``__init__``
    and its installed metadata (a wheel's files carry the install time)."""
    import agent

    times = [Path(agent.__file__).stat().st_mtime]
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("bavard")
        meta = dist.locate_file(f"bavard-{dist.version}.dist-info/METADATA")
        times.append(Path(str(meta)).stat().st_mtime)
    except (PackageNotFoundError, OSError):
        pass
    return max(times)


def _date(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def clock_checks(wall: Callable[[], float] = time.time,
                 sync: Callable[[], Sync] = adjtimex,
                 floor: Callable[[], float] = package_time) -> list[Result]:
    now = wall()
    built = floor()
    if now < built:
        time_result = failed("clock", f"the clock says {_date(now)}, before this bavard was "
                                      f"installed ({_date(built)}): every timestamp is wrong",
                             SYNC_FIX + "; or set it now: sudo date -s 'YYYY-MM-DD HH:MM'")
    else:
        time_result = passed("clock", f"{_date(now)}, after this bavard was installed "
                                      f"({_date(built)})")
    try:
        got = sync()
    except OSError as exc:
        return [time_result, skipped("clock sync", f"the kernel cannot say: {exc}")]
    if got.synchronised:
        result = passed("clock sync", f"synchronised (the kernel bounds the error to "
                                      f"{got.maxerror_us / 1000:,.0f} ms)")
    else:
        result = warned("clock sync", "not synchronised: no time service disciplines the "
                                      "clock (adjtimex: STA_UNSYNC), timestamps may drift "
                                      "or be wrong", SYNC_FIX)
    return [time_result, result]
