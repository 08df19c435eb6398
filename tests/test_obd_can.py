"""CanObd (the user-space ISO-TP stack) against the simulated ECUs on python-can's virtual bus.

The ECUs run on a clock the test holds (``Still``), so the vehicle stands
still while it is asked and ``SimulatedEcus.state()`` is the answer to expect;
CanObd runs on the real clock (its waits are real). Scripted peers (``Peer``)
play what the simulated ECUs never do: a "response pending", a slow or broken
multi-frame answer. The same checks on a real kernel, with the kernel's ISO-TP
too, are tests/vcan/test_vcan_obd.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import can
import pytest

from agent.errors import ObdAdapterError
from agent.obd.can_transport import CanObd, request_id
from agent.obd.transport import ENGINE_REQUEST, Reply
from agent.sources.simulator.obd_ecu import (
    DEFAULT_VIN,
    ENGINE_REPLY,
    TRANSMISSION_REPLY,
    SimulatedEcus,
    harsh_brake,
)

# this test's own decoding (SAE J1979), independent of the ECU's tables
DECODE: dict[int, Callable[[bytes], float]] = {
    0x04: lambda d: d[0] * 100 / 255,
    0x05: lambda d: d[0] - 40,
    0x0C: lambda d: (d[0] * 256 + d[1]) / 4,
    0x0D: lambda d: d[0],
    0x0F: lambda d: d[0] - 40,
    0x11: lambda d: d[0] * 100 / 255,
    0x1F: lambda d: d[0] * 256 + d[1],
    0x2F: lambda d: d[0] * 100 / 255,
    0x33: lambda d: d[0],
    0x42: lambda d: (d[0] * 256 + d[1]) / 1000,
    0x46: lambda d: d[0] - 40,
    0x5C: lambda d: d[0] - 40,
    0x5E: lambda d: (d[0] * 256 + d[1]) / 20,
    0xA6: lambda d: int.from_bytes(d[:4], "big") / 10,
}
SIZES = {0x0C: 2, 0x1F: 2, 0x42: 2, 0x5E: 2, 0xA6: 4}


def decode_pids(data: bytes) -> dict[int, float]:
    """A mode 01 reply (``41 pid data pid data ...``) -> {pid: value}."""
    assert data[0] == 0x41, data.hex()
    out, i = {}, 1
    while i < len(data):
        pid = data[i]
        size = SIZES.get(pid, 1)
        out[pid] = DECODE[pid](data[i + 1:i + 1 + size])
        i += 1 + size
    return out


def dtcs(data: bytes) -> list[str]:
    """A mode 03/07/0A reply with its count byte -> ["P0500", ...]."""
    count, body = data[1], data[2:]
    assert len(body) == 2 * count, data.hex()
    return [f"{'PCBU'[a >> 6]}{a >> 4 & 3}{a & 15:X}{b:02X}"
            for a, b in zip(body[::2], body[1::2], strict=True)]


class Still:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def move_to(ecus: SimulatedEcus, clock: Still, t: float) -> None:
    clock.now += t - ecus.vehicle_time()
    ecus.state()  # steps the model now, not while a request waits


@pytest.fixture
def channel() -> str:
    return f"obd-{uuid.uuid4().hex}"


@pytest.fixture
def clock() -> Still:
    return Still()


@pytest.fixture
def ecus(channel: str, clock: Still) -> Iterator[SimulatedEcus]:
    with can.Bus(interface="virtual", channel=channel) as bus:
        ecus = SimulatedEcus(bus, t0=150.0, clock=clock).start()  # the highway
        yield ecus
        ecus.stop()
        assert ecus.errors == 0 and ecus.error is None


@pytest.fixture
def obd(channel: str) -> Iterator[CanObd]:
    with CanObd.open("virtual", channel, timeout=0.2) as obd:
        yield obd


def test_what_it_says_it_is(obd: CanObd, channel: str) -> None:
    assert (obd.stack, obd.is_can, obd.protocol) == ("user-space", True,
                                                      "ISO 15765-4 (CAN 11/500)")
    assert obd.description == f"virtual {channel} (user-space ISO-TP)"
    assert obd.battery_voltage() is None


def test_one_pid(obd: CanObd, ecus: SimulatedEcus) -> None:
    replies = obd.request(b"\x01\x0c", ecu=ENGINE_REQUEST, expect=1)
    assert [r.ecu for r in replies] == [ENGINE_REPLY]
    assert decode_pids(replies[0].data) == {0x0C: ecus.state()[ENGINE_REPLY].pids[0x0C]}
    assert isinstance(replies[0], Reply)


def test_every_pid_and_several_in_one_multi_frame_reply(obd: CanObd,
                                                        ecus: SimulatedEcus) -> None:
    truth = ecus.state()[ENGINE_REPLY].pids
    assert set(truth) == set(DECODE)
    for pid in DECODE:
        (reply,) = obd.request(bytes([0x01, pid]), ecu=0x7E0, expect=1)
        assert decode_pids(reply.data) == {pid: pytest.approx(truth[pid])}
    six = bytes([0x01, 0x0C, 0x0D, 0x05, 0x42, 0xA6, 0x2F])
    (reply,) = obd.request(six, ecu=0x7E0, expect=1)
    assert len(reply.data) == 1 + 3 + 2 + 2 + 3 + 5 + 2  # 17 bytes: a First Frame and 2 CFs
    assert decode_pids(reply.data) == {p: pytest.approx(truth[p]) for p in six[1:]}


def test_functional_request_answered_by_both_ecus_kept_apart(obd: CanObd,
                                                             ecus: SimulatedEcus) -> None:
    replies = obd.request(b"\x01\x0d")
    assert sorted(r.ecu for r in replies) == [ENGINE_REPLY, TRANSMISSION_REPLY]
    state = ecus.state()
    for reply in replies:
        assert decode_pids(reply.data) == {0x0D: state[reply.ecu].pids[0x0D]}
    # the transmission has no RPM: only the engine answers a functional 01 0C
    assert [r.ecu for r in obd.request(b"\x01\x0c")] == [ENGINE_REPLY]
    # a physical request to the transmission: its reply only
    assert [r.ecu for r in obd.request(b"\x01\x0d", ecu=0x7E9)] == [TRANSMISSION_REPLY]
    # two multi-frame answers at once (the ECU names, 23 bytes each)
    names = obd.request(b"\x09\x0a", expect=2)
    assert {r.ecu: r.data[3:].rstrip(b"\x00") for r in names} == {
        ENGINE_REPLY: b"ECM-EngineControl", TRANSMISSION_REPLY: b"TCM-TransmissionCtrl"}


def test_the_vin_whole(obd: CanObd, ecus: SimulatedEcus) -> None:
    assert obd.request(b"\x09\x02") == [(ENGINE_REPLY, b"\x49\x02\x01" + DEFAULT_VIN.encode())]


def test_a_vin_of_zeros_ones_and_twos_at_both_ends(channel: str, obd: CanObd) -> None:
    vin = "2BAVARD04TD000120"
    with can.Bus(interface="virtual", channel=channel) as bus, \
            SimulatedEcus(bus, vin=vin, t0=50.0):
        assert obd.request(b"\x09\x02", expect=1)[0].data[3:].decode() == vin


def test_dtcs_appear_after_the_harsh_brake_and_clear(obd: CanObd, ecus: SimulatedEcus,
                                                     clock: Still) -> None:
    start, end = harsh_brake()

    def codes(service: int) -> dict[int, list[str]]:
        return {r.ecu: dtcs(r.data) for r in obd.request(bytes([service]), expect=2)}

    move_to(ecus, clock, start - 2.0)
    assert codes(0x03) == {ENGINE_REPLY: [], TRANSMISSION_REPLY: []}
    move_to(ecus, clock, start + 2.0)  # ABS engaged: pending only
    assert codes(0x07)[ENGINE_REPLY] == ["P0500"]
    assert codes(0x03)[ENGINE_REPLY] == []
    move_to(ecus, clock, end + 1.0)
    assert codes(0x03) == {ENGINE_REPLY: ["P0500"], TRANSMISSION_REPLY: []}
    assert codes(0x0A)[ENGINE_REPLY] == ["P0500"]
    (status,) = obd.request(b"\x01\x01", ecu=0x7E0)
    assert status.data[2] == 0x81  # MIL on, one code
    (frame,) = obd.request(b"\x02\x02\x00", ecu=0x7E0)
    assert frame.data == b"\x42\x02\x00\x05\x00"
    (frame,) = obd.request(b"\x02\x0d\x00\x0c\x00", ecu=0x7E0)
    frozen = ecus.state()[ENGINE_REPLY].freeze_frame
    assert frame.data[:3] == b"\x42\x0d\x00" and frame.data[3] == frozen[0x0D]
    assert frame.data[4:6] == b"\x0c\x00"
    assert (frame.data[6] * 256 + frame.data[7]) / 4 == frozen[0x0C]
    # clear: both ECUs acknowledge
    assert sorted(obd.request(b"\x04", expect=2)) == [(ENGINE_REPLY, b"\x44"),
                                                      (TRANSMISSION_REPLY, b"\x44")]
    assert codes(0x03)[ENGINE_REPLY] == []
    assert codes(0x07)[ENGINE_REPLY] == []
    assert codes(0x0A)[ENGINE_REPLY] == ["P0500"]  # permanent: stays


def test_silence_is_an_empty_list_after_the_timeout(obd: CanObd, ecus: SimulatedEcus) -> None:
    started = time.monotonic()
    assert obd.request(b"\x01\xff") == []  # no ECU has it: functional requests get silence
    elapsed = time.monotonic() - started
    assert 0.19 < elapsed < 0.6
    started = time.monotonic()
    assert obd.request(b"\x01\x0c", ecu=0x7E5, timeout=0.1) == []  # no such ECU
    assert 0.09 < time.monotonic() - started < 0.5


def test_a_negative_response_is_a_reply(obd: CanObd, ecus: SimulatedEcus) -> None:
    assert obd.request(b"\x22\xf1\x90", ecu=0x7E0) == [(ENGINE_REPLY, b"\x7f\x22\x11")]


def test_expect_stops_waiting_early(obd: CanObd, ecus: SimulatedEcus) -> None:
    obd.request(b"\x01\x00", expect=2)  # warm up
    started = time.monotonic()
    replies = obd.request(b"\x01\x00", expect=2, timeout=3.0)
    assert time.monotonic() - started < 0.5
    assert len(replies) == 2
    started = time.monotonic()
    assert len(obd.request(b"\x09\x02", ecu=0x7E0, expect=1, timeout=3.0)) == 1
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    replies = obd.request(b"\x01\x00", expect=1, timeout=3.0)
    assert time.monotonic() - started < 0.5
    assert len(replies) == 1


def test_late_answers_to_an_earlier_request_are_dropped(obd: CanObd,
                                                        ecus: SimulatedEcus) -> None:
    assert len(obd.request(b"\x01\x0d", expect=1)) == 1  # the second reply comes after
    time.sleep(0.05)
    replies = obd.request(b"\x09\x02", ecu=0x7E0)
    assert [r.data[:2] for r in replies] == [b"\x49\x02"]


def test_29_bit_ids(channel: str) -> None:
    with can.Bus(interface="virtual", channel=channel) as bus, \
            SimulatedEcus(bus, extended=True, t0=150.0) as ecus, \
            CanObd("virtual", channel, extended=True) as obd:
        assert obd.protocol == "ISO 15765-4 (CAN 29/500)"
        replies = obd.request(b"\x01\x0d", expect=2)
        assert sorted(r.ecu for r in replies) == [0x18DAF110, 0x18DAF118]
        assert obd.request(b"\x09\x02", ecu=ENGINE_REQUEST) == [
            (0x18DAF110, b"\x49\x02\x01" + DEFAULT_VIN.encode())]
        assert [r.ecu for r in obd.request(b"\x01\x0d", ecu=0x18DAF118)] == [0x18DAF118]
        assert ecus.answered == 4


def test_ecu_ids() -> None:
    assert request_id(0x7E0, False) == 0x7E0
    assert request_id(0x7E9, False) == 0x7E1
    assert request_id(ENGINE_REQUEST, True) == 0x18DA10F1
    assert request_id(0x18, True) == 0x18DA18F1
    assert request_id(0x18DA18F1, True) == 0x18DA18F1
    assert request_id(0x18DAF118, True) == 0x18DA18F1
    for bad, extended in ((0x7DF, False), (0x7F0, False), (0x18DB33F1, True), (0x7E1, True)):
        with pytest.raises(ValueError):
            request_id(bad, extended)


def test_bad_arguments_are_value_errors(obd: CanObd, channel: str) -> None:
    with pytest.raises(ValueError, match="1 to 7 bytes"):
        obd.request(b"\x01" * 8)
    with pytest.raises(ValueError, match="1 to 7 bytes"):
        obd.request(b"")
    with pytest.raises(ValueError, match="expect"):
        obd.request(b"\x01\x00", expect=0)
    with pytest.raises(ValueError, match="stack"):
        CanObd("virtual", channel, stack="kernal")


def test_open_failures_name_the_interface(channel: str) -> None:
    with pytest.raises(ObdAdapterError, match="no-such-interface"):
        CanObd.open("no-such-interface", "can7")
    with pytest.raises(ObdAdapterError, match=f"virtual {channel}: no kernel ISO-TP"):
        CanObd("virtual", channel, stack="kernel")


def test_a_closed_or_vanished_bus_is_an_adapter_error(channel: str) -> None:
    obd = CanObd("virtual", channel)
    obd.close()
    obd.close()  # twice is fine
    with pytest.raises(ObdAdapterError, match="closed"):
        obd.request(b"\x01\x00")
    obd = CanObd("virtual", channel)
    obd._stack.close()  # the bus goes away under it  # type: ignore[attr-defined]
    with pytest.raises(ObdAdapterError, match=f"virtual {channel}"):
        obd.request(b"\x01\x00")
    obd.close()


# --- scripted peers: what the simulated ECUs never do ----------------------------------------

class Peer:
    """An ECU at 0x7E8 that answers any request with ``script`` (raw frames, and pauses)."""

    def __init__(self, channel: str, script: list[bytes | float]) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.script = script
        self.flow_controls: list[tuple[int, bytes]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _send(self, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=0x7E8, is_extended_id=False,
                                  data=data.ljust(8, b"\x55")))

    def _run(self) -> None:
        request = self.bus.recv(5.0)
        if request is None:
            return
        for step in self.script:
            if isinstance(step, float):
                time.sleep(step)
            elif step == b"FC?":  # wait for the tester's Flow Control
                fc = self.bus.recv(2.0)
                if fc is not None:
                    self.flow_controls.append((fc.arbitration_id, bytes(fc.data)))
            else:
                self._send(step)

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._thread.join(5.0)
        self.bus.shutdown()


def test_response_pending_stretches_the_wait(channel: str, obd: CanObd) -> None:
    script: list[bytes | float] = [b"\x03\x7f\x01\x78", 0.3, b"\x04\x41\x0c\x1a\xf8"]
    with Peer(channel, script):
        started = time.monotonic()
        replies = obd.request(b"\x01\x0c", timeout=0.1)
        elapsed = time.monotonic() - started
    assert replies == [(0x7E8, b"\x41\x0c\x1a\xf8")]
    assert 0.3 < elapsed < 1.0  # the answer, then the usual wait: not P2* (5 s)


def test_a_slow_multi_frame_answer_is_waited_for(channel: str, obd: CanObd) -> None:
    vin = b"\x49\x02\x01" + DEFAULT_VIN.encode()
    script: list[bytes | float] = [b"\x10\x14" + vin[:6], b"FC?", 0.25, b"\x21" + vin[6:13],
                                   0.25, b"\x22" + vin[13:]]
    with Peer(channel, script) as peer:
        started = time.monotonic()
        replies = obd.request(b"\x09\x02", timeout=0.1)  # each pause is longer than that
        elapsed = time.monotonic() - started
    assert replies == [(0x7E8, vin)]
    assert 0.5 < elapsed < 1.5
    # the Flow Control went to the ECU's physical id, padded, "all at once"
    assert peer.flow_controls == [(0x7E0, b"\x30\x00\x00\x00\x00\x00\x00\x00")]


def test_a_multi_frame_answer_that_stops_halfway_is_bounded(channel: str) -> None:
    script: list[bytes | float] = [b"\x10\x14\x49\x02\x01\x31\x42\x41", b"FC?"]
    with CanObd("virtual", channel, timeout=0.1, cf_timeout=0.4) as obd, Peer(channel, script):
        started = time.monotonic()
        assert obd.request(b"\x09\x02") == []
        assert 0.35 < time.monotonic() - started < 1.2
