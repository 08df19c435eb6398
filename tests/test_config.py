"""The configuration file: good files load, every problem of a bad one is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config import load_config, parse_config
from agent.errors import ConfigError

DBC = 'VERSION ""\nBO_ 100 M: 8 X\n SG_ A : 0|8@1+ (1,0) [0|255] "" X\n'


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "car.dbc").write_text(DBC)
    (tmp_path / "drive.log").write_text("(1.0) can0 064#01\n")
    return tmp_path


def problems(workdir: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=workdir)
    return info.value.problems


def test_good_file_loads_into_frozen_dataclasses(workdir: Path) -> None:
    path = workdir / "bavard.toml"
    path.write_text("""
[[channels]]
name = "powertrain"
interface = "socketcan"
channel = "can0"
bitrate = 500000
dbc = ["car.dbc"]

[[channels]]
name = "replayed"
log = "drive.log"
dbc = "car.dbc"
speed = 0

[selection]
include = ["M.*", "Engine*"]
exclude = ["*Checksum"]

[[signals]]
match = "M.A"
min_period = 0.1
on_change = true
deadband = 2.5
max_period = 60
""")
    config = load_config(path)
    first, second = config.channels
    assert (first.kind, first.interface, first.channel, first.bitrate) == (
        "socketcan" and "can", "socketcan", "can0", 500000)
    assert first.dbc == (workdir / "car.dbc",)
    assert (second.kind, second.log, second.speed) == ("replay", workdir / "drive.log", 0.0)
    assert config.selection.include == ("M.*", "Engine*")
    assert config.selection.volatile == ()  # counters: by name and DBC attribute
    assert config.selection.include_volatile is False
    (rule,) = config.rules
    assert (rule.match, rule.min_period, rule.on_change, rule.deadband, rule.max_period) == (
        "M.A", 0.1, True, 2.5, 60.0)
    with pytest.raises(AttributeError):
        rule.deadband = 1.0  # type: ignore[misc]


def test_every_problem_is_reported_at_once_with_its_key_path(workdir: Path) -> None:
    found = problems(workdir, """
colour = "red"

[[channels]]
name = "a"
interface = "socketcan"
channel = "can0"
dbc = "x.dbc"
bitrate = "fast"

[[channels]]
name = "b"
log = "missing.log"
dbc = ["car.dbc", "nope.dbc"]
speed = -1
extra = 1

[[channels]]
name = "c"
interface = "no-such-bus"
log = "drive.log"
dbc = "car.dbc"

[selection]
include = "A*"
exclude = [3]

