"""Maintenance events: service due, battery health, coolant over-temperature.

* Service: due by distance (the odometer, or the distance the box integrated
  since ``last_service_km`` when the vehicle reports no odometer) and by time
  (from ``last_service_date``), said when within the warning margin, at most
  once per trip start.
* Battery: a *rest* reading once the engine has been off long enough (the
  first voltage sample after that: at the end of a drive while the bus is
  still awake, or when the car wakes up hours later), and the *cranking*
  minimum: the lowest voltage from the ignition coming on until the alternator
  charges (above :data:`CHARGING`). The lowest of each per local day is kept
  (state), and each warning says how the rest voltage moved over the last days.
* Coolant: above ``coolant_max`` for ``coolant_min_s`` is an episode, which
  ends when the temperature is back below ``coolant_recover``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math

from agent.insights import wording
from agent.insights.settings import InsightsConfig
from agent.insights.wording import Finding

EPSILON = 1e-6
CHARGING = 13.2  # V: above this the alternator charges: the engine runs
NOT_CHARGING = 13.0  # V: a start window counts only when it saw the engine not running
CRANK_WINDOW = 30.0  # seconds: a start window that never sees charging is dropped
# open-circuit voltage -> state of charge of a 12 V lead-acid battery at rest
_CHARGE = ((11.89, 0.0), (12.06, 25.0), (12.24, 50.0), (12.45, 75.0), (12.65, 100.0))


def charge_percent(volts: float) -> int:
    """The rough state of charge of a resting lead-acid battery, to 5 %."""
    if volts <= _CHARGE[0][0]:
        return 0
    for (v0, p0), (v1, p1) in itertools.pairwise(_CHARGE):
        if volts <= v1:
            return int(5 * round((p0 + (volts - v0) / (v1 - v0) * (p1 - p0)) / 5))
    return 100


class ServiceReminder:
    """``service due in 480 km`` (see the module's docstring).

    Knows the vehicle's odometer (``odometer``, the last reading) or, without one,
    ``estimate``: (the ``last_service_km`` it counts from, the km integrated since),
    both kept in the state."""

    def __init__(self, config: InsightsConfig, odometer: float | None = None,
                 estimate: tuple[float, float] | None = None) -> None:
        self.config = config
        self.odometer = odometer
        self.estimate = estimate
        self.pending = False  # the trip's reminder waits for the odometer's first reading

    @property
    def by_distance(self) -> bool:
        return (self.config.service_interval_km is not None
                and self.config.last_service_km is not None)

    def odometer_now(self) -> float | None:
        """The vehicle's odometer, else the last service's plus what was integrated since."""
        if self.odometer is not None:
            return self.odometer
        base = self.config.last_service_km
        if base is None:
            return None
        if self.estimate is not None and self.estimate[0] == base:
            return base + self.estimate[1]
        return base

    def trip_started(self, ts: float) -> Finding | None:
        """The reminder of a trip's start; on the very first trip it waits for the
        odometer (:meth:`odometer_read`) or the trip's end (:meth:`trip_ended`)."""
        if self.by_distance and self.odometer is None and self.estimate is None:
            self.pending = True
            return None
        return self.check(ts, self.odometer_now())

    def odometer_read(self, ts: float, km: float) -> Finding | None:
        self.odometer = km
        if not self.pending:
            return None
        self.pending = False
        return self.check(ts, km)

    def trip_ended(self, ts: float, km: float) -> Finding | None:
        """A trip of ``km`` ended: the estimate counts it when there is no odometer."""
        base = self.config.last_service_km
        if self.odometer is None and base is not None:
            done = self.estimate[1] if self.estimate is not None and self.estimate[0] == base \
                else 0.0
            self.estimate = (base, done + km)
        if not self.pending:
            return None
        self.pending = False
        return self.check(ts, self.odometer_now())

    def left(self, ts: float, odometer: float | None) -> tuple[float | None, int | None]:
        """Kilometres and days left until the service (negative: overdue; None: unknown)."""
        config = self.config
        km_left = days_left = None
        if self.by_distance and odometer is not None:
            assert config.service_interval_km is not None and config.last_service_km is not None
            km_left = config.last_service_km + config.service_interval_km - odometer
        if config.service_interval_days is not None and config.last_service_date is not None:
            due = config.last_service_date + dt.timedelta(days=config.service_interval_days)
            days_left = (due - wording.local_date(ts, config.zone)).days
        return km_left, days_left

    def check(self, ts: float, odometer: float | None) -> Finding | None:
        """The reminder at ``ts``, when the service is within the warning margins."""
        km_left, days_left = self.left(ts, odometer)
        phrases: list[tuple[str, str]] = []
        if km_left is not None and km_left <= self.config.service_warn_km + EPSILON:
            if km_left >= 0.5:
                phrases.append(("due", f"in {wording.km(km_left)}"))
            elif km_left <= -0.5:
                phrases.append(("overdue", f"by {wording.km(-km_left)}"))
            else:
                phrases.append(("due", "now"))
        if days_left is not None and days_left <= self.config.service_warn_days:
            if days_left > 0:
                phrases.append(("due", f"in {days_left} day{'s' if days_left > 1 else ''}"))
            elif days_left < 0:
                phrases.append(("overdue", f"by {-days_left} day{'s' if days_left < -1 else ''}"))
            else:
                phrases.append(("due", "today"))
        if not phrases:
            return None
        words, verb = [], ""
        for this_verb, rest in phrases:
            words.append(rest if this_verb == verb else f"{this_verb} {rest}")
            verb = this_verb
        return Finding(ts, "maintenance.service_due", "service " + " and ".join(words))


class BatteryWatch:
    """Rest and cranking voltages, per day (see the module's docstring)."""

    def __init__(self, config: InsightsConfig, days: dict[str, dict[str, float]],
                 rest_read_for: float | None = None) -> None:
        self.config = config
        self.days = days  # "YYYY-MM-DD" -> {"rest": V, "crank": V}: the day's lowest
        self.rest_read_for = rest_read_for  # the engine stop whose rest reading was taken
        self._start: tuple[float, float, float] | None = None  # opened, lowest, its ts

    def engine_started(self, ts: float) -> None:
        """The ignition came on: the cranking window opens."""
        self._start = (ts, math.inf, ts)

    def engine_stopped(self) -> None:
        self._start = None

    def voltage(self, ts: float, volts: float, off_since: float | None) -> list[Finding]:
        """One voltage sample; ``off_since``: since when the engine is off (None: running)."""
        out: list[Finding] = []
        start = self._start
        if start is not None:
            opened, lowest, lowest_ts = start
            if volts > CHARGING:
                self._start = None
                if lowest <= NOT_CHARGING:
                    self._crank(lowest_ts, lowest, out)
            elif ts - opened > CRANK_WINDOW:
                self._start = None
            elif volts < lowest:
                self._start = (opened, volts, ts)
        config = self.config
        if (off_since is not None and ts - off_since >= config.battery_rest_after_s - EPSILON
                and self.rest_read_for != off_since):
            self.rest_read_for = off_since
            self._rest(ts, volts, ts - off_since, out)
        return out

    def _day(self, ts: float) -> dict[str, float]:
        today = wording.local_date(ts, self.config.zone)
        oldest = (today - dt.timedelta(days=self.config.battery_trend_days - 1)).isoformat()
        for day in [d for d in self.days if d < oldest]:
            del self.days[day]
        return self.days.setdefault(today.isoformat(), {})

    def _crank(self, ts: float, lowest: float, out: list[Finding]) -> None:
        day = self._day(ts)
        day["crank"] = min(day.get("crank", math.inf), lowest)
        limit = self.config.battery_crank_v
        if lowest >= limit:
            return
        detail = f"battery weak when cranking: lowest {wording.volts(lowest)}, below " \
                 f"{wording.number(limit)} V"
        if "rest" in day:
            detail += f"; at rest today {wording.volts(day['rest'])}"
        out.append(Finding(ts, "maintenance.battery", detail + "; " + self._trend(ts)))

    def _rest(self, ts: float, volts: float, off: float, out: list[Finding]) -> None:
        trend = self._trend(ts, volts)
        day = self._day(ts)
        day["rest"] = min(day.get("rest", math.inf), volts)
        limit = self.config.battery_rest_v
        if volts >= limit:
            return
        detail = (f"battery weak at rest: {wording.volts(volts)} after {wording.duration(off)} "
                  f"off, below {wording.number(limit)} V (about {charge_percent(volts)} % "
                  f"charge)")
        if "crank" in day:
            detail += f"; lowest cranking voltage today {wording.volts(day['crank'])}"
        out.append(Finding(ts, "maintenance.battery", detail + "; " + trend))

    def _trend(self, ts: float, now: float | None = None) -> str:
        """How the rest voltage moved from the oldest day kept to today (or ``now``)."""
        today = wording.local_date(ts, self.config.zone)
        self._day(ts)  # prunes
        if now is None:
            now = self.days.get(today.isoformat(), {}).get("rest")
        earlier = sorted(d for d, v in self.days.items() if d < today.isoformat() and "rest" in v)
        window = self.config.battery_trend_days
        if now is None or not earlier:
            return f"no earlier rest reading in {window} days"
        then = self.days[earlier[0]]["rest"]
        ago = (today - dt.date.fromisoformat(earlier[0])).days
        change = now - then
        span = f"{ago} day{'s' if ago > 1 else ''}"
        if abs(change) < 0.005:
            return f"rest voltage unchanged in {span}"
        return f"rest voltage {'down' if change < 0 else 'up'} {abs(change):.2f} V in {span}"


class CoolantWatch:
    """Coolant over-temperature episodes (see the module's docstring)."""

    def __init__(self, config: InsightsConfig) -> None:
        self.config = config
        self._start: float | None = None
        self._last = 0.0
        self._peak = -math.inf
        self._counted = False  # over coolant_max for coolant_min_s: an episode

    def temperature(self, ts: float, celsius: float) -> list[Finding]:
        out: list[Finding] = []
        config = self.config
        if self._start is None:
            if celsius > config.coolant_max:
                self._start, self._last, self._peak, self._counted = ts, ts, celsius, False
                self._counted = config.coolant_min_s <= EPSILON
            return out
        if not self._counted:
            if celsius <= config.coolant_max:
                self._start = None
                return out
            self._last, self._peak = ts, max(self._peak, celsius)
            self._counted = ts - self._start >= config.coolant_min_s - EPSILON
            return out
        if celsius < config.coolant_recover:
            self._finish(ts, "", out)
        else:
            self._last, self._peak = ts, max(self._peak, celsius)
        return out

    def flush(self, out: list[Finding]) -> None:
        """The trip ended with an episode under way."""
        if self._start is not None and self._counted:
            below = wording.celsius(self.config.coolant_recover)
            self._finish(self._last, f", not yet below {below} at the end of the trip", out)
        self._start = None

    def _finish(self, end: float, note: str, out: list[Finding]) -> None:
        assert self._start is not None
        detail = (f"coolant over-temperature for {wording.duration(end - self._start)}, peak "
                  f"{wording.celsius(self._peak)} (over "
                  f"{wording.celsius(self.config.coolant_max)}){note}")
        out.append(Finding(self._start, "maintenance.coolant", detail, end - self._start))
        self._start = None
