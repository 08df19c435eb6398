"""The ``[insights]`` table: defaults, every key read, every bad key named."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest

from agent.insights import InsightsConfig, read_insights
from agent.insights.settings import RANGES, parse_window


def read(text: str) -> tuple[InsightsConfig, list[str]]:
    problems: list[str] = []
    config = read_insights(tomllib.loads(text)["insights"], lambda k, m: problems.append(
        f"{k}: {m}"))
    return config, problems


def test_defaults() -> None:
    config, problems = read("[insights]\n")
    assert problems == []
    assert config == InsightsConfig()
    assert config.speed == ("*.VehicleSpeed", "OBD.VEHICLE_SPEED")
    assert config.battery_voltage == ("*.BatteryVoltage", "OBD.CONTROL_MODULE_VOLTAGE")
    assert config.coolant == ("*.CoolantTemp", "OBD.COOLANT_TEMPERATURE")
    assert (config.harsh_braking, config.harsh_min_s, config.harsh_min_speed) == (3.13, 0.5, 10)
    assert (config.speed_limit, config.speeding_min_s, config.night) == (130, 10, "23:00-05:00")
    assert (config.stopped_end_s, config.bus_quiet_s) == (300, 60)
    assert (config.service_interval_km, config.service_interval_days) == (15_000, 365)
    assert (config.service_warn_km, config.service_warn_days) == (1_000, 30)
    assert (config.battery_rest_v, config.battery_rest_after_s, config.battery_crank_v,
            config.battery_trend_days) == (12.2, 60, 9.6, 7)
    assert (config.coolant_max, config.coolant_min_s, config.coolant_recover) == (110, 5, 105)
    assert config.night_window == (23 * 60, 5 * 60) and config.zone is None


def test_every_key_read() -> None:
    config, problems = read("""
        [insights]
        enabled = false
        speed = "Dyn.Speed"
        acceleration = ["*.AccelX", "*.LongAcc"]
        odometer = []
        ignition = ["*.KeyState"]
        battery_voltage = ["*.Vbat"]
        coolant = ["*.ECT"]
        speed_limit_signal = ["Sign.Limit"]
        harsh_braking = 4
        harsh_acceleration = 3.5
        harsh_min_s = 0.75
        harsh_min_speed = 15
        speed_limit = 110
        speeding_min_s = 20
        night = "22:30-06:00"
        timezone = "Europe/Paris"
        stopped_end_s = 600
        bus_quiet_s = 30
        service_interval_km = 20000
        service_interval_days = false
        last_service_km = 33700
        last_service_date = 2025-06-30
        service_warn_km = 500
        service_warn_days = 14
        battery_rest_v = 12.3
        battery_rest_after_s = 3600
        battery_crank_v = 10
        battery_trend_days = 14
        coolant_max = 115
        coolant_min_s = 10
        coolant_recover = 100
    """)
    assert problems == []
    assert config == InsightsConfig(
        enabled=False, speed=("Dyn.Speed",), acceleration=("*.AccelX", "*.LongAcc"),
        odometer=(), ignition=("*.KeyState",), battery_voltage=("*.Vbat",),
        coolant=("*.ECT",), speed_limit_signal=("Sign.Limit",), harsh_braking=4.0,
        harsh_acceleration=3.5, harsh_min_s=0.75, harsh_min_speed=15.0, speed_limit=110.0,
        speeding_min_s=20.0, night="22:30-06:00", timezone="Europe/Paris",
        stopped_end_s=600.0, bus_quiet_s=30.0, service_interval_km=20_000.0,
        service_interval_days=None, last_service_km=33_700.0,
        last_service_date=dt.date(2025, 6, 30), service_warn_km=500.0, service_warn_days=14,
        battery_rest_v=12.3, battery_rest_after_s=3600.0, battery_crank_v=10.0,
        battery_trend_days=14, coolant_max=115.0, coolant_min_s=10.0, coolant_recover=100.0)
    assert isinstance(config.harsh_braking, float) and isinstance(config.service_warn_days, int)
    assert config.night_window == (22 * 60 + 30, 6 * 60)
    assert str(config.zone) == "Europe/Paris"


def test_every_bad_key_is_named() -> None:
    config, problems = read("""
        [insights]
        enabled = "yes"
        speed = 3
        coolant = ["*.ECT", ""]
        harsh_brakes = 4
        harsh_braking = 0
        speed_limit = true
        night = "23h-5h"
        timezone = "Mars/Olympus"
        service_interval_km = true
        service_warn_days = 1.5
        last_service_km = -1
        last_service_date = "30/06/2025"
        battery_trend_days = 1
        bus_quiet_s = inf
    """)
    assert problems == [
        "insights.harsh_brakes: unknown key (did you mean harsh_braking?)",
        "insights.enabled: expected true or false, got a string",
        "insights.speed: expected a list of signal globs, got an integer",
        "insights.coolant[1]: expected a signal glob, got ''",
        "insights.harsh_braking: must be from 0.5 to 20, got 0",
        "insights.speed_limit: expected a number, got a boolean",
        "insights.night: expected a local time window \"HH:MM-HH:MM\" (e.g. \"23:00-05:00\"), "
        "got '23h-5h'",
        "insights.timezone: unknown time zone 'Mars/Olympus' (an IANA name such as "
        "\"Europe/Paris\", or \"\" for the system's)",
        "insights.service_interval_km: expected a number or false, got a boolean",
        "insights.service_warn_days: expected an integer, got a number",
        "insights.last_service_km: must be from 0 to 10_000_000, got -1",
        "insights.last_service_date: expected a date (2026-03-01), got '30/06/2025'",
        "insights.battery_trend_days: must be from 2 to 366, got 1",
        "insights.bus_quiet_s: must be from 1 to 3_600, got inf",
    ]
    assert config == InsightsConfig()  # each bad key left at its default


@pytest.mark.parametrize("raw, problem", [
    ([1], "insights: expected a table, got an array"),
    ({"coolant_recover": 110}, "insights.coolant_recover: must be below coolant_max (110), "
                               "got 110"),
    ({"coolant_max": 100}, "insights.coolant_recover: must be below coolant_max (100), "
                           "got 105"),
    ({"last_service_date": dt.datetime(2025, 6, 30, 12, 0)},
     "insights.last_service_date: expected a date (2026-03-01), got a date and time"),
    ({"timezone": "Europe"}, "insights.timezone: unknown time zone 'Europe' (an IANA name "
                             "such as \"Europe/Paris\", or \"\" for the system's)"),
    ({"acceleration": ["*"] * 101}, "insights.acceleration: at most 100 globs, got 101"),
])
def test_more_bad_values(raw: Any, problem: str) -> None:
    problems: list[str] = []
    config = read_insights(raw, lambda k, m: problems.append(f"{k}: {m}"))
    assert problems == [problem]
    assert config.coolant_recover < config.coolant_max


def test_a_date_may_be_a_string_and_the_key_is_the_callers() -> None:
    problems: list[str] = []
    config = read_insights({"last_service_date": "2025-06-30", "speed_limit": 3},
                           lambda k, m: problems.append(f"{k}: {m}"), key="profiles.van")
    assert config.last_service_date == dt.date(2025, 6, 30)
    assert problems == ["profiles.van.speed_limit: must be from 5 to 400, got 3"]


@pytest.mark.parametrize("text, window", [
    ("23:00-05:00", (1380, 300)), ("00:00-05:00", (0, 300)), ("22:00-24:00", (1320, 0)),
    ("7:05-9:00", (425, 540)), ("23:00-23:00", None), ("23:00", None), ("25:00-05:00", None),
    ("23:60-05:00", None), ("23:0-05:00", None), ("-", None), ("a:bc-05:00", None),
])
def test_night_windows(text: str, window: tuple[int, int] | None) -> None:
    assert parse_window(text) == window


def test_every_number_has_a_range() -> None:
    numbers = {f for f, v in InsightsConfig.__dataclass_fields__.items()
               if v.type in ("float", "int", "float | None", "int | None")}
    assert numbers == set(RANGES)
