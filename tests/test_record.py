"""``bavard record`` through a running service (``bavard run`` replaying the sample
drive, its control socket in tmp_path): the file holds exactly the frames of the log
for the span it covers (timestamps, ids, data), read back by the project's candump
reader and by ``bavard decode``; --duration ends it, Ctrl-C and SIGTERM end it with
the file complete, a kill leaves nothing under the final name. And the candump
writer itself: the exact ``candump -l`` line, read back.

The direct path (``--interface``) records a live bus: it is tested on a real
kernel's vcan0, beside candump itself (tests/vcan/test_vcan_record.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers.control_service import DBC, ROOT, SAMPLE, running_service

from agent.console.candump_writer import (
    BRS,
    ESI,
    FDF,
    CandumpWriter,
    candump_line,
    classic_tail,
)
from agent.errors import BavardError
from agent.frames import Frame
from agent.sources.candump import parse_candump

RECORD_TIMEOUT = 60.0  # seconds any record process here may take


def read_frames(path: Path) -> tuple[list[Frame], Counter[str]]:
    skipped: Counter[str] = Counter()
    frames = list(parse_candump(path.read_text().splitlines(), str(path), stats=skipped))
    return frames, skipped


def record(*args: str, timeout: float = RECORD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "record", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def start_record(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent", "record", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_part(directory: Path, name: str, timeout: float = 20.0) -> Path:
    """The recording's temporary file once it holds some frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = [p for p in directory.glob(f".{name}.*.part") if p.stat().st_size > 0]
        if parts:
            return parts[0]
        time.sleep(0.05)
    raise AssertionError(f"no frames written to a .{name}.*.part file in {timeout} s")


def span_of_the_log(recorded: list[Frame]) -> list[Frame]:
    """The log's frames from the first recorded one on, as many as were recorded,
    on the service's channel name."""
    log, _ = read_frames(SAMPLE)
    first = recorded[0]
    starts = [i for i, f in enumerate(log) if f.timestamp == first.timestamp
              and f.arbitration_id == first.arbitration_id]
    assert len(starts) == 1, f"the first recorded frame is not once in the log: {first}"
    return [f._replace(channel="vehicle") for f in log[starts[0]:starts[0] + len(recorded)]]


# -- the writer -------------------------------------------------------------------------


def test_lines_are_candump_l_lines() -> None:
    assert candump_line(1690000000.123456, "can0", 0x123, False, bytes.fromhex("deadbeef")) \
        == "(1690000000.123456) can0 123#DEADBEEF\n"
    assert candump_line(1690000000.5, "can0", 0x42, True, b"\xaa") \
        == "(1690000000.500000) can0 00000042#AA\n"
    assert candump_line(1690000000.0000004, "vcan0", 0x7FF, False, b"") \
        == "(1690000000.000000) vcan0 7FF#\n"
    assert candump_line(12.25, "can1", 0x1ABCDEF0, True, bytes(range(12)), fd=True,
                        flags=FDF | BRS) \
        == "(0000000012.250000) can1 1ABCDEF0##5000102030405060708090A0B\n"
    assert candump_line(1.0, "c", 0x1, False, b"\x01", fd=True, flags=FDF | BRS | ESI) \
        == "(0000000001.000000) c 001##701\n"
    # the kernel's exact microseconds; remote frames, raw DLCs of classic frames
    assert candump_line((1690000000, 7), "can0", 0x123, False, b"", tail=classic_tail(True, 4)) \
        == "(1690000000.000007) can0 123#R4\n"
    assert [classic_tail(True, 0), classic_tail(True, 8, 0xE), classic_tail(True, 0, 0xE),
            classic_tail(False, 8, 0xC), classic_tail(False, 7, 0xC), classic_tail(False, 8)] \
        == ["R", "R8_E", "R", "_C", "", ""]
    skipped: Counter[str] = Counter()  # and the project's reader reads them back
    frames = list(parse_candump(["(1.0) c 123#1122334455667788_C", "(1.0) c 001#R4"],
                                stats=skipped))
    assert [f.data for f in frames] == [bytes.fromhex("1122334455667788")]
    assert skipped == {"remote": 1}


