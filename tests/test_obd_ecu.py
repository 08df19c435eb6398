"""The simulated OBD-II ECUs: their own encoding against bytes computed by hand.

The ECUs are asked directly (``SimulatedEcus.answer``, no bus) on a clock the
test holds still or moves, so every answer is known. ``bavard simulate --obd``
is at the end; CanObd against the ECUs on a bus is tests/test_obd_can.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import can
import pytest

from agent.cli.main import main
from agent.obd.can_transport import CanObd
from agent.sources.simulator.obd_ecu import (
    DEFAULT_VIN,
    ENGINE_PIDS,
    ENGINE_REPLY,
    TRANSMISSION_REPLY,
    SimulatedEcus,
    bitmap,
    dtc_bytes,
    encode_pid,
    harsh_brake,
)


class Still:
    """A clock that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Still:
    return Still()


@pytest.fixture
def ecus(clock: Still) -> Iterator[SimulatedEcus]:
    with can.Bus(interface="virtual", channel=f"ecu-{uuid.uuid4().hex}") as bus:
        yield SimulatedEcus(bus, t0=100.0, clock=clock)  # city driving, engine warm


def at(ecus: SimulatedEcus, clock: Still, t: float) -> None:
    """Move the vehicle to time ``t``."""
    clock.now += t - ecus.vehicle_time()
    ecus.state()


# --- the encoding ----------------------------------------------------------------------

@pytest.mark.parametrize(("pid", "value", "data"), [
    (0x0C, 1726.5, b"\x1a\xfa"),  # rpm x 4 = 6906
    (0x0C, 0.0, b"\x00\x00"),
    (0x0C, 20_000.0, b"\xff\xff"),  # clamped to 16383.75 rpm
    (0x0D, 97.4, b"\x61"),
    (0x0D, -2.0, b"\x00"),  # never below 0
    (0x05, 90.0, b"\x82"),  # degC + 40
    (0x05, -40.0, b"\x00"),
    (0x0F, 21.6, b"\x3e"),  # 61.6 rounds to 62
    (0x04, 100.0, b"\xff"),  # % x 255 / 100
    (0x04, 50.0, b"\x80"),  # 127.5 rounds up to 128
    (0x2F, 62.35, b"\x9f"),  # 158.99 -> 159
    (0x11, 0.0, b"\x00"),
    (0x1F, 125.4, b"\x00\x7d"),  # seconds
    (0x33, 101.3, b"\x65"),  # kPa
    (0x42, 14.2, b"\x37\x78"),  # mV: 14200
    (0x46, 9.5, b"\x32"),  # 49.5 rounds up to 50
    (0x5C, 88.0, b"\x80"),
    (0x5E, 12.35, b"\x00\xf7"),  # L/h x 20 = 247
    (0xA6, 48_213.6, b"\x00\x07\x5b\x58"),  # km x 10 = 482136
])
def test_pid_encoding_by_hand(pid: int, value: float, data: bytes) -> None:
    assert encode_pid(pid, value) == data


def test_bitmaps_by_hand() -> None:
    engine = set(ENGINE_PIDS) | {0x01}
    assert bitmap(engine, 0x00).hex() == "981a8003"  # 01 04 05 0C 0D 0F 11 1F, 20 follows
    assert bitmap(engine, 0x20).hex() == "00022001"  # 2F 33, 40 follows
    assert bitmap(engine, 0x40).hex() == "44000015"  # 42 46 5C 5E, 60 follows
    assert bitmap(engine, 0x60).hex() == "00000001"  # only: 80 follows
    assert bitmap(engine, 0x80).hex() == "00000001"
    assert bitmap(engine, 0xA0).hex() == "04000000"  # A6, the last
    assert bitmap({0x01, 0x0D}, 0x00).hex() == "80080000"  # the transmission's


@pytest.mark.parametrize(("code", "data"), [
    ("P0500", b"\x05\x00"), ("P0420", b"\x04\x20"), ("C0035", b"\x40\x35"),
    ("B1234", b"\x92\x34"), ("U0100", b"\xc1\x00"), ("P2A3F", b"\x2a\x3f"),
])
def test_dtc_bytes_by_hand(code: str, data: bytes) -> None:
    assert dtc_bytes(code) == data


