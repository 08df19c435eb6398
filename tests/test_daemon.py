"""``bavard run`` as a process: sd_notify READY/STATUS/WATCHDOG on a real datagram
socket, SIGTERM within 5 s with everything read in the store (and during a long
start-up, before READY=1), SIGHUP reloads (a bad configuration, or one that cannot
start, is rejected and the running one stays), a configuration error at start, a store
that cannot start.

The tests that run the daemon in this process inject its monotonic clock (an offset on
the real one) and move it forward instead of sleeping past the watchdog's silences.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.clock import Monotonic
from helpers.consent import grant
from helpers.notify_socket import NotifySocket

from agent.service.daemon import EX_CONFIG, Daemon
from agent.service.notify import Notifier
from agent.store import DB_NAME, read_stats_file, writer
from agent.store.writer import CommitInfo

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"

CONFIG = """
[[channels]]
name = "vehicle"
simulate = true
speed = {speed}

[selection]
exclude = {exclude}

[store]
state_dir = "{state}"
commit_interval = 0.2

[insights]
enabled = false  # the events counted here are the service's own
"""


def write_config(path: Path, state: Path, speed: float = 5.0,
                 exclude: tuple[str, ...] = ("*Counter*", "*Checksum*")) -> Path:
    path.write_text(CONFIG.format(speed=speed, state=state, exclude=json.dumps(list(exclude))))
    grant(state)
    return path


def start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)


@contextlib.contextmanager
def service(config: Path, tmp_path: Path, socket: str | Path | None = None,
            ) -> Iterator[tuple[subprocess.Popen[bytes], NotifySocket, Path]]:
    """``bavard run`` with its notify socket and its stderr in ``tmp_path/log``; killed
    at the end if it still runs."""
    sock = NotifySocket(socket if socket is not None else tmp_path / "notify.sock")
    log = tmp_path / "log"
    proc = start(config, sock.env(), log)
    try:
        yield proc, sock, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()


def watched_daemon(config: Path, tmp_path: Path, silence: float,
                   ) -> tuple[Daemon, NotifySocket, Monotonic]:
    """A daemon in this process, watched by systemd's watchdog every 0.4 s, on a
    monotonic clock the test moves; its notify socket."""
    sock = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "400000"})
    clock = Monotonic()
    return Daemon(config, notifier=notifier, silence=silence, monotonic=clock), sock, clock


def drain(sock: NotifySocket) -> None:
    """Read what the service sent before it exited."""
    while sock.receive(0.2) is not None:
        pass


def buffer_stats(state: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "agent", "buffer", "--state-dir", str(state),
                          "--json"], capture_output=True, check=True, cwd=ROOT, timeout=30)
    result: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return result


def wait_for_line(log: Path, text: str, timeout: float = 15.0) -> None:
    wait_until(lambda: text in log.read_text(), timeout,
               lambda: f"no {text!r} in the log: {log.read_text()}")


def wait_until(condition: Callable[[], object], timeout: float = 15.0,
               why: Callable[[], str] = lambda: "") -> None:
    """Poll ``condition`` (bounded: ``timeout`` seconds) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(0.02)


def stored_samples(state: Path) -> int:
    """Samples committed to the buffer, read without writing to it (0 before the first)."""
    try:
        return read_stats_file(state / DB_NAME, time.time()).classes["samples"].items
    except (KeyError, sqlite3.Error):
        return 0


def wait_for_stalled(sock: NotifySocket, checks: int = 3, timeout: float = 20.0) -> None:
    """``checks`` watchdog checks in a row that report a stalled beat and send no ping."""
    deadline = time.monotonic() + timeout
    row = 0
    while row < checks:
        msg = sock.receive(max(0.0, deadline - time.monotonic()))
        assert msg is not None, f"not {checks} stalled checks in a row: {sock.messages}"
        if "WATCHDOG" in msg:
            row = 0
        elif msg.get("STATUS", "").startswith("STALLED"):
            row += 1


def in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    """``daemon.run()`` in a thread; its exit status lands in the list."""
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    runner.start()
    return runner, result


def stop_within(proc: subprocess.Popen[bytes], seconds: float) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=seconds + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    took = time.monotonic() - started
    assert rc == 0
    return took


