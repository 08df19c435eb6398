"""The simulated vehicle: its DBC, its frames, the sample drive, the CLI, pacing."""

from __future__ import annotations

import io
import itertools
import random
import re
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from agent.cli.main import main
from agent.errors import DbcError
from agent.frames import Frame
from agent.resources import demo_dbc_path, sample_drive_path
from agent.sources import source_class
from agent.sources.simulator import (
    DEFAULT_START_TIME,
    SimulatorSource,
    VehicleModel,
    _Codec,
    candump_line,
    checksum_ok,
    drive_cycle_frames,
    drive_plan,
    send_to_bus,
    write_candump,
)

Drive = list[tuple[float, int, bool, bytes]]  # (timestamp, id, extended, data)
LINE = re.compile(r"\((\d+\.\d{6})\) (\S+) ([0-9A-F]{3}|[0-9A-F]{8})#((?:[0-9A-F]{2})*)")


@pytest.fixture(scope="module")
def db() -> Any:
    return cantools.database.load_file(str(demo_dbc_path()), strict=True)


@pytest.fixture(scope="module")
def drive() -> Drive:
    """The shipped sample drive, parsed: (timestamp, id, extended, data)."""
    frames = []
    with open(sample_drive_path(), encoding="ascii") as handle:
        for line in handle:
            match = LINE.fullmatch(line.rstrip("\n"))
            assert match, line
            ts, channel, ident, data = match.groups()
            assert channel == "can0"
            frames.append((float(ts), int(ident, 16), len(ident) == 8, bytes.fromhex(data)))
    return frames


@pytest.fixture(scope="module")
def series(db: Any, drive: Drive) -> dict[str, list[tuple[float, Any]]]:
    """Every signal of the sample drive: name -> [(seconds since the start, value)]."""
    out: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for ts, ident, _, data in drive:
        for name, value in db.decode_message(ident, data, decode_choices=False).items():
            out[name].append((ts - DEFAULT_START_TIME, value))
    return out


def by_message(db: Any, drive: Drive) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for item in drive:
        out[db.get_message_by_frame_id(item[1]).name].append(item)
    return out


# --- the DBC ---------------------------------------------------------------------------

def test_dbc_loads_strictly_with_realistic_cycle_times(db: Any) -> None:
    assert 12 <= len(db.messages) <= 16
    cycles = {m.name: m.cycle_time for m in db.messages}
    assert all(10 <= c <= 1000 for c in cycles.values()), cycles
    assert min(cycles.values()) == 10 and max(cycles.values()) == 1000
    load = sum(1000 / c for c in cycles.values())
    assert 200 <= load <= 500  # frames per second on the bus


def test_dbc_has_the_signal_kinds_a_decoder_must_handle(db: Any) -> None:
    signals = [s for m in db.messages for s in m.signals]
    assert any(s.byte_order == "big_endian" for s in signals)
    assert any(s.is_signed for s in signals)
    assert sum(1 for s in signals if s.choices) >= 5
    assert [m.name for m in db.messages if m.is_extended_frame] == ["AmbientConditions"]
    assert [m.name for m in db.messages if m.is_multiplexed()] == ["BodyStatus"]
    assert db.get_message_by_name("EngineTemps").get_signal_by_name("CoolantTemp").offset == -40
    odometer = db.get_message_by_name("Odometer").get_signal_by_name("Odometer")
    assert odometer.length == 32 and odometer.unit == "km"
    gears = db.get_message_by_name("Transmission").get_signal_by_name("GearLever").choices
    assert {str(v) for v in gears.values()} >= {"P", "R", "N", "D"}


def test_every_frequent_message_has_a_counter_and_a_checksum(db: Any) -> None:
    for message in db.messages:
        if message.cycle_time <= 100:
            names = [s.name for s in message.signals]
            assert f"{message.name}_Counter" in names, message.name
            assert f"{message.name}_Checksum" in names, message.name


# --- determinism -----------------------------------------------------------------------

def test_same_seed_same_frames_other_seed_other_frames() -> None:
    one = list(drive_cycle_frames(seed=5, duration=20))
    assert one == list(drive_cycle_frames(seed=5, duration=20))
    other = list(drive_cycle_frames(seed=6, duration=20))
    assert len(other) == len(one)
    assert [f.data for f in other] != [f.data for f in one]


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    short = list(drive_cycle_frames(duration=7.5))
    long = list(drive_cycle_frames(duration=15))
    assert long[: len(short)] == short


