"""The OBD source through a real pty: polling, trouble-code events, the VIN, and the
faults that must never end it (unplugged, garbage, ignition off)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.elm_peer import ElmPeer, Item, can_frames
from helpers.source_reader import SourceReader

from agent.decode.obd import ObdDecoder
from agent.errors import ObdAdapterError
from agent.frames import Frame
from agent.obd.dtc import encode_dtc
from agent.obd.elm327 import Elm327
from agent.obd.settings import ObdSettings
from agent.obd.transport import Transport
from agent.sources.obd import ObdSource

VIN = "1FTFW1ET9DFC10312"  # begins and ends with characters python-obd strips
VALUES = {0x0C: bytes.fromhex("1AF8"), 0x0D: bytes.fromhex("32"), 0x05: bytes.fromhex("7B")}
EXPECTED = {"ENGINE_RPM": 1726.0, "VEHICLE_SPEED": 50, "COOLANT_TEMPERATURE": 83}


def mode01(peer: ElmPeer, request: str) -> list[Item]:
    """Any mode 01 request, several PIDs included, from VALUES (the engine only)."""
    numbers = [int(request[i:i + 2], 16) for i in range(2, len(request), 2)]
    data = b"".join(bytes([n]) + VALUES[n] for n in numbers if n in VALUES)
    return can_frames("7E8", b"\x41" + data) if data else []


class Car:
    """What the scripted vehicle answers; tests change ``stored`` and ``mil`` on the way."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.mil = False

    def answers(self) -> dict[str, Callable[[ElmPeer, str], list[Item]]]:
        def supported(peer: ElmPeer, request: str) -> list[Item]:
            return can_frames("7E8", bytes.fromhex("4100" "98180000"))  # 01 04 05 0C 0D

        def dtcs(peer: ElmPeer, request: str) -> list[Item]:
            codes = self.stored if request == "03" else []
            body = bytes([0x43 if request == "03" else int(request, 16) + 0x40, len(codes)])
            return can_frames("7E8", body + b"".join(encode_dtc(c) for c in codes))

        def monitors(peer: ElmPeer, request: str) -> list[Item]:
            a = (0x80 if self.mil else 0) | len(self.stored)
            return can_frames("7E8", bytes([0x41, 0x01, a, 0x07, 0xE5, 0x00]))

        def vin(peer: ElmPeer, request: str) -> list[Item]:
            return can_frames("7E8", b"\x49\x02\x01" + VIN.encode())

        table: dict[str, Callable[[ElmPeer, str], list[Item]]] = {
            "0100": supported, "0101": monitors, "03": dtcs, "07": dtcs, "0A": dtcs,
            "0902": vin,
        }
        for request in ("010C", "010D", "0105", "010C0D", "010C0D05", "010D05", "010C05"):
            table[request] = mode01
        return table


@pytest.fixture
def car() -> Car:
    return Car()


@pytest.fixture
def peer(tmp_path: Path, car: Car) -> Iterator[ElmPeer]:
    with ElmPeer(answers=car.answers(), protocol="6", link=tmp_path / "obd") as p:
        yield p


def opener(peer: ElmPeer) -> Callable[[ObdSettings], Transport]:
    """The adapter behind the stable link, with short waits."""
    def open_(settings: ObdSettings) -> Transport:
        assert peer.link is not None
        return Elm327.open(str(peer.link), timeout=0.5, search_timeout=1.0, probe_timeout=0.2)
    return open_


class Reader(SourceReader):
    """The OBD source in a thread; frames decoded, events kept, every wait bounded."""

    def __init__(self, source: ObdSource) -> None:
        super().__init__(source, ObdDecoder(source.name))


def source_for(peer: ElmPeer, **settings: object) -> ObdSource:
    options: dict[str, object] = {"port": str(peer.link), "protocol": "6",
                                  "pids": ((0x0C, 0.0), (0x0D, 0.0), (0x05, 0.05)),
                                  "dtc_interval": 0.2}
    options.update(settings)
    return ObdSource("obd", ObdSettings(**options), opener=opener(peer),  # type: ignore[arg-type]
                     backoff=(0.05, 0.2))


def test_pids_several_per_request_decoded_and_the_vin_whole(peer: ElmPeer) -> None:
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: len(reader.values) >= 20)
        assert reader.source.vin == VIN
    polled = [v for v in reader.values if "ENGINE_RPM" in v]
    assert polled and all(v["ENGINE_RPM"] == EXPECTED["ENGINE_RPM"] for v in polled)
    merged: dict[str, float] = {}
    for v in reader.values:
        merged.update(v)
    assert {k: merged[k] for k in EXPECTED} == EXPECTED
    assert merged["MIL"] == 0 and merged["DTC_COUNT"] == 0  # the readiness read
    assert any(r.startswith("010C0D") for r in peer.received)  # several PIDs a request
    frame = reader.frames[-1]
    assert (frame.channel, frame.arbitration_id, frame.is_extended) == ("obd", 0x7E8, False)
    assert reader.source.stats.gaps == 0 and reader.source.obd.connects == 1
    rates = reader.source.rates()
    assert rates["ENGINE_RPM"] > 0 and set(rates) == set(EXPECTED)


