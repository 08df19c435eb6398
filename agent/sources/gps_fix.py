"""What the two GPS sources share: the checks a fix must pass, and the reading loop.

A receiver says many things that are not a position one may believe. What
does not make a fix is counted in ``stats.skipped`` by kind and ignored (the
first of each kind logged as a warning):

* garbage on the line: ``checksum`` (NMEA, bad or missing), ``bad_sentence``
  (NMEA that does not parse), ``bad_json`` (gpsd), ``bad_report`` (a gpsd
  report whose values are not numbers), ``too_long`` (a line past any sane
  length);
* ``no_fix``: the receiver says it has none (NMEA status V or quality 0,
  gpsd mode below 2);
* ``out_of_range``: a latitude outside [-90, 90] or a longitude outside
  [-180, 180];
* ``jump``: the fix implies more than :data:`MAX_SPEED` (100 m/s, 360 km/h)
  since the last accepted one, measured on the receiver's clock when both
  fixes carry its time, else on the box's. After :data:`PATIENCE` (5)
  rejections in a row the next fix is taken as the new reference: the old
  one was the outlier (a first fix 500 km off would otherwise hold every
  true one back for ever).

The loop (:class:`GpsSource`): open the connection, read, hand on each fix
believed as a frame (agent.decode.gps: message ``GPS``) stamped with the
box's wall clock like a bus's frames. A connection that fails, closes, or
says nothing sensible for ``silent`` seconds (a receiver at the wrong baud
rate only says garbage) is closed and opened again with backoff (1 s doubling
to 60 s); each such stretch is a gap in ``stats`` until the receiver says
something sensible again. GPS is a live source: it does not wait for its
reader (the pipeline drops what finds its queue full, and counts it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import NamedTuple

from agent.decode.gps import FIX_ID, fix_data
from agent.errors import SourceError
from agent.frames import Frame
from agent.geo.distance import haversine_m
from agent.sources.base import Source
from agent.sources.gps_settings import GpsSettings

log = logging.getLogger(__name__)

MAX_SPEED = 100.0  # m/s: faster than any road vehicle's fix may move
PATIENCE = 5  # jumps rejected in a row before the reference is given up
MIN_INTERVAL = 0.1  # s: fixes closer in time are taken as this far apart (10 Hz receivers)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
SILENT_SECONDS = 10.0  # nothing sensible for this long: the connection is reopened

Pause = Callable[[threading.Event, float], object]


class Fix(NamedTuple):
    """What a receiver said of one instant."""

    latitude: float  # degrees
    longitude: float
    speed: float | None = None  # km/h over ground
    altitude: float | None = None  # m above mean sea level
    heading: float | None = None  # degrees from true north
    time: float | None = None  # the receiver's UTC time, epoch seconds, when it said


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Lines:
    """Bytes as they come -> whole lines of at most ``limit`` bytes; a longer line is
    skipped whole, reported through ``too_long(detail)``."""

    def __init__(self, limit: int, too_long: Callable[[str], None]) -> None:
        self.limit = limit
        self.too_long = too_long
        self.pending = b""
        self.discarding = False  # in a line too long to keep, until its end

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        out = []
        for line in lines:
            if self.discarding:
                self.discarding = False
            elif len(line) > self.limit:
                self.too_long(f"a line of {len(line)} bytes")
            else:
                out.append(line)
        if len(self.pending) > self.limit:
            if not self.discarding:
                self.too_long(f"a line of more than {self.limit} bytes")
            self.pending = b""
            self.discarding = True
        return out


class FixCheck:
    """Range and jump checks against the last accepted fix (see the module's docstring)."""

    def __init__(self, max_speed: float = MAX_SPEED, patience: int = PATIENCE) -> None:
        self.max_speed = max_speed
        self.patience = patience
        self.rejected = 0  # jumps rejected in a row
        self._last: tuple[Fix, float] | None = None  # the reference, and when it came (box)

    def problem(self, fix: Fix, now: float) -> str | None:
        """None when ``fix`` is believed (it becomes the reference), else the kind of
        problem. ``now``: the box's monotonic clock, for fixes without the receiver's."""
        if not (-90.0 <= fix.latitude <= 90.0 and -180.0 <= fix.longitude <= 180.0):
            return "out_of_range"  # NaN fails the comparisons too
        last = self._last
        if last is not None:
            ref, ref_now = last
            if fix.time is not None and ref.time is not None:
                elapsed = fix.time - ref.time
            else:
                elapsed = now - ref_now
            metres = haversine_m(ref.latitude, ref.longitude, fix.latitude, fix.longitude)
            if metres > self.max_speed * max(elapsed, MIN_INTERVAL):
                if self.rejected < self.patience:
                    self.rejected += 1
                    return "jump"
                log.warning("GPS: %d fixes in a row far from the last one believed: the "
                            "new one is taken as the reference (%.0f m away)", self.rejected,
                            metres)
        self.rejected = 0
        self._last = (fix, now)
        return None


class GpsSource(Source):
    """A GPS receiver's fixes, reconnecting for ever (see the module's docstring).

    Subclasses open the connection (``_open``), read it (``_read``: a Fix for each
    candidate, None after a read that gave none) and close it (``_disconnect``)."""

    live = True

    def __init__(self, name: str, settings: GpsSettings, *, channel: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
                 silent: float = SILENT_SECONDS, pause: Pause | None = None,
                 check: FixCheck | None = None) -> None:
        super().__init__(name)
        self.settings = settings
        self.channel = channel or name
        self.clock = clock
        self.wall = wall
        self.backoff = backoff
        self.silent = silent
        self.check = check if check is not None else FixCheck()
        self.opens = 0  # connections opened (a serial port's input is flushed on opening)
        self.connects = 0  # connections that said something sensible
        self._pause: Pause = pause if pause is not None else _wait
        self._lock = threading.Lock()  # the connection, between the reader and close()
        self._delay = backoff[0]
        self._heard_at = clock()
        self._gap_started: float | None = None
        self._spoke = False  # this connection said something sensible

    @property
    def where(self) -> str:
        return self.settings.where

    # -- the hooks ------------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open the connection (raise OSError or SourceError when it cannot be)."""

    @abstractmethod
    def _read(self, stop: threading.Event) -> Iterator[Fix | None]:
        """Read until ``stop``; raise OSError or SourceError when the connection fails."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Close the connection, if open. Safe from another thread, and to call again."""

    # -- for the hooks --------------------------------------------------------------------

    def _heard(self) -> None:
        """The receiver said something sensible (a fix or not): a gap ends here."""
        self._heard_at = self.clock()
        if not self._spoke:
            self._spoke = True
            self.connects += 1
            self._delay = self.backoff[0]
        stats = self.stats
        if stats.in_gap:
            stats.in_gap = False
            if self._gap_started is not None:
                stats.gap_seconds += self.clock() - self._gap_started
            log.info("%s: the GPS speaks again (%s)", self.name, self.where)

    def _skip(self, kind: str, detail: str) -> None:
        skipped = self.stats.skipped
        if not skipped[kind]:
            log.warning("%s: ignored (%s), and the next ones counted: %s", self.name, kind,
                        detail)
        skipped[kind] += 1

    def _closing(self) -> None:
        """In ``_open``, once the connection is held: refuse it if the source was closed."""
        if self._closed:
            self._disconnect()
            raise SourceError(f"{self.where}: the source was closed")

    # -- the reading thread ---------------------------------------------------------------

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set() and not self._closed:
            try:
                yield from self._session(stop)
            except (OSError, SourceError) as exc:
                self._failed(exc)
            finally:
                self._disconnect()
            if stop.is_set() or self._closed:
                return
            if self.on_idle is not None:
                self.on_idle()
            self._pause(stop, self._delay)
            self._delay = min(self._delay * 2, self.backoff[1])

    def _session(self, stop: threading.Event) -> Iterator[Frame]:
        self._spoke = False
        self._open()
        self.opens += 1
        self._heard_at = self.clock()
        check, channel = self.check, self.channel
        for fix in self._read(stop):
            if fix is None:
                if self.on_idle is not None:
                    self.on_idle()
                quiet = self.clock() - self._heard_at
                if quiet >= self.silent:
                    raise SourceError(f"{self.where}: nothing sensible for {quiet:.0f} s")
                continue
            problem = check.problem(fix, self.clock())
            if problem is not None:
                self._skip(problem, f"{fix.latitude:.6f}, {fix.longitude:.6f}")
                continue
            yield Frame(self.wall(), channel, FIX_ID, False, False,
                        fix_data(fix.latitude, fix.longitude, fix.speed, fix.altitude,
                                 fix.heading))

    def _failed(self, exc: BaseException) -> None:
        if self._closed:
            return
        stats = self.stats
        if not stats.in_gap:
            stats.gaps += 1
            stats.in_gap = True
            self._gap_started = self.clock()
            log.warning("%s: GPS lost (%s): %s; trying again with backoff", self.name,
                        self.where, exc)
        else:
            log.debug("%s: still failing: %s", self.name, exc)

    def _close(self) -> None:
        self._disconnect()


def _wait(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)
