"""Native OBD-II on a real kernel: the simulated ECUs and CanObd on vcan0.

Both ISO-TP stacks: the kernel's ``can-isotp`` sockets (QEMU's Debian kernel
loads the module; a laptop's or a Pi's kernel has it since 5.10) and the
``can-isotp`` package's user-space stack over python-can's socketcan
interface. User-Mode Linux has no can-isotp: there the kernel stack's tests skip,
saying so; anywhere else a kernel without it is a failure.

The ECUs (python-can socketcan, the package's ISO-TP on their side) run on a
clock the test holds still, so every PID CanObd reads back must equal
``SimulatedEcus.state()``, the simulator's ground truth; the VIN comes back
whole, and the DTC's life (pending, stored, cleared, permanent) is seen in
order as the test moves the vehicle through the harsh brake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import can
import pytest

from agent.errors import ObdAdapterError
from agent.obd.can_transport import CanObd
from agent.obd.isotp_kernel import kernel_isotp_missing
from agent.sources.simulator.obd_ecu import (
    DEFAULT_VIN,
    ENGINE_PIDS,
    ENGINE_REPLY,
    TRANSMISSION_REPLY,
    SimulatedEcus,
    harsh_brake,
)
from tests.test_obd_can import DECODE, Still, decode_pids, dtcs, move_to
from tests.vcan.conftest import SLOW

pytestmark = pytest.mark.vcan


def in_uml() -> bool:
    try:
        return "User Mode Linux" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.fixture(params=["kernel", "user-space"])
def stack(request: pytest.FixtureRequest, vcan0: str) -> str:
    if request.param == "kernel":
        why = kernel_isotp_missing()
        if why is not None and in_uml():
            pytest.skip(f"User-Mode Linux has no can-isotp ({why}); QEMU's kernel has it")
        assert why is None, f"this kernel should have can-isotp (modprobe can-isotp): {why}"
    return str(request.param)


@pytest.fixture
def clock() -> Still:
    return Still()


@pytest.fixture
def ecus(vcan0: str, clock: Still) -> Iterator[SimulatedEcus]:
    ecus = SimulatedEcus.open("socketcan", vcan0, t0=20.0, clock=clock).start()  # idling
    try:
        yield ecus
    finally:
        ecus.stop()
    assert ecus.errors == 0


@pytest.fixture
def obd(vcan0: str, stack: str, ecus: SimulatedEcus) -> Iterator[CanObd]:
    with CanObd("socketcan", vcan0, stack=stack, timeout=0.2 * SLOW) as obd:
        assert obd.stack == stack
        yield obd


def test_every_pid_equals_the_simulators(obd: CanObd, ecus: SimulatedEcus,
                                         clock: Still) -> None:
    assert set(DECODE) == set(ENGINE_PIDS)
    for t in (30.0, 150.0, 205.0):  # city, highway, just before the harsh brake
        move_to(ecus, clock, t)
        truth = ecus.state()
        engine = truth[ENGINE_REPLY].pids
        for pid in ENGINE_PIDS:
            replies = obd.request(bytes([0x01, pid]), ecu=0x7E0, expect=1)
            assert [r.ecu for r in replies] == [ENGINE_REPLY], (t, hex(pid))
            assert decode_pids(replies[0].data) == {pid: pytest.approx(engine[pid])}, (t, pid)
        six = bytes([0x01, 0x0C, 0x0D, 0x05, 0x42, 0xA6, 0x2F])  # one 17-byte answer
        (reply,) = obd.request(six, ecu=0x7E0, expect=1)
        assert decode_pids(reply.data) == {p: pytest.approx(engine[p]) for p in six[1:]}
        both = obd.request(b"\x01\x0d", expect=2)
        assert sorted((r.ecu, decode_pids(r.data)[0x0D]) for r in both) == [
            (ENGINE_REPLY, truth[ENGINE_REPLY].pids[0x0D]),
            (TRANSMISSION_REPLY, truth[TRANSMISSION_REPLY].pids[0x0D])]


def test_the_vin_comes_back_whole(obd: CanObd, ecus: SimulatedEcus, vcan0: str) -> None:
    watch = can.Bus(interface="socketcan", channel=vcan0,
                    can_filters=[{"can_id": 0x7E0, "can_mask": 0x7FE, "extended": False}])
    try:
        assert obd.request(b"\x09\x02") == [(ENGINE_REPLY,
                                             b"\x49\x02\x01" + DEFAULT_VIN.encode())]
        names = obd.request(b"\x09\x0a", expect=2)  # two multi-frame answers at once
        seen = [watch.recv(2.0 * SLOW) for _ in range(3)]
    finally:
        watch.shutdown()
    assert {r.ecu: r.data[3:].rstrip(b"\x00") for r in names} == {
        ENGINE_REPLY: b"ECM-EngineControl", TRANSMISSION_REPLY: b"TCM-TransmissionCtrl"}
    # each Flow Control went to the answering ECU's physical id, padded to 8 bytes
    assert sorted((m.arbitration_id, bytes(m.data)) for m in seen if m is not None) == [
        (0x7E0, bytes.fromhex("3000000000000000")),
        (0x7E0, bytes.fromhex("3000000000000000")),
        (0x7E1, bytes.fromhex("3000000000000000"))]


def test_dtcs_appear_and_clear_in_order(obd: CanObd, ecus: SimulatedEcus,
                                        clock: Still) -> None:
    start, end = harsh_brake()
    seen: list[tuple[str, list[str]]] = []

    def look(label: str, service: int) -> None:
        replies = {r.ecu: r.data for r in obd.request(bytes([service]), expect=2)}
        assert dtcs(replies[TRANSMISSION_REPLY]) == []
        seen.append((label, dtcs(replies[ENGINE_REPLY])))

    move_to(ecus, clock, start - 1.0)
    look("stored before", 0x03)
    look("pending before", 0x07)
    move_to(ecus, clock, start + 2.5)
    look("pending braking", 0x07)
    look("stored braking", 0x03)
    move_to(ecus, clock, end + 1.0)
    look("stored after", 0x03)
    look("permanent after", 0x0A)
    acks = obd.request(b"\x04", expect=2)
    look("stored cleared", 0x03)
    look("pending cleared", 0x07)
    look("permanent cleared", 0x0A)
    assert sorted(acks) == [(ENGINE_REPLY, b"\x44"), (TRANSMISSION_REPLY, b"\x44")]
    assert seen == [
        ("stored before", []), ("pending before", []),
        ("pending braking", ["P0500"]), ("stored braking", []),
        ("stored after", ["P0500"]), ("permanent after", ["P0500"]),
        ("stored cleared", []), ("pending cleared", []), ("permanent cleared", ["P0500"]),
    ]


def test_a_link_that_goes_down_is_an_adapter_error(
        obd: CanObd, ecus: SimulatedEcus, link_control: Callable[[str], None],
        vcan0: str, stack: str) -> None:
    assert len(obd.request(b"\x01\x0d", expect=2)) == 2
    link_control("down")
    with pytest.raises(ObdAdapterError, match="vcan0"):
        obd.request(b"\x01\x0d", expect=2)
    link_control("up")
    # the ECUs lived through it; a transport opened again (what the source does) gets answers
    with CanObd("socketcan", vcan0, stack=stack, timeout=0.2 * SLOW) as again:
        assert len(again.request(b"\x01\x0d", expect=2)) == 2
    assert ecus.bus_errors >= 1