def test_a_pid_the_engine_does_not_support_is_left_out(
        peer: ElmPeer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Reader(source_for(peer, pids=((0x0C, 0.0), (0x5C, 0.0)))) as reader:
        reader.wait_for(lambda: len(reader.values) >= 5)
    assert reader.source.obd.unsupported == ["OIL_TEMPERATURE"]
    assert "the engine ECU does not support OIL_TEMPERATURE: left out" in caplog.text
    assert not any("5C" in r for r in peer.received)


def test_dtc_appearing_and_clearing_are_events_in_order(peer: ElmPeer, car: Car) -> None:
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: reader.source.obd.dtc_reads >= 1 and reader.values)
        assert reader.events == []  # a car without codes: nothing to say
        car.stored, car.mil = ["P0143", "C0123"], True
        reader.wait_for(lambda: len(reader.events) >= 3)
        car.stored, car.mil = ["C0123"], True
        reader.wait_for(lambda: any(e.kind == "dtc.cleared" for e in reader.events))
        car.stored, car.mil = [], False
        reader.wait_for(lambda: sum(e.kind == "dtc.cleared" for e in reader.events) >= 2
                        and reader.events[-1].kind == "obd.mil")
    said = [(e.kind, e.detail.split(":")[0], e.priority) for e in reader.events]
    assert said == [
        ("dtc.set", "C0123 stored (ECU 7E8)", 3),
        ("dtc.set", "P0143 stored (ECU 7E8)", 3),
        ("obd.mil", "MIL on (ECU 7E8)", 2),
        ("dtc.cleared", "P0143 stored (ECU 7E8)", 3),
        ("dtc.cleared", "C0123 stored (ECU 7E8)", 3),
        ("obd.mil", "MIL off (ECU 7E8)", 2),
    ]
    p0143 = next(e for e in reader.events if e.detail.startswith("P0143"))
    assert "O2 sensor" in p0143.detail  # the standard description travels with the code
    assert all(e.channel == "obd" for e in reader.events)


def test_unplugged_and_replugged_is_a_gap_not_an_end(
        peer: ElmPeer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: len(reader.values) >= 5)
        peer.unplug()
        reader.wait_for(lambda: reader.source.stats.in_gap)
        time.sleep(0.5)  # a few reopen attempts against nothing
        before = len(reader.values)
        peer.replug()
        reader.wait_for(lambda: len(reader.values) > before + 5
                        and not reader.source.stats.in_gap)
    obd, stats = reader.source.obd, reader.source.stats
    assert stats.gaps == 1 and stats.gap_seconds > 0.4
    assert obd.adapter_errors >= 2 and obd.connects == 2
    assert caplog.text.count("adapter fault") == 1  # said once per outage, not per attempt


@pytest.mark.parametrize("fault", ["garbage", "stopped", "lv_reset"])
def test_a_misbehaving_adapter_is_reopened(peer: ElmPeer, fault: str) -> None:
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: len(reader.values) >= 5)
        if fault == "garbage":
            peer.garbage = b"\x00\xff\xfe@@#\x80"
        elif fault == "stopped":
            peer.stopped_always = True
        else:
            peer.obd_override = ["LV RESET"]
        reader.wait_for(lambda: reader.source.obd.adapter_errors >= 1)
        peer.stopped_always, peer.obd_override = False, None
        before = len(reader.values)
        reader.wait_for(lambda: len(reader.values) > before + 3)
    assert reader.source.obd.connects >= 2


def test_ignition_off_waits_for_the_vehicle(peer: ElmPeer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    peer.obd_override, peer.voltage = ["UNABLE TO CONNECT"], "11.8V"
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: reader.source.obd.vehicle_errors >= 2)
        assert reader.source.stats.in_gap and not reader.values
        peer.obd_override, peer.voltage = None, "14.1V"
        reader.wait_for(lambda: len(reader.values) >= 3)
        assert not reader.source.stats.in_gap
    assert "the vehicle does not answer" in caplog.text
    assert reader.source.obd.vehicle_errors >= 2 and reader.source.obd.adapter_errors == 0


