"""CanBusSource on a real kernel's vcan0 through python-can's socketcan interface.

Frames are sent by ``cansend`` (can-utils, another process, another socket)
and by python-can; they must arrive with their ids, data and frame format;
CAN FD frames (64 bytes, bit rate switch) too. The kernel filter built from
the selection must keep unselected frames out of Python (the source's own
received count says so, and the kernel's receive list agrees). A link taken
down and up again is one gap, and frames after it arrive.
"""

from __future__ import annotations

from collections.abc import Callable

import can
import cantools
import pytest

from agent.policy.selection import Selector
from agent.sources.can_bus import CanBusSource
from agent.sources.can_filters import can_filters_for
from tests.conftest import ROOT
from tests.vcan.conftest import Reader, cansend, filter_lines, wait_until

pytestmark = pytest.mark.vcan

DBC = ROOT / "dbc" / "demo_vehicle.dbc"


def test_frames_arrive_with_ids_data_and_format(vcan0: str) -> None:
    with Reader(CanBusSource("veh", interface="socketcan", channel=vcan0)) as reader:
        cansend("123#DEADBEEF", "18FEF521#0102030405060708", "7FF#", "00000042#AA")
        with can.Bus(interface="socketcan", channel=vcan0) as sender:
            sender.send(can.Message(arbitration_id=0x1ABCDEF0, is_extended_id=True,
                                    data=b"\x11\x22"))
        frames = reader.wait_for(5)
    assert [(f.channel, f.arbitration_id, f.is_extended, f.is_fd, f.data) for f in frames] == [
        ("veh", 0x123, False, False, bytes.fromhex("DEADBEEF")),
        ("veh", 0x18FEF521, True, False, bytes(range(1, 9))),
        ("veh", 0x7FF, False, False, b""),
        ("veh", 0x42, True, False, b"\xaa"),  # 8 hex digits: a 29-bit id on the wire
        ("veh", 0x1ABCDEF0, True, False, b"\x11\x22"),
    ]
    assert reader.source.stats.frames == 5
    assert all(f.timestamp > 1e9 for f in frames)  # the kernel's receive time, epoch seconds


def test_can_fd_frames_with_bit_rate_switch(vcan0: str) -> None:
    payload = bytes(range(64))
    with Reader(CanBusSource("veh", interface="socketcan", channel=vcan0, fd=True)) as reader:
        cansend(f"123##1{payload.hex()}", f"18DAF110##0{payload[:12].hex()}", "124#0102")
        with can.Bus(interface="socketcan", channel=vcan0, fd=True) as sender:
            sender.send(can.Message(arbitration_id=0x321, is_fd=True, bitrate_switch=True,
                                    is_extended_id=False, data=payload[::-1]))
        frames = reader.wait_for(4)
    assert [(f.arbitration_id, f.is_extended, f.is_fd, f.data) for f in frames] == [
        (0x123, False, True, payload),
        (0x18DAF110, True, True, payload[:12]),
        (0x124, False, False, b"\x01\x02"),  # classic frames still pass on an FD socket
        (0x321, False, True, payload[::-1]),
    ]


def test_the_kernel_keeps_unselected_frames_out_of_python(vcan0: str) -> None:
    db = cantools.database.load_file(str(DBC))
    filters = can_filters_for([db], Selector(["EngineData.*", "AmbientConditions.*"]))
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, can_filters=filters,
                          reader="python-can")
    assert source.bus is not None
    assert source.bus._is_filtered, "python-can fell back to filtering in Python"
    with Reader(source) as reader, can.Bus(interface="socketcan", channel=vcan0) as everything:
        unselected = ["0D0#0011223344556677", "101#01", "00000100#01",  # 0x100, but 29-bit
                      "521#01", "18FEF520#01", "3E0#010203040506"]
        selected = ["100#0102030405060708", "18FEF521#0102030405060708"]
        cansend(*unselected, *selected, *unselected, *selected)
        assert len(reader.wait_for(4)) == 4
        # a last unselected frame, then a quiet moment: nothing more may arrive
        cansend("0D0#FF")
        seen = [everything.recv(5) for _ in range(17)]
        assert wait_until(lambda: sum(m for _, _, m in filter_lines()) >= 4, 5)
        extra = reader.wait_for(5, timeout=0.5)
        # the kernel holds exactly the two filters, each matched twice
        installed = filter_lines()
    # every frame was on the bus (an unfiltered socket saw them all)...
    assert all(m is not None for m in seen)
    # ...and only the selected ones crossed into Python
    assert [(f.arbitration_id, f.is_extended) for f in extra] == [
        (0x100, False), (0x18FEF521, True)] * 2
    assert source.stats.frames == 4
    assert sorted(installed) == sorted([
        (0x100, 0x800007FF, 2), (0x98FEF521, 0x9FFFFFFF, 2)])


def test_link_down_and_up_is_one_gap_and_the_source_goes_on(
        vcan0: str, link_control: Callable[[str], None]) -> None:
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, reconnect_initial=0.05,
                          reconnect_max=0.4)
    with Reader(source) as reader:
        cansend("100#01")
        assert len(reader.wait_for(1)) == 1
        link_control("down")
        assert wait_until(lambda: source.stats.in_gap, 5), "the gap was not seen"
        # down for a while: several reopen attempts, each one failing or reading ENETDOWN
        assert wait_until(lambda: source.stats.reopens >= 3, 5)
        assert source.stats.in_gap and reader.alive
        link_control("up")
        assert wait_until(lambda: not source.stats.in_gap, 5), "the gap did not end"
        cansend("100#02", "18FEF521#03")
        frames = reader.wait_for(3)
        assert reader.error is None
    assert [(f.arbitration_id, f.data) for f in frames] == [
        (0x100, b"\x01"), (0x100, b"\x02"), (0x18FEF521, b"\x03")]
    assert source.stats.gaps == 1
    assert 0 < source.stats.gap_seconds < 15