@pytest.mark.parametrize("abstract", [False, True], ids=["path-socket", "abstract-socket"])
def test_ready_status_then_sigterm_flushes_and_exits(tmp_path: Path, abstract: bool) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state)
    with service(config, tmp_path, f"@bavard-test-{time.monotonic_ns()}" if abstract
                 else None) as (proc, sock, _):
        ready = sock.wait_for("READY", "1")
        assert "frames/s" in ready.get("STATUS", "")
        status = sock.wait_for("STATUS", timeout=25)  # the watchdog's periodic status
        assert "buffer" in status["STATUS"] and "upload off" in status["STATUS"]
        wait_until(lambda: stored_samples(state) > 100)
        took = stop_within(proc, 5.0)
        assert took < 5.0, f"took {took:.1f} s to stop"
        drain(sock)
        assert any(m.get("STOPPING") == "1" for m in sock.messages)
    stats = buffer_stats(state)
    assert stats["classes"]["samples"]["items"] > 100
    assert stats["classes"]["events"]["items"] == 2  # service.start, service.stop
    assert "INFO" in (tmp_path / "log").read_text()


def test_sighup_rejects_a_bad_config_and_applies_a_good_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state)
    with service(config, tmp_path) as (proc, sock, log):
        sock.wait_for("READY", "1")
        good = config.read_text()
        config.write_text(good + "\n[store]\nbogus = 1\n")  # duplicate table: TOML error
        proc.send_signal(signal.SIGHUP)
        wait_for_line(log, "new configuration rejected")
        assert proc.poll() is None
        before = buffer_stats(state)["classes"]["samples"]["items"]
        # a good one: only the speeds are kept from now on
        write_config(config, state, exclude=("*",))
        config.write_text(config.read_text().replace('exclude = ["*"]',
                                                     'include = ["*Speed*"]'))
        proc.send_signal(signal.SIGHUP)
        sock.wait_for("RELOADING", "1", timeout=10)
        sock.wait_for("READY", "1", timeout=10)
        wait_for_line(log, "reloaded")
        wait_until(lambda: stored_samples(state) > before)  # stored after the reload
        stop_within(proc, 5.0)
    stats = buffer_stats(state)
    # nothing buffered was lost, and it went on storing after the reload
    assert stats["classes"]["samples"]["items"] > before
    # start, the rejected reload, the reload, stop
    assert stats["classes"]["events"]["items"] == 4


def test_a_config_error_at_start_exits_78_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bavard.toml"
    config.write_text('[[channels]]\nname = "v"\nsimulate = true\n[upload]\nurl = "ftp://x"\n')
    proc = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == EX_CONFIG
    assert "upload.url" in proc.stderr