def test_regenerating_the_sample_drive_gives_the_shipped_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sample_drive.log"
    assert main(["simulate", "--seed", "1", "--output", str(out)]) == 0
    assert "84,240 frames" in capsys.readouterr().out
    assert out.read_bytes() == sample_drive_path().read_bytes()
    assert out.stat().st_size < 4_000_000


def test_fast_encoder_matches_cantools(db: Any) -> None:
    model = VehicleModel(random.Random(3))
    fast = [_Codec(m) for m in db.messages]
    for step in range(24_000):
        model.step()
        for codec in fast:
            if step % (5 * codec.cycle_us // 10_000) == 0:
                expected = codec.message.encode(codec.physical(model.values), strict=True)
                got = codec.encode(model.values)
                if codec.checksum_byte is not None:
                    assert got[: codec.checksum_byte] == expected[: codec.checksum_byte]
                    assert got[codec.checksum_byte + 1 :] == expected[codec.checksum_byte + 1 :]
                else:
                    assert got == expected, codec.name


# --- the sample drive ------------------------------------------------------------------

def test_every_frame_decodes_strictly_within_range(
    db: Any, drive: Drive
) -> None:
    for i, (_, ident, extended, data) in enumerate(drive):
        message = db.get_message_by_frame_id(ident)
        assert message.is_extended_frame == extended
        values = db.decode_message(ident, data, decode_choices=False)
        for name, value in values.items():
            sig = message.get_signal_by_name(name)
            slack = abs(sig.scale) / 2
            assert sig.minimum - slack <= value <= sig.maximum + slack, (message.name, name, value)
        if i % 17 == 0:
            assert message.encode(values, strict=True) == data


def test_counters_roll_and_checksums_verify(
    db: Any, drive: Drive
) -> None:
    checked = 0
    for name, frames in by_message(db, drive).items():
        message = db.get_message_by_name(name)
        counter = next((s for s in message.signals if "Counter" in s.name), None)
        checksum = next((s for s in message.signals if "Checksum" in s.name), None)
        if counter is None:
            continue
        assert checksum is not None
        counters = [message.decode(f[3])[counter.name] for f in frames]
        assert counters[:16] == list(range(16))
        assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(counters))
        for frame in frames:
            assert checksum_ok(frame[3], checksum.start // 8)
            assert message.decode(frame[3])[checksum.name] == (sum(frame[3]) - frame[3][-1]) % 256
        checked += 1
    assert checked == 8


def test_each_message_keeps_its_cycle_time(db: Any, drive: Drive) -> None:
    for name, frames in by_message(db, drive).items():
        cycle = db.get_message_by_name(name).cycle_time / 1000
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames)]
        assert all(abs(g - cycle) <= 0.0002 for g in gaps), name
        assert abs(len(frames) - 240 / cycle) <= 1, name
    timestamps = [f[0] for f in drive]
    assert timestamps == sorted(timestamps)


def test_the_drive_phases_show(series: dict[str, list[tuple[float, Any]]]) -> None:
    speed = series["VehicleSpeed"]
    assert speed[0][1] == 0 and speed[-1][1] == 0
    assert max(v for _, v in speed) > 100  # highway
    stops = sum(1 for (_, a), (_, b) in itertools.pairwise(speed) if a > 0 and b == 0)
    assert stops >= 4  # city stop-and-go, then parking
    # harsh brake: over 6 m/s^2 both on the sensor and from the speed itself
    assert min(v for _, v in series["LongitudinalAccel"]) < -6
    decel = max((a - b) / 3.6 / 0.1 for (_, a), (_, b) in zip(speed, speed[5:], strict=False))
    assert decel > 6
    assert any(v for _, v in series["ABSActive"])
    assert max(v for _, v in series["BrakePressure"]) > 60
    coolant = [v for _, v in series["CoolantTemp"]]
    assert coolant[0] < 20 and max(coolant) > 85 and max(coolant) < 100
    fuel = [v for _, v in series["FuelLevel"]]
    assert fuel[-1] < fuel[0]
    odometer = [v for _, v in series["Odometer"]]
    assert odometer == sorted(odometer) and 2 < odometer[-1] - odometer[0] < 10
    volts = series["BatteryVoltage"]
    assert 12.2 < volts[0][1] < 12.7 and max(v for _, v in volts) > 14.0
    assert {v for _, v in series["CurrentGear"]} >= {0, 1, 2, 3, 4, 5, 6, 7}
    assert {v for _, v in series["GearLever"]} == {0, 1, 3}
    # the engine runs in between and is off at the end
    rpm = series["EngineSpeed"]
    assert rpm[0][1] == 0 and rpm[-1][1] == 0
    assert 650 < next(v for t, v in rpm if t > 40 and v > 0) < 4500
    assert series["EngineRunning"][-1][1] == 0 and series["IgnitionState"][-1][1] == 0
    assert max(abs(v) for _, v in series["SteeringWheelAngle"]) > 90