[[signals]]
min_period = "often"
deadband = 1
""")
    assert found == [
        "colour: unknown key",
        f"channels[0].dbc: file not found: x.dbc (looked for {workdir / 'x.dbc'})",
        "channels[0].bitrate: expected an integer, got a string",
        "channels[1].extra: unknown key",
        f"channels[1].dbc[1]: file not found: nope.dbc (looked for {workdir / 'nope.dbc'})",
        f"channels[1].log: log file not found: missing.log (looked for "
        f"{workdir / 'missing.log'})",
        "channels[1].speed: must be from 0 to 1_000, got -1",
        "channels[2]: exactly one of interface, log, simulate = true, obd = true, gpsd, nmea "
        "is required (found: interface, log)",
        "channels[2].interface: unknown python-can interface 'no-such-bus' (known: "
        + ", ".join(sorted(__import__("can").VALID_INTERFACES)) + ")",
        "channels[2].channel: required with interface",
        "selection.exclude[0]: expected a glob, got 3",
        "signals[0].match: required",
        "signals[0].deadband: only valid with on_change = true",
        "signals[0].min_period: expected a number, got a string",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["channels: at least one [[channels]] entry is required"]),
        ("channels = 3", ["channels: expected an array of tables, got an integer"]),
        ('[[channels]]\nname = "a"\nsimulate = true\n[[channels]]\nname = "a"\nsimulate = true',
         ["channels: duplicate channel name 'a'"]),
        ('[[channels]]\nname = "a b"\nsimulate = true',
         ["channels[0].name: must be a non-empty word, got 'a b'"]),
        ('[[channels]]\nsimulate = true', ["channels[0].name: required"]),
        # regression: an empty table was skipped without a word (an agent with no channel)
        ("[[channels]]\n[[signals]]", [
            "channels[0].name: required",
            "channels[0]: exactly one of interface, log, simulate = true, obd = true, gpsd, "
            "nmea is required (found: none)",
            "channels[0].dbc: at least one DBC file is required",
            "signals[0].match: required"]),
        ('[[channels]]\nname = "a"\nlog = "drive.log"',
         ["channels[0].dbc: at least one DBC file is required"]),
        ('[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "car.dbc"\nchannel = "can0"',
         ["channels[0].channel: only valid with interface"]),
        ('[[channels]]\nname = "a"\nsimulate = true\n[[signals]]\nmatch = "*"\ndeadband = 1',
         ["signals[0].deadband: only valid with on_change = true"]),
        ('[[channels]]\nname = "a"\nsimulate = true\n[[signals]]\nmatch = "*"\n'
         "on_change = true\nmax_period = 0",
         ["signals[0].max_period: must be > 0 and at most 86_400, got 0"]),
        ('[[channels]]\nname = "a"\nsimulate = 1',
         ["channels[0].simulate: expected true or false, got an integer",
          "channels[0].dbc: at least one DBC file is required"]),
        ("[[channels]\n", None),
    ],
)
def test_each_bad_config_message(workdir: Path, text: str, expected: list[str] | None) -> None:
    found = problems(workdir, text)
    if expected is None:
        assert len(found) == 1 and found[0].startswith("TOML syntax: ")
        assert "line 1" in found[0]
    else:
        assert found == expected


def test_raw_channel_needs_no_dbc(workdir: Path) -> None:
    config = parse_config('[[channels]]\nname = "r"\nlog = "drive.log"\nmode = "raw"', workdir)
    assert config.channels[0].mode == "raw"
    assert problems(workdir, '[[channels]]\nname = "r"\nsimulate = true\nmode = "both"') == [
        "channels[0].mode: must be one of decoded, raw, got 'both'"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('interface = "socketcan"\nchannel = "can0"', []),
        ('interface = "socketcan"\nchannel = "can0"\nreader = "bcm"', []),
        ('interface = "virtual"\nchannel = "x"\nreader = "python-can"', []),
        ('interface = "socketcan"\nchannel = "can0"\nreader = "fast"',
         ["channels[0].reader: must be one of auto, bcm, raw, python-can, got 'fast'"]),
        ('interface = "virtual"\nchannel = "x"\nreader = "raw"',
         ["channels[0].reader: 'raw' reads SocketCAN only (interface = \"socketcan\"), "
          "not 'virtual'"]),
        ('interface = "socketcan"\nchannel = "can0"\nreader = "bcm"\nmode = "raw"',
         ['channels[0].reader: "bcm" filters the frames of decoded messages: not for a raw '
          "or OBD channel"]),
        ('log = "drive.log"\nreader = "raw"', ["channels[0].reader: only valid with interface"]),
    ],
)
def test_channel_reader(workdir: Path, lines: str, expected: list[str]) -> None:
    text = f'[[channels]]\nname = "a"\ndbc = "car.dbc"\n{lines}'
    if expected:
        assert problems(workdir, text) == expected
    else:
        reader = parse_config(text, workdir).channels[0].reader
        assert reader == (lines.split('reader = "')[1].rstrip('"') if "reader" in lines
                          else "auto")


def test_simulator_channel_needs_no_dbc(workdir: Path) -> None:
    config = parse_config('[[channels]]\nname = "sim"\nsimulate = true\nseed = 7', workdir)
    (channel,) = config.channels
    assert (channel.kind, channel.seed, channel.dbc) == ("simulator", 7, ())


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.toml")


def test_cli_config_check(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = workdir / "bad.toml"
    bad.write_text('[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "x.dbc"\n')
    assert main(["config", "check", str(bad)]) == 1
    assert capsys.readouterr().out == (f"{bad}: channels[0].dbc: file not found: x.dbc "
                                       f"(looked for {workdir / 'x.dbc'})\n")
    good = workdir / "good.toml"
    good.write_text('[[channels]]\nname = "a"\nlog = "drive.log"\ndbc = "car.dbc"\n')
    assert main(["config", "check", str(good)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ok: 1 channel(s): a (replay)" in captured.err


def test_shipped_example_config_is_valid(root: Path) -> None:
    load_config(root / "docs" / "bavard.example.toml")


def test_store_table(workdir: Path) -> None:
    base = '[[channels]]\nname = "a"\nsimulate = true\n'
    config = parse_config(base + '[store]\nstate_dir = "state"\nquota_bytes = 10485760\n'
                          "commit_interval = 0.5\nmax_age_samples = 3600\n"
                          "max_age_frames = false\n", workdir)
    assert config.store.state_dir == workdir / "state"
    assert (config.store.quota_bytes, config.store.commit_interval) == (10_485_760, 0.5)
    assert config.store.max_age_samples == 3600.0
    assert config.store.max_age_frames is None
    assert problems(workdir, base + '[store]\nquota_bytes = "big"\ncommit_interval = 0\n'
                    'colour = 1\n') == [
        "store.colour: unknown key",
        "store.quota_bytes: expected an integer, got a string",
        "store.commit_interval: must be > 0 and at most 3_600, got 0",
    ]


def test_upload_and_vehicle_tables(workdir: Path) -> None:
    base = '[[channels]]\nname = "v"\nsimulate = true\n'
    (workdir / "ca.pem").write_text("x")
    config = parse_config(base + '[upload]\nurl = "mqtts://broker:8883"\nca_file = "ca.pem"\n'
                          'metered_daily_bytes = false\nmetered_classes = "samples"\n'
                          '[upload.interfaces]\n"veth*" = "metered"\n'
                          '[vehicle]\nvin = "WVWZZZ1JZXW000001"\n', workdir)
    upload = config.upload
    assert upload is not None and upload.transport().scheme == "mqtts"
    assert upload.ca_file == workdir / "ca.pem"
    assert upload.metered_daily_bytes is None and upload.metered_monthly_bytes == 100 * 2**20
    assert upload.interfaces == (("veth*", "metered"),)
    assert config.vehicle.vin == "WVWZZZ1JZXW000001"
    assert parse_config(base, workdir).upload is None


def test_upload_problems_name_their_keys(workdir: Path) -> None:
    base = '[[channels]]\nname = "v"\nsimulate = true\n'
    found = problems(workdir, base + '[upload]\nurl = "ftp://x"\ntopic = "t"\ntimeout = 0\n'
                     'cert_file = "missing.pem"\nretry_max = "soon"\nmetered_classes = "all"\n'
                     '[upload.interfaces]\neth0 = "cheap"\n[vehicle]\nvin = "short"\n')
    text = "\n".join(found)
    for key in ("upload.url", "upload.topic", "upload.timeout", "upload.cert_file",
                "upload.retry_max", "upload.metered_classes", "upload.interfaces.'eth0'",
                "vehicle.vin"):
        assert key in text, (key, found)
