"""Positions from a GPS receiver speaking NMEA 0183 on a serial port (pyserial, pynmea2).

The receiver sends a burst of sentences each second (each epoch); two of them
make the fix: ``RMC`` (position, speed over ground in knots, course, date and
time, status A/V) and ``GGA`` (position, fix quality, altitude above mean sea
level). The sentences of one epoch share its time field; the epoch is handed
on when the next one begins or when the line goes quiet (a read that waits
:data:`READ_TIMEOUT` for nothing), so RMC and GGA are merged in whatever order
the receiver sends them. Either alone makes a fix too (an RMC-only receiver
gives no altitude; a GGA-only one no speed, heading or date).

A fix needs every sentence of its epoch to say it has one: RMC status ``A``
and, when present, a mode indicator other than N (not valid) or E (estimated:
dead reckoning); GGA quality 1 to 5 (GPS, DGPS, PPS, RTK, float RTK). Every
sentence must carry a correct checksum. Other sentences (GSV, GSA, VTG...)
show that the receiver speaks and are otherwise ignored. What is garbage is
counted (agent.sources.gps_fix).

``port`` is a device (``/dev/ttyACM0``, ``/dev/serial0``) or any pyserial URL
(``socket://10.0.0.2:10110``, ``rfc2217://...``); the device is locked
(``flock``) against a second reader.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pynmea2
import serial

from agent.errors import SourceError
from agent.sources.gps_fix import Fix, GpsSource, Lines

log = logging.getLogger(__name__)

READ_TIMEOUT = 0.2  # seconds of silence that end an epoch
MAX_LINE = 1024  # NMEA says 82 characters; anything much longer is noise
KNOTS_TO_KMH = 1.852
GOOD_QUALITY = frozenset("12345")  # GGA fix quality: GPS, DGPS, PPS, RTK, float RTK
BAD_MODES = frozenset("NE")  # RMC mode indicator: not valid, estimated (dead reckoning)


class _Epoch:
    """The RMC and GGA sentences (their fields) of one instant."""

    def __init__(self) -> None:
        self.key: str | None = None  # the sentences' time field
        self.rmc: list[str] | None = None
        self.gga: list[str] | None = None

    def take(self) -> tuple[list[str] | None, list[str] | None]:
        rmc, gga = self.rmc, self.gga
        self.key = self.rmc = self.gga = None
        return rmc, gga


class NmeaSource(GpsSource):
    """The fixes an NMEA receiver sends (see the module's docstring)."""

    _port: serial.SerialBase | None = None

    def _open(self) -> None:
        settings = self.settings
        try:
            port = serial.serial_for_url(settings.device, baudrate=settings.baudrate,
                                         timeout=READ_TIMEOUT, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"cannot open {self.where}: {exc}") from None
        with self._lock:
            self._port = port
        self._closing()

    def _disconnect(self) -> None:
        with self._lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("%s: closing %s: %s", self.name, self.where, exc)

    def _read(self, stop: threading.Event) -> Iterator[Fix | None]:
        port = self._port
        if port is None:
            raise SourceError(f"{self.where}: the source was closed")
        lines = Lines(MAX_LINE, lambda detail: self._skip("too_long", detail))
        epoch = _Epoch()
        while not stop.is_set():
            try:
                data = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                raise SourceError(f"{self.where}: {exc}") from None
            except (TypeError, AttributeError, ValueError):  # closed under the read
                if self._closed:
                    return
                raise
            if not data:  # quiet: the epoch is complete
                fix = self._epoch_fix(*epoch.take())
                if fix is not None:
                    yield fix
                yield None
                continue
            found = False
            for line in lines.feed(data):
                fix = self._sentence(line, epoch)
                if fix is not None:
                    found = True
                    yield fix
            if not found:
                yield None  # garbage without end (a wrong baud rate) is silence too

    def _sentence(self, line: bytes, epoch: _Epoch) -> Fix | None:
        """Take in one line; the previous epoch's fix when this line begins a new one."""
        raw = line.strip()
        if not raw:
            return None
        try:
            msg = pynmea2.parse(raw.decode("ascii"), check=True)
        except pynmea2.ChecksumError:
            self._skip("checksum", repr(raw[:90]))
            return None
        except pynmea2.SentenceTypeError:  # a sentence of a kind pynmea2 does not know
            self._heard()
            return None
        except (pynmea2.ParseError, ValueError):  # UnicodeDecodeError is a ValueError
            self._skip("bad_sentence", repr(raw[:90]))
            return None
        self._heard()
        kind = getattr(msg, "sentence_type", "")
        if kind not in ("RMC", "GGA"):
            return None
        fields = list(msg.data)
        key = fields[0] if fields else ""
        fix = None
        if epoch.key is not None and epoch.key != key:
            fix = self._epoch_fix(*epoch.take())
        epoch.key = key
        if kind == "RMC":
            epoch.rmc = fields
        else:
            epoch.gga = fields
        return fix

    def _epoch_fix(self, rmc: list[str] | None, gga: list[str] | None) -> Fix | None:
        """The fix of one epoch's sentences, or None (counted)."""
        if rmc is None and gga is None:
            return None
        try:
            if not _has_fix(rmc, gga):
                self._skip("no_fix", f"RMC {rmc}, GGA {gga}")
                return None
            if rmc is not None:
                lat = _degrees(rmc[2], rmc[3], 2, "N", "S")
                lon = _degrees(rmc[4], rmc[5], 3, "E", "W")
                knots = _number(rmc[6])
                course = _number(rmc[7])
                when = _utc(rmc[8], rmc[0])
            else:
                assert gga is not None
                lat = _degrees(gga[1], gga[2], 2, "N", "S")
                lon = _degrees(gga[3], gga[4], 3, "E", "W")
                knots = course = when = None
            altitude = None
            if gga is not None and len(gga) > 9 and gga[9] == "M":
                altitude = _number(gga[8])
        except (ValueError, IndexError) as exc:
            self._skip("bad_sentence", f"{exc}: RMC {rmc}, GGA {gga}")
            return None
        return Fix(lat, lon,
                   speed=None if knots is None or knots < 0 else knots * KNOTS_TO_KMH,
                   altitude=altitude,
                   heading=None if course is None else course % 360.0,
                   time=when)


def _has_fix(rmc: list[str] | None, gga: list[str] | None) -> bool:
    if rmc is not None:
        if len(rmc) < 9 or rmc[1] != "A":
            return False
        if len(rmc) > 11 and rmc[11][:1] in BAD_MODES:
            return False
    return gga is None or (len(gga) > 5 and gga[5] in GOOD_QUALITY)


def _degrees(value: str, hemisphere: str, width: int, positive: str, negative: str) -> float:
    """NMEA's ``ddmm.mmmm`` (``dddmm.mmmm`` for longitudes) and hemisphere -> degrees."""
    head, minutes_text = value[:width], value[width:]
    if not head.isdigit() or len(head) != width or not minutes_text[:2].isdigit():
        raise ValueError(f"not a position: {value!r}")
    minutes = float(minutes_text)
    if not 0.0 <= minutes < 60.0:
        raise ValueError(f"minutes out of range: {value!r}")
    degrees = int(head) + minutes / 60.0
    if hemisphere == positive:
        return degrees
    if hemisphere == negative:
        return -degrees
    raise ValueError(f"not a hemisphere: {hemisphere!r}")


def _number(text: str) -> float | None:
    """A field's number, or None when it is empty (the receiver does not know)."""
    if not text:
        return None
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a number: {text!r}")
    return value


def _utc(date: str, time_of_day: str) -> float | None:
    """RMC's ``ddmmyy`` and ``hhmmss.ss`` as epoch seconds (UTC), or None if either is
    empty. Two-digit years: 80-99 are the 1900s (GPS began in 1980)."""
    if not date or not time_of_day:
        return None
    if len(date) != 6 or not date.isdigit() or len(time_of_day) < 6 \
            or not time_of_day[:6].isdigit():
        raise ValueError(f"not a date and time: {date!r} {time_of_day!r}")
    year = int(date[4:6])
    seconds = float(time_of_day[4:])
    whole = int(seconds)
    when = datetime(1900 + year if year >= 80 else 2000 + year, int(date[2:4]), int(date[0:2]),
                    int(time_of_day[0:2]), int(time_of_day[2:4]), whole, tzinfo=UTC)
    return when.timestamp() + (seconds - whole)
