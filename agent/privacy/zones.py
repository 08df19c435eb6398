"""Privacy zones and coarsening: which positions of a trip leave the box, and how precise.

One :class:`PositionGate` per destination whose purpose may receive positions
(a geohash precision above 0). The router tells it where trips start and end
and offers it the position samples (signals named ``Latitude``/``Longitude``,
any channel and message) of each chunk:

* a position is the pair of a ``Latitude`` and a ``Longitude`` sample of the
  same channel, message and timestamp; a lone half is dropped (``unpaired``,
  counted in samples; every other count is in positions);
* a position offered outside a trip is dropped (``outside_trip``); inside a trip
  it is held, up to ``max_held`` positions (then dropped: ``full``; the trip's
  last position is still followed, so that its end zone stays where the trip
  ends);
* at the trip's end, two privacy zones are cut out: one centred on the trip's
  first position with a radius drawn uniformly in ``[zone_min_m, zone_max_m]``
  when the trip started, one centred on its last position with a radius drawn
  when it ended (fresh radii for every trip: an observer of many trips cannot
  find the home at the common centre of sharp circles). A held position within
  either zone is dropped (``in_zone``); every other one is released, its values
  replaced by the centre of its geohash cell at ``precision`` (same channel,
  message, signal, timestamp, unit), in time order. Consecutive released
  positions in the same cell are released once, the first (``same_cell``).

First and last are by timestamp. ``trip_start`` during a trip drops what the
unfinished trip held (``unfinished``); ``forget`` drops what is held (consent
withdrawn: ``forgotten``) and keeps the trip's zones where they are.

Held positions live in memory only: a power cut or a restart mid-trip loses
them. That is deliberate: privacy wins over completeness for positions (a
trip whose end was never seen cannot have its end zone cut out, so nothing of
it may leave).

One thread calls it (the router holds its lock): no locks here.
"""

from __future__ import annotations

import logging
import math
import random
from array import array
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from agent.frames import Sample
from agent.geo.distance import haversine_m
from agent.geo.geohash import MAX_PRECISION, cell

log = logging.getLogger(__name__)

LATITUDE = "latitude"
LONGITUDE = "longitude"
COUNTS = ("held", "released", "in_zone", "outside_trip", "full", "unpaired", "same_cell",
          "unfinished", "forgotten", "invalid")


class _Shape(NamedTuple):
    """What a released position's two samples carry besides the timestamp and values."""

    channel: str
    message: str
    lat_signal: str
    lat_unit: str
    lat_label: str | None
    lat_flags: int
    lon_signal: str
    lon_unit: str
    lon_label: str | None
    lon_flags: int


class _Point(NamedTuple):
    ts: float
    lat: float
    lon: float


