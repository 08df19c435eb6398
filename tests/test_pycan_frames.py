"""The one python-can ``Message`` -> ``Frame`` conversion (agent.sources.pycan), through
the paths that use it: the replay readers (ASC here) and, in test_can_reconnect, the live
bus. python-can marks some identifiers above 0x7FF as 11-bit; no 11-bit id exceeds 0x7FF,
so they are 29-bit frames for the decoder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import can

from agent.frames import Frame
from agent.sources.pycan import frame_from_message
from agent.sources.replay import ReplaySource

ASC = """date Wed Dec 2 10:00:00.000 am 2026
base hex  timestamps absolute
internal events logged
Begin Triggerblock Wed Dec 2 10:00:00.000 am 2026
   0.010000 1  18FEF521        Rx   d 2 01 02
   0.020000 1  18FEF521x       Rx   d 2 03 04
   0.030000 1  123             Rx   d 1 05
   0.040000 1  7FF             Rx   d 0
End TriggerBlock
"""


def test_an_id_above_0x7ff_without_the_x_replays_as_29_bit(tmp_path: Path) -> None:
    log = tmp_path / "drive.asc"
    log.write_text(ASC)
    with ReplaySource("veh", log, channel="veh") as source:
        frames = list(source.frames())
    assert [(f.arbitration_id, f.is_extended, f.data) for f in frames] == [
        (0x18FEF521, True, b"\x01\x02"),  # python-can says 11-bit here
        (0x18FEF521, True, b"\x03\x04"),
        (0x123, False, b"\x05"),
        (0x7FF, False, b""),
    ]


def test_error_and_remote_frames_are_counted_not_converted() -> None:
    skipped: Counter[str] = Counter()
    error = can.Message(arbitration_id=0, is_error_frame=True)
    remote = can.Message(arbitration_id=0x100, is_remote_frame=True, dlc=8)
    data = can.Message(timestamp=5.0, arbitration_id=0x100, is_extended_id=False, is_fd=True,
                       data=bytearray(b"\x01"))
    assert frame_from_message(error, "veh", skipped) is None
    assert frame_from_message(remote, "veh", skipped) is None
    frame = frame_from_message(data, "veh", skipped)
    assert frame == Frame(5.0, "veh", 0x100, False, True, b"\x01")
    assert type(frame.data) is bytes  # not python-can's bytearray: frames are immutable
    assert skipped == Counter({"error_frame": 1, "remote": 1})
