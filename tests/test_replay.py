"""ReplaySource: formats, gzip, bad files, python-can readers, pacing, the corpus."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.errors import LogFormatError, SourceError
from agent.frames import Frame
from agent.sources.replay import ReplaySource

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

CANDUMP = (
    "(1436509052.000000) can0 123#1122\n"
    "# a comment\n"
    "(1436509052.500000) can0 18DAF110#01\n"
    "(1436509053.000000) can0 123##1AABB\n"
    "(1436509053.250000) can0 123#R\n"
)
CANDUMP_FRAMES = [
    Frame(1436509052.0, "can0", 0x123, False, False, b"\x11\x22"),
    Frame(1436509052.5, "can0", 0x18DAF110, True, False, b"\x01"),
    Frame(1436509053.0, "can0", 0x123, False, True, b"\xaa\xbb"),
]

ASC = """\
date Sat Sep 30 15:06:13.191 2017
base hex  timestamps absolute
internal events logged
// version 9.0.0
Begin Triggerblock Sat Sep 30 15:06:13.191 2017
   0.000000 Start of measurement
   0.015991 1  123             Rx   d 2 11 22
   0.250000 2  18EBFF00x       Rx   d 1 AA
   0.500000 1  ErrorFrame
   0.750000 1  124             Rx   r
   1.000000 1  125             Rx   d 1 33
End TriggerBlock
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def replay(path: Path, **kw: Any) -> tuple[list[Frame], dict[str, int], ReplaySource]:
    source = ReplaySource("replay", path, **kw)
    with source:
        frames = list(source.frames())
    return frames, source.problems(), source


# -- candump -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["drive.log", "drive.candump", "drive.txt", "DRIVE.LOG"])
def test_candump_suffixes(tmp_path: Path, name: str) -> None:
    frames, problems, source = replay(write(tmp_path / name, CANDUMP))
    assert source.format == "candump"
    assert frames == CANDUMP_FRAMES
    assert problems == {"comment": 1, "remote": 1}
    assert source.stats.frames == 3


def test_gzip_candump(tmp_path: Path) -> None:
    path = tmp_path / "drive.log.gz"
    path.write_bytes(gzip.compress(CANDUMP.encode()))
    frames, problems, source = replay(path)
    assert source.format == "candump"
    assert frames == CANDUMP_FRAMES
    assert problems == {"comment": 1, "remote": 1}