def test_the_writer_reads_back_and_appears_only_at_commit(tmp_path: Path) -> None:
    target = tmp_path / "out.log"
    frames = [Frame(1690000000.000001 + i / 1000, "can0", 0x100 + i % 0x600, i % 2 == 1, i % 3 == 0,
                    bytes(range(i % 9))) for i in range(2000)]
    with CandumpWriter(target) as writer:
        for f in frames:
            writer.write(f.timestamp, f.channel, f.arbitration_id, f.is_extended, f.data,
                         f.is_fd)
        assert not target.exists()
        assert writer.temp.parent == tmp_path and writer.temp.name.startswith(".out.log.")
        writer.commit()
    assert not writer.temp.exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # vehicle data: the owner's only
    back, skipped = read_frames(target)
    assert not skipped
    assert [(round(f.timestamp, 6), *f[1:]) for f in back] == \
        [(round(f.timestamp, 6), *f[1:]) for f in frames]
    assert writer.frames == 2000 and writer.bytes == target.stat().st_size


def test_a_failed_recording_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.log"
    with pytest.raises(RuntimeError), CandumpWriter(target) as writer:
        writer.write(1.0, "can0", 1, False, b"")
        raise RuntimeError("the bus went away")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BavardError, match=r"no-such-dir/out\.log: cannot create"):
        CandumpWriter(tmp_path / "no-such-dir" / "out.log")


# -- through the running service ----------------------------------------------------------


def test_record_from_the_service_holds_the_logs_frames_for_its_span(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    with running_service(tmp_path, "replay", speed=2.0) as (proc, socket):
        started = time.monotonic()
        done = record("-o", str(out), "--duration", "2", "--socket", str(socket), "--json")
        took = time.monotonic() - started
        assert proc.poll() is None
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ended"] == "duration" and summary["error"] is None
    assert 2.0 <= summary["seconds"] < 3.0 and took < 15
    assert summary["dropped"] == 0 and summary["unreadable"] == 0
    recorded, skipped = read_frames(out)
    assert not skipped
    assert len(recorded) == summary["frames"] >= 500  # 2 s at twice 350 frames/s
    assert summary["bytes"] == out.stat().st_size
    # exactly the log's frames, in order, for the span: timestamps, ids, data
    assert recorded == span_of_the_log(recorded)
    assert "frames in 2.0 s" in done.stderr
    assert list(tmp_path.glob(".rec.log.*")) == []
    # bavard decode reads it back: the same samples as the log's span (but the channel)
    span = tmp_path / "span.log"
    lines = SAMPLE.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines)
                 if line.startswith(f"({recorded[0].timestamp:.6f})"))
    span.write_text("".join(lines[first:first + len(recorded)]))
    assert decoded(out) == decoded(span)


