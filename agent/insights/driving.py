"""Driving events: harsh braking and acceleration, speeding, night driving.

An episode is a run of consecutive samples over a threshold; it counts when
its first and last samples over the threshold are at least the minimum time
apart (what was *seen* to last, not what may have lasted between two samples),
and becomes one event when it ends (the first sample back under the threshold,
a gap in the data, or the end of the trip), stamped with its start, saying how
long it lasted and its peak.

Harsh braking and acceleration read the longitudinal acceleration when the
vehicle reports one, else the speed's derivative over one second (OBD's 1 km/h
resolution makes a one-sample derivative at 2 Hz jump by 0.56 m/s²; over one
second the error is at most 0.28 m/s²). Nothing is harsh below the minimum
speed (a parking manoeuvre's jolt).
"""

from __future__ import annotations

import datetime as dt
from collections import deque

from agent.insights import wording
from agent.insights.settings import InsightsConfig
from agent.insights.wording import Finding

EPSILON = 1e-6  # seconds: float timestamps of epoch size differ by this much
DERIVATIVE_SPAN = 1.0  # seconds of speed the derivative is taken over
MAX_SPEED_GAP = 2.0  # seconds between two speed samples beyond which the derivative restarts
MAX_ACCEL_GAP = 1.0  # seconds without acceleration that end a harsh episode
MAX_SPEEDING_GAP = 5.0  # seconds without speed that end a speeding episode
ACCEL_SILENCE = 5.0  # seconds without acceleration after which the speed's derivative is used


class _Episode:
    """A run of samples over a threshold."""

    __slots__ = ("last", "limit", "peak", "speed_from", "speed_to", "start")

    def __init__(self, ts: float, value: float, speed_from: float | None,
                 limit: float = 0.0) -> None:
        self.start = self.last = ts
        self.peak = value
        self.speed_from = self.speed_to = speed_from
        self.limit = limit

    @property
    def length(self) -> float:
        return self.last - self.start


class HarshWatch:
    """Harsh braking and harsh acceleration (see the module's docstring)."""

    def __init__(self, config: InsightsConfig) -> None:
        self.config = config
        self.derived = True  # from the speed, until an acceleration signal shows up
        self._episode: _Episode | None = None
        self._sign = 0  # +1 accelerating, -1 braking
        self._last_ts: float | None = None
        self._accel_ts = 0.0  # when the acceleration signal last reported
        self._window: deque[tuple[float, float]] = deque()

    def acceleration(self, ts: float, value: float, speed: float | None) -> list[Finding]:
        """One longitudinal acceleration sample (m/s²) with the speed then (km/h)."""
        out: list[Finding] = []
        self._accel_ts = ts
        if self.derived:  # a real signal: forget what the speed said
            self.derived = False
            self._episode = None
            self._window.clear()
        self._feed(ts, value, speed, speed, MAX_ACCEL_GAP, out)
        return out

    def speed(self, ts: float, kmh: float) -> list[Finding]:
        """One speed sample (km/h): the derivative, when there is no acceleration signal."""
        out: list[Finding] = []
        if not self.derived:
            if ts - self._accel_ts <= ACCEL_SILENCE:
                return out
            self.flush(out)
            self.derived = True  # the acceleration signal is gone: back to the speed
        window = self._window
        if window and (ts - window[-1][0] > MAX_SPEED_GAP or ts <= window[-1][0]):
            window.clear()
            self.flush(out)
        window.append((ts, kmh))
        while len(window) > 2 and ts - window[1][0] >= DERIVATIVE_SPAN - EPSILON:
            window.popleft()
        t0, v0 = window[0]
        if ts - t0 < DERIVATIVE_SPAN - EPSILON:
            return out
        self._feed(ts, (kmh - v0) / 3.6 / (ts - t0), kmh, v0, MAX_SPEED_GAP, out)
        return out

    def _feed(self, ts: float, value: float, speed: float | None, speed_from: float | None,
              gap: float, out: list[Finding]) -> None:
        config = self.config
        last, self._last_ts = self._last_ts, ts
        if last is not None and ts - last > gap:
            self.flush(out)
        sign = 1 if value >= config.harsh_acceleration else (
            -1 if value <= -config.harsh_braking else 0)
        if speed is not None and speed < config.harsh_min_speed:
            sign = 0
        episode = self._episode
        if episode is not None and sign != self._sign:
            self.flush(out)
            episode = None
        if sign == 0:
            return
        if episode is None:
            self._episode = _Episode(ts, value, speed_from)
            self._sign = sign
            return
        episode.last = ts
        episode.speed_to = speed
        if abs(value) > abs(episode.peak):
            episode.peak = value

    def flush(self, out: list[Finding]) -> None:
        """End the episode under way (the trip ended, or the data stopped)."""
        episode, self._episode = self._episode, None
        if episode is None or episode.length < self.config.harsh_min_s - EPSILON:
            return
        braking = self._sign < 0
        what = "harsh braking" if braking else "harsh acceleration"
        moving = ""
        if episode.speed_from is not None and episode.speed_to is not None:
            moving = (f" from {wording.speed(episode.speed_from)} to "
                      f"{wording.speed(episode.speed_to)}")
        source = " from the speed" if self.derived else ""
        detail = (f"{what} for {wording.duration(episode.length)}{moving}, peak "
                  f"{wording.accel(episode.peak)}{source}")
        kind = "driving.harsh_braking" if braking else "driving.harsh_acceleration"
        out.append(Finding(episode.start, kind, detail, episode.length))