def test_no_answer_at_all_for_seconds_is_a_vehicle_gap(peer: ElmPeer, car: Car,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    fast = _FastClock(rate=40.0)  # SILENT_SECONDS pass in an eighth of a second
    source = ObdSource("obd", ObdSettings(port=str(peer.link), pids=((0x0C, 0.0),),
                                          dtc_interval=1e6),
                       opener=opener(peer), clock=fast, backoff=(0.05, 0.1))
    with Reader(source) as reader:
        reader.wait_for(lambda: len(reader.values) >= 3)
        peer.obd_override = ["NO DATA"]
        # the counter moves just before the warning is logged: wait for both
        reader.wait_for(lambda: reader.source.obd.vehicle_errors >= 1
                        and "no answer for" in caplog.text)
        peer.obd_override = None
        before = len(reader.values)
        reader.wait_for(lambda: len(reader.values) > before)
    # the PID was not dropped for lack of answers while the whole car was silent
    assert source.scheduler is not None and source.scheduler.pids[0x0C].dropped == 0


def test_a_clone_that_refuses_several_pids_a_request_gets_one_at_a_time(
        peer: ElmPeer, car: Car, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "agent.sources.obd")
    for request in ("010C0D", "010C0D05", "010D05", "010C05"):
        del peer.answers[request]  # NO DATA, as some ECUs answer a multi-PID request
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: len(reader.values) >= 10)
        assert reader.source.scheduler is not None
        assert reader.source.scheduler.per_request == 1
    assert "refuses several PIDs in one request" in caplog.text
    polled = [v for v in reader.values if "MIL" not in v]
    assert all(len(v) == 1 for v in polled[-5:])


def test_close_while_opening_an_adapter_that_is_not_there(tmp_path: Path) -> None:
    source = ObdSource("obd", ObdSettings(port=str(tmp_path / "nothing")), backoff=(0.05, 0.1))
    stop = threading.Event()
    got: list[Frame] = []
    thread = threading.Thread(target=lambda: got.extend(source.frames(stop)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while source.obd.adapter_errors < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=5)
    source.close()
    assert not thread.is_alive() and got == []
    assert source.stats.in_gap and source.obd.adapter_errors >= 2
    with pytest.raises(ObdAdapterError):
        source._open()  # closed: nothing opens any more


class _FastClock:
    """Monotonic time running ``rate`` times faster than the real one."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.start) * self.rate


def test_a_silent_vehicle_clears_no_code(peer: ElmPeer, car: Car) -> None:
    """Ignition off: every trouble-code request gets NO DATA. That is not a clear."""
    car.stored, car.mil = ["P0143"], True
    with Reader(source_for(peer)) as reader:
        reader.wait_for(lambda: any(e.kind == "dtc.set" for e in reader.events))
        reads = reader.source.obd.dtc_reads
        peer.obd_override = ["NO DATA"]
        reader.wait_for(lambda: reader.source.obd.dtc_reads >= reads + 3
                        or reader.source.obd.vehicle_errors >= 1)
        peer.obd_override = None
        before = len(reader.values)
        reader.wait_for(lambda: len(reader.values) > before + 3)
        reader.wait_for(lambda: reader.source.obd.dtc_reads >= reads + 4)
    assert [e.kind for e in reader.events] == ["dtc.set", "obd.mil"]  # nothing cleared


def test_a_restart_announces_only_what_changed(peer: ElmPeer, car: Car, tmp_path: Path) -> None:
    memory = tmp_path / "obd-obd.dtcs.json"
    car.stored, car.mil = ["P0143"], True

    def run_until(what: Callable[[Reader], object]) -> list[str]:
        source = ObdSource("obd", ObdSettings(port=str(peer.link), pids=((0x0C, 0.0),),
                                              dtc_interval=0.2),
                           opener=opener(peer), backoff=(0.05, 0.2), memory=memory)
        with Reader(source) as reader:
            reader.wait_for(lambda: what(reader))
        return [f"{e.kind} {e.detail.split(' (')[0]}" for e in reader.events]

    assert run_until(lambda r: len(r.events) >= 2) == ["dtc.set P0143 stored",
                                                        "obd.mil MIL on"]
    assert json.loads(memory.read_text()) == {"codes": [["stored", 0x7E8, "P0143"]],
                                              "mil": [[0x7E8, True]]}
    # the service restarts, the code and the MIL are still there: nothing to say
    assert run_until(lambda r: r.source.obd.dtc_reads >= 3) == []
    car.stored = ["P0143", "P0300"]
    assert run_until(lambda r: r.events) == ["dtc.set P0300 stored"]
    car.stored, car.mil = [], False  # cleared while the service was stopped
    assert run_until(lambda r: len(r.events) >= 3) == [
        "dtc.cleared P0143 stored", "dtc.cleared P0300 stored", "obd.mil MIL off"]
    memory.write_text("{not json")
    assert run_until(lambda r: r.source.obd.dtc_reads >= 2) == []  # nothing present
    car.stored = ["P0143"]
    memory.write_text("[1, 2")
    assert run_until(lambda r: r.events) == ["dtc.set P0143 stored"]  # announced again