def decoded(log: Path) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "agent", "decode", str(log), "--dbc", str(DBC)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    for r in records:
        del r["channel"]
    assert records
    return records


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_recording_is_a_complete_file(tmp_path: Path, how: signal.Signals) -> None:
    out = tmp_path / "rec.log"
    with running_service(tmp_path, "replay", speed=4.0) as (_, socket):
        proc = start_record("-o", str(out), "--socket", str(socket), "--json")
        try:
            wait_for_part(tmp_path, "rec.log")
            proc.send_signal(how)
            stdout, stderr = proc.communicate(timeout=RECORD_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["ended"] == "interrupted"
    text = out.read_text()
    assert text.endswith("\n")
    recorded, skipped = read_frames(out)
    assert not skipped and len(recorded) == summary["frames"] == text.count("\n") > 0
    assert recorded == span_of_the_log(recorded)
    assert list(tmp_path.glob(".rec.log.*")) == []


def test_a_killed_recording_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    with running_service(tmp_path, "replay", speed=4.0) as (_, socket):
        proc = start_record("-o", str(out), "--socket", str(socket))
        try:
            part = wait_for_part(tmp_path, "rec.log")
            proc.kill()
            proc.wait(RECORD_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not out.exists()
    assert part.exists()  # what was written is in the .part file, not under rec.log


def test_the_services_end_keeps_what_came(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    with running_service(tmp_path, "replay", speed=4.0) as (service, socket):
        proc = start_record("-o", str(out), "--socket", str(socket), "--json")
        try:
            wait_for_part(tmp_path, "rec.log")
            service.terminate()
            stdout, stderr = proc.communicate(timeout=RECORD_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "the service closed the connection" in stderr
    assert f"{out} holds what came before" in stderr
    summary = json.loads(stdout)
    assert summary["ended"] == "source ended"
    recorded, skipped = read_frames(out)
    assert not skipped and len(recorded) == summary["frames"] > 0
    assert recorded == span_of_the_log(recorded)


def test_one_channel_and_an_unknown_one(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    with running_service(tmp_path, "simulator", speed=4.0) as (_, socket):
        done = record("-o", str(out), "--duration", "1.5", "--channel", "vehicle",
                      "--socket", str(socket))
        assert done.returncode == 0, done.stderr
        wrong = record("-o", str(tmp_path / "no.log"), "--duration", "1", "--channel", "can9",
                       "--socket", str(socket))
    recorded, _ = read_frames(out)
    assert recorded and {f.channel for f in recorded} == {"vehicle"}
    assert wrong.returncode == 1
    assert "no channel 'can9' (channels: vehicle)" in wrong.stderr
    assert not (tmp_path / "no.log").exists() and not list(tmp_path.glob(".no.log.*"))


def test_without_a_service_it_says_what_to_run(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    done = record("-o", str(out), "--socket", str(tmp_path / "nothing"), "--duration", "1")
    assert done.returncode == 1
    assert done.stderr.startswith("bavard record: no bavard service is listening on ")
    assert "bavard run --config FILE" in done.stderr and "--interface I --channel C" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--duration", "0"], "--duration must be more than 0 seconds"),
    (["--interface", "virtual"], "--interface needs --channel"),
    (["--bitrate", "500000"], "--bitrate is for --interface"),
    (["--fd"], "--fd is for --interface"),
])
def test_bad_command_lines(tmp_path: Path, args: list[str], message: str) -> None:
    done = record("-o", str(tmp_path / "x.log"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not os.listdir(tmp_path)


# -- straight from a python-can bus (in this process: the virtual bus is per process) --


def test_record_from_a_python_can_bus(tmp_path: Path) -> None:
    import threading

    import can

    from agent.console.recorder import Recording, open_bus, record_bus

    channel = f"record-{os.getpid()}"
    reader = open_bus("virtual", channel, None, True)
    out = tmp_path / "bus.log"
    recording = Recording("bus", 0.0)
    stop = threading.Event()
    with CandumpWriter(out) as writer, can.Bus(interface="virtual", channel=channel,
                                                    preserve_timestamps=True) as sender:
        thread = threading.Thread(target=record_bus, args=(reader, writer, recording, stop))
        thread.start()
        sent = [can.Message(timestamp=1700000000.25, arbitration_id=0x123, data=b"\xde\xad",
                            is_extended_id=False),
                can.Message(timestamp=1700000000.5, arbitration_id=0x42, data=b"",
                            is_extended_id=True),
                can.Message(timestamp=1700000000.75, arbitration_id=0x321, is_fd=True,
                            bitrate_switch=True, data=bytes(range(12)), is_extended_id=False),
                can.Message(timestamp=1700000000.875, arbitration_id=0x124, is_remote_frame=True,
                            dlc=4, is_extended_id=False),
                can.Message(timestamp=1700000001.0, arbitration_id=0x18DAF110, is_fd=True,
                            error_state_indicator=True, data=b"\x01", is_extended_id=True)]
        for msg in sent:
            sender.send(msg)
        deadline = time.monotonic() + 10
        while recording.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join(10)
        reader.close()
        writer.commit()
    assert recording.ended == "interrupted" and recording.error is None
    # the virtual bus keeps the sender's timestamps
    assert out.read_text().splitlines() == [
        f"(1700000000.250000) {channel} 123#DEAD",
        f"(1700000000.500000) {channel} 00000042#",
        f"(1700000000.750000) {channel} 321##5000102030405060708090A0B",
        f"(1700000000.875000) {channel} 124#R4",
        f"(1700000001.000000) {channel} 18DAF110##601",
    ]


def test_the_progress_rate_is_over_the_last_seconds() -> None:
    from agent.console.recorder import RATE_WINDOW, Recording

    recording = Recording("service", started=100.0)
    rates = []
    for step in range(1, 21):  # every 0.5 s; 512 frames come at once every 1.5 s
        if step % 3 == 0:
            recording.frames += 512
        rates.append(recording.recent_rate(100.0 + step / 2))
    assert rates[0] == 0.0 and rates[2] == pytest.approx(512 / 1.5)
    # once a whole window passed: 2 chunks in 3 s, whatever the phase
    assert all(r == pytest.approx(1024 / RATE_WINDOW) for r in rates[6:])