class SpeedingWatch:
    """Speed above the limit (the per-road one when known) for the minimum time."""

    def __init__(self, config: InsightsConfig) -> None:
        self.config = config
        self._episode: _Episode | None = None

    def speed(self, ts: float, kmh: float, road_limit: float | None) -> list[Finding]:
        out: list[Finding] = []
        limit = road_limit if road_limit is not None else self.config.speed_limit
        episode = self._episode
        if episode is not None and ts - episode.last > MAX_SPEEDING_GAP:
            self.flush(out)
            episode = None
        if kmh <= limit:
            self.flush(out)
            return out
        if episode is None:
            self._episode = _Episode(ts, kmh, kmh, limit)
            return out
        episode.last = ts
        if kmh - limit > episode.peak - episode.limit:
            episode.peak, episode.limit = kmh, limit
        return out

    def flush(self, out: list[Finding]) -> None:
        episode, self._episode = self._episode, None
        if episode is None or episode.length < self.config.speeding_min_s - EPSILON:
            return
        detail = (f"speeding for {wording.duration(episode.length)}, peak "
                  f"{wording.speed(episode.peak)} where the limit is "
                  f"{wording.speed(episode.limit)}")
        out.append(Finding(episode.start, "driving.speeding", detail, episode.length))


def night_time(start: float, end: float, window: tuple[int, int], zone: dt.tzinfo | None
               ) -> tuple[float, float | None]:
    """Seconds of ``[start, end]`` inside the nightly ``window`` (minutes after local
    midnight, wrapping past it when start > end), and when the first of them was."""
    begin, finish = window
    if end <= start:
        return 0.0, None
    day = wording.local_date(start, zone) - dt.timedelta(days=1)
    last_day = wording.local_date(end, zone)
    total, first = 0.0, None
    while day <= last_day:
        opens = wording.local_moment(day, begin, zone)
        closes = wording.local_moment(day, finish + (1440 if finish <= begin else 0), zone)
        lo, hi = max(start, opens), min(end, closes)
        if hi > lo:
            total += hi - lo
            first = lo if first is None else first
        day += dt.timedelta(days=1)
    return total, first


def night_finding(start: float, end: float, config: InsightsConfig) -> Finding | None:
    """The trip's ``driving.night`` event, when it had a second of night at least."""
    seconds, first = night_time(start, end, config.night_window, config.zone)
    if first is None or seconds < 1.0:
        return None
    detail = f"night driving for {wording.minutes(seconds)} ({config.night})"
    return Finding(first, "driving.night", detail, seconds)
