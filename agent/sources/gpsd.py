"""Positions from gpsd, the usual GPS daemon on a Pi, through its JSON protocol.

The source connects to gpsd over TCP (``127.0.0.1:2947`` by default), asks
for its reports with ``?WATCH={"enable":true,"json":true}`` and reads one JSON
object per line. Each ``TPV`` (time-position-velocity) report with a fix
(``mode`` 2 or 3) is a candidate fix: ``lat``, ``lon``, ``speed`` (m/s, handed
on in km/h), ``track`` (the heading), ``altMSL`` (or ``alt`` from a gpsd
older than 3.20) and ``time``. The other reports (VERSION, DEVICES, SKY...)
only show that gpsd is alive.

gpsd checks the NMEA checksums itself; what is left to check here is what
agent.sources.gps_fix says (ranges, jumps), plus a line that is not JSON, or a
report whose values are not numbers. A gpsd that goes away (restarted,
stopped) or says nothing for a while is connected to again with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from agent.errors import SourceError
from agent.sources.gps_fix import Fix, GpsSource, Lines, finite

log = logging.getLogger(__name__)

WATCH = b'?WATCH={"enable":true,"json":true}\n'
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 0.5  # seconds a read waits before the loop looks at stop and silence
MAX_LINE = 64 * 1024  # gpsd's longest reports (SKY with many satellites) are a few KiB
MS_TO_KMH = 3.6


class GpsdSource(GpsSource):
    """The fixes gpsd reports (see the module's docstring)."""

    _sock: socket.socket | None = None

    def _open(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise SourceError(f"cannot connect to {self.where}: {exc.strerror or exc}") from None
        with self._lock:
            self._sock = sock
        self._closing()
        sock.settimeout(READ_TIMEOUT)
        sock.sendall(WATCH)

    def _disconnect(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
            sock.close()

    def _read(self, stop: threading.Event) -> Iterator[Fix | None]:
        sock = self._sock
        if sock is None:
            raise SourceError(f"{self.where}: the source was closed")
        lines = Lines(MAX_LINE, lambda detail: self._skip("too_long", detail))
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                yield None
                continue
            if not data:
                raise SourceError(f"{self.where}: gpsd closed the connection")
            found = False
            for line in lines.feed(data):
                fix = self._report(line)
                if fix is not None:
                    found = True
                    yield fix
            if not found:
                yield None

    def _report(self, line: bytes) -> Fix | None:
        line = line.strip()
        if not line:
            return None
        try:
            report = json.loads(line)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            self._skip("bad_json", repr(line[:80]))
            return None
        if not isinstance(report, dict):
            self._skip("bad_json", repr(line[:80]))
            return None
        self._heard()
        if report.get("class") != "TPV":
            return None
        mode = report.get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool) or mode < 2:
            self._skip("no_fix", f"TPV mode {mode!r}")
            return None
        if "lat" not in report or "lon" not in report:
            self._skip("no_fix", "TPV without lat/lon")
            return None
        lat, lon = finite(report["lat"]), finite(report["lon"])
        if lat is None or lon is None:
            self._skip("bad_report", f"lat {report['lat']!r}, lon {report['lon']!r}")
            return None
        speed = finite(report.get("speed"))
        altitude = finite(report.get("altMSL"))
        if altitude is None:
            altitude = finite(report.get("alt"))
        return Fix(lat, lon,
                   speed=None if speed is None or speed < 0 else speed * MS_TO_KMH,
                   altitude=altitude,
                   heading=_heading(report.get("track")),
                   time=_time(report.get("time")))


def _heading(value: Any) -> float | None:
    heading = finite(value)
    return None if heading is None else heading % 360.0


def _time(value: Any) -> float | None:
    """gpsd's ISO 8601 UTC time (``2024-05-01T12:00:00.000Z``) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
