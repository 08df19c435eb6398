"""The insights engine: kept samples and source events in, the box's own events out.

The pipeline's consumer thread hands every kept chunk of samples to
:meth:`Insights.samples` in order, and calls :meth:`Insights.quiet` about every
second with the wall clock. What comes back are :class:`~agent.frames.Event`
records on channel ``insights``, priority :data:`PRIORITY`, whose ``detail``
is a sentence for a person; none carries a position.

Everything is worked out from the samples' own timestamps, so a replayed log
gives the same events on any machine at any speed. The one exception is the
end of a trip because the data stopped coming: within the data, a gap of
``bus_quiet_s`` between two samples ends the trip at the last sample before
it; when nothing comes at all (a live bus gone quiet, the engine off and the
box asleep, a replay at its end), :meth:`Insights.quiet` ends it after
``bus_quiet_s`` of the wall clock without a chunk, still at its last sample.

The insights see only what the rules keep: a ``min_period`` on the speed thins
what the harsh-event detection sees (docs/insights.md).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.frames import Event, Sample
from agent.insights import wording
from agent.insights.driving import HarshWatch, SpeedingWatch, night_finding, night_time
from agent.insights.maintenance import BatteryWatch, CoolantWatch, ServiceReminder
from agent.insights.roles import Reading, Roles, ignition_on
from agent.insights.settings import InsightsConfig
from agent.insights.state import STATE_FILE, Saved, load_state, save_state
from agent.insights.trips import MOVING, Trip, summary
from agent.insights.wording import Finding

log = logging.getLogger(__name__)

CHANNEL = "insights"
PRIORITY = 3  # as high as a trouble code: small, rare, what the recipients want first
SAVE_EVERY = 15.0  # seconds of sample time between two saves of an open trip
MAX_ROAD_LIMIT = 250.0  # km/h: a per-road value at or above this (or 0) means none


class Insights:
    """Driving, trip and maintenance events from the samples (see the module's docstring)."""

    def __init__(self, settings: InsightsConfig, state_dir: Path) -> None:
        self.config = settings
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        self.roles = Roles(settings)
        saved = load_state(self.path) if settings.enabled else Saved()
        self.trip = saved.trip
        self.last_ts = saved.last_ts
        self.off_since = saved.off_since
        self.battery = BatteryWatch(settings, saved.days, saved.rest_read_for)
        self.harsh = HarshWatch(settings)
        self.speeding = SpeedingWatch(settings)
        self.coolant = CoolantWatch(settings)
        self.service = ServiceReminder(settings, saved.odometer, saved.estimate)
        self.ignition: bool | None = None  # None: not seen since the start
        self.speed: float | None = None
        self.road_limit: float | None = None
        self.counters: Counter[str] = Counter()  # the events given, by kind
        self.source_events: Counter[str] = Counter()  # the sources' events seen, by kind
        self._fed = False  # a chunk came since the last quiet() call
        self._time_channels: set[str] = set()  # channels whose samples feed a role
        self._quiet_since: float | None = None  # wall clock
        self._saved_ts: float | None = None
        self._save_failed = False
        self._handlers: dict[str, Callable[[Reading, list[Finding]], None]] = {
            "speed": self._speed, "acceleration": self._acceleration,
            "odometer": self._odometer, "ignition": self._ignition,
            "battery_voltage": self._battery, "coolant": self._coolant,
            "speed_limit_signal": self._road_limit,
        }
        if self.trip is not None:
            log.info("insights: continuing the trip started at %s", self.trip.start)

    # -- the interface the service wires ------------------------------------------------

    def samples(self, samples: list[Sample]) -> list[Event]:
        """One kept chunk, in order; the events it completes."""
        if not self.config.enabled or not samples:
            return []
        with self._lock:
            self._fed = True
            out: list[Finding] = []
            readings = self.roles.pick(samples)
            # a chunk is one channel's: its samples move the trip's time on only when that
            # channel feeds a role (another channel may keep another clock: a live OBD
            # port beside a simulated or replayed bus)
            channel = samples[0][1]
            if readings:
                self._time_channels.add(channel)
            timed = channel in self._time_channels
            if timed:
                self._advance(samples[0][0], out)
            handlers = self._handlers
            for reading in readings:
                self._advance(reading.timestamp, out)
                handlers[reading.role](reading, out)
            if timed:
                self._advance(samples[-1][0], out)
            if self.trip is not None and (self._saved_ts is None or self.last_ts is None
                                          or self.last_ts - self._saved_ts >= SAVE_EVERY):
                self._save()
            return self._events(out)

    def events(self, events: list[Event]) -> list[Event]:
        """The sources' events (``dtc.set``, ``dtc.cleared``, ``obd.mil``...): already
        sentences with a high priority, they go to the stores as they are; they are
        counted for :meth:`status` (not in the trip's summary: a trouble code is the
        garage's business, not the insurer's). Nothing comes back."""
        if self.config.enabled:
            with self._lock:
                self.source_events.update(event.kind for event in events)
        return []

    def quiet(self, now: float) -> list[Event]:
        """Called about every second with the wall clock: ends the trip when no chunk came
        for ``bus_quiet_s`` (see the module's docstring)."""
        if not self.config.enabled:
            return []
        with self._lock:
            since = self._quiet_since
            if self._fed or since is None or now < since:
                self._fed = False
                self._quiet_since = now
                return []
            if self.trip is None or now - since < self.config.bus_quiet_s:
                return []
            out: list[Finding] = []
            self._end(self.trip.last, "quiet", out)
            return self._events(out)

    def close(self) -> None:
        """Keep the state (an open trip continues after a restart)."""
        if not self.config.enabled:
            return
        with self._lock:
            self._save()

    def status(self) -> dict[str, Any]:
        """For ``bavard status``: the trip under way, the events so far, the reminders."""
        with self._lock:
            out: dict[str, Any] = {"enabled": self.config.enabled}
            if not self.config.enabled:
                return out
            trip = self.trip
            out["trip"] = None if trip is None else {
                "since": trip.start, "started_by": trip.how,
                "km": round(trip.km, 3), "seconds": round(trip.last - trip.start, 3),
                "idle_seconds": round(trip.idle, 3), "events": dict(trip.counts)}
            out["events"] = dict(sorted(self.counters.items()))
            out["source_events"] = dict(sorted(self.source_events.items()))
            odometer = out["odometer_km"] = self.service.odometer_now()
            km_left = days_left = None
            if self.last_ts is not None:
                km_left, days_left = self.service.left(self.last_ts, odometer)
            out["service"] = {"km_left": None if km_left is None else round(km_left, 1),
                              "days_left": days_left}
            out["battery"] = {day: {k: round(v, 3) for k, v in values.items()}
                              for day, values in sorted(self.battery.days.items())}
            out["signals"] = self.roles.owners()
            return out

    # -- time and trips -------------------------------------------------------------------

    def _advance(self, ts: float, out: list[Finding]) -> None:
        """Sample time moves on to ``ts``: a gap or a long stop may end the trip."""
        last = self.last_ts
        if last is None or ts > last:
            self.last_ts = ts
        trip = self.trip
        if trip is None:
            return
        config = self.config
        if ts - trip.last >= config.bus_quiet_s:
            self._end(trip.last, "quiet", out)
        elif trip.stopped_since is not None and ts - trip.stopped_since >= config.stopped_end_s:
            self._end(trip.stopped_since, "stopped", out)
        elif ts > trip.last:
            trip.last = ts

    def _start(self, ts: float, how: str, out: list[Finding]) -> None:
        self.trip = Trip(ts, how, ts)
        if self.speed is not None and self.speed <= MOVING:
            self.trip.stopped_since = ts  # the ignition came on at a standstill
        if self.ignition is None:  # no ignition signal: the trip says when the engine runs
            self.off_since = None
            self.battery.engine_started(ts)
        out.append(Finding(ts, "trip.start",
                           f"trip started ({'ignition on' if how == 'ignition' else 'moving'})"))
        self._remind(self.service.trip_started(ts), out)
        self._save()

    def _end(self, end: float, reason: str, out: list[Finding]) -> None:
        trip = self.trip
        assert trip is not None
        found: list[Finding] = []
        self.harsh.flush(found)
        self.speeding.flush(found)
        self.coolant.flush(found)
        self._add(found, out)
        self.trip = None
        end = max(end, trip.start)
        if trip.stopped_since is not None and reason != "stopped":
            trip.idle += max(0.0, end - trip.stopped_since)
        night = night_finding(trip.start, end, self.config)
        if night is not None:
            out.append(night)
        night_s = night_time(trip.start, end, self.config.night_window, self.config.zone)[0]
        why = {"ignition": "ignition off",
               "stopped": f"stopped for {wording.duration(self.config.stopped_end_s)}",
               "quiet": f"no data for {wording.duration(self.config.bus_quiet_s)}"}[reason]
        out.append(Finding(end, "trip.end", summary(trip, end, why, night_s)))
        self._remind(self.service.trip_ended(end, trip.km), out)
        if self.ignition is None:
            self.off_since = end
            self.battery.engine_stopped()
        self._save()

    def _remind(self, found: Finding | None, out: list[Finding]) -> None:
        if found is not None:
            out.append(found)

    # -- the roles --------------------------------------------------------------------

    def _speed(self, reading: Reading, out: list[Finding]) -> None:
        ts, kmh = reading.timestamp, reading.value
        self.speed = kmh
        if self.trip is None and kmh > MOVING:
            self._start(ts, "moving", out)
        if self.trip is not None:
            self.trip.moving(ts, kmh)
        self._add(self.harsh.speed(ts, kmh), out)
        self._add(self.speeding.speed(ts, kmh, self.road_limit), out)

    def _acceleration(self, reading: Reading, out: list[Finding]) -> None:
        self._add(self.harsh.acceleration(reading.timestamp, reading.value, self.speed), out)

    def _odometer(self, reading: Reading, out: list[Finding]) -> None:
        if self.trip is not None:
            self.trip.odometer(reading.value)
        self._remind(self.service.odometer_read(reading.timestamp, reading.value), out)

    def _ignition(self, reading: Reading, out: list[Finding]) -> None:
        ts = reading.timestamp
        on = ignition_on(reading.value, reading.label)
        before, self.ignition = self.ignition, on
        if on and before is not True:
            self.off_since = None
            self.battery.engine_started(ts)
            if self.trip is None:
                self._start(ts, "ignition", out)
        elif not on and (before is True or self.trip is not None):
            self.battery.engine_stopped()
            if self.trip is not None:
                self._end(ts, "ignition", out)
            self.off_since = ts
        elif not on and self.off_since is None:
            self.off_since = ts  # off when first seen: at least since then

    def _battery(self, reading: Reading, out: list[Finding]) -> None:
        off = self.ignition is False if self.ignition is not None else self.trip is None
        self._add(self.battery.voltage(reading.timestamp, reading.value,
                                       self.off_since if off else None), out)

    def _coolant(self, reading: Reading, out: list[Finding]) -> None:
        self._add(self.coolant.temperature(reading.timestamp, reading.value), out)

    def _road_limit(self, reading: Reading, out: list[Finding]) -> None:
        value = reading.value
        self.road_limit = value if 0.0 < value < MAX_ROAD_LIMIT else None

    # -- output and state ----------------------------------------------------------------

    def _add(self, found: list[Finding], out: list[Finding]) -> None:
        for finding in found:
            if self.trip is not None:
                self.trip.count(finding.kind, finding.duration)
            out.append(finding)

    def _events(self, found: list[Finding]) -> list[Event]:
        events = []
        for finding in found:
            self.counters[finding.kind] += 1
            log.info("insights: %s %s", finding.kind, finding.detail)
            events.append(Event(finding.timestamp, CHANNEL, finding.kind, finding.detail,
                                PRIORITY))
        return events

    def _save(self) -> None:
        saved = Saved(self.trip, self.last_ts, self.service.odometer, self.service.estimate,
                      self.off_since, self.battery.days, self.battery.rest_read_for)
        try:
            save_state(self.path, saved)
        except (OSError, ValueError) as exc:
            if not self._save_failed:
                log.warning("%s: cannot keep the insights' state: %s", self.path,
                            getattr(exc, "strerror", None) or exc)
            self._save_failed = True
            return
        if self._save_failed:
            log.info("%s: the insights' state is kept again", self.path)
        self._save_failed = False
        self._saved_ts = self.last_ts