class PositionGate:
    """Holds a trip's positions and releases them coarsened, the zones cut out (see the
    module's docstring)."""

    def __init__(self, precision: int, zone_min_m: float = 200.0, zone_max_m: float = 1000.0,
                 rng: random.Random | None = None, max_held: int = 86_400) -> None:
        if isinstance(precision, bool) or not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be within [1, {MAX_PRECISION}], got {precision!r}")
        if not 0 <= zone_min_m <= zone_max_m or not math.isfinite(zone_max_m):
            raise ValueError(f"zones: need 0 <= zone_min_m <= zone_max_m, got {zone_min_m!r}, "
                             f"{zone_max_m!r}")
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, got {max_held!r}")
        self.precision = precision
        self.zone_min_m = float(zone_min_m)
        self.zone_max_m = float(zone_max_m)
        self.rng = rng if rng is not None else random.Random()
        self.max_held = max_held
        self._counts = Counter({name: 0 for name in COUNTS})
        self._in_trip = False
        self._trip_started = 0.0
        self._start_radius = 0.0
        self._first: _Point | None = None  # the trip's earliest position
        self._last: _Point | None = None  # and its latest, held or not
        # the held positions, compact: 26 bytes each (a day at 1 Hz: about 2.2 MB)
        self._ts = array("d")
        self._lat = array("d")
        self._lon = array("d")
        self._shape_of = array("I")
        self._shapes: list[_Shape] = []
        self._shape_index: dict[_Shape, int] = {}

    # -- what the router calls ------------------------------------------------------------

    def trip_start(self, ts: float) -> None:
        """A trip starts at ``ts``: its start zone's radius is drawn now."""
        if self._in_trip:
            self._counts["unfinished"] += len(self._ts)
            log.info("position gate: a trip started before the previous one ended: its %d "
                     "held positions are dropped", len(self._ts))
        self._clear()
        self._in_trip = True
        self._trip_started = ts
        self._start_radius = self.rng.uniform(self.zone_min_m, self.zone_max_m)
        self._first = self._last = None

    def offer(self, samples: Iterable[Sample]) -> None:
        """The position samples of one chunk: paired, then held (in a trip) or dropped."""
        for shape, point in self._pairs(samples):
            if not self._in_trip:
                self._counts["outside_trip"] += 1
                continue
            if not (-90.0 <= point.lat <= 90.0 and -180.0 <= point.lon <= 180.0):
                self._counts["invalid"] += 1  # NaN fails the comparisons too
                continue
            if self._first is None or point.ts < self._first.ts:
                self._first = point
            if self._last is None or point.ts >= self._last.ts:
                self._last = point
            if len(self._ts) >= self.max_held:
                self._counts["full"] += 1
                continue
            index = self._shape_index.get(shape)
            if index is None:
                index = self._shape_index[shape] = len(self._shapes)
                self._shapes.append(shape)
            self._ts.append(point.ts)
            self._lat.append(point.lat)
            self._lon.append(point.lon)
            self._shape_of.append(index)

    def trip_end(self, ts: float) -> list[Sample]:
        """The trip ended at ``ts``: its end zone's radius is drawn, and what may leave is
        returned (a ``Latitude`` then a ``Longitude`` sample per released position)."""
        if not self._in_trip:
            return []
        end_radius = self.rng.uniform(self.zone_min_m, self.zone_max_m)
        out: list[Sample] = []
        first, last = self._first, self._last
        held = len(self._ts)
        if first is not None and last is not None:
            out = self._release(first, self._start_radius, last, end_radius)
        log.debug("position gate: trip %.3f-%.3f: %d positions held, %d released",
                  self._trip_started, ts, held, len(out) // 2)
        self._clear()
        self._in_trip = False
        self._first = self._last = None
        return out

    def forget(self) -> int:
        """Drop every held position (consent withdrawn); how many. The trip goes on, its
        zones centred where they were."""
        dropped = len(self._ts)
        self._counts["forgotten"] += dropped
        self._clear()
        return dropped

    def counts(self) -> dict[str, int]:
        """Positions held now, released, and dropped by reason (lone halves in samples)."""
        out = dict(self._counts)
        out["held"] = len(self._ts)
        return out

    @property
    def in_trip(self) -> bool:
        return self._in_trip

    # -- inside ---------------------------------------------------------------------------

    def _pairs(self, samples: Iterable[Sample]) -> list[tuple[_Shape, _Point]]:
        """(shape, point) for each Latitude/Longitude pair, in the order of their first
        half; lone halves (and a second half of the same kind) counted."""
        halves: dict[tuple[str, str, float], list[Sample | None]] = {}
        for sample in samples:
            name = sample.signal.lower()
            if name == LATITUDE:
                slot = 0
            elif name == LONGITUDE:
                slot = 1
            else:
                continue  # not a position: the router passes none
            key = (sample.channel, sample.message, sample.timestamp)
            pair = halves.setdefault(key, [None, None])
            if pair[slot] is not None:
                self._counts["unpaired"] += 1  # the same half twice: the first is kept
                continue
            pair[slot] = sample
        out = []
        for (channel, message, ts), (lat, lon) in halves.items():
            if lat is None or lon is None:
                self._counts["unpaired"] += 1
                continue
            shape = _Shape(channel, message, lat.signal, lat.unit, lat.label, lat.flags,
                           lon.signal, lon.unit, lon.label, lon.flags)
            out.append((shape, _Point(ts, float(lat.value), float(lon.value))))
        return out

    def _release(self, first: _Point, start_radius: float, last: _Point,
                 end_radius: float) -> list[Sample]:
        ts, lats, lons, shapes = self._ts, self._lat, self._lon, self._shape_of
        order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: offer order on ties
        out: list[Sample] = []
        previous = None
        counts = self._counts
        for i in order:
            lat, lon = lats[i], lons[i]
            if (haversine_m(first.lat, first.lon, lat, lon) <= start_radius
                    or haversine_m(last.lat, last.lon, lat, lon) <= end_radius):
                counts["in_zone"] += 1
                continue
            where = cell(lat, lon, self.precision)
            if where.geohash == previous:
                counts["same_cell"] += 1
                continue
            previous = where.geohash
            centre_lat, centre_lon = where.centre
            s = self._shapes[shapes[i]]
            out.append(Sample(ts[i], s.channel, s.message, s.lat_signal, centre_lat, s.lat_unit,
                              s.lat_label, s.lat_flags))
            out.append(Sample(ts[i], s.channel, s.message, s.lon_signal, centre_lon, s.lon_unit,
                              s.lon_label, s.lon_flags))
            counts["released"] += 1
        return out

    def _clear(self) -> None:
        for column in (self._ts, self._lat, self._lon, self._shape_of):
            del column[:]
        self._shapes.clear()
        self._shape_index.clear()
