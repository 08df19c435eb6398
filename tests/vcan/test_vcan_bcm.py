"""CAN_BCM content filtering on a real kernel's vcan0.

The plans are built from the demo DBC by :func:`bcm_plan` (as the pipeline
does); frames are sent by ``cansend`` and read by :class:`CanBusSource` with
``reader="bcm"``. The kernel must hand over a content-filtered message only
when a selected bit changed (counters and checksums excluded), a multiplexed
one per page, a message with a heartbeat every time, a 29-bit id with its
flag; a message silent for longer than its timeout gives
``can.message_missing`` then ``can.message_back``; what comes has the same
kernel timestamp as the raw reader's. And the fallback: a head laid out for a
32-bit user space (``bcm_layout="ilp32"``), which this 64-bit kernel really
refuses with EINVAL, makes the source read CAN_RAW with the id filters, said
in one warning line.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import Any

import cantools
import pytest

from agent.decode.decoder import ChannelDecoder
from agent.frames import Event
from agent.policy.selection import Selector
from agent.sources.bcm_plan import BcmMessage, bcm_plan
from agent.sources.can_bus import CanBusSource
from agent.sources.can_filters import can_filters_for
from tests.conftest import ROOT
from tests.vcan.conftest import SLOW, Reader, cansend, wait_until

pytestmark = pytest.mark.vcan

DBC = ROOT / "dbc" / "demo_vehicle.dbc"
J1939 = """VERSION ""
BO_ 2566844926 Load: 8 X
 SG_ Load : 0|8@1+ (1,0) [0|250] "%" X
 SG_ Load_Counter : 8|4@1+ (1,0) [0|15] "" X
