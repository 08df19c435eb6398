"""The other side of a GPS source: NMEA sentences, a receiver on a pseudo-terminal, a
real gpsd reading one, and a scripted gpsd peer for what a real gpsd never sends.

* :func:`rmc`, :func:`gga`: sentences with correct checksums (or not);
* :class:`Receiver`: a pty pair; the source opens ``path`` (or ``link``, a symlink
  that follows :meth:`Receiver.replug`) with pyserial like any serial device; the
  test writes into the master side, which never blocks (what finds the line's
  buffer full is dropped, as on a real serial line);
* :class:`Gpsd`: the real daemon (``gpsd -N -n -b -S PORT``) on 127.0.0.1 reading a
  Receiver, which a thread feeds every 0.1 s from ``script(i, when)``;
* :class:`GpsdPeer`: a TCP server on 127.0.0.1 that answers ``?WATCH`` with the lines
  it is given, for garbage a real gpsd filters out.

Every wait is bounded; every thread stops on ``close()``.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import pty
import shutil
import socket
import subprocess
import threading
import time
import tty
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from helpers.broker import free_port

GPSD = shutil.which("gpsd") or ("/usr/sbin/gpsd" if os.path.exists("/usr/sbin/gpsd") else None)
KNOTS_TO_KMH = 1.852


def sentence(body: str, checksum: str | None = None) -> bytes:
    """``$body*CS\\r\\n`` with the right checksum unless ``checksum`` says otherwise
    ("" for none at all)."""
    if checksum is None:
        checksum = f"{functools.reduce(operator.xor, body.encode(), 0):02X}"
    return (f"${body}*{checksum}" if checksum else f"${body}").encode() + b"\r\n"


def _ddmm(value: float, width: int) -> str:
    value = abs(value)
    degrees = int(value)
    return f"{degrees:0{width}d}{(value - degrees) * 60:07.4f}"


def _time(when: datetime) -> str:
    return f"{when:%H%M%S}.{when.microsecond // 10_000:02d}"


def rmc(when: datetime, lat: float, lon: float, knots: float | None = None,
        course: float | None = None, *, status: str = "A", mode: str | None = None,
        talker: str = "GP", checksum: str | None = None) -> bytes:
    """``mode``: the NMEA 2.3 mode indicator (default: A with a fix, N without)."""
    if mode is None:
        mode = "A" if status == "A" else "N"
    fields = [_time(when), status, _ddmm(lat, 2), "N" if lat >= 0 else "S", _ddmm(lon, 3),
              "E" if lon >= 0 else "W", "" if knots is None else f"{knots:.1f}",
              "" if course is None else f"{course:.1f}", f"{when:%d%m%y}", "", "", mode]
    return sentence(f"{talker}RMC," + ",".join(fields), checksum)


def gga(when: datetime, lat: float, lon: float, altitude: float | None = None, *,
        quality: int = 1, talker: str = "GP", checksum: str | None = None) -> bytes:
    fields = [_time(when), _ddmm(lat, 2), "N" if lat >= 0 else "S", _ddmm(lon, 3),
              "E" if lon >= 0 else "W", str(quality), "08", "0.9",
              "" if altitude is None else f"{altitude:.1f}", "M", "46.9", "M", "", ""]
    return sentence(f"{talker}GGA," + ",".join(fields), checksum)


def no_fix(when: datetime) -> list[bytes]:
    """What a receiver without a fix sends: RMC void, GGA quality 0, no position."""
    return [sentence(f"GPRMC,{_time(when)},V,,,,,,,{when:%d%m%y},,,N"),
            sentence(f"GPGGA,{_time(when)},,,,,0,00,99.99,,,,,,")]


class Receiver:
    """A GPS receiver's serial line: a pty pair (see the module's docstring)."""

    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.path = ""
        self.replug()

    def replug(self) -> None:
        """A new line (a new device path; ``link`` follows it)."""
        self.unplug()
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)

    def write(self, data: bytes) -> int:
        """Write what fits in the line's buffer; how many bytes did."""
        if self.master < 0:
            return 0
        try:
            return os.write(self.master, data)
        except (BlockingIOError, OSError):
            return 0

    def write_all(self, data: bytes, timeout: float = 5.0) -> None:
        """Write everything, waiting for the reader to make room (bounded)."""
        deadline = time.monotonic() + timeout
        while data:
            done = self.write(data)
            data = data[done:]
            if data:
                assert time.monotonic() < deadline, "nobody reads the GPS line"
                time.sleep(0.01)

    def unplug(self) -> None:
        """Close both ends: the reader's next read fails."""
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    close = unplug


Script = Callable[[int, datetime], Sequence[bytes]]


def steady(i: int, when: datetime) -> list[bytes]:
    """A vehicle heading east at 20 knots (about 1 m per 0.1 s epoch)."""
    lat, lon = 48.1, 11.5 + i * 0.00001
    return [rmc(when, lat, lon, 20.0, 90.0), gga(when, lat, lon, 520.0)]


class Gpsd:
    """A real gpsd on 127.0.0.1 reading a :class:`Receiver` fed every 0.1 s."""

    def __init__(self, tmp_path: Path, script: Script = steady) -> None:
        assert GPSD is not None
        self.binary = GPSD
        self.receiver = Receiver()
        self.port = free_port()
        self.log = tmp_path / f"gpsd-{self.port}.log"
        self.script = script
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._epoch = 0
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-N", "-n", "-b", "-D", "1", "-S", str(self.port),
                 self.receiver.path], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, f"gpsd ended: {self.log.read_text()[-2000:]}"
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return
            assert time.monotonic() < deadline, "gpsd does not listen"
            time.sleep(0.05)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _feed(self) -> None:
        deadline = time.monotonic() + 300  # no test runs this long
        while not self._stop.wait(0.1) and time.monotonic() < deadline:
            when = datetime.now(UTC)
            for line in self.script(self._epoch, when):
                self.receiver.write(line)
            self._epoch += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.kill()
        self.receiver.close()


class GpsdPeer:
    """A scripted gpsd: accepts connections, records what each sends first (the
    ``?WATCH``), then sends ``lines`` and keeps the connection open until closed."""

    def __init__(self, lines: Sequence[bytes] = ()) -> None:
        self.lines = list(lines)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            conn.settimeout(2.0)
            try:
                self.received.append(conn.recv(1024))
                for line in self.lines:
                    conn.sendall(line)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()
        for conn in self._conns:
            conn.close()
