"""Driving events from synthetic sample streams: harsh braking and acceleration (from the
acceleration signal, and from OBD's 1 km/h speed at 2 Hz), speeding, night driving."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.decode.obd import ObdDecoder
from agent.frames import Event, Frame, Sample
from agent.insights import Insights, InsightsConfig
from agent.insights.driving import night_time

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z: no night driving
MESSAGES = {"VehicleSpeed": "VehicleDynamics", "LongitudinalAccel": "VehicleDynamics",
            "IgnitionState": "IgnitionStatus", "SpeedLimit": "RoadInfo"}


def sample(t: float, signal: str, value: float, label: str | None = None, unit: str = "",
           t0: float = NOON) -> Sample:
    message = MESSAGES.get(signal, "OBD")
    return Sample(t0 + t, "can0", message, signal, value, unit, label)


def feed(insights: Insights, samples: list[Sample], chunk: int = 64) -> list[Event]:
    out: list[Event] = []
    for i in range(0, len(samples), chunk):
        out.extend(insights.samples(samples[i:i + chunk]))
    return out


def of(events: list[Event], prefix: str) -> list[tuple[float, str, str]]:
    return [(round(e.timestamp - NOON, 3), e.kind, e.detail) for e in events
            if e.kind.startswith(prefix)]


def insights(tmp_path: Path, **settings: object) -> Insights:
    return Insights(InsightsConfig(timezone="UTC", **settings), tmp_path)  # type: ignore[arg-type]


def accel_drive(accel: Callable[[float], float], v0: float, seconds: float, hz: int = 50
                ) -> Iterator[Sample]:
    """Speed and acceleration at ``hz``, the speed integrated from ``accel``."""
    v = v0
    for i in range(int(seconds * hz) + 1):
        t = i / hz
        a = accel(t)
        yield sample(t, "VehicleSpeed", round(v, 2))
        yield sample(t, "LongitudinalAccel", a)
        v = max(0.0, v + a * 3.6 / hz)


def pulse(start: float, end: float, value: float) -> Callable[[float], float]:
    return lambda t: value if start - 1e-9 <= t <= end + 1e-9 else 0.0


# --- harsh braking and acceleration, from the acceleration signal -----------------------

def test_harsh_braking_at_the_threshold_sustained_half_a_second(tmp_path: Path) -> None:
    events = feed(insights(tmp_path), list(accel_drive(pulse(10.0, 10.5, -3.13), 100, 20)))
    assert of(events, "driving.") == [
        (10.0, "driving.harsh_braking",
         "harsh braking for 0.5 s from 100 km/h to 94 km/h, peak 3.13 m/s² (0.32 g)")]
    assert [e.channel for e in events] == ["insights"] * len(events)
    assert {e.priority for e in events} == {3}


@pytest.mark.parametrize("start, end, value", [
    (10.0, 10.48, -3.13),  # 0.48 s: not sustained
    (10.0, 12.0, -3.12),  # under the threshold
    (10.0, 10.48, 3.13),
    (10.0, 12.0, 3.12),
])
def test_not_harsh_under_the_threshold_or_too_short(tmp_path: Path, start: float, end: float,
                                                    value: float) -> None:
    assert of(feed(insights(tmp_path), list(accel_drive(pulse(start, end, value), 100, 20))),
              "driving.harsh") == []


def test_harsh_acceleration_with_its_peak(tmp_path: Path) -> None:
    shape = {0: 3.2, 1: 4.4, 2: 3.5}

    def accel(t: float) -> float:
        return shape.get(int((t - 5.0) / 0.4), 0.0) if 5.0 <= t < 6.2 else 0.0

    events = feed(insights(tmp_path), list(accel_drive(accel, 20, 10)))
    assert of(events, "driving.") == [
        (5.0, "driving.harsh_acceleration",
         "harsh acceleration for 1.2 s from 20 km/h to 36 km/h, peak 4.40 m/s² (0.45 g)")]


def test_harsh_is_ignored_below_the_minimum_speed(tmp_path: Path) -> None:
    """At 9.99 km/h nothing is harsh; at 10 km/h it is (a parking jolt is not driving)."""
    def steady(kmh: float) -> list[Sample]:
        return [s for i in range(101) for s in (
            sample(i / 50, "VehicleSpeed", kmh),
            sample(i / 50, "LongitudinalAccel", 5.0 if 0.5 <= i / 50 <= 1.5 else 0.0))]

    assert of(feed(insights(tmp_path / "a"), steady(9.99)), "driving.") == []
    assert of(feed(insights(tmp_path / "b"), steady(10.0)), "driving.") == [
        (0.5, "driving.harsh_acceleration",
         "harsh acceleration for 1.0 s from 10 km/h to 10 km/h, peak 5.00 m/s² (0.51 g)")]


def test_harsh_without_a_speed_signal(tmp_path: Path) -> None:
    """An acceleration signal alone: the minimum speed cannot be checked, nor said."""
    samples = [sample(i / 50, "LongitudinalAccel", -6.0 if 20 <= i <= 60 else 0.0)
               for i in range(100)]
    assert of(feed(insights(tmp_path), samples), "driving.") == [
        (0.4, "driving.harsh_braking", "harsh braking for 0.8 s, peak 6.00 m/s² (0.61 g)")]


def test_harsh_threshold_and_times_are_configurable(tmp_path: Path) -> None:
    ins = insights(tmp_path, harsh_braking=4.0, harsh_min_s=1.0)
    events = feed(ins, list(accel_drive(pulse(3.0, 3.9, -4.5), 90, 6))
                  + [s._replace(timestamp=s.timestamp + 10)
                     for s in accel_drive(pulse(3.0, 4.0, -4.0), 90, 6)])
    assert of(events, "driving.") == [
        (13.0, "driving.harsh_braking",
         "harsh braking for 1.0 s from 90 km/h to 76 km/h, peak 4.00 m/s² (0.41 g)")]


# --- from OBD's speed: 1 km/h resolution at 2 Hz, over one second -------------------------

def obd_speed(profile: Callable[[float], float], seconds: float, hz: float = 2.0
              ) -> list[Sample]:
    return [sample(i / hz, "VEHICLE_SPEED", round(profile(i / hz)), unit="km/h")
            for i in range(int(seconds * hz) + 1)]


def test_harsh_braking_from_obd_speed_smoothed_over_a_second(tmp_path: Path) -> None:
    """80 -> 37 km/h at 4 m/s², read at 2 Hz rounded to 1 km/h: one event, from the speed."""
    def braking(t: float) -> float:
        return 80.0 - 14.4 * min(3.0, max(0.0, t - 5.0))

    events = feed(insights(tmp_path), obd_speed(braking, 12), chunk=1)
    assert of(events, "driving.") == [
        (6.0, "driving.harsh_braking",
         "harsh braking for 2.0 s from 80 km/h to 37 km/h, peak 4.17 m/s² (0.42 g) "
         "from the speed")]


def test_the_obd_decoders_names_are_the_defaults(tmp_path: Path) -> None:
    """Mode 01 replies (speed 0D, coolant 05, control module voltage 42) through the real
    OBD decoder: the default globs find them."""
    decoder = ObdDecoder("obd")
    samples: list[Sample] = []
    for i in range(25):
        t = NOON + i / 2
        kmh = round(80.0 - 14.4 * min(3.0, max(0.0, i / 2 - 5.0)))
        for data in (bytes([0x41, 0x0D, kmh]), bytes([0x41, 0x05, 40 + 90]),
                     bytes([0x41, 0x42, 0x37, 0x8C])):  # 130 - 40 = 90 degC, 14.22 V
            decoded = decoder.decode(Frame(t, "obd", 0x7E8, False, False, data))
            assert decoded is not None
            samples.extend(decoded.samples())
    ins = insights(tmp_path)
    events = feed(ins, samples)
    assert of(events, "driving.") == [
        (6.0, "driving.harsh_braking",
         "harsh braking for 2.0 s from 80 km/h to 37 km/h, peak 4.17 m/s² (0.42 g) "
         "from the speed")]
    assert ins.status()["signals"] == {"speed": "obd OBD.VEHICLE_SPEED",
                                       "coolant": "obd OBD.COOLANT_TEMPERATURE",
                                       "battery_voltage": "obd OBD.CONTROL_MODULE_VOLTAGE"}


@pytest.mark.parametrize("profile", [
    lambda t: 80.0 - 9.0 * min(4.0, max(0.0, t - 5.0)),  # 2.5 m/s², rounded: at most 2.78
    lambda t: 50.4 + 0.4 * (int(t * 2) % 2),  # 50/51 jitter: 0.28 m/s² at most
    # 2.8 m/s²: with at most 1 km/h of rounding over the second, 3.08 m/s² at most
    lambda t: 20.0 + 10.08 * min(3.0, max(0.0, t - 3.0)),
    lambda t: 90.0 - 10.08 * min(3.0, max(0.0, t - 3.0)),
])
def test_obd_speed_quantisation_is_not_harsh(tmp_path: Path,
                                             profile: Callable[[float], float]) -> None:
    assert of(feed(insights(tmp_path), obd_speed(profile, 12)), "driving.") == []


def test_the_acceleration_signal_wins_over_the_speed(tmp_path: Path) -> None:
    """With an acceleration signal the speed's derivative is not used: a speed step that
    the derivative would call harsh is not an event when the acceleration says 0."""
    samples = []
    for i in range(201):
        t = i / 20
        samples.append(sample(t, "VehicleSpeed", 100.0 if t < 5 else 80.0))
        samples.append(sample(t, "LongitudinalAccel", 0.0))
    assert of(feed(insights(tmp_path), samples), "driving.") == []


# --- speeding ------------------------------------------------------------------------

def speed_run(points: list[tuple[float, float, float]], hz: int = 10,
              unit: str = "") -> list[Sample]:
    """Speed samples: (from second, to second, km/h) stretches, ``hz`` samples a second."""
    out: list[Sample] = []
    for start, end, kmh in points:
        n = round((end - start) * hz)
        out.extend(sample(start + i / hz, "VehicleSpeed", kmh, unit=unit) for i in range(n))
    return out


def test_speeding_for_ten_seconds_at_the_limit(tmp_path: Path) -> None:
    events = feed(insights(tmp_path), speed_run([(0, 5, 120), (5, 15.1, 131), (15.1, 20, 125)]))
    assert of(events, "driving.") == [
        (5.0, "driving.speeding", "speeding for 10 s, peak 131 km/h where the limit is "
                                  "130 km/h")]


@pytest.mark.parametrize("points", [
    [(0, 5, 120), (5, 15.0, 131), (15.0, 20, 125)],  # 9.9 s seen over the limit
    [(0, 5, 120), (5, 40, 130), (40, 45, 125)],  # at the limit is not over it
])
def test_not_speeding(tmp_path: Path, points: list[tuple[float, float, float]]) -> None:
    assert of(feed(insights(tmp_path), speed_run(points)), "driving.") == []


def test_speeding_against_the_per_road_limit(tmp_path: Path) -> None:
    samples = speed_run([(0, 2, 45), (2, 14.1, 60), (14.1, 16, 45), (16, 30, 120)])
    samples.insert(0, sample(0, "SpeedLimit", 50, unit="km/h"))
    later = [s for s in samples if s.timestamp >= NOON + 15]
    ins = insights(tmp_path)
    events = feed(ins, [s for s in samples if s.timestamp < NOON + 15])
    # the road's limit gone (0: no sign read): back to the configured 130 km/h
    events += feed(ins, [sample(15, "SpeedLimit", 0), *later])
    assert of(events, "driving.speeding") == [
        (2.0, "driving.speeding", "speeding for 12 s, peak 60 km/h where the limit is "
                                  "50 km/h")]


def test_speeding_in_mph(tmp_path: Path) -> None:
    """A US DBC's speed in mph is converted: 85 mph is 136.8 km/h."""
    events = feed(insights(tmp_path), speed_run([(0, 11.1, 85), (11.1, 12, 80)],
                                                           unit="mph"))
    assert of(events, "driving.") == [
        (0.0, "driving.speeding", "speeding for 11 s, peak 137 km/h where the limit is "
                                  "130 km/h")]