def test_truncated_gzip_plays_what_it_has_then_ends_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        f"({1000 + i / 100:.6f}) can0 {i % 0x7FF:03X}#{os.urandom(8).hex()}\n" for i in range(4000)
    ]
    full = gzip.compress("".join(lines).encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(full[: len(full) * 6 // 10])
    frames, problems, _ = replay(path)
    assert 0 < len(frames) < 4000
    assert problems == {"reader_error": 1}
    assert [f.timestamp for f in frames] == [1000 + i / 100 for i in range(len(frames))]
    assert re.search(r"cut\.log\.gz: cannot read past line \d+", caplog.text)


def test_channel_override_and_source_name(tmp_path: Path) -> None:
    frames, _, _ = replay(write(tmp_path / "a.log", CANDUMP), channel="powertrain")
    assert {f.channel for f in frames} == {"powertrain"}


def test_socialledge_log_from_cantools_replays_with_exact_counts() -> None:
    path = CORPUS / "cantools" / "socialledge_decode_log_format.input.log"
    if not path.exists():
        pytest.skip(f"third-party corpus not present: {path}")
    frames, problems, _ = replay(path)
    # 8 lines: 3 good 0C8 frames (plain, " T", " R"), a 10-byte classic frame,
    # "vcan0 ERROR", a blank line (not counted), and two good frames 1F4 and 1F3.
    assert [(f.arbitration_id, len(f.data)) for f in frames] == [
        (0x0C8, 8),
        (0x0C8, 8),
        (0x0C8, 8),
        (0x1F4, 4),
        (0x1F3, 3),
    ]
    assert {f.channel for f in frames} == {"vcan0"}
    assert problems == {"too_long": 1, "error": 1}


def test_motec_real_car_log_replays_every_frame() -> None:
    path = CORPUS / "motec" / "can_sample.log"
    if not path.exists():
        pytest.skip(f"third-party corpus not present: {path}")
    source = ReplaySource("motec", path)
    count = sum(1 for _ in source.frames())
    assert count == 82_558
    assert source.problems() == {}


# -- opening and format detection ------------------------------------------------


def test_missing_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.log"
    with pytest.raises(SourceError, match=re.escape(str(path))):
        ReplaySource("r", path)


def test_directory_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(SourceError, match=r"dir\.log"):
        ReplaySource("r", tmp_path / "dir.log")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.log", CANDUMP)
    path.chmod(0)
    with pytest.raises(SourceError, match=r"secret\.log"):
        ReplaySource("r", path)


def test_unknown_suffix_is_sniffed(tmp_path: Path) -> None:
    assert ReplaySource("r", write(tmp_path / "a.dump", "\n" + CANDUMP)).format == "candump"
    assert ReplaySource("r", write(tmp_path / "a.dat", ASC)).format == "asc"
    trc = write(tmp_path / "a.pcan", ";$FILEVERSION=2.1\n;$STARTTIME=45000.5\n")
    assert ReplaySource("r", trc).format == "trc"
    gz = tmp_path / "a.gz"
    gz.write_bytes(gzip.compress(CANDUMP.encode()))
    assert ReplaySource("r", gz).format == "candump"


def test_unknown_format_is_a_log_format_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.md", "# my notes\n")
    with pytest.raises(LogFormatError, match=r"notes\.md: unknown log format"):
        ReplaySource("r", path)
    with pytest.raises(LogFormatError, match=r"empty\.bin.*empty file"):
        ReplaySource("r", write(tmp_path / "empty.bin", ""))


def test_bad_gzip_and_bad_blf_are_log_format_errors(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"x\.log\.gz: not a readable gzip file"):
        ReplaySource("r", write(tmp_path / "x.log.gz", CANDUMP))
    with pytest.raises(LogFormatError, match=r"x\.blf: not a BLF file"):
        ReplaySource("r", write(tmp_path / "x.blf", CANDUMP))


def test_negative_speed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="speed"):
        ReplaySource("r", write(tmp_path / "a.log", CANDUMP), speed=-1)


def test_importing_replay_does_not_import_python_can() -> None:
    code = "import sys, agent.sources.replay; sys.exit('can' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_problems_and_summary(tmp_path: Path) -> None:
    _, problems, source = replay(write(tmp_path / "a.log", CANDUMP))
    assert problems == {"comment": 1, "remote": 1}
    assert source.summary() == f"{tmp_path / 'a.log'}: 3 frames; skipped 2 (comment 1, remote 1)"


# -- python-can readers ------------------------------------------------------------


def asc_time(offset: float) -> float:
    return datetime(2017, 9, 30, 15, 6, 13, 191000).timestamp() + offset


def test_asc_absolute_timestamps_channels_error_and_remote_frames(tmp_path: Path) -> None:
    frames, problems, source = replay(write(tmp_path / "a.asc", ASC))
    assert source.format == "asc"
    assert frames == [
        Frame(asc_time(0.015991), "0", 0x123, False, False, b"\x11\x22"),
        Frame(asc_time(0.25), "1", 0x18EBFF00, True, False, b"\xaa"),
        Frame(asc_time(1.0), "0", 0x125, False, False, b"\x33"),
    ]
    assert problems == {"error_frame": 1, "remote": 1}


def test_gzip_asc(tmp_path: Path) -> None:
    path = tmp_path / "a.asc.gz"
    path.write_bytes(gzip.compress(ASC.encode()))
    frames, problems, _ = replay(path)
    assert len(frames) == 3
    assert problems == {"error_frame": 1, "remote": 1}


def test_asc_with_an_unparsable_date_falls_back_to_relative_timestamps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = ASC.replace("date Sat Sep 30 15:06:13.191 2017", "date Sa 30.09.2017 15:06:13")
    text = text.replace("Begin Triggerblock Sat Sep 30 15:06:13.191 2017", "Begin Triggerblock")
    frames, problems, _ = replay(write(tmp_path / "a.asc", text))
    assert [f.timestamp for f in frames] == [0.015991, 0.25, 1.0]
    assert problems == {"error_frame": 1, "remote": 1}
    assert "retrying with timestamps relative to the start of the recording" in caplog.text


def test_asc_without_a_date_has_relative_timestamps_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = ASC.replace("date Sat Sep 30 15:06:13.191 2017\n", "")
    text = text.replace("Begin Triggerblock Sat Sep 30 15:06:13.191 2017", "Begin Triggerblock")
    frames, problems, _ = replay(write(tmp_path / "a.asc", text))
    assert [f.timestamp for f in frames] == [0.015991, 0.25, 1.0]
    assert problems == {"error_frame": 1, "remote": 1}
    assert "no start time in the ASC file" in caplog.text


def test_asc_reader_error_mid_file_ends_the_replay_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = ASC.replace(
        "   1.000000 1  125             Rx   d 1 33\n",
        "   1.000000 1  125  Rx   d 2 ZZ 22\n   1.2 1  126  Rx   d 1 44\n",
    )
    frames, problems, _ = replay(write(tmp_path / "bad.asc", text))
    assert [f.arbitration_id for f in frames] == [0x123, 0x18EBFF00]
    assert problems == {"error_frame": 1, "remote": 1, "reader_error": 1}
    assert f"{tmp_path / 'bad.asc'}:11: ASC reader stopped: ValueError" in caplog.text


def messages(count: int, fd_every: int = 0) -> list[Any]:
    can = pytest.importorskip("can")
    out = []
    for i in range(count):
        fd = bool(fd_every) and i % fd_every == 0
        size = 12 if fd else 8
        out.append(
            can.Message(
                timestamp=1_700_000_000 + i / 64,
                arbitration_id=(0x18DA0000 + i) if i % 2 else (0x100 + i % 0x600),
                is_extended_id=bool(i % 2),
                is_fd=fd,
                data=bytes((i + k) % 256 for k in range(size)),
                channel=1,
            )
        )
    return out


def write_blf(path: Path, msgs: list[Any]) -> None:
    can = pytest.importorskip("can")
    with can.BLFWriter(path) as writer:
        for msg in msgs:
            writer.on_message_received(msg)


def as_frame(msg: Any, channel: str) -> Frame:
    return Frame(
        msg.timestamp, channel, msg.arbitration_id, msg.is_extended_id, msg.is_fd, bytes(msg.data)
    )


def test_blf_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    msgs = messages(300, fd_every=5)
    path = tmp_path / "a.blf"
    write_blf(path, msgs)
    frames, problems, source = replay(path)
    assert source.format == "blf"
    assert problems == {}
    channel = frames[0].channel
    assert frames == [as_frame(m, channel) for m in msgs]
    gz = tmp_path / "a.blf.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert replay(gz)[0] == frames


def test_truncated_blf_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "a.blf"
    write_blf(path, messages(3000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    frames, problems, _ = replay(path)
    assert 0 < len(frames) < 3000
    assert problems == {"truncated": 1}
    assert f"ends at byte {len(data) // 2} of the {len(data)}" in caplog.text


def test_corrupt_blf_ends_the_replay_with_a_reader_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.blf"
    write_blf(path, messages(3000))
    data = bytearray(path.read_bytes())
    at = data.find(b"LOBJ", 200)
    data[at : at + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    frames, problems, _ = replay(path)
    assert len(frames) < 3000
    assert problems == {"reader_error": 1}
    assert re.search(r"a\.blf: BLF reader stopped at byte \d+: BLFParseError", caplog.text)


def test_trc_v1_0_timestamps_are_relative(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = (
        ";##########################################################################\n"
        ";   Columns description:\n"
        ";----+- ---+--- ----+--- + -+ -- -- -- -- -- -- --\n"
        "     1)      1500  0123  2  11 22\n"
        "     2)      1750  00000456  1  33\n"
    )
    frames, problems, source = replay(write(tmp_path / "v10.trc", text))
    assert source.format == "trc"
    assert [(f.timestamp, f.arbitration_id, f.is_extended, f.data) for f in frames] == [
        (1.5, 0x123, False, b"\x11\x22"),
        (1.75, 0x456, True, b"\x33"),
    ]
    assert problems == {}
    assert "no start time in the TRC file" in caplog.text


def test_trc_written_by_python_can(tmp_path: Path) -> None:
    can = pytest.importorskip("can")
    msgs = messages(20)
    path = tmp_path / "a.trc"
    with can.TRCWriter(path) as writer:
        for msg in msgs:
            writer.on_message_received(msg)
    frames, problems, _ = replay(path)
    assert problems == {}
    assert [f.arbitration_id for f in frames] == [m.arbitration_id for m in msgs]
    assert [f.data for f in frames] == [bytes(m.data) for m in msgs]
    for frame, msg in zip(frames, msgs, strict=True):
        assert frame.timestamp == pytest.approx(msg.timestamp, abs=1e-3)


def test_message_without_channel_takes_the_source_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    can = pytest.importorskip("can")

    class FakeReader:
        def __init__(self, file: Any, **kwargs: Any) -> None:
            pass

        def __iter__(self) -> Any:
            yield can.Message(
                timestamp=1.0, arbitration_id=0x10, is_extended_id=False, data=b"\x01"
            )
            raise IndexError("boom")

    monkeypatch.setattr(can, "TRCReader", FakeReader)
    frames, problems, _ = replay(write(tmp_path / "a.trc", ";$FILEVERSION=2.1\n"))
    assert frames == [Frame(1.0, "replay", 0x10, False, False, b"\x01")]
    assert problems == {"reader_error": 1}


# -- pacing --------------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.now = 500.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


PACED = "".join(
    f"({ts}) can0 123#{i:02X}\n"
    for i, ts in enumerate([100.0, 100.5, 101.5, 101.5, 103.0, 102.0, 104.0])
)


@pytest.mark.parametrize(
    ("speed", "waits"),
    [(1.0, [0.5, 1.0, 1.5, 1.0]), (2.0, [0.25, 0.5, 0.75, 0.5]), (0.5, [1.0, 2.0, 3.0, 2.0])],
)
def test_pacing_on_a_virtual_clock(tmp_path: Path, speed: float, waits: list[float]) -> None:
    vc = VirtualClock()
    frames, _, _ = replay(
        write(tmp_path / "p.log", PACED), speed=speed, clock=vc.clock, wait=vc.wait
    )
    assert vc.waits == waits
    assert [f.timestamp for f in frames] == [100.0, 100.5, 101.5, 101.5, 103.0, 102.0, 104.0]


def test_pacing_deducts_the_consumers_time(tmp_path: Path) -> None:
    vc = VirtualClock()
    source = ReplaySource(
        "r", write(tmp_path / "p.log", PACED), speed=1, clock=vc.clock, wait=vc.wait
    )
    for _ in source.frames():
        vc.now += 0.25  # the pipeline takes a quarter of a second per frame
    assert vc.waits == [0.25, 0.75, 1.0, 0.5]


def test_speed_zero_never_waits(tmp_path: Path) -> None:
    vc = VirtualClock()
    frames, _, _ = replay(write(tmp_path / "p.log", PACED), clock=vc.clock, wait=vc.wait)
    assert len(frames) == 7
    assert vc.waits == []


def test_stop_event_ends_a_real_time_replay_promptly(tmp_path: Path) -> None:
    path = write(tmp_path / "slow.log", "(0.0) can0 123#01\n(3600.0) can0 123#02\n")
    source = ReplaySource("r", path, speed=1.0)
    stop = threading.Event()
    got: list[Frame] = []
    first = threading.Event()

    def run() -> None:
        for frame in source.frames(stop):
            got.append(frame)
            first.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert first.wait(5)
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert [f.data for f in got] == [b"\x01"]


def test_a_timestamp_centuries_ahead_waits_for_stop_instead_of_crashing(tmp_path: Path) -> None:
    """Regression: a delay beyond threading.TIMEOUT_MAX (a damaged 11-digit timestamp)
    raised OverflowError from the stop event's wait and ended the replay."""
    path = write(tmp_path / "jump.log", "(0.0) can0 123#01\n(99999999999.0) can0 123#02\n")
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    try:
        with ReplaySource("r", path, speed=1.0) as source:
            got = list(source.frames(stop))
    finally:
        timer.cancel()
    assert [f.data for f in got] == [b"\x01"]


def test_close_during_replay_ends_it_without_a_reader_error(tmp_path: Path) -> None:
    for name, text in (("a.log", CANDUMP), ("a.asc", ASC)):
        source = ReplaySource("r", write(tmp_path / name, text))
        frames = source.frames()
        next(frames)
        source.close()
        list(frames)
        assert "reader_error" not in source.problems()


# -- the python-can corpus ---------------------------------------------------------

PYTHON_CAN = CORPUS / "python-can"
LOG_NAME = re.compile(r"\.(asc|blf|trc)(\.gz)?$", re.IGNORECASE)


def corpus_logs() -> list[Path]:
    if not PYTHON_CAN.is_dir():
        return []
    return sorted(p for p in PYTHON_CAN.iterdir() if LOG_NAME.search(p.name))


def python_can_messages(path: Path) -> list[Any]:
    can = pytest.importorskip("can")
    name = path.name.lower().removesuffix(".gz")
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    if name.endswith(".blf"):
        with opener(path, "rb") as f:
            return list(can.BLFReader(f))
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        if name.endswith(".asc"):
            return list(can.ASCReader(f, relative_timestamp=False))
        return list(can.TRCReader(f))


@pytest.mark.parametrize("path", corpus_logs() or [None], ids=lambda p: p.name if p else "absent")
def test_python_can_corpus_replays_like_python_can(
    path: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    if path is None:
        pytest.skip(f"third-party corpus not present: {PYTHON_CAN}")
    caplog.set_level(logging.WARNING, logger="agent")
    frames, problems, _ = replay(path)
    theirs = python_can_messages(path)
    data = [m for m in theirs if not (m.is_error_frame or m.is_remote_frame)]
    if data:
        assert frames, f"{path.name}: python-can yields {len(data)} data frames, we yield none"
    assert [(f.timestamp, f.arbitration_id, f.is_fd, f.data) for f in frames] == [
        (m.timestamp, m.arbitration_id, m.is_fd, bytes(m.data)) for m in data
    ]
    assert [f.channel for f in frames] == [str(m.channel) for m in data]
    assert problems.get("error_frame", 0) == sum(m.is_error_frame for m in theirs)
    assert problems.get("remote", 0) == sum(
        m.is_remote_frame and not m.is_error_frame for m in theirs
    )
    assert "reader_error" not in problems
    assert "truncated" not in problems
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("agent")]
    assert [m for m in ours if "no start time" not in m] == []


# -- read once: pipes, FIFOs, standard input (regressions: the log was opened twice) ---------

SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"


def feed_in_chunks(fd: int, data: bytes, chunk: int = 1000) -> threading.Thread:
    """Write ``data`` to ``fd`` in small writes, as `cat` into a pipe does, then close it."""

    def run() -> None:
        with open(fd, "wb", buffering=0) as f:
            for at in range(0, len(data), chunk):
                f.write(data[at : at + chunk])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def replay_in_thread(path: str | Path, timeout: float = 30.0) -> list[Any]:
    """[frames, problems, source] of a replay of ``path``, or fail after ``timeout`` s."""
    result: list[Any] = []

    def run() -> None:
        frames, problems, source = replay(Path(path))
        result.extend((frames, problems, source))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"replay of {path} still running after {timeout} s (hangs)"
    assert result, f"replay of {path} failed (see the captured stderr)"
    return result


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_pipe_opened_by_name_replays_every_line(tmp_path: Path, compress: bool) -> None:
    """Regression: `cat drive.log | bavard decode /dev/stdin` lost its first ~4 KiB."""
    data = SAMPLE.read_bytes()
    expected, _, _ = replay(SAMPLE)
    read_fd, write_fd = os.pipe()
    writer = feed_in_chunks(write_fd, gzip.compress(data) if compress else data)
    try:
        frames, problems, source = replay_in_thread(f"/dev/fd/{read_fd}")
    finally:
        os.close(read_fd)
    writer.join(5)
    assert source.compressed == compress  # by its signature: the name says nothing
    assert problems == {}
    assert frames == expected


def test_the_first_hundred_lines_through_a_pipe_are_a_hundred_frames() -> None:
    """Regression: `head -100 drive.log | bavard decode /dev/stdin` decoded 4 of 100."""
    data = b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:100])
    read_fd, write_fd = os.pipe()
    feed_in_chunks(write_fd, data, chunk=len(data))
    try:
        frames, problems, _ = replay_in_thread(f"/dev/fd/{read_fd}")
    finally:
        os.close(read_fd)
    assert len(frames) == 100
    assert problems == {}


def test_a_named_pipe_replays_and_does_not_hang(tmp_path: Path) -> None:
    """Regression: a FIFO hung for ever (opened once to sniff, then again to read)."""
    fifo = tmp_path / "drive.fifo"
    os.mkfifo(fifo)
    data = b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:5000])

    def write() -> None:
        try:
            with open(fifo, "wb") as f:  # blocks until the replay opens it
                f.write(data)
        except BrokenPipeError:  # the old code closed its first reader early
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        frames, problems, _ = replay_in_thread(fifo, timeout=20)
    finally:
        # unblock whatever still waits on the FIFO (only when the test fails)
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    assert len(frames) == 5000
    assert problems == {}


STDIN_REPLAY = """
import sys
from agent.sources.replay import ReplaySource
with ReplaySource("in", sys.argv[1]) as source:
    frames = list(source.frames())
print(len(frames), source.format, source.compressed, dict(source.problems()))
"""


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_standard_input_replays_every_line(name: str, compress: bool) -> None:
    data = SAMPLE.read_bytes()
    out = subprocess.run(
        [sys.executable, "-c", STDIN_REPLAY, name],
        input=gzip.compress(data) if compress else data,
        capture_output=True, cwd=ROOT, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == [str(data.count(b"\n")), "candump", str(compress), "{}"]


def test_a_log_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    path = write(tmp_path / "a.log", CANDUMP)
    monkeypatch.setattr("builtins.open", counting_open)
    frames, _, _ = replay(path)
    assert frames == CANDUMP_FRAMES
    assert opened == [str(path)]


def test_an_asc_with_an_unparsable_date_through_a_pipe_replays_every_frame() -> None:
    """The ASC retry with relative timestamps reads the lines already read from memory."""
    text = ASC.replace("date Sat Sep 30 15:06:13.191 2017", "date Sa 30.09.2017 15:06:13")
    text = text.replace("Begin Triggerblock Sat Sep 30 15:06:13.191 2017", "Begin Triggerblock")
    read_fd, write_fd = os.pipe()
    feed_in_chunks(write_fd, text.encode(), chunk=7)
    try:
        frames, problems, source = replay_in_thread(f"/dev/fd/{read_fd}")
    finally:
        os.close(read_fd)
    assert source.format == "asc"
    assert [f.timestamp for f in frames] == [0.015991, 0.25, 1.0]
    assert problems == {"error_frame": 1, "remote": 1}


# -- logs that are mostly or wholly unreadable -----------------------------------------------


def test_random_bytes_named_asc_are_unreadable(tmp_path: Path) -> None:
    """Regression: random bytes named .asc replayed to 0 frames without a word."""
    path = tmp_path / "noise.asc"
    path.write_bytes(random.Random(3).randbytes(5000))
    frames, _, source = replay(path)
    assert frames == []
    reason = source.unreadable()
    assert reason is not None and reason.startswith(f"{path}: no CAN frame could be read")


def test_mostly_bad_lines_are_unreadable_a_few_are_not(tmp_path: Path) -> None:
    good = "(1.000000) can0 123#11\n"
    bad = "(1.000000) can0 123#1Z\n"
    _, _, source = replay(write(tmp_path / "bad.log", good * 5 + bad * 6 + "# note\n" * 50))
    assert source.unreadable() is None  # 6 bad lines: under the minimum
    _, _, source = replay(write(tmp_path / "worse.log", good * 5 + bad * 10))
    assert source.unreadable() == f"{tmp_path / 'worse.log'}: mostly unreadable: 10 bad lines " \
                                  "or messages for 5 frames (bad_hex 10)"
    _, _, source = replay(write(tmp_path / "fine.log", good * 20 + bad * 19))
    assert source.unreadable() is None
    _, _, source = replay(write(tmp_path / "empty.log", ""))
    assert source.unreadable() == f"{tmp_path / 'empty.log'}: no CAN frame could be read " \
                                  "from it (candump log)"


def test_a_replay_stopped_early_is_not_called_unreadable(tmp_path: Path) -> None:
    text = "(1.0) can0 123#11\n" + "(1.0) can0 123#1Z\n" * 20
    source = ReplaySource("r", write(tmp_path / "a.log", text))
    stop = threading.Event()
    with source:
        frames = source.frames(stop)
        next(frames)
        stop.set()
        assert list(frames) == []
    assert source.unreadable() is None


# -- line length (regression: a 2 GiB line without newline: 2.1 GB, then MemoryError) -------

LONG_LINE_REPLAY = """
import gzip, json, resource, sys
from agent.sources.replay import ReplaySource
source = ReplaySource("r", sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with source:
    frames = list(source.frames())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": len(frames), "problems": source.problems(),
                  "grew_kib": after - before}))
"""

ASC_LINES = ASC.splitlines(keepends=True)


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        ("huge.log.gz", "", "".join(CANDUMP.splitlines(keepends=True)[:3])),
        ("huge.asc.gz", "".join(ASC_LINES[:7]), "".join(ASC_LINES[7:])),
        ("huge.trc.gz", ";$FILEVERSION=1.1\n;$STARTTIME=45000.5\n",
         "     1)      1500.0  Rx  0123  2  11 22\n"),
    ],
)
def test_a_64_mib_line_is_skipped_in_bounded_memory(
    tmp_path: Path, name: str, before: str, after: str
) -> None:
    path = tmp_path / name
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(before.encode())
        block = b"A" * (1 << 20)
        for _ in range(64):
            f.write(block)
        f.write(b"\n" + after.encode())
    out = subprocess.run([sys.executable, "-c", LONG_LINE_REPLAY, str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["frames"] >= 1  # the good lines after the long one still play
    assert result["problems"].get("long_line") == 1
    assert "reader_error" not in result["problems"]
    assert result["grew_kib"] < 16 * 1024, result  # the old reader held the whole line
    assert f"{path}:{before.count(chr(10)) + 1}: line longer than 4096" in out.stderr


def test_a_blf_object_larger_than_the_limit_ends_the_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.blf"
    write_blf(path, messages(100))
    data = bytearray(path.read_bytes())
    at = data.find(b"LOBJ", 100)
    data[at + 8 : at + 12] = (0xFFFFFF00).to_bytes(4, "little")  # the object's size
    path.write_bytes(bytes(data))
    frames, problems, _ = replay(path)
    assert frames == []
    assert problems == {"reader_error": 1}
    assert "more than the 4194304 bytes allowed" in caplog.text
