"""Maintenance events from synthetic sample streams: service due (odometer, integrated
distance, date), battery at rest and when cranking with its trend over days (kept across
restarts), coolant over-temperature episodes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent.frames import Event, Sample
from agent.insights import Insights, InsightsConfig
from agent.insights.maintenance import charge_percent

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z
DAY = 86_400.0
MESSAGES = {"VehicleSpeed": "VehicleDynamics", "IgnitionState": "IgnitionStatus",
            "Odometer": "Odometer", "BatteryVoltage": "BatteryStatus",
            "CoolantTemp": "EngineTemps"}


def sample(t: float, signal: str, value: float, label: str | None = None,
           unit: str = "") -> Sample:
    return Sample(NOON + t, "can0", MESSAGES[signal], signal, value, unit, label)


def run(t: float) -> Sample:
    return sample(t, "IgnitionState", 2, "Run")


def off(t: float) -> Sample:
    return sample(t, "IgnitionState", 0, "Off")


def feed(insights: Insights, samples: list[Sample]) -> list[Event]:
    samples = sorted(samples, key=lambda s: s.timestamp)
    out: list[Event] = []
    for i in range(0, len(samples), 50):
        out.extend(insights.samples(samples[i:i + 50]))
    return out


def brief(events: list[Event], prefix: str = "") -> list[tuple[float, str, str]]:
    return [(round(e.timestamp - NOON, 3), e.kind, e.detail) for e in events
            if e.kind.startswith(prefix)]


def config(**settings: object) -> InsightsConfig:
    return InsightsConfig(timezone="UTC", **settings)  # type: ignore[arg-type]


# --- service -------------------------------------------------------------------------

def odometer_trip(start: float, km: float, seconds: float = 10) -> list[Sample]:
    return ([run(start), off(start + seconds)]
            + [sample(start + 0.5 + i, "Odometer", km) for i in range(int(seconds))])


def test_service_due_by_distance_once_per_trip_start(tmp_path: Path) -> None:
    ins = Insights(config(last_service_km=33_700), tmp_path)
    events = feed(ins, odometer_trip(0, 48_220.0) + odometer_trip(1000, 48_220.0))
    assert brief(events, "maintenance") == [
        (0.5, "maintenance.service_due", "service due in 480 km"),  # the first odometer
        (1000.0, "maintenance.service_due", "service due in 480 km")]  # known: at the start


@pytest.mark.parametrize("settings, odometer, said", [
    ({"last_service_km": 33_700}, 48_700.0 - 1000.0, "service due in 1,000 km"),
    ({"last_service_km": 33_700}, 48_700.0 - 1000.1, None),
    ({"last_service_km": 33_700}, 48_820.0, "service overdue by 120 km"),
    ({"last_service_km": 33_700}, 48_700.2, "service due now"),
    ({"last_service_km": 48_000, "service_interval_km": 500, "service_warn_km": 100},
     48_487.6, "service due in 12.4 km"),
    ({"last_service_date": dt.date(2025, 1, 24)}, 48_220.0, "service due in 23 days"),
    ({"last_service_date": dt.date(2025, 2, 1)}, 48_220.0, None),  # 31 days
    ({"last_service_date": dt.date(2025, 1, 31)}, 48_220.0, "service due in 30 days"),
    ({"last_service_date": dt.date(2025, 1, 2)}, 48_220.0, "service due in 1 day"),
    ({"last_service_date": dt.date(2025, 1, 1)}, 48_220.0, "service due today"),
    ({"last_service_date": dt.date(2024, 12, 31)}, 48_220.0, "service overdue by 1 day"),
    ({"last_service_km": 33_700, "last_service_date": dt.date(2025, 1, 24)}, 48_220.0,
     "service due in 480 km and in 23 days"),
    ({"last_service_km": 33_700, "last_service_date": dt.date(2024, 12, 27)}, 48_820.0,
     "service overdue by 120 km and by 5 days"),
    ({"last_service_km": 33_700, "last_service_date": dt.date(2025, 1, 24)}, 48_820.0,
     "service overdue by 120 km and due in 23 days"),
    ({"last_service_km": 33_700, "last_service_date": dt.date(2025, 1, 24),
      "service_interval_days": None}, 48_220.0, "service due in 480 km"),
    ({"last_service_km": 33_700, "last_service_date": dt.date(2025, 1, 24),
      "service_interval_km": None}, 48_220.0, "service due in 23 days"),
])
def test_service_reminder_wording_and_margins(tmp_path: Path, settings: dict[str, object],
                                              odometer: float, said: str | None) -> None:
    events = feed(Insights(config(**settings), tmp_path), odometer_trip(0, odometer))
    found = [e.detail for e in events if e.kind == "maintenance.service_due"]
    assert found == ([] if said is None else [said])


def speed_trip(start: float) -> list[Sample]:
    """0.7 km without an odometer: 10 s up to 36 km/h, 60 s at it, 10 s down."""
    out = [run(start), off(start + 90)]
    for i in range(901):
        t = i / 10
        kmh = 3.6 * min(t, 10.0, max(0.0, 80.0 - t))
        out.append(sample(start + t, "VehicleSpeed", round(kmh, 4)))
    return out


def test_service_due_from_the_integrated_distance_without_an_odometer(tmp_path: Path) -> None:
    settings = {"last_service_km": 1_000, "service_interval_km": 100, "service_warn_km": 100}
    ins = Insights(config(**settings), tmp_path)
    events = feed(ins, speed_trip(0) + speed_trip(1000))
    assert brief(events, "maintenance") == [
        (90.0, "maintenance.service_due", "service due in 99.3 km"),  # first trip: at its end
        (1000.0, "maintenance.service_due", "service due in 99.3 km")]
    ins.close()
    # serviced at 1,001.4 km (after the two trips): the distance counts from there
    again = Insights(config(**{**settings, "last_service_km": 1_001.4}), tmp_path)
    assert brief(feed(again, speed_trip(2000)), "maintenance") == [
        (2000.0, "maintenance.service_due", "service due in 100 km")]


# --- battery -------------------------------------------------------------------------

def volts(points: list[tuple[float, float, float]], hz: int = 10) -> list[Sample]:
    return [sample(round(start + i / hz, 6), "BatteryVoltage", v)
            for start, end, v in points for i in range(round((end - start) * hz))]


def start_and_stop(crank: float, rest: float, rest_at: float = 70.0) -> list[Sample]:
    """Ignition on at 0 (12.5 V), cranking at 1 s, charging from 2 s, off at 10 s, the
    rest voltage from ``rest_at``."""
    return [run(0), off(10), *volts([(0, 1, 12.5), (1, 2, crank), (2, 10, 14.2),
                                     (10, rest_at, 12.6), (rest_at, rest_at + 5, rest)])]


def test_battery_weak_when_cranking_and_at_rest(tmp_path: Path) -> None:
    events = feed(Insights(config(), tmp_path), start_and_stop(9.59, 12.19))
    assert brief(events, "maintenance") == [
        (1.0, "maintenance.battery", "battery weak when cranking: lowest 9.59 V, below 9.6 V; "
                                     "no earlier rest reading in 7 days"),
        (70.0, "maintenance.battery", "battery weak at rest: 12.19 V after 1 min off, below "
                                      "12.2 V (about 45 % charge); lowest cranking voltage "
                                      "today 9.59 V; no earlier rest reading in 7 days")]


def test_battery_at_the_thresholds_is_not_weak(tmp_path: Path) -> None:
    ins = Insights(config(), tmp_path)
    # 11.0 V at 59.9 s off is not a rest reading yet; 12.2 V at 60 s is, and is fine
    samples = start_and_stop(9.6, 12.2) + volts([(69.9, 70.0, 11.0)])
    samples = [s for s in samples if not (s.signal == "BatteryVoltage"
                                          and NOON + 69.9 <= s.timestamp < NOON + 70)]
    samples += [sample(69.9, "BatteryVoltage", 11.0)]
    assert brief(feed(ins, samples), "maintenance") == []
    assert ins.status()["battery"] == {"2026-01-01": {"crank": 9.6, "rest": 12.2}}


def day_of_driving(day: int, rest: float) -> list[Sample]:
    base = day * DAY
    return [run(base), off(base + 10),
            *volts([(base, base + 10, 14.2), (base + 10, base + 70, 12.6),
                    (base + 70, base + 71, rest)])]


def test_battery_trend_over_days_across_restarts(tmp_path: Path) -> None:
    found = []
    for day, rest in ((0, 12.40), (1, 12.30), (2, 12.15), (9, 12.10)):
        ins = Insights(config(), tmp_path)
        found += brief(feed(ins, day_of_driving(day, rest)), "maintenance")
        ins.close()
    assert found == [
        (2 * DAY + 70, "maintenance.battery",
         "battery weak at rest: 12.15 V after 1 min off, below 12.2 V (about 40 % "
         "charge); rest voltage down 0.25 V in 2 days"),
        (9 * DAY + 70, "maintenance.battery",  # a week later: nothing left to compare
         "battery weak at rest: 12.10 V after 1 min off, below 12.2 V (about 30 % "
         "charge); no earlier rest reading in 7 days")]
    assert Insights(config(), tmp_path).status()["battery"] == {"2026-01-10": {"rest": 12.1}}


def test_battery_rest_reading_when_the_car_wakes_up(tmp_path: Path) -> None:
    """Off since last night (kept in the state): the first voltage next morning, before
    the ignition comes on, is a rest reading."""
    ins = Insights(config(), tmp_path)
    feed(ins, [run(0), off(10), *volts([(0, 10, 14.2), (10, 12, 12.6)])])
    ins.close()
    morning = Insights(config(), tmp_path)
    events = feed(morning, [off(8 * 3600 + 10), sample(8 * 3600 + 10, "BatteryVoltage", 12.05),
                            run(8 * 3600 + 12)])
    assert brief(events, "maintenance") == [
        (8 * 3600 + 10, "maintenance.battery",
         "battery weak at rest: 12.05 V after 8 h 00 min off, below 12.2 V (about 25 % "
         "charge); no earlier rest reading in 7 days")]


def test_charge_percent_of_a_resting_battery() -> None:
    assert [charge_percent(v) for v in (11.5, 11.89, 12.06, 12.15, 12.24, 12.45, 12.65,
                                        13.0)] == [0, 0, 25, 40, 50, 75, 100, 100]


# --- coolant -------------------------------------------------------------------------

def temperatures(values: list[float], unit: str = "") -> list[Sample]:
    return [sample(float(i), "CoolantTemp", v, unit=unit) for i, v in enumerate(values)]


@pytest.mark.parametrize("values, said", [
    ([100] * 10 + [111] * 6 + [104],
     ["coolant over-temperature for 6.0 s, peak 111 °C (over 110 °C)"]),
    ([100] * 10 + [111] * 5 + [104], []),  # 4 s over 110 degC
    ([100] * 10 + [110] * 20 + [104], []),  # at 110 degC is not over it
    ([100] * 10 + [111] * 3 + [109] + [111] * 3 + [104], []),  # two short ones
    # back under 110 but not under 105: still the same episode
    ([100] * 10 + [112] * 11 + [107] * 10 + [105] + [111] * 3 + [104.9] + [100] * 20,
     ["coolant over-temperature for 25 s, peak 112 °C (over 110 °C)"]),
])
def test_coolant_over_temperature_episodes(tmp_path: Path, values: list[float],
                                          said: list[str]) -> None:
    events = feed(Insights(config(), tmp_path), temperatures(values))
    assert [e.detail for e in events if e.kind == "maintenance.coolant"] == said
    assert all(e.timestamp == NOON + 10 for e in events if e.kind == "maintenance.coolant")


def test_coolant_in_fahrenheit_and_at_the_end_of_a_trip(tmp_path: Path) -> None:
    samples = [run(0), off(30), *temperatures([200.0] * 10 + [232.0] * 25, unit="degF")]
    events = feed(Insights(config(), tmp_path), samples)
    assert brief(events) == [
        (0.0, "trip.start", "trip started (ignition on)"),
        (10.0, "maintenance.coolant", "coolant over-temperature for 19 s, peak 111 °C (over "
                                      "110 °C), not yet below 105 °C at the end of the trip"),
        (30.0, "trip.end", "trip ended (ignition off): 0.0 km in 30 s, idle 0.0 s; harsh "
                           "braking 0, harsh acceleration 0, speeding 0, night 0 min; "
                           "score 100/100")]
