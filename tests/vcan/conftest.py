"""The real-kernel tier: SocketCAN on a vcan0 interface (``scripts/test_vcan.sh``).

Every test here is marked ``vcan`` and skips cleanly when this kernel has no
AF_CAN or no vcan0, so the ordinary ``pytest`` run passes over them.
``scripts/test_vcan.sh`` runs them natively where the kernel can (a laptop or
a Pi after ``modprobe vcan``), otherwise inside User-Mode Linux, otherwise
inside QEMU (``scripts/vcan_run.sh``).

Under QEMU without KVM (TCG) code runs several times slower: the runner sets
``BAVARD_VCAN_SLOW`` (4) and every wait here (``wait_until``, ``Reader``'s
watchdog and ``wait_for``) is stretched by that factor. Only bounds stretch: a
test that watches for something not to happen watches longer, never less.

Helpers shared by the tests: a reader thread around a source (every wait in
it bounded), ``cansend`` and ``ip link`` wrappers, and the kernel's receive
lists (``/proc/net/can/rcvlist_*``), which say which filters a socket
installed and how many frames each one matched.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.frames import Frame
from agent.sources.base import Source

IFACE = "vcan0"


def _slowdown() -> float:
    """``BAVARD_VCAN_SLOW`` within [1, 20]; 1 when unset or not a number."""
    try:
        slow = float(os.environ.get("BAVARD_VCAN_SLOW", "1"))
    except ValueError:
        return 1.0
    return min(max(slow, 1.0), 20.0) if math.isfinite(slow) else 1.0


SLOW = _slowdown()  # how many times slower than native this kernel runs the code
WATCHDOG = 20.0 * SLOW  # seconds: no reader here runs longer (a failing test, not a hang)


def vcan_missing() -> str | None:
    """Why this kernel cannot run the tier, or None when it can."""
    if not hasattr(socket, "AF_CAN"):
        return "this Python has no AF_CAN"
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW).close()
    except OSError as exc:
        return f"this kernel has no CAN_RAW sockets ({exc}): run scripts/test_vcan.sh"
    if not Path(f"/sys/class/net/{IFACE}").exists():
        return f"no {IFACE} interface: run scripts/test_vcan.sh (or modprobe vcan and add it)"
    return None


@pytest.fixture(scope="session")
def vcan0() -> str:
    """The interface name; skips the test when the kernel has no vcan0."""
    why = vcan_missing()
    if why is not None:
        pytest.skip(why)
    if shutil.which("cansend") is None or shutil.which("canplayer") is None:
        pytest.skip("can-utils not installed (apt-get install can-utils)")
    return IFACE


def cansend(*frames: str) -> None:
    """``cansend vcan0 FRAME`` for each frame, in order."""
    for frame in frames:
        subprocess.run(["cansend", IFACE, frame], check=True, timeout=10)


def ip_link(*args: str) -> None:
    subprocess.run(["ip", "link", "set", "dev", IFACE, *args], check=True, timeout=10)


@pytest.fixture
def link_control(vcan0: str) -> Iterator[Callable[[str], None]]:
    """``set_link("down" | "up")``; needs root; the link is up again after the test."""
    if os.geteuid() != 0:
        pytest.skip("taking vcan0 down needs root")

    def set_link(state: str) -> None:
        ip_link(state)

    try:
        yield set_link
    finally:
        ip_link("up")


def filter_lines() -> list[tuple[int, int, int]]:
    """(can_id, can_mask, matches) of each CAN_RAW filter installed on vcan0.

    Exact filters with the RTR bit in their mask would be in rcvlist_sff/eff;
    python-can's (see agent/sources/can_filters.py) are all in rcvlist_fil.
    """
    out = []
    for line in Path("/proc/net/can/rcvlist_fil").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == IFACE:
            out.append((int(parts[1], 16), int(parts[2], 16), int(parts[5])))
    return out


class Reader:
    """Reads ``source.frames(stop)`` in a thread; a watchdog bounds it."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.stop = threading.Event()
        self.frames: list[Frame] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._watchdog = threading.Timer(WATCHDOG, self.stop.set)

    def _run(self) -> None:
        try:
            for frame in self.source.frames(self.stop):
                self.frames.append(frame)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self) -> Reader:
        self._watchdog.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._watchdog.cancel()
        self._thread.join(5)
        self.source.close()
        assert not self._thread.is_alive(), "the source did not stop"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Frame]:
        """The frames once ``count`` arrived, or after ``timeout`` s (then fewer)."""
        wait_until(lambda: len(self.frames) >= count or not self._thread.is_alive(), timeout)
        return list(self.frames)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """True once ``condition()`` is; False after ``timeout`` s (times ``SLOW``)."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