# --- the services ----------------------------------------------------------------------

def test_mode_01_answers_the_model_in_its_own_encoding(ecus: SimulatedEcus) -> None:
    engine = ecus.state()[ENGINE_REPLY]
    rpm, speed = engine.pids[0x0C], engine.pids[0x0D]
    assert 700 < rpm < 3500 and 0 <= speed < 60  # t = 100 s: the city part of the drive
    raw_rpm = round(rpm * 4)
    assert ecus.answer(b"\x01\x0c") == b"\x41\x0c" + raw_rpm.to_bytes(2, "big")
    assert ecus.answer(b"\x01\x0d") == bytes([0x41, 0x0D, round(speed)])
    # several PIDs: one reply, in the order asked, unsupported ones left out
    assert ecus.answer(b"\x01\x0d\xff\x0c") == (
        bytes([0x41, 0x0D, round(speed), 0x0C]) + raw_rpm.to_bytes(2, "big"))
    assert ecus.answer(b"\x01\x00") == bytes.fromhex("4100981a8003")
    assert ecus.answer(b"\x01\xa0") == bytes.fromhex("41a004000000")
    assert ecus.answer(b"\x01\x00", TRANSMISSION_REPLY) == bytes.fromhex("410080080000")
    assert ecus.answer(b"\x01\x0d", TRANSMISSION_REPLY) == bytes([0x41, 0x0D, round(speed)])
    # MIL off, no DTC, spark ignition, the monitors all complete
    assert ecus.answer(b"\x01\x01") == bytes.fromhex("4101" "00076500")
    assert ecus.answer(b"\x01\x01", TRANSMISSION_REPLY) == bytes.fromhex("4101" "00000000")


def test_every_pid_answers_what_state_says(ecus: SimulatedEcus, clock: Still) -> None:
    for t in (5.0, 60.0, 150.0, 200.0):
        at(ecus, clock, t)
        state = ecus.state()[ENGINE_REPLY]
        for pid, spec in ENGINE_PIDS.items():
            reply = ecus.answer(bytes([0x01, pid]))
            assert reply is not None and reply[:2] == bytes([0x41, pid])
            raw = int.from_bytes(reply[2:], "big")
            assert len(reply) == 2 + spec.size
            assert state.pids[pid] == pytest.approx(raw * spec.mul / spec.div + spec.offset)


def test_unsupported_requests(ecus: SimulatedEcus) -> None:
    assert ecus.answer(b"\x01\xff") == b"\x7f\x01\x12"  # physical: a negative response
    assert ecus.answer(b"\x01\xff", functional=True) is None  # functional: silence
    assert ecus.answer(b"\x22\xf1\x90") == b"\x7f\x22\x11"  # an unknown service
    assert ecus.answer(b"\x22\xf1\x90", functional=True) is None
    assert ecus.answer(b"\x01" + bytes(range(1, 8))) == b"\x7f\x01\x12"  # 7 PIDs: too many
    assert ecus.answer(b"\x01\x0c", TRANSMISSION_REPLY, functional=True) is None
    assert ecus.answer(b"\x09\x02", TRANSMISSION_REPLY) == b"\x7f\x09\x12"
    assert ecus.answer(b"\x02\x02\x00", TRANSMISSION_REPLY) == b"\x7f\x02\x12"
    assert ecus.answer(b"\x03\x00") == b"\x7f\x03\x12"


def test_vin_and_ecu_names(ecus: SimulatedEcus) -> None:
    assert ecus.answer(b"\x09\x00") == bytes.fromhex("4900" "40400000")  # 02 and 0A
    assert ecus.answer(b"\x09\x00", TRANSMISSION_REPLY) == bytes.fromhex("4900" "00400000")
    assert ecus.answer(b"\x09\x02") == b"\x49\x02\x01" + DEFAULT_VIN.encode()
    assert ecus.answer(b"\x09\x0a") == b"\x49\x0a\x01ECM-EngineControl\x00\x00\x00"
    assert ecus.answer(b"\x09\x0a", TRANSMISSION_REPLY) == b"\x49\x0a\x01TCM-TransmissionCtrl"


