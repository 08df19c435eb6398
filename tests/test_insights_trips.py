"""Trips from synthetic sample streams: start and end (ignition, movement, a long stop, a
gap in the data, the wall clock's silence), distance, idle time, the summary; the state
file: a restart mid-trip continues the trip, a corrupt file starts afresh."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.frames import Event, Sample
from agent.insights import Insights, InsightsConfig

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z
MESSAGES = {"VehicleSpeed": "VehicleDynamics", "IgnitionState": "IgnitionStatus",
            "Odometer": "Odometer", "BatteryVoltage": "BatteryStatus"}


def sample(t: float, signal: str, value: float, label: str | None = None) -> Sample:
    return Sample(NOON + t, "can0", MESSAGES[signal], signal, value, "", label)


def ramp(points: Sequence[tuple[float, float]], hz: int = 10) -> list[Sample]:
    """Speed samples along straight lines between (second, km/h) points."""
    out: list[Sample] = []
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        n = round((t1 - t0) * hz)
        out.extend(sample(round(t0 + i / hz, 6), "VehicleSpeed", round(v0 + (v1 - v0) * i / n, 4))
                   for i in range(n))
    t, v = points[-1]
    out.append(sample(t, "VehicleSpeed", v))
    return out


def merged(*streams: list[Sample]) -> list[Sample]:
    return sorted((s for stream in streams for s in stream), key=lambda s: s.timestamp)


def feed(insights: Insights, samples: list[Sample], chunk: int = 100) -> list[Event]:
    out: list[Event] = []
    for i in range(0, len(samples), chunk):
        out.extend(insights.samples(samples[i:i + chunk]))
    return out


def brief(events: list[Event]) -> list[tuple[float, str, str]]:
    return [(round(e.timestamp - NOON, 3), e.kind, e.detail) for e in events]


def state_dir(tmp_path: Path, name: str) -> Path:
    """A state directory of its own (the service's exists: the insights do not make it)."""
    path = tmp_path / name
    path.mkdir()
    return path


def config(**settings: object) -> InsightsConfig:
    return InsightsConfig(timezone="UTC", **settings)  # type: ignore[arg-type]


# a 100 s trip: 10 s idle, 1 m/s² up to 36 km/h, 60 s at 36 km/h, down, 10 s stopped
CITY = [(0, 0), (10, 0), (20, 36), (80, 36), (90, 0), (100, 0)]


def city_trip() -> list[Sample]:
    return merged(ramp(CITY), [sample(0, "IgnitionState", 2, "Run"),
                               sample(50, "IgnitionState", 2, "Run"),
                               sample(100, "IgnitionState", 0, "Off")])


SUMMARY = ("trip ended (ignition off): 0.7 km in 1 min 40 s, idle 20 s; harsh braking 0, "
           "harsh acceleration 0, speeding 0, night 0 min; score 100/100")


def test_trip_from_ignition_on_to_off(tmp_path: Path) -> None:
    events = feed(Insights(config(), tmp_path), city_trip())
    assert brief(events) == [(0.0, "trip.start", "trip started (ignition on)"),
                             (100.0, "trip.end", SUMMARY)]


def test_the_odometer_gives_the_distance_when_there_is_one(tmp_path: Path) -> None:
    odometer = [sample(t, "Odometer", round(1000.0 + 0.01 * t, 1)) for t in range(0, 101, 1)]
    events = feed(Insights(config(), tmp_path), merged(city_trip(), odometer))
    assert events[-1].detail == SUMMARY.replace("0.7 km", "1.0 km")


def test_trip_from_movement_ends_after_five_minutes_stopped(tmp_path: Path) -> None:
    """No ignition signal: the trip starts when the vehicle moves and ends when it stopped,
    once it has been stopped 300 s (the end is the stop, not the 300th second)."""
    samples = ramp([(0, 0), (5, 0), (10, 30), (60, 30), (65, 0), (364.9, 0), (365, 0),
                    (400, 0), (405, 20), (410, 20)])
    ins = Insights(config(), tmp_path)
    before = feed(ins, [s for s in samples if s.timestamp < NOON + 365], chunk=1)
    assert brief(before) == [(5.1, "trip.start", "trip started (moving)")]
    after = feed(ins, [s for s in samples if s.timestamp >= NOON + 365], chunk=1)
    assert brief(after) == [
        (65.0, "trip.end", "trip ended (stopped for 5 min): 0.5 km in 1 min, idle 0.0 s; "
                           "harsh braking 0, harsh acceleration 0, speeding 0, night 0 min; "
                           "score 100/100"),
        (400.2, "trip.start", "trip started (moving)")]


def test_a_gap_in_the_data_ends_the_trip_at_its_last_sample(tmp_path: Path) -> None:
    gap_59 = ramp([(0, 50), (30, 50)]) + ramp([(89.9, 50), (100, 50)])
    events = feed(Insights(config(), state_dir(tmp_path, "a")), gap_59)
    assert [e.kind for e in events] == ["trip.start"]
    gap_60 = ramp([(0, 50), (30, 50)]) + ramp([(90, 50), (100, 50)])
    events = feed(Insights(config(), state_dir(tmp_path, "b")), gap_60)
    assert brief(events) == [
        (0.0, "trip.start", "trip started (moving)"),
        (30.0, "trip.end", "trip ended (no data for 1 min): 0.4 km in 30 s, idle 0.0 s; "
                           "harsh braking 0, harsh acceleration 0, speeding 0, night 0 min; "
                           "score 100/100"),
        (90.0, "trip.start", "trip started (moving)")]


def test_the_wall_clock_ends_a_trip_when_nothing_comes(tmp_path: Path) -> None:
    ins = Insights(config(bus_quiet_s=60), tmp_path)
    feed(ins, ramp([(0, 50), (30, 50)]))
    assert ins.quiet(5_000.0) == []  # a chunk came since the last call
    assert ins.quiet(5_059.0) == []
    ins.samples(ramp([(30.1, 50), (31, 50)]))  # data again: the silence starts over
    assert ins.quiet(5_060.0) == []
    assert ins.quiet(5_119.9) == []
    events = ins.quiet(5_120.0)
    assert brief(events) == [
        (31.0, "trip.end", "trip ended (no data for 1 min): 0.4 km in 31 s, idle 0.0 s; "
                           "harsh braking 0, harsh acceleration 0, speeding 0, night 0 min; "
                           "score 100/100")]
    assert ins.quiet(5_300.0) == [] and ins.status()["trip"] is None


def test_a_restart_mid_trip_continues_the_trip(tmp_path: Path) -> None:
    """Stopped and started again mid-trip: the same events as without the restart, the
    trip's start announced once."""
    samples = city_trip()
    whole = feed(Insights(config(), state_dir(tmp_path, "whole")), samples)
    cut = state_dir(tmp_path, "cut")
    first = Insights(config(), cut)
    before = feed(first, [s for s in samples if s.timestamp < NOON + 45])
    first.close()
    second = Insights(config(), cut)
    assert second.status()["trip"]["since"] == NOON
    after = feed(second, [s for s in samples if s.timestamp >= NOON + 45])
    assert before + after == whole
    assert [e.kind for e in after] == ["trip.end"]


def test_a_power_cut_mid_trip_loses_at_most_15_seconds(tmp_path: Path) -> None:
    """Never closed: the state saved on the way (every 15 s of samples) still continues the
    trip after the restart."""
    samples = ramp([(0, 50), (150, 50)])
    first = Insights(config(), tmp_path)
    feed(first, samples)
    saved = json.loads((tmp_path / "insights.json").read_text())
    assert saved["trip"]["start"] == NOON
    assert 150 - 15 <= saved["trip"]["last"] - NOON <= 150
    second = Insights(config(), tmp_path)  # no close(): the power was cut
    events = feed(second, ramp([(150.1, 50), (200, 0), (301, 0)]))
    assert [e.kind for e in events] == []
    assert second.status()["trip"]["since"] == NOON


def test_a_restart_long_after_ends_the_old_trip_first(tmp_path: Path) -> None:
    first = Insights(config(), tmp_path)
    feed(first, ramp([(0, 50), (30, 50)]))
    first.close()
    second = Insights(config(), tmp_path)
    events = feed(second, ramp([(3600, 40), (3610, 40)]))
    assert brief(events) == [
        (30.0, "trip.end", "trip ended (no data for 1 min): 0.4 km in 30 s, idle 0.0 s; "
                           "harsh braking 0, harsh acceleration 0, speeding 0, night 0 min; "
                           "score 100/100"),
        (3600.0, "trip.start", "trip started (moving)")]


def test_a_restart_with_a_silent_bus_ends_the_old_trip_by_the_wall_clock(
        tmp_path: Path) -> None:
    first = Insights(config(), tmp_path)
    feed(first, ramp([(0, 50), (30, 50)]))
    first.close()
    second = Insights(config(), tmp_path)
    assert second.quiet(100.0) == []
    assert [e.kind for e in second.quiet(160.0)] == ["trip.end"]
    second.close()
    assert json.loads((tmp_path / "insights.json").read_text())["trip"] is None


@pytest.mark.parametrize("content", [
    b"\x00\xffnot json",
    b'{"version": 1}',
    b'{"version": 2, "trip": null}',
    b"[1, 2, 3]",
    b'{"version": 1, "trip": {"start": "noon"}, "last_ts": null, "odometer": null, '
    b'"estimate": null, "off_since": null, "battery": {"days": {}, "rest_read_for": null}}',
    b'{"version": 1, "trip": null, "last_ts": NaN, "odometer": null, '
    b'"estimate": null, "off_since": null, "battery": {"days": {}, "rest_read_for": null}}',
    b'{"version": 1, "trip": null, "last_ts": null, "odometer": null, "estimate": [1], '
    b'"off_since": null, "battery": {"days": {}, "rest_read_for": null}}',
    b"[" * 100_000,
])
def test_a_corrupt_state_starts_afresh(tmp_path: Path, content: bytes,
                                       caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "insights.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agent.insights"):
        ins = Insights(config(), tmp_path)
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{tmp_path / 'insights.json'}: corrupt (")
    assert message.endswith("), the insights start afresh")
    events = feed(ins, city_trip())
    assert [e.kind for e in events] == ["trip.start", "trip.end"]
    ins.close()
    assert json.loads((tmp_path / "insights.json").read_text())["version"] == 1


def test_an_unusable_state_file_is_said_once_and_never_stops_the_insights(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "insights.json").mkdir()  # neither readable nor replaceable as a file
    with caplog.at_level(logging.WARNING, logger="agent.insights"):
        ins = Insights(config(), tmp_path)
        events = feed(ins, city_trip()) + feed(ins, [
            s._replace(timestamp=s.timestamp + 1000) for s in city_trip()])
        ins.close()
    assert [e.kind for e in events] == ["trip.start", "trip.end"] * 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith(f"{tmp_path / 'insights.json'}: unreadable, the insights "
                                  f"start afresh: ")
    assert messages[1:] == [f"{tmp_path / 'insights.json'}: cannot keep the insights' state: "
                            f"{messages[1].split(': ', 2)[2]}"]
    assert "Is a directory" in messages[1]


def test_status_shows_the_trip_under_way_and_the_counts(tmp_path: Path) -> None:
    ins = Insights(config(), tmp_path)
    samples = city_trip()
    feed(ins, [s for s in samples if s.timestamp <= NOON + 50])
    ins.events([Event(NOON, "obd", "dtc.set", "P0301 stored (ECU engine)", 3)])
    status = ins.status()
    assert status["trip"] == {"since": NOON, "started_by": "ignition", "km": 0.35,
                              "seconds": 50.0, "idle_seconds": 10.2, "events": {}}
    assert status["events"] == {"trip.start": 1}
    assert status["source_events"] == {"dtc.set": 1}
    assert status["signals"] == {"speed": "can0 VehicleDynamics.VehicleSpeed",
                                 "ignition": "can0 IgnitionStatus.IgnitionState"}
    feed(ins, [s for s in samples if s.timestamp > NOON + 50])
    assert ins.status()["trip"] is None
    assert ins.status()["events"] == {"trip.end": 1, "trip.start": 1}


def test_disabled_insights_do_nothing(tmp_path: Path) -> None:
    ins = Insights(config(enabled=False), tmp_path)
    assert feed(ins, city_trip()) == []
    assert ins.quiet(0.0) == [] and ins.quiet(1000.0) == []
    ins.close()
    assert ins.status() == {"enabled": False}
    assert not (tmp_path / "insights.json").exists()


def test_trip_score_loses_points_per_event(tmp_path: Path) -> None:
    """Two harsh brakings (10 each), one harsh acceleration (5), 28 s of speeding (5): 70."""
    samples = [sample(0, "IgnitionState", 2, "Run")]
    samples += ramp([(0, 100), (1, 100), (3, 70), (6, 70), (8, 100), (11, 100), (13, 70),
                     (16, 70), (26, 140), (51, 140), (56, 100), (60, 100)])
    samples.append(sample(60, "IgnitionState", 0, "Off"))
    events = feed(Insights(config(), tmp_path), merged(samples))
    assert [e.kind for e in events] == [
        "trip.start", "driving.harsh_braking", "driving.harsh_acceleration",
        "driving.harsh_braking", "driving.speeding", "trip.end"]
    assert events[4].detail == ("speeding for 28 s, peak 140 km/h where the limit is "
                                "130 km/h")
    assert events[-1].detail.endswith("harsh braking 2, harsh acceleration 1, speeding 1, "
                                      "night 0 min; score 70/100")