"""


def plan_of(db: Any, selection: list[str], heartbeat: dict[str, float] | None = None
            ) -> tuple[list[BcmMessage], Any]:
    heartbeat = heartbeat or {}

    def rule(message: str, signal: str) -> tuple[bool, float, float | None]:
        return (True, 0.0, heartbeat.get(message))

    selector = Selector(selection)
    decoder = ChannelDecoder("veh", [db], selector, rule)
    return bcm_plan(decoder, rule, lambda m, s: False), can_filters_for([db], selector)


def demo() -> Any:
    return cantools.database.load_file(str(DBC))


def test_only_changed_frames_come(vcan0: str) -> None:
    plan, _ = plan_of(demo(), ["EngineData.*", "Odometer.*"])
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                          bcm_plan=plan)
    assert source.reader_kind == "bcm"
    with Reader(source) as reader:
        cansend(
            "100#1027000000000000",  # first: comes
            "100#1027000000000000",  # the same: not
            "100#1027000000001055",  # counter and checksum only: not
            "100#1127000000000000",  # engine speed: comes
            "100#1127000000",  # shorter (a length change): comes
            "3E0#000000000000",  # Odometer: first
            "3E0#000000000000",  # the same: not
            "3E0#000000000100",  # trip distance: comes
            "123#01",  # not selected: never
        )
        frames = reader.wait_for(5)
        more = reader.wait_for(6, timeout=0.5)
    assert [(f.arbitration_id, f.data.hex()) for f in frames] == [
        (0x100, "1027000000000000"), (0x100, "1127000000000000"), (0x100, "1127000000"),
        (0x3E0, "000000000000"), (0x3E0, "000000000100")]
    assert more == frames
    assert source.stats.frames == 5


def test_pages_of_a_multiplexed_message(vcan0: str) -> None:
    plan, _ = plan_of(demo(), ["BodyStatus.Door*", "BodyStatus.Headlights"])
    assert plan[0].pages is not None  # the multiplexer is not selected: per-page masks
    with Reader(CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                             bcm_plan=plan)) as reader:
        cansend("400#00010000", "400#01010000", "400#00010000",  # pages in turn: 2 come
                "400#01010000", "400#00030000",  # page 0's doors changed: comes
                # page 2 (nothing of it selected): its first, then only the selected
                # pages' bits count (the decoder's page mask): none of them changes
                "400#02f00000", "400#02000000",
                "400#03000000")  # no such page: never
        frames = reader.wait_for(4)
        more = reader.wait_for(5, timeout=0.5)
    assert [f.data.hex() for f in frames] == ["00010000", "01010000", "00030000", "02f00000"]
    assert more == frames


def test_heartbeat_messages_every_frame_and_their_timeout(vcan0: str) -> None:
    timeout = 0.5 * SLOW
    plan, _ = plan_of(demo(), ["VehicleDynamics.VehicleSpeed"], {"VehicleDynamics": timeout})
    (dynamics,) = plan
    assert dynamics.mask is None and dynamics.timeout == timeout
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                          bcm_plan=plan)
    events: list[Event] = []
    source.on_event = events.append
    with Reader(source) as reader:
        cansend("0D0#0000000000000000", "0D0#0000000000000000")  # RX_FILTER_ID: both come
        assert len(reader.wait_for(2)) == 2
        assert wait_until(lambda: len(events) == 1, 3 * timeout)
        missing = events[0]
        cansend("0D0#0000000000000000")
        frames = reader.wait_for(3)
        assert wait_until(lambda: len(events) == 2, 5)
    assert [e.kind for e in events] == ["can.message_missing", "can.message_back"]
    assert missing.channel == "veh" and "VehicleDynamics (0xD0)" in missing.detail
    assert f"{timeout:g} s" in missing.detail
    assert missing.timestamp >= frames[1].timestamp + timeout - 0.05
    assert events[1].timestamp == frames[2].timestamp  # back: the frame that came back
    assert source.stats.messages_missing == 1 and source.stats.messages_back == 1


def test_29_bit_ids_and_timestamps_equal_the_raw_readers(vcan0: str) -> None:
    db = cantools.database.load_string(J1939, database_format="dbc")
    plan, filters = plan_of(db, ["*"])
    assert plan[0].extended
    bcm = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                       bcm_plan=plan)
    raw = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="raw",
                       can_filters=filters)
    with Reader(bcm) as by_bcm, Reader(raw) as by_raw:
        cansend("18FEF1FE#0100", "18FEF1FE#0110",  # the counter only: not
                "000001FE#0200",  # 0x1FE as a 29-bit id: another message, never
                "18FEF1FE#0210")
        frames = by_bcm.wait_for(2)
        raw_frames = by_raw.wait_for(3)
        more = by_bcm.wait_for(3, timeout=0.5)
    assert [(f.arbitration_id, f.is_extended, f.data) for f in frames] == [
        (0x18FEF1FE, True, b"\x01\x00"), (0x18FEF1FE, True, b"\x02\x10")]
    assert frames == [raw_frames[0], raw_frames[2]]  # same kernel receive times
    assert more == frames


@pytest.mark.skipif(struct.calcsize("@l") != 8 or os.uname().machine not in (
    "x86_64", "aarch64"), reason="needs a 64-bit kernel under 64-bit Python")
def test_a_32_bit_layout_is_refused_and_the_source_reads_raw(
        vcan0: str, caplog: pytest.LogCaptureFixture) -> None:
    plan, filters = plan_of(demo(), ["EngineData.*"])
    with caplog.at_level(logging.WARNING, logger="agent.sources.can_bus"):
        source = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                              bcm_plan=plan, bcm_layout="ilp32", can_filters=filters)
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 1
    assert "a 32-bit user space on a 64-bit kernel" in refused[0]
    assert source.reader_kind == "raw" and source.stats.skipped["bcm_refused"] == 1
    with Reader(source) as reader:
        # no content filter now: the unchanged frame comes too; the id filter holds
        cansend("100#1027000000000000", "100#1027000000000000", "123#01")
        frames = reader.wait_for(2)
        more = reader.wait_for(3, timeout=0.5)
    assert [f.data.hex() for f in frames] == ["1027000000000000"] * 2
    assert more == frames


def test_link_down_and_up_is_one_gap_and_the_filters_come_back(
        vcan0: str, link_control: Any) -> None:
    plan, _ = plan_of(demo(), ["EngineData.*"])
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="bcm",
                          bcm_plan=plan, reconnect_initial=0.05, reconnect_max=0.4)
    with Reader(source) as reader:
        cansend("100#01", "100#01")
        assert len(reader.wait_for(1)) == 1
        link_control("down")
        assert wait_until(lambda: source.stats.in_gap, 5), "the gap was not seen"
        link_control("up")
        assert wait_until(lambda: not source.stats.in_gap, 5), "the gap did not end"
        # a new socket, new RX_SETUPs: its first frame comes, the same again does not
        cansend("100#01", "100#01", "100#02")
        frames = reader.wait_for(3)
        more = reader.wait_for(4, timeout=0.5)
        assert reader.error is None
    assert [f.data for f in frames] == [b"\x01", b"\x01", b"\x02"]
    assert more == frames
    assert source.stats.gaps == 1 and source.reader_kind == "bcm"