def test_speeding_ends_with_the_trip_and_counts_in_it(tmp_path: Path) -> None:
    samples = [sample(0, "IgnitionState", 2, "Run"), *speed_run([(0, 12.1, 140)])]
    samples.append(sample(12.1, "IgnitionState", 0, "Off"))
    events = feed(insights(tmp_path), samples)
    assert [e.kind for e in events] == ["trip.start", "driving.speeding", "trip.end"]
    assert events[1].detail == "speeding for 12 s, peak 140 km/h where the limit is 130 km/h"
    assert events[2].detail == ("trip ended (ignition off): 0.5 km in 12 s, idle 0.0 s; "
                                "harsh braking 0, harsh acceleration 0, speeding 1, "
                                "night 0 min; score 98/100")


def test_one_speed_signal_at_a_time(tmp_path: Path) -> None:
    """CAN and OBD speeds interleaved: the first one seen is read, the other ignored while
    it reports (a derivative across the two would be noise)."""
    samples = []
    for i in range(200):
        t = i / 10
        samples.append(sample(t, "VehicleSpeed", 120.0))
        samples.append(sample(t + 0.05, "VEHICLE_SPEED", 140.0))
    ins = insights(tmp_path)
    assert of(feed(ins, samples), "driving.") == []
    assert ins.status()["signals"] == {"speed": "can0 VehicleDynamics.VehicleSpeed"}
    # the CAN speed silent for 5 s (its last at 19.9 s): OBD's takes over
    later = [sample(20 + i / 10, "VEHICLE_SPEED", 140.0 if i < 199 else 125.0)
             for i in range(200)]
    events = feed(ins, later)
    assert ins.status()["signals"] == {"speed": "can0 OBD.VEHICLE_SPEED"}
    assert of(events, "driving.") == [
        (24.9, "driving.speeding", "speeding for 15 s, peak 140 km/h where the limit is "
                                   "130 km/h")]