def test_default_vin_is_valid_and_what_python_obd_would_mangle() -> None:
    values = dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ",
                      [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
                      strict=True))
    values.update((str(d), d) for d in range(10))
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    check = sum(values[c] * w for c, w in zip(DEFAULT_VIN, weights, strict=True)) % 11
    assert DEFAULT_VIN[8] == ("X" if check == 10 else str(check))
    assert DEFAULT_VIN[0] in "012" and DEFAULT_VIN[-1] in "012"
    with pytest.raises(ValueError, match="VIN"):
        SimulatedEcus(None, vin="1BAVARD29TD10001O")  # an O
    with pytest.raises(ValueError, match="speed"):
        SimulatedEcus(None, speed=0)


def test_the_dtc_appears_in_the_harsh_brake_and_clears(ecus: SimulatedEcus,
                                                        clock: Still) -> None:
    start, end = harsh_brake()
    assert (round(start, 1), round(end, 1)) == (203.8, 208.3)
    at(ecus, clock, start - 1.0)
    assert ecus.answer(b"\x03") == b"\x43\x00"
    assert ecus.answer(b"\x07") == b"\x47\x00"
    assert ecus.answer(b"\x0a") == b"\x4a\x00"
    assert ecus.answer(b"\x02\x02\x00") == b"\x42\x02\x00\x00\x00"  # no freeze frame
    assert ecus.answer(b"\x02\x0c\x00") == b"\x7f\x02\x12"
    # ABS engages about 1.3 s into the brake: pending, not stored yet
    at(ecus, clock, start + 2.0)
    assert ecus.answer(b"\x07") == b"\x47\x01\x05\x00"
    assert ecus.answer(b"\x03") == b"\x43\x00"
    state = ecus.state()[ENGINE_REPLY]
    assert (state.pending, state.stored, state.mil) == (("P0500",), (), False)
    # the brake over: stored, MIL on, permanent, a freeze frame
    at(ecus, clock, end + 0.5)
    assert ecus.answer(b"\x03") == b"\x43\x01\x05\x00"
    assert ecus.answer(b"\x0a") == b"\x4a\x01\x05\x00"
    assert ecus.answer(b"\x01\x01") == bytes.fromhex("4101" "81076500")
    assert ecus.answer(b"\x03", TRANSMISSION_REPLY) == b"\x43\x00"
    state = ecus.state()[ENGINE_REPLY]
    assert (state.stored, state.permanent, state.mil, state.freeze_dtc) == (
        ("P0500",), ("P0500",), True, "P0500")
    assert ecus.answer(b"\x02\x02\x00") == b"\x42\x02\x00\x05\x00"
    assert ecus.answer(b"\x02\x00\x00") == bytes.fromhex("420000" "581a8002")
    frozen = state.freeze_frame
    assert set(frozen) == {0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x11, 0x1F}
    assert 25 < frozen[0x0D] < 35  # the speed at the brake's end (30 km/h)
    rpm = ecus.answer(b"\x02\x0c\x00\x0d\x00")
    assert rpm == (b"\x42\x0c\x00" + encode_pid(0x0C, frozen[0x0C])
                   + b"\x0d\x00" + encode_pid(0x0D, frozen[0x0D]))
    assert ecus.answer(b"\x02\x0c\x01") == b"\x7f\x02\x12"  # only frame 0 exists
    # clear: stored, pending, freeze frame, MIL; the permanent code stays
    assert ecus.answer(b"\x04") == b"\x44"
    assert ecus.answer(b"\x04", TRANSMISSION_REPLY) == b"\x44"
    assert ecus.answer(b"\x03") == b"\x43\x00"
    assert ecus.answer(b"\x07") == b"\x47\x00"
    assert ecus.answer(b"\x0a") == b"\x4a\x01\x05\x00"
    assert ecus.answer(b"\x02\x02\x00") == b"\x42\x02\x00\x00\x00"
    assert ecus.answer(b"\x01\x01") == bytes.fromhex("4101" "00076565")  # monitors reset
    # the next cycle's harsh brake sets it again
    at(ecus, clock, 300.0 + end + 0.5)
    assert ecus.answer(b"\x03") == b"\x43\x01\x05\x00"
    assert ecus.answer(b"\x01\x01") == bytes.fromhex("4101" "81076500")