def test_extended_and_multiplexed_messages_appear(
    db: Any, drive: Drive, series: dict[str, list[tuple[float, Any]]]
) -> None:
    extended = [f for f in drive if f[2]]
    assert len(extended) == 240 and {f[1] for f in extended} == {0x18FEF521}
    assert {v for _, v in series["BodyStatus_Page"]} == {0, 1, 2}
    for signal in ("DoorFL", "Headlights", "CabinTemp"):
        assert len(series[signal]) == 400


# --- API, CLI, buses, pacing -------------------------------------------------------------

def test_candump_lines() -> None:
    line = candump_line(Frame(1.5, "can0", 0x1A, False, False, b"\x01\xab"))
    assert line == "(1.500000) can0 01A#01AB"
    line = candump_line(Frame(2.0, "vcan1", 0x18FEF521, True, False, b""))
    assert line == "(2.000000) vcan1 18FEF521#"
    line = candump_line(Frame(3.0, "c", 0x123, False, True, b"\x00" * 12))
    assert line == "(3.000000) c 123##0" + "00" * 12
    buffer = io.StringIO()
    assert write_candump(drive_cycle_frames(duration=1), buffer) == 351
    assert buffer.getvalue().count("\n") == 351


def test_simulator_is_registered_and_names_its_channel() -> None:
    cls = source_class("simulator")
    assert cls is SimulatorSource
    with SimulatorSource("vehicle", speed=0, duration=0.5) as source:
        frames = list(source.frames())
    assert {f.channel for f in frames} == {"vehicle"}
    assert source.stats.frames == len(frames)
    assert frames[0].timestamp >= DEFAULT_START_TIME


def test_bad_arguments_and_dbcs(tmp_path: Path) -> None:
    with pytest.raises(DbcError):
        SimulatorSource("x", tmp_path / "missing.dbc")
    with pytest.raises(ValueError, match="cycle_length"):
        SimulatorSource("x", cycle_length=30)
    no_cycles = tmp_path / "bare.dbc"
    no_cycles.write_text('VERSION ""\nBU_: A\nBO_ 1 M: 1 A\n SG_ S : 0|8@1+ (1,0) [0|255] "" A\n')
    with pytest.raises(DbcError, match="GenMsgCycleTime"):
        SimulatorSource("x", no_cycles)


def test_a_longer_cycle_and_more_than_one_cycle() -> None:
    phases, _ = drive_plan(300)
    assert phases[-1].end == pytest.approx(300)
    frames = list(drive_cycle_frames(duration=320, cycle_length=150))
    assert frames[-1].timestamp - DEFAULT_START_TIME == pytest.approx(320, abs=0.02)
    speeds = [f.data for f in frames if f.arbitration_id == 0x0D0]
    assert len(speeds) == 16_000


def receive(bus: can.BusABC) -> can.Message:
    message = bus.recv(timeout=1)
    assert message is not None
    return message