# --- night ---------------------------------------------------------------------------

def ignition_trip(start: float, end: float) -> list[Sample]:
    return [sample(start, "IgnitionState", 2, "Run", t0=0.0),
            sample(end - 30, "IgnitionState", 2, "Run", t0=0.0),
            sample(end, "IgnitionState", 0, "Off", t0=0.0)]


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_night_driving_in_the_configured_time_zone(tmp_path: Path) -> None:
    """22:50 to 23:20 in Paris (UTC+1 in winter): 20 minutes of night, one event."""
    ins = Insights(InsightsConfig(timezone="Europe/Paris", bus_quiet_s=3600), tmp_path)
    start, end = utc("2026-12-05T21:50:00"), utc("2026-12-05T22:20:00")
    events = ins.samples(ignition_trip(start, end))
    assert [(e.timestamp, e.kind, e.detail) for e in events if e.kind != "trip.start"] == [
        (utc("2026-12-05T22:00:00"), "driving.night", "night driving for 20 min (23:00-05:00)"),
        (end, "trip.end", "trip ended (ignition off): 0.0 km in 30 min, idle 0.0 s; "
                          "harsh braking 0, harsh acceleration 0, speeding 0, night 20 min; "
                          "score 97/100")]


def test_night_in_the_system_local_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``timezone``, the system's local time (TZ): 22:30-23:30 in New York."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        ins = Insights(InsightsConfig(night="23:00-05:00", bus_quiet_s=3600), tmp_path)
        events = ins.samples(ignition_trip(utc("2026-12-06T03:30:00"),
                                           utc("2026-12-06T04:30:00")))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    night = [(e.timestamp, e.detail) for e in events if e.kind == "driving.night"]
    assert night == [(utc("2026-12-06T04:00:00"), "night driving for 30 min (23:00-05:00)")]


def test_no_night_event_for_a_day_trip(tmp_path: Path) -> None:
    ins = Insights(InsightsConfig(timezone="UTC", bus_quiet_s=3600), tmp_path)
    events = ins.samples(ignition_trip(utc("2026-12-05T05:00:00"), utc("2026-12-05T22:59:59")))
    assert [e.kind for e in events] == ["trip.start", "trip.end"]


def test_night_window_across_a_clock_change() -> None:
    """01:00-04:00 in Paris the night clocks go forward (2026-03-29 02:00 -> 03:00) is two
    real hours; a window that does not wrap past midnight works too."""
    paris = InsightsConfig(timezone="Europe/Paris", night="01:00-04:00")
    seconds, first = night_time(utc("2026-03-28T23:00:00"), utc("2026-03-29T05:00:00"),
                                paris.night_window, paris.zone)
    assert (seconds, first) == (7200.0, utc("2026-03-29T00:00:00"))
    # several nights in one (long) trip
    seconds, first = night_time(utc("2026-01-01T12:00:00"), utc("2026-01-03T12:00:00"),
                                (23 * 60, 5 * 60), dt.UTC)
    assert (seconds, first) == (2 * 6 * 3600.0, utc("2026-01-01T23:00:00"))