def test_watchdog_stops_pinging_while_the_store_writer_is_stuck(tmp_path: Path) -> None:
    """A writer stuck inside a call (a hung SD card write) stops WATCHDOG=1; it resumes
    when the writer comes back. Runs the daemon in this process to hang its writer."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state, speed=2.0)
    daemon, sock, clock = watched_daemon(config, tmp_path, silence=2.0)
    hang, hung = threading.Event(), threading.Event()
    release = threading.Event()
    make = daemon._on_commit

    def on_commit_for(name: str) -> Callable[[CommitInfo], None]:
        committed = make(name)

        def on_commit(info: CommitInfo) -> None:  # runs in the store's writer thread
            if hang.is_set():
                hung.set()
                release.wait(30)
            committed(info)
        return on_commit

    daemon._on_commit = on_commit_for  # type: ignore[method-assign]
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        sock.wait_for("READY", "1")
        sock.wait_for("WATCHDOG", "1", timeout=5)
        hang.set()
        assert hung.wait(10)
        clock.advance(3.0)  # past the writer's allowed silence
        wait_for_stalled(sock)  # no ping while the writer is stuck
        release.set()
        sock.wait_for("WATCHDOG", "1", timeout=10)  # pinging again
    finally:
        release.set()
        daemon.request_stop()
        runner.join(10)
        sock.close()
    assert not runner.is_alive()


def test_watchdog_goes_on_after_a_replay_ends(tmp_path: Path) -> None:
    """A log replayed to its end is not a stuck pipeline: the pings go on."""
    drive = tmp_path / "drive.log"
    with (ROOT / "tests/data/sample_drive.log").open() as log:
        drive.write_text("".join(next(log) for _ in range(500)))
    config = tmp_path / "bavard.toml"
    config.write_text(f'[[channels]]\nname = "v"\nlog = "{drive}"\n'
                      f'dbc = "{ROOT / "dbc/demo_vehicle.dbc"}"\nspeed = 0\n'
                      f'[store]\nstate_dir = "{tmp_path / "state"}"\n')
    grant(tmp_path / "state")
    daemon, sock, clock = watched_daemon(config, tmp_path, silence=1.0)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        sock.wait_for("READY", "1")
        worker = daemon._pipeline_worker
        assert worker is not None
        worker.thread.join(20)  # the replay is over
        assert not worker.thread.is_alive()
        clock.advance(2.0)  # and past the allowed silence
        while sock.receive(0.01) is not None:
            pass
        sock.messages.clear()
        sock.wait_for("WATCHDOG", "1", timeout=10)
    finally:
        daemon.request_stop()
        runner.join(10)
        sock.close()


def test_reload_rejects_a_private_key_readable_by_others(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from helpers.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state, speed=1.0)
    daemon = Daemon(config, notifier=Notifier({}))
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: daemon.pipeline is not None, 20)
        certs.client_key.chmod(0o644)
        config.write_text(config.read_text() + f'\n[upload]\nurl = "https://127.0.0.1:9/"\n'
                          f'cert_file = "{certs.client_cert}"\nkey_file = "{certs.client_key}"\n')
        pipeline = daemon.pipeline
        daemon.request_reload()
        wait_until(lambda: "new configuration rejected" in caplog.text, 10, lambda: caplog.text)
        assert "upload.key_file" in caplog.text and "chmod 600" in caplog.text
        assert daemon.pipeline is pipeline and daemon.uploader is None  # the old one runs on
    finally:
        daemon.request_stop()
        runner.join(10)


def replay_config(path: Path, log: Path, state: Path, speed: float = 1.0) -> Path:
    path.write_text(f'[[channels]]\nname = "v"\nlog = "{log}"\ndbc = "{DBC}"\n'
                    f'speed = {speed}\n[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n'
                    '[insights]\nenabled = false\n')  # the events counted are the service's
    grant(state)
    return path


@pytest.mark.skipif(ctypes.util.find_library("pcanbasic") is not None,
                    reason="a PCAN library is installed: the pcan interface may open")
def test_a_reload_whose_bus_cannot_open_keeps_the_old_pipeline_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: the reload stopped the running workers before it knew that the new
    configuration starts; when it did not (here a PCAN adapter whose library is not
    installed: python-can cannot open it, now or later), it started the old one again,
    and when that failed too (its log renamed away meanwhile) SourceError ended the
    service. Now the new pipeline is built first, and the old one never stops."""
    drive = tmp_path / "drive.log"
    shutil.copy(SAMPLE, drive)  # four minutes at real time
    state = tmp_path / "state"
    config = replay_config(tmp_path / "bavard.toml", drive, state)
    daemon = Daemon(config, notifier=Notifier({}))
    runner, result = in_thread(daemon)
    try:
        wait_until(lambda: daemon.pipeline is not None and daemon.pipeline.frames_in > 0, 20)
        pipeline = daemon.pipeline
        assert pipeline is not None
        drive.rename(tmp_path / "moved.log")  # the old configuration could not start again
        config.write_text(f'[[channels]]\nname = "v"\ninterface = "pcan"\n'
                          f'channel = "PCAN_USBBUS1"\ndbc = "{DBC}"\n'
                          f'[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n')
        daemon.request_reload()
        wait_until(lambda: "new configuration rejected" in caplog.text, 20, lambda: caplog.text)
        assert "cannot open pcan:PCAN_USBBUS1" in caplog.text
        read = pipeline.frames_in
        wait_until(lambda: pipeline.frames_in > read, 10)  # the old one reads on
        assert daemon.pipeline is pipeline and runner.is_alive()
        worker = daemon._pipeline_worker
        assert worker is not None and worker.thread.is_alive()
    finally:
        daemon.request_stop()
        runner.join(10)
    assert not runner.is_alive() and result == [0]
    stats = read_stats_file(state / DB_NAME, time.time())
    assert stats.classes["events"].items == 3  # start, reload-rejected, stop
    assert stats.classes["samples"].items > 0


