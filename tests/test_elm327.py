"""bavard's ELM327 layer: reply parsing, and every clone behaviour through a real pty."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.elm_peer import ElmPeer, Frame, can_frames, legacy_frame

from agent.errors import ObdAdapterError, ObdVehicleError
from agent.obd import elm327_lines as lines_
from agent.obd.elm327 import Elm327
from agent.obd.transport import Reply, physical_request_id

VIN = b"1FTFW1ET5DFC10312"
VIN_REPLY = b"\x49\x02\x01" + VIN
SUPPORTED = bytes.fromhex("4100BE3FA813")
RPM = bytes.fromhex("410C1AF8")


def car_answers() -> dict[str, list[Frame]]:
    """An engine (7E8) and a gearbox (7E9) on 11-bit CAN."""
    return {
        "0100": can_frames("7E8", SUPPORTED) + can_frames("7E9", bytes.fromhex("410080000000")),
        "010C": can_frames("7E8", RPM),
        "0902": can_frames("7E8", VIN_REPLY),
        "03": can_frames("7E8", bytes.fromhex("4302014301 96".replace(" ", ""))),
    }


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[ElmPeer]:
    with ElmPeer(answers=car_answers(), link=tmp_path / "obd") as p:
        yield p


def open_elm(peer: ElmPeer, **kw: object) -> Elm327:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("search_timeout", 2.0)
    return Elm327.open(peer.path, **kw)


# -- parsing, no port ------------------------------------------------------------------------

def parse(frames: list[str], *, is_can: bool = True) -> list[Reply]:
    replies, incomplete = lines_.parse_headers_on(
        lines_.classify("test", frames).frames, is_can=is_can)
    assert incomplete == 0
    return replies


def test_single_frame_with_and_without_spaces_and_padding() -> None:
    expected = [Reply(0x7E8, RPM)]
    assert parse(["7E804410C1AF8"]) == expected
    assert parse(["7E8 04 41 0C 1A F8"]) == expected
    assert parse(["7E8 04 41 0C 1A F8 00 00 00"]) == expected  # the PCI byte gives the length


def test_multi_frame_vin_reassembled() -> None:
    found = ["7E8 10 14 49 02 01 31 46 54", "7E8 21 46 57 31 45 54 35 44",
             "7E8 22 46 43 31 30 33 31 32"]
    assert parse(found) == [Reply(0x7E8, VIN_REPLY)]
    assert parse([f.replace(" ", "") for f in found]) == [Reply(0x7E8, VIN_REPLY)]


def test_two_ecus_interleaved_are_kept_apart() -> None:
    gearbox = b"\x49\x02\x01" + b"WP0ZZZ99ZTS390000"
    engine = [f"{h}{d}" for h, d in can_frames("7E8", VIN_REPLY)]
    gears = [f"{h}{d}" for h, d in can_frames("7E9", gearbox)]
    mixed = [engine[0], gears[0], gears[1], engine[1], engine[2], gears[2], "7EA03410D32"]
    assert parse(mixed) == [Reply(0x7E8, VIN_REPLY), Reply(0x7E9, gearbox),
                            Reply(0x7EA, b"\x41\x0d\x32")]


def test_29bit_lines() -> None:
    assert parse(["18 DA F1 10 04 41 0C 1A F8"]) == [Reply(0x18DAF110, RPM)]
    assert parse(["18DAF11004410C1AF8", "18DAF11803410D00"]) == [
        Reply(0x18DAF110, RPM), Reply(0x18DAF118, b"\x41\x0d\x00")]


def test_legacy_lines_keyed_by_source_checksum_dropped() -> None:
    header, data = legacy_frame(0x10, RPM)
    assert parse([header + data], is_can=False) == [Reply(0x10, RPM)]
    assert parse(["48 6B 18 41 0C 1A F8 C5"], is_can=False) == [Reply(0x18, RPM)]


def test_headers_off_format() -> None:
    found = ["014", "0: 49 02 01 31 46 54", "1: 46 57 31 45 54 35 44", "2: 46433130333132"]
    assert lines_.parse_headers_off(found, ecu=0x7E8) == ([Reply(0x7E8, VIN_REPLY)], 0)
    assert lines_.parse_headers_off(["410C1AF8"], ecu=0x7E8) == ([Reply(0x7E8, RPM)], 0)


def test_response_pending_flow_control_and_bad_sequence_are_dropped() -> None:
    assert parse(["7E8037F0178", "7E804410C1AF8"]) == [Reply(0x7E8, RPM)]  # 7F 01 78, then it
    assert parse(["7E0300000", "7E804410C1AF8"]) == [Reply(0x7E8, RPM)]  # flow control
    frames = can_frames("7E8", VIN_REPLY)
    assert parse([f"{h}{d}" for h, d in (frames[0], frames[2])]) == []  # 22 where 21 was due
    replies, incomplete = lines_.parse_headers_on(
        [f"{h}{d}" for h, d in frames[:2]], is_can=True)
    assert (replies, incomplete) == ([], 1)


@pytest.mark.parametrize(("line", "error"), [
    ("UNABLE TO CONNECT", ObdVehicleError),
    ("BUS INIT: ...ERROR", ObdVehicleError),
    ("CAN ERROR", ObdVehicleError),
    ("BUS ERROR", ObdVehicleError),
    ("FB ERROR", ObdVehicleError),
    ("BUFFER FULL", ObdAdapterError),
    ("LV RESET", ObdAdapterError),
    ("ACT ALERT", ObdAdapterError),
    ("ERR94", ObdAdapterError),
    ("ELM327 v1.5", ObdAdapterError),  # it reset itself
    ("HELLO WORLD", ObdAdapterError),  # garbage
    ("7E8 0Z 41", ObdAdapterError),
])
def test_error_lines(line: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="010C"):
        lines_.classify("010C", ["SEARCHING...", line])


def test_harmless_lines() -> None:
    found = lines_.classify("0100", ["SEARCHING...", "BUS INIT: ...OK", "7E804410C1AF8",
                                     "7E903410D00 <RX ERROR", "DATA ERROR", "NO DATA"])
    assert found.frames == ["7E804410C1AF8"]
    assert (found.damaged, found.no_data, found.refused, found.stopped) == (2, True, False, False)


def test_small_helpers() -> None:
    assert lines_.protocol_number("A6") == "6"
    assert lines_.protocol_number("7") == "7"
    assert lines_.parse_voltage(["12.4V"]) == 12.4
    assert lines_.parse_voltage(["?"]) is None
    assert lines_.split_lines("ATI\r\nELM327 v1.5\r\r>") == ["ATI", "ELM327 v1.5"]
    assert physical_request_id(0x7E9) == 0x7E1
    assert physical_request_id(0x18DAF110) == 0x18DA10F1
    assert physical_request_id(0x10) is None  # a J1850 / ISO 9141 source address


# -- a scripted adapter on a pty -------------------------------------------------------------

def test_open_initialises_and_finds_the_protocol(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        assert elm.version == "ELM327 v1.5"
        assert (elm.protocol, elm.protocol_number, elm.is_can) == (
            "ISO 15765-4 (CAN 11/500)", "6", True)
        assert elm.description == f"ELM327 v1.5 on {peer.path} at 38400 baud"
        assert elm.first_replies == [Reply(0x7E8, SUPPORTED), Reply(0x7E9, bytes.fromhex(
            "410080000000"))]
        caps = elm.capabilities
        assert caps.headers and caps.adaptive_timing and caps.set_timeout and caps.echo_off
    assert peer.received == ["ATI", "ATZ", "ATE0", "ATL0", "ATS0", "ATH1", "ATAT1", "ATST19",
                             "ATSP0", "0100", "ATDPN"]


def test_request_headers_count_and_ecus(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        del peer.received[:]
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        assert elm.request(b"\x09\x02", ecu=0x7E0, expect=1) == [Reply(0x7E8, VIN_REPLY)]
        assert len(elm.request(b"\x01\x00")) == 2  # functional: both ECUs
        assert elm.request(b"\x01\x00", ecu=0x7E1) == [
            Reply(0x7E9, bytes.fromhex("410080000000"))]
        assert elm.request(b"\x01\x0d") == []  # NO DATA
    # ATSH only when the header changes; the count digit after the request
    assert peer.received == ["ATSH7E0", "010C1", "010C1", "09021", "ATSH7DF", "0100",
                             "ATSH7E1", "0100", "ATSH7DF", "010D"]


def test_spaces_kept_by_the_adapter_parse_too(peer: ElmPeer) -> None:
    peer.refuse = {"ATS0"}
    with open_elm(peer) as elm:
        assert elm.request(b"\x09\x02", ecu=0x7E0) == [Reply(0x7E8, VIN_REPLY)]


def test_baud_rate_found_after_trying_38400_and_9600(tmp_path: Path) -> None:
    with ElmPeer(answers=car_answers(), baudrate=115200) as peer:
        with open_elm(peer, probe_timeout=0.3) as elm:
            assert elm.baudrate == 115200
            assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        assert peer.bauds[:3] == [38400, 9600, 115200]


def test_baud_rate_38400_is_tried_first(peer: ElmPeer) -> None:
    peer.baudrate = 38400
    with open_elm(peer) as elm:
        assert elm.baudrate == 38400
    assert peer.received.count("ATI") == 1 and peer.bauds[0] == 38400


def test_no_adapter_at_any_baud_rate(peer: ElmPeer) -> None:
    peer.silent = True
    with pytest.raises(ObdAdapterError, match="no ELM327 prompt"):
        open_elm(peer, probe_timeout=0.1)


def test_echo_that_cannot_be_turned_off(peer: ElmPeer) -> None:
    peer.echo_forced = True
    with open_elm(peer) as elm:
        assert not elm.capabilities.echo_off
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        assert elm.command("AT RV") == ["12.6V"]


def test_clone_that_refuses_timing_and_the_reply_count(peer: ElmPeer) -> None:
    peer.refuse = {"ATST", "ATAT"}
    peer.refuse_count_suffix = True
    with open_elm(peer) as elm:
        caps = elm.capabilities
        assert not caps.adaptive_timing and not caps.set_timeout and caps.headers
        del peer.received[:]
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        assert not elm.capabilities.count_suffix
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
    assert peer.received == ["ATSH7E0", "010C1", "010C", "010C"]


def test_reply_count_refused_for_one_request_only(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1)
        peer.refuse_count_suffix = True
        assert elm.request(b"\x09\x02", ecu=0x7E0, expect=1) == [Reply(0x7E8, VIN_REPLY)]
        peer.refuse_count_suffix = False
        del peer.received[:]
        elm.request(b"\x09\x02", ecu=0x7E0, expect=1)
        elm.request(b"\x01\x0c", ecu=0x7E0, expect=1)
        assert elm.capabilities.count_suffix
    assert peer.received == ["0902", "010C1"]


def test_reply_count_that_counts_frames_is_asked_again(peer: ElmPeer) -> None:
    peer.count_frames = True
    with open_elm(peer) as elm:
        del peer.received[:]
        assert elm.request(b"\x09\x02", ecu=0x7E0, expect=1) == [Reply(0x7E8, VIN_REPLY)]
        assert elm.request(b"\x09\x02", ecu=0x7E0, expect=1) == [Reply(0x7E8, VIN_REPLY)]
    assert peer.received == ["ATSH7E0", "09021", "0902", "0902"]


def test_clone_without_headers(peer: ElmPeer) -> None:
    peer.refuse = {"ATH1"}
    with open_elm(peer) as elm:
        assert not elm.capabilities.headers
        assert elm.request(b"\x09\x02", ecu=0x7E0) == [Reply(0x7E8, VIN_REPLY)]
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]


def test_garbage_on_the_line(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        peer.garbage = b"\xff\xfe\x00\x07"
        with pytest.raises(ObdAdapterError, match="garbage"):
            elm.request(b"\x01\x0c", ecu=0x7E0)
        peer.garbage = b"41 ZZ QQ"
        with pytest.raises(ObdAdapterError, match="garbage"):
            elm.request(b"\x01\x0c", ecu=0x7E0)
        assert elm.request(b"\x01\x0c", ecu=0x7E0) == [Reply(0x7E8, RPM)]  # and it goes on


def test_no_prompt_is_a_timeout(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        peer.silent = True
        with pytest.raises(ObdAdapterError, match=r"no prompt within 0\.3 s"):
            elm.request(b"\x01\x0c", timeout=0.3)


def test_stopped_once_is_asked_again(peer: ElmPeer) -> None:
    peer.stopped_once = {"010C"}
    with open_elm(peer) as elm:
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
        peer.stopped_always = True
        with pytest.raises(ObdAdapterError, match="STOPPED twice"):
            elm.request(b"\x01\x0c", ecu=0x7E0, expect=1)


def test_question_mark_to_a_request_names_it(peer: ElmPeer) -> None:
    with open_elm(peer) as elm:
        assert elm.request(b"\x01\x0c", expect=1)
        peer.obd_override = ["?"]
        with pytest.raises(ObdAdapterError, match="refused '010C'"):
            elm.request(b"\x01\x0c")


@pytest.mark.parametrize("lines", [["UNABLE TO CONNECT"], ["BUS INIT: ...ERROR"],
                                   ["CAN ERROR"], ["NO DATA"]])
def test_ignition_off_at_open_is_a_vehicle_error(peer: ElmPeer, lines: list[str]) -> None:
    peer.obd_override = lines
    with pytest.raises(ObdVehicleError):
        open_elm(peer)
    assert peer.received[-1] == "0100"  # the adapter itself answered everything before


@pytest.mark.parametrize(("lines", "error"), [(["CAN ERROR"], ObdVehicleError),
                                              (["LV RESET"], ObdAdapterError),
                                              (["BUFFER FULL"], ObdAdapterError)])
def test_errors_during_requests(peer: ElmPeer, lines: list[str], error: type[Exception]) -> None:
    with open_elm(peer) as elm:
        peer.obd_override = lines
        with pytest.raises(error):
            elm.request(b"\x01\x0c")
        peer.obd_override = ["NO DATA"]
        assert elm.request(b"\x01\x0c") == []


def test_battery_voltage(peer: ElmPeer) -> None:
    peer.voltage = "11.8V"
    with open_elm(peer) as elm:
        assert elm.battery_voltage() == 11.8
        peer.refuse = {"ATRV"}
        assert elm.battery_voltage() is None


def test_unplug_then_replug_on_a_new_path(peer: ElmPeer, tmp_path: Path) -> None:
    elm = open_elm(peer)
    peer.unplug()
    with pytest.raises(ObdAdapterError):
        elm.request(b"\x01\x0c", ecu=0x7E0)
    elm.close()
    elm.close()  # twice is fine
    with pytest.raises(ObdAdapterError, match="closed"):
        elm.request(b"\x01\x0c")
    peer.replug()
    with open_elm(peer) as again:  # the new path
        assert again.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]
    with Elm327.open(str(tmp_path / "obd"), timeout=1.0) as linked:  # the stable symlink
        assert linked.request(b"\x01\x0c", ecu=0x7E0, expect=1) == [Reply(0x7E8, RPM)]


def test_open_failures_are_adapter_errors(tmp_path: Path) -> None:
    with pytest.raises(ObdAdapterError, match="cannot open"):
        Elm327.open(str(tmp_path / "no-such-tty"))
    with pytest.raises(ObdAdapterError, match="cannot open"):
        Elm327.open("socket://127.0.0.1:9", timeout=0.5)  # nothing listens on discard
    with pytest.raises(ValueError, match="protocol"):
        Elm327("/dev/null", protocol="Z")


def test_29bit_can_addressing() -> None:
    engine = bytes.fromhex("410C1AF8")
    answers = {"0100": can_frames("18DAF110", SUPPORTED),
               "010C": (can_frames("18DAF110", engine)
                        + can_frames("18DAF118", b"\x41\x0c\x00\x00")),
               "0902": can_frames("18DAF110", VIN_REPLY, pad=True)}
    with ElmPeer(answers=answers, protocol="7") as peer, open_elm(peer, protocol="7") as elm:
        assert (elm.is_can, elm.protocol) == (True, "ISO 15765-4 (CAN 29/500)")
        del peer.received[:]
        assert elm.request(b"\x01\x0c") == [Reply(0x18DAF110, engine),
                                            Reply(0x18DAF118, b"\x41\x0c\x00\x00")]
        assert elm.request(b"\x01\x0c", ecu=0x18DA10F1, expect=1) == [
            Reply(0x18DAF110, engine)]
        assert elm.request(b"\x09\x02", ecu=0x18DA10F1) == [Reply(0x18DAF110, VIN_REPLY)]
        assert elm.request(b"\x01\x0c", ecu=0x7E0, expect=1)  # 11-bit id: functional
    assert peer.received[:5] == ["ATCP18", "ATSHDB33F1", "010C", "ATSHDA10F1", "010C1"]


def test_legacy_protocol_replies_by_source_address() -> None:
    answers = {"0100": [legacy_frame(0x10, SUPPORTED)],
               "010C": [legacy_frame(0x10, RPM), legacy_frame(0x18, b"\x41\x0c\x00\x00")]}
    with ElmPeer(answers=answers, protocol="3") as peer:
        with open_elm(peer) as elm:
            assert (elm.is_can, elm.protocol_number) == (False, "3")
            assert elm.request(b"\x01\x0c", ecu=0x7E0) == [
                Reply(0x10, RPM), Reply(0x18, b"\x41\x0c\x00\x00")]
        assert not any(r.startswith("ATSH") for r in peer.received)


def test_deadline_and_settle_use_the_injected_clock_and_sleep(peer: ElmPeer) -> None:
    now = [0.0]
    step = [0.0]
    slept: list[float] = []

    def clock() -> float:  # once step is set, every look at the clock: 10 s later
        now[0] += step[0]
        return now[0]

    elm = Elm327.open(peer.path, timeout=1.0, search_timeout=100.0, clock=clock,
                      sleep=slept.append)
    assert slept == [0.1]  # the settle after ATZ, through the injected sleep
    peer.silent = True
    step[0] = 10.0
    started = time.monotonic()
    with pytest.raises(ObdAdapterError, match="no prompt within 30 s"):
        elm.request(b"\x01\x0c", timeout=30.0)
    assert time.monotonic() - started < 1.0  # the fake clock ran out, not the real one
    elm.close()