def test_send_to_bus_and_the_cli_reach_a_virtual_bus(capsys: pytest.CaptureFixture[str]) -> None:
    channel = f"sim-{uuid.uuid4().hex}"
    expected = list(drive_cycle_frames(duration=1))
    with can.Bus(interface="virtual", channel=channel) as receiver:
        with can.Bus(interface="virtual", channel=channel) as sender:
            assert send_to_bus(expected, sender) == len(expected)
        got = [receive(receiver) for _ in expected]
        assert receiver.recv(timeout=0.05) is None
        assert [(m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in got] == [
            (f.arbitration_id, f.is_extended, f.data) for f in expected
        ]
        argv = ["simulate", "--interface", "virtual", "--channel", channel,
                "--duration", "1", "--speed", "0"]
        assert main(argv) == 0
        assert "351 frames" in capsys.readouterr().out
        got = [receive(receiver) for _ in expected]
    assert [bytes(m.data) for m in got] == [f.data for f in expected]


def test_cli_errors_name_the_interface(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--interface", "no-such-bus", "--channel", "x"]) == 1
    assert "no-such-bus" in capsys.readouterr().err
    assert main(["simulate", "--interface", "virtual"]) == 2


class VirtualClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_pacing_on_a_virtual_clock(speed: float) -> None:
    clock = VirtualClock()
    source = SimulatorSource("v", speed=speed, duration=3, clock=clock.clock, wait=clock.wait)
    seen = [(clock.now, f.timestamp) for f in source.frames()]
    (c0, t0) = seen[0]
    for now, ts in seen:
        assert now - c0 >= (ts - t0) / speed - 1e-9
        assert now - c0 <= (ts - t0) / speed + 0.011
    assert clock.now - c0 == pytest.approx((seen[-1][1] - t0) / speed, abs=1e-6)
    assert len(clock.waits) > 100


def test_stop_interrupts_a_paced_run() -> None:
    stop = threading.Event()
    source = SimulatorSource("v", speed=1.0, duration=60)
    frames = []
    for frame in source.frames(stop):
        frames.append(frame)
        if len(frames) == 50:
            stop.set()
    assert len(frames) == 50


# --- simulate -o: the format the name says (regression: always candump text) ------------------


def decoded(tmp_path: Path, log: Path) -> list[dict[str, Any]]:
    import json

    out = tmp_path / (log.name + ".jsonl")
    assert main(["decode", str(log), "--dbc", str(demo_dbc_path()), "-o", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_log_format_reads_back_to_the_same_samples(tmp_path: Path) -> None:
    """Regression: `-o d.log.gz` wrote plain text (decode failed), `-o d.asc` candump text
    (decode said 0 frames)."""
    reference = tmp_path / "d.log"
    assert main(["simulate", "-o", str(reference), "--duration", "8"]) == 0
    expected = decoded(tmp_path, reference)
    assert len(expected) > 10_000

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["message"], r["signal"], r["value"], r.get("label"), r.get("flags")

    for name, magic in [("d.log.gz", b"\x1f\x8b"), ("d.candump.gz", b"\x1f\x8b"),
                        ("d.asc", b"date "), ("d.asc.gz", b"\x1f\x8b"), ("d.blf", b"LOGG"),
                        ("d.trc", b";$FILEVERSION=2.1"), ("D.TRC.GZ", b"\x1f\x8b")]:
        path = tmp_path / name
        assert main(["simulate", "-o", str(path), "--duration", "8"]) == 0
        assert path.read_bytes().startswith(magic), name
        got = decoded(tmp_path, path)
        assert [key(r) for r in got] == [key(r) for r in expected], name
        for mine, theirs in zip(got, expected, strict=True):
            assert abs(mine["timestamp"] - theirs["timestamp"]) <= 1e-6, name


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "d.log.gz", tmp_path / "b" / "d.log.gz"
    for path in (a, b):
        path.parent.mkdir()
        assert main(["simulate", "-o", str(path), "--duration", "2"]) == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("name", ["d.xyz", "d.blf.gz", "d", "d.gz"])
def test_an_unknown_ending_is_refused_and_nothing_written(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "-o", str(tmp_path / name), "--duration", "1"]) == 2
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert f"{tmp_path / name}:" in err
    assert ".asc" in err or "write d.blf" in err


def test_a_can_fd_frame_is_refused_for_trc(tmp_path: Path) -> None:
    from agent.errors import BavardError
    from agent.sources.simulator import write_log

    frames = [Frame(1.0, "can0", 0x10, False, False, b"\x01"),
              Frame(1.5, "can0", 0x11, False, True, bytes(12))]
    with pytest.raises(BavardError, match="CAN FD"):
        write_log(frames, tmp_path / "fd.trc")
    assert write_log(frames, tmp_path / "fd.blf") == 2
    assert write_log(frames, tmp_path / "fd.asc") == 2
