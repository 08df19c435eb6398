"""``bavard run`` as a process: sd_notify READY/STATUS/WATCHDOG on a real datagram
socket, SIGTERM within 5 s with everything read in the store, SIGHUP reloads (a bad
configuration is rejected and the running one stays), a configuration error at start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.notify_socket import NotifySocket

from agent.service.daemon import EX_CONFIG, Daemon
from agent.service.notify import Notifier
from agent.store.writer import CommitInfo

ROOT = Path(__file__).resolve().parents[1]

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
"""


def write_config(path: Path, state: Path, speed: float = 5.0,
                 exclude: tuple[str, ...] = ("*Counter*", "*Checksum*")) -> Path:
    path.write_text(CONFIG.format(speed=speed, state=state, exclude=json.dumps(list(exclude))))
    return path


def start(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)


def buffer_stats(state: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "agent", "buffer", "--state-dir", str(state),
                          "--json"], capture_output=True, check=True, cwd=ROOT, timeout=30)
    result: dict = json.loads(out.stdout)  # type: ignore[type-arg]
    return result


def wait_for_line(log: Path, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in the log: {log.read_text()}"
        time.sleep(0.1)


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
    sock = NotifySocket(f"@bavard-test-{time.monotonic_ns()}" if abstract
                        else tmp_path / "notify.sock")
    proc = start(config, sock.env(), tmp_path / "log")
    try:
        ready = sock.wait_for("READY", "1")
        assert "frames/s" in ready.get("STATUS", "")
        status = sock.wait_for("STATUS", timeout=25)  # the watchdog's periodic status
        assert "buffer" in status["STATUS"] and "upload off" in status["STATUS"]
        time.sleep(1.5)
        took = stop_within(proc, 5.0)
        assert took < 5.0, f"took {took:.1f} s to stop"
        while sock.receive(0.2) is not None:  # what it sent before exiting
            pass
        assert any(m.get("STOPPING") == "1" for m in sock.messages)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    stats = buffer_stats(state)
    assert stats["classes"]["samples"]["items"] > 100
    assert stats["classes"]["events"]["items"] == 2  # service.start, service.stop
    assert "INFO" in (tmp_path / "log").read_text()


def test_sighup_rejects_a_bad_config_and_applies_a_good_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "bavard.toml", state)
    sock = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "log"
    proc = start(config, sock.env(), log)
    try:
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
        time.sleep(1.5)
        stop_within(proc, 5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
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
    sock = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "400000"})
    daemon = Daemon(config, notifier=notifier, silence=2.0)
    hang, hung = threading.Event(), threading.Event()
    release = threading.Event()
    committed = daemon._committed

    def on_commit(info: CommitInfo) -> None:  # runs in the store's writer thread
        if hang.is_set():
            hung.set()
            release.wait(30)
        committed(info)

    daemon._committed = on_commit  # type: ignore[method-assign]
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        sock.wait_for("READY", "1")
        sock.wait_for("WATCHDOG", "1", timeout=5)
        hang.set()
        assert hung.wait(10)
        time.sleep(3.5)  # past the writer's allowed silence
        while sock.receive(0.01) is not None:  # what was sent before that
            pass
        sock.messages.clear()
        quiet_until = time.monotonic() + 2.0
        while (left := quiet_until - time.monotonic()) > 0:
            sock.receive(left)
        assert not any("WATCHDOG" in m for m in sock.messages), sock.messages
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
    sock = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "400000"})
    daemon = Daemon(config, notifier=notifier, silence=1.0)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        sock.wait_for("READY", "1")
        time.sleep(3.0)  # the replay is long over, and past the allowed silence
        while sock.receive(0.01) is not None:
            pass
        sock.messages.clear()
        sock.wait_for("WATCHDOG", "1", timeout=3)
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
        deadline = time.monotonic() + 20
        while daemon.pipeline is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        certs.client_key.chmod(0o644)
        config.write_text(config.read_text() + f'\n[upload]\nurl = "https://127.0.0.1:9/"\n'
                          f'cert_file = "{certs.client_cert}"\nkey_file = "{certs.client_key}"\n')
        pipeline = daemon.pipeline
        daemon.request_reload()
        deadline = time.monotonic() + 10
        while "new configuration rejected" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        assert "upload.key_file" in caplog.text and "chmod 600" in caplog.text
        assert daemon.pipeline is pipeline and daemon.uploader is None  # the old one runs on
    finally:
        daemon.request_stop()
        runner.join(10)