def test_no_answer_with_the_ignition_off(ecus: SimulatedEcus, clock: Still) -> None:
    at(ecus, clock, 236.0)  # the last 70 s of the cycle: key out
    assert not ecus.state()[ENGINE_REPLY].ignition
    assert ecus.answer(b"\x01\x0c") is None
    assert ecus.answer(b"\x09\x02") is None
    at(ecus, clock, 301.0)  # the next cycle: key on, engine off
    assert ecus.answer(b"\x01\x0c") == b"\x41\x0c\x00\x00"


def test_vehicle_time_follows_the_clock_and_speed(clock: Still) -> None:
    with can.Bus(interface="virtual", channel=f"ecu-{uuid.uuid4().hex}") as bus:
        ecus = SimulatedEcus(bus, speed=4.0, t0=10.0, clock=clock)
        clock.now += 2.5
        assert ecus.vehicle_time() == 20.0
        clock.now -= 1.0  # a clock that goes back: the model does not
        ecus.state()
        assert ecus.vehicle_time() == 16.0


def test_the_thread_answers_and_stops_in_time() -> None:
    channel = f"ecu-{uuid.uuid4().hex}"
    with can.Bus(interface="virtual", channel=channel) as bus, \
            can.Bus(interface="virtual", channel=channel) as tester:
        ecus = SimulatedEcus(bus, t0=50.0).start()
        tester.send(can.Message(arbitration_id=0x7DF, is_extended_id=False,
                                data=b"\x02\x01\x0d\x00\x00\x00\x00\x00"))
        replies = [tester.recv(2.0) for _ in range(2)]
        started = time.monotonic()
        ecus.stop()
        assert time.monotonic() - started < 1.0
    assert sorted(m.arbitration_id for m in replies if m is not None) == [0x7E8, 0x7E9]
    for message in replies:
        assert message is not None and len(message.data) == 8  # padded
        assert message.data[0] == 3 and message.data[1:3] == b"\x41\x0d"
        assert message.data[4:] == b"\xaa" * 4
    assert (ecus.requests, ecus.answered, ecus.errors) == (1, 2, 0)


# --- bavard simulate --obd ------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--obd", "--output", "x.log"], "needs --interface"),
    (["--obd-only", "--output", "x.log"], "needs --interface"),
    (["--interface", "virtual", "--channel", "x", "--obd", "--speed", "0"], "speed above 0"),
    (["--interface", "virtual", "--channel", "x", "--obd", "--vin", "123"], "not a VIN"),
    (["--interface", "virtual", "--channel", "x", "--vin", DEFAULT_VIN], "--vin needs --obd"),
])
def test_simulate_obd_refuses(argv: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("only", [False, True])
def test_simulate_obd_answers_on_the_bus(only: bool, capsys: pytest.CaptureFixture[str]) -> None:
    channel = f"sim-obd-{uuid.uuid4().hex}"
    vin = "2BAVARD04TD000120"
    argv = ["simulate", "--interface", "virtual", "--channel", channel, "--speed", "10",
            "--duration", "20", "--vin", vin.lower(), "--obd-only" if only else "--obd"]
    status: list[int] = []
    runner = threading.Thread(target=lambda: status.append(main(argv)), daemon=True)
    with CanObd("virtual", channel, timeout=0.3) as obd:
        runner.start()
        replies: list = []
        deadline = time.monotonic() + 3.0
        while not replies and time.monotonic() < deadline:
            replies = obd.request(b"\x09\x02", expect=1)
        rpm = obd.request(b"\x01\x0c", ecu=0x7E0, expect=1)
        runner.join(10.0)
    assert status == [0]
    assert replies == [(0x7E8, b"\x49\x02\x01" + vin.encode())]
    assert len(rpm) == 1 and rpm[0].data[:2] == b"\x41\x0c"
    out = capsys.readouterr().out
    assert "simulated 20.0 s of driving" in out and "OBD: " in out
    assert (": 0 frames" in out) == only
