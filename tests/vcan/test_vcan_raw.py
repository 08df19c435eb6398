"""The raw CAN_RAW reader on a real kernel's vcan0: the python-can path's frames, field
for field, for less CPU.

Both readers read the same frames at the same time (two sockets, one
``cansend``/``canplayer`` input), so their frames are compared whole, the
kernel's receive timestamps included: classic, 29-bit, CAN FD with and
without bit rate switch, remote frames and error frames (counted, not
frames, by both). The id filters are the kernel's, the same lines python-can
installs. A receive queue made tiny overflows under a burst: what was lost is
counted from ``SO_RXQ_OVFL``, and read + lost is what was sent.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import cantools
import pytest

from agent.policy.selection import Selector
from agent.sources.can_bus import CanBusSource
from agent.sources.can_filters import can_filters_for
from agent.sources.socketcan_raw import RawReader
from tests.conftest import ROOT
from tests.vcan.conftest import IFACE, SLOW, Reader, cansend, filter_lines, wait_until

pytestmark = pytest.mark.vcan

DBC = ROOT / "dbc" / "demo_vehicle.dbc"
PAYLOAD = bytes(range(64))
INPUT = [
    "123#DEADBEEF", "18FEF521#0102030405060708", "7FF#", "00000042#AA",
    f"321##1{PAYLOAD.hex()}", f"18DAF110##0{PAYLOAD[:12].hex()}",
    "124#R", "18FEF522#R3",  # remote frames: counted only
    "20000004#0000080000000000", "20000010#0000000000000000",  # error frames: counted only
    "100#0102030405060708",
]
FRAMES = len(INPUT) - 4


def test_the_raw_reader_gives_python_cans_frames(vcan0: str) -> None:
    raw = CanBusSource("veh", interface="socketcan", channel=vcan0, fd=True, reader="raw")
    pycan = CanBusSource("veh", interface="socketcan", channel=vcan0, fd=True,
                         reader="python-can")
    assert raw.reader_kind == "raw" and pycan.reader_kind == "python-can"
    with Reader(raw) as by_raw, Reader(pycan) as by_pycan:
        cansend(*INPUT)
        got_raw = by_raw.wait_for(FRAMES)
        got_pycan = by_pycan.wait_for(FRAMES)
        # an error or remote frame is counted after the last frame came: wait for it
        wait_until(lambda: sum(raw.stats.skipped.values()) >= 4, 5)
        assert by_raw.error is None and by_pycan.error is None
    assert len(got_raw) == FRAMES
    assert got_raw == got_pycan  # timestamps, ids, formats, data: equal
    assert [(f.arbitration_id, f.is_extended, f.is_fd, len(f.data)) for f in got_raw] == [
        (0x123, False, False, 4), (0x18FEF521, True, False, 8), (0x7FF, False, False, 0),
        (0x42, True, False, 1), (0x321, False, True, 64), (0x18DAF110, True, True, 12),
        (0x100, False, False, 8)]
    assert raw.stats.skipped == pycan.stats.skipped == {"remote": 2, "error_frame": 2}
    assert raw.stats.frames == pycan.stats.frames == FRAMES
    assert all(isinstance(f.data, bytes) for f in got_raw)


def test_the_id_filters_are_the_kernels(vcan0: str) -> None:
    db = cantools.database.load_file(str(DBC))
    filters = can_filters_for([db], Selector(["EngineData.*", "AmbientConditions.*"]))
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, can_filters=filters,
                          reader="raw")
    with Reader(source) as reader:
        assert sorted((i, m) for i, m, _ in filter_lines()) == sorted([
            (0x100, 0x800007FF), (0x98FEF521, 0x9FFFFFFF)])
        cansend("0D0#00", "101#01", "00000100#01", "100#0102", "18FEF521#01", "18FEF520#01")
        frames = reader.wait_for(2)
        extra = reader.wait_for(3, timeout=0.5)
    assert [(f.arbitration_id, f.is_extended) for f in frames] == [
        (0x100, False), (0x18FEF521, True)]
    assert extra == frames


def test_a_full_receive_queue_is_counted(vcan0: str, tmp_path: Path) -> None:
    sent = 3000
    log = tmp_path / "burst.log"
    log.write_text("".join(f"(1.{i:06d}) {IFACE} 1{i % 256:02X}#{i:016X}\n"
                           for i in range(sent)))
    from collections import Counter

    skipped: Counter[str] = Counter()
    # the smallest queue the kernel allows: a few frames; nobody reads during the burst
    reader = RawReader("veh", vcan0, skipped, receive_buffer=1)
    try:
        subprocess.run(["canplayer", "-t", "-I", str(log)], check=True, timeout=60 * SLOW)
        got = []
        while True:
            frames = reader.read(0.2)
            if frames is None:
                break
            got.extend(frames)
        # the count rides on the next frame the socket receives: one more, then read it
        cansend("7FF#01")
        last = reader.read(2.0)
    finally:
        reader.close()
    assert last is not None and [f.arbitration_id for f in last] == [0x7FF]
    assert 0 < len(got) < sent
    assert skipped["rx_overflow"] == sent - len(got)
    # what was read is in order and unaltered
    indexes = [int.from_bytes(f.data, "big") for f in got]
    assert indexes == sorted(indexes)
    assert all(f.arbitration_id == 0x100 | i % 256 for f, i in zip(got, indexes, strict=True))


def test_a_raw_source_takes_over_from_a_python_can_one(vcan0: str) -> None:
    """Both stamp a frame with the same kernel receive time: the new source skips what
    the old one read, whichever reader each uses."""
    old = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="python-can")
    new = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="raw")
    try:
        with Reader(old) as by_old:
            cansend("100#01", "100#02", "100#03")
            assert len(by_old.wait_for(3)) == 3
        cansend("100#04", "100#05")  # after the old one stopped: only the new one has them
        new.take_over(old)
        with Reader(new) as by_new:
            frames = by_new.wait_for(2)
            more = by_new.wait_for(3, timeout=0.5)
    finally:
        new.close()
    assert [f.data for f in frames] == [b"\x04", b"\x05"]
    assert more == frames


def test_the_drain_returns_what_the_queue_holds(vcan0: str) -> None:
    source = CanBusSource("veh", interface="socketcan", channel=vcan0, reader="raw")
    try:
        cansend("100#01", "18FEF521#02", "100#R", "7FF#03")
        time.sleep(0.1 * SLOW)  # the loopback delivers in a softirq: let it finish
        frames = source.drain()
    finally:
        source.close()
    assert [(f.arbitration_id, f.data) for f in frames] == [
        (0x100, b"\x01"), (0x18FEF521, b"\x02"), (0x7FF, b"\x03")]
    assert source.stats.frames == 3 and source.stats.skipped["remote"] == 1