def large_config(path: Path, state: Path) -> Path:
    """A configuration that takes seconds to check and start: a DBC of 7,000 ordinary
    messages (3.4 MB; cantools parses about 0.3 MB a second here)."""
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: ECU", ""]
    for m in range(1, 7001):
        lines.append(f"BO_ {m | 0x80000000} Message{m}: 8 ECU")
        lines += [f' SG_ Signal{m}_{k} : {k * 8}|8@1+ (1,0) [0|255] "" Vector__XXX'
                  for k in range(8)]
        lines.append("")
    dbc = path.with_name("large.dbc")
    dbc.write_text("\n".join(lines) + "\n")
    path.write_text(f'[[channels]]\nname = "vehicle"\nsimulate = true\ndbc = "{dbc}"\n'
                    f'[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n')
    grant(state)
    return path


def test_sigterm_during_a_long_start_up_ends_it_before_ready(tmp_path: Path) -> None:
    """Regression: the stop handler only set a flag that the main loop reads once the
    start-up is over (minutes for a large configuration): SIGTERM was ignored until then,
    and the service even reported READY=1 before it stopped. Now the signal cuts the
    start-up short: exit 0, no READY=1."""
    state = tmp_path / "state"
    config = large_config(tmp_path / "bavard.toml", state)
    with service(config, tmp_path) as (proc, sock, log):
        wait_for_line(log, "starting bavard", timeout=30)  # the handlers are in place
        took = stop_within(proc, 5.0)
        assert took < 5.0, f"took {took:.1f} s to stop"  # STOP_BUDGET
        drain(sock)
    assert not any("READY" in m for m in sock.messages), sock.messages
    assert "stopped during the start-up" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_sigterm_while_a_large_reload_is_prepared_does_not_wait_for_it(tmp_path: Path) -> None:
    """SIGTERM while a reload builds its pipeline (seconds for a large file) cuts the
    reload short, so the stop stays within its 5 s; the running pipeline's data is kept."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state)
    with service(config, tmp_path) as (proc, sock, log):
        sock.wait_for("READY", "1")
        large_config(config, state)
        proc.send_signal(signal.SIGHUP)
        wait_for_line(log, "reloading")
        took = stop_within(proc, 5.0)
        assert took < 5.0, f"took {took:.1f} s to stop"  # STOP_BUDGET
    text = log.read_text()
    assert "reload cut short by a stop request" in text and "Traceback" not in text
    stats = read_stats_file(state / DB_NAME, time.time())
    assert stats.classes["events"].items == 2  # service.start, service.stop


def test_a_store_that_cannot_start_fails_the_start_before_ready(tmp_path: Path) -> None:
    """Regression: a store writer that died at start (a quota SQLite cannot hold did it;
    here a buffer whose ``meta`` row is not a number) left the service running,
    READY=1, dropping everything it read. Now it exits 1 before READY=1."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state)
    from agent.store import Store, StoreConfig

    with Store(StoreConfig(state_dir=state)):
        pass
    with sqlite3.connect(state / DB_NAME) as db:
        db.execute("UPDATE meta SET value = 'many' WHERE key = 'next_seq'")
    with service(config, tmp_path) as (proc, sock, log):
        assert proc.wait(timeout=60) == 1
        drain(sock)
    assert not any("READY" in m for m in sock.messages), sock.messages
    assert "cannot open the buffer" in log.read_text()


def test_a_store_writer_that_dies_later_stops_the_pings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer stopped by a bug after the start: the service does not answer for the
    data it drops with pings; systemd restarts it when WatchdogSec runs out."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state, speed=2.0)
    daemon, sock, clock = watched_daemon(config, tmp_path, silence=2.0)
    runner, result = in_thread(daemon)
    try:
        sock.wait_for("READY", "1")
        sock.wait_for("WATCHDOG", "1", timeout=5)

        def bug(self: writer.Writer) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(writer.Writer, "_expire", bug)
        store = daemon.store
        assert store is not None
        wait_until(lambda: store.state == "stopped", 10)
        clock.advance(3.0)  # past the writer's allowed silence
        wait_for_stalled(sock)
    finally:
        daemon.request_stop()
        runner.join(10)
        sock.close()
    assert not runner.is_alive() and result == [0]
