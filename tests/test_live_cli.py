"""``bavard live`` when standard output is not a terminal (or with --json): one JSON
line per sample, from a log (the same records ``bavard decode`` writes) and from a
running service (with ``kept``); a service that is not there; bad command lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.control_service import DBC, ROOT, SAMPLE, running_service

TIMEOUT = 60.0


def live(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "live", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def head_of_the_drive(tmp_path: Path, lines: int = 3000) -> Path:
    log = tmp_path / "drive.log"
    log.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:lines]))
    return log


def test_from_a_log_not_a_terminal_gives_what_decode_gives(tmp_path: Path) -> None:
    log = head_of_the_drive(tmp_path)
    done = live("--log", str(log), "--dbc", str(DBC), "--speed", "0")  # stdout: a pipe
    assert done.returncode == 0, done.stderr
    assert "reading the log drive.log x0 directly, not through the service" in done.stderr
    decoded = subprocess.run([sys.executable, "-m", "agent", "decode", str(log), "--dbc",
                              str(DBC)], cwd=ROOT, capture_output=True, text=True,
                             timeout=TIMEOUT, check=True)
    assert done.stdout.splitlines() == decoded.stdout.splitlines()
    assert len(done.stdout.splitlines()) > 10_000


def test_signals_and_channel_of_a_log(tmp_path: Path) -> None:
    log = head_of_the_drive(tmp_path, 500)
    with log.open("a") as f:
        f.write("(1767225700.000000) can1 100#0102030405060708\n"
                "(1767225700.000100) can1 0D0#0000011000FFAFBF\n")
    done = live("--log", str(log), "--dbc", str(DBC), "--speed", "0", "--json",
                "--signals", "EngineData.EngineS*", "--signals", "VehicleSpeed",
                "--channel", "can1")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["channel"], r["message"], r["signal"]) for r in records] == [
        ("can1", "EngineData", "EngineSpeed"), ("can1", "VehicleDynamics", "VehicleSpeed")]


def test_a_log_replays_in_real_time_by_default(tmp_path: Path) -> None:
    log = head_of_the_drive(tmp_path, 1000)  # 2.9 s of the drive
    started = time.monotonic()
    done = live("--log", str(log), "--dbc", str(DBC), "--json")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    span = records[-1]["timestamp"] - records[0]["timestamp"]
    assert span > 2.5 and took >= span


def test_from_the_service_with_kept(tmp_path: Path) -> None:
    with running_service(tmp_path, "simulator", speed=2.0) as (_, socket):
        proc = subprocess.Popen([sys.executable, "-m", "agent", "live", "--socket",
                                 str(socket), "--signals", "Brake.*"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(TIMEOUT, proc.kill)  # no read here blocks for ever
        watchdog.start()
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(200)]
            proc.send_signal(signal.SIGTERM)  # ends the stream cleanly
            rest = proc.stdout.read()  # to the end: the process's exit closes the pipe
            proc.wait(TIMEOUT)
            stderr = proc.stderr.read() if proc.stderr else ""
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in lines + rest.splitlines()]
    assert {r["signal"] for r in records} == {"BrakePedalSwitch", "ABSActive", "ParkingBrake",
                                              "BrakePressure"}
    assert all(r["channel"] == "vehicle" and r["kept"] is True for r in records)
    assert {r.get("label") for r in records if r["signal"] == "ParkingBrake"} <= {
        "Released", "Applied"}


def test_the_services_end_ends_the_stream_with_status_1(tmp_path: Path) -> None:
    with running_service(tmp_path, "simulator", speed=2.0) as (service, socket):
        proc = subprocess.Popen([sys.executable, "-m", "agent", "live", "--socket",
                                 str(socket), "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(TIMEOUT, proc.kill)  # the first read cannot block for ever
        watchdog.start()
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["channel"] == "vehicle"
            service.terminate()
            _, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert stderr.strip().endswith("bavard live: the service closed the connection")


def test_a_channel_the_service_does_not_decode(tmp_path: Path) -> None:
    with running_service(tmp_path, "simulator", speed=1.0) as (_, socket):
        done = live("--socket", str(socket), "--channel", "can9")
    assert done.returncode == 1
    assert done.stderr.strip() == ("bavard live: --channel can9: the service decodes no "
                                   "signal on it (channels with signals: vehicle)")


def test_no_service_says_what_to_run(tmp_path: Path) -> None:
    done = live("--socket", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert done.stderr.startswith("bavard live: no bavard service is listening on ")
    assert "--interface I --channel C --dbc FILE, or --log FILE --dbc FILE" in done.stderr


def test_a_log_that_is_not_there(tmp_path: Path) -> None:
    done = live("--log", str(tmp_path / "none.log"), "--dbc", str(DBC))
    assert done.returncode == 1
    assert "none.log: cannot open log" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--log", "x.log"], "--log needs --dbc FILE"),
    (["--interface", "virtual", "--dbc", "x.dbc"], "--interface needs --channel"),
    (["--dbc", "x.dbc"], "--dbc is for --interface or --log"),
    (["--speed", "2"], "--speed is for --log"),
    (["--log", "x.log", "--dbc", "x.dbc", "--speed", "-1"], "--speed must be 0 or more"),
    (["--bitrate", "500000"], "--bitrate is for --interface"),
])
def test_bad_command_lines(args: list[str], message: str) -> None:
    done = live(*args)
    assert done.returncode == 2
    assert message in done.stderr
