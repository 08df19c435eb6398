"""The service's commands on its control socket, against ``bavard run`` as a process (a
simulator or a replay, a real Unix socket, a real HTTP receiver on 127.0.0.1), through
the protocol (agent.control.client) and through the command line (``python -m agent
status|upload|pause|resume|buffer ...`` as processes): status figures that are the real
ones (frames grow, the buffer agrees with ``bavard buffer``, unknown ids counted, the
configuration's hash, a reload), ``signals``, pause and resume against a receiver (and
a pause that survives a restart), purge, retry of refused batches, the commands with no
service running (their exit status, the buffer file worked on directly), bad arguments,
and a socket that cannot be made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.consent import grant_for
from helpers.http_peer import HttpPeer, Reply
from helpers.notify_socket import NotifySocket

from agent.batch.codec import decode
from agent.cli.service_access import NO_SERVICE
from agent.control import protocol
from agent.control.client import ControlClient
from agent.errors import ControlError
from agent.upload.pause import FILE_NAME

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"


class Service:
    """``bavard run`` as a process, its control socket and its stderr log."""

    def __init__(self, config: Path, socket: Path, where: Path) -> None:
        self.config, self.socket, self.where = config, socket, where
        self.log = where / "log"
        (where / "notify").unlink(missing_ok=True)  # a restart's
        self.notify = NotifySocket(where / "notify")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        grant_for(self.config)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
            env=self.notify.env(), stdout=subprocess.DEVNULL, stderr=self.log.open("ab"),
            cwd=ROOT)
        self.notify.wait_for("READY", "1", timeout=30)
        return self

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(10) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        self.proc = None

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        with ControlClient.connect(self.socket, timeout=25) as client:
            return client.call(cmd, **args)

    def error(self, cmd: str, **args: Any) -> ControlError:
        with pytest.raises(ControlError) as info:
            self.call(cmd, **args)
        return info.value


@pytest.fixture
def where() -> Iterator[Path]:
    """A short directory (a Unix socket's path is at most 107 bytes; tmp_path can be
    longer than that)."""
    path = Path(tempfile.mkdtemp(prefix="bv-ctl-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def service(where: Path, channels: str, extra: str = "") -> Iterator[Service]:
    config = where / "bavard.toml"
    config.write_text(channels + f'\n[selection]\nexclude = ["*Counter*", "*Checksum*"]\n'
                      f'\n[store]\nstate_dir = "{where / "state"}"\ncommit_interval = 0.2\n'
                      "chunk_items = 500\n"
                      f'\n[control]\nsocket = "{where / "ctl"}"\ngroup = ""\n' + extra)
    svc = Service(config, where / "ctl", where)
    try:
        yield svc.start()
    finally:
        svc.stop()
        svc.notify.close()


def simulator(speed: float = 5.0) -> str:
    return f'[[channels]]\nname = "vehicle"\nsimulate = true\nspeed = {speed}\n'


def replay(log: Path, speed: float = 0.0) -> str:
    return f'[[channels]]\nname = "drive"\nlog = "{log}"\ndbc = "{DBC}"\nspeed = {speed}\n'


def upload(url: str) -> str:
    return (f'\n[upload]\nurl = "{url}"\nlinger = 0.0\nbatch_items = 1000\n'
            "batch_seconds = 5.0\nretry_initial = 0.05\nretry_max = 0.2\ntimeout = 2.0\n")


def bavard(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` (bounded in time) until it gives something true; that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return value


def drive(where: Path, lines: int = 3000, unknown: int = 0) -> Path:
    """The first ``lines`` frames of the sample drive, and ``unknown`` frames of an id
    no DBC knows (0x7AB) among them."""
    with SAMPLE.open() as f:
        head = [next(f) for _ in range(lines)]
    stamp = head[0].split()[0]
    extra = [f"{stamp} can0 7AB#0102030405060708\n"] * unknown
    path = where / "drive.log"
    path.write_text("".join(head[:10] + extra + head[10:]))
    return path


# -- status ------------------------------------------------------------------------------------


def test_status_shows_the_running_figures_and_follows_a_reload(where: Path) -> None:
    with service(where, simulator()) as svc:
        first = svc.call("status")
        second = wait_until(lambda: (s := svc.call("status"))["history"]["frames_per_s"]
                            and s["channels"][0]["frames"] > first["channels"][0]["frames"]
                            and s, 15, "frames growing and a rate measured")
        ch = second["channels"][0]
        assert (ch["name"], ch["kind"], ch["state"], ch["known_share"]) == (
            "vehicle", "simulator", "up", 1.0)
        assert ch["frames_per_s"] > 100 and second["pipeline"]["frames_per_s"] > 100
        assert second["pipeline"]["samples_kept"] <= second["pipeline"]["samples_decoded"]
        assert second["pipeline"]["samples_kept"] > 0
        assert second["uptime_s"] > first["uptime_s"]
        assert svc.proc is not None and second["pid"] == svc.proc.pid
        assert second["upload"] is None  # no [upload]: nothing leaves the box
        assert second["control"]["clients"] == 1  # this very connection
        assert second["buffer"]["classes"]["samples"]["items"] > 0
        sha = hashlib.sha256(svc.config.read_bytes()).hexdigest()
        assert second["config"] == {"path": str(svc.config), "sha256": sha,
                                    "changed_on_disk": False}

        # the command line: the same figures, readable, with a sparkline of frames/s
        out = bavard("status", "--socket", str(svc.socket))
        assert out.returncode == 0, out.stderr
        assert "vehicle  simulator" in out.stdout and "UP" in out.stdout
        assert any(c in out.stdout for c in "▁▂▃▄▅▆▇█")
        assert f"sha256 {sha[:12]}" in out.stdout
        shown = json.loads(bavard("status", "--socket", str(svc.socket), "--json").stdout)
        assert shown["channels"][0]["frames"] >= second["channels"][0]["frames"]

        # a rejected reload leaves the hash of what runs; the changed file shows
        good = svc.config.read_text()
        svc.config.write_text(good + "\n[store]\nbogus = 1\n")
        svc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "new configuration rejected" in svc.log.read_text(), 15, "rejected")
        assert svc.call("status")["config"] == {"path": str(svc.config), "sha256": sha,
                                                "changed_on_disk": True}
        # a good one is taken (the commands keep answering)
        svc.config.write_text(good.replace("speed = 5.0", "speed = 4.0"))
        assert svc.call("status")["config"]["changed_on_disk"] is True
        svc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in svc.log.read_text(), 15, "the reload")
        after = svc.call("status")
        assert after["config"]["sha256"] == hashlib.sha256(svc.config.read_bytes()).hexdigest()
        assert after["config"]["changed_on_disk"] is False
        assert after["pipeline"]["frames_per_s"] >= 0


def test_status_of_a_replay_agrees_with_the_buffer_file(where: Path) -> None:
    log = drive(where, lines=3000, unknown=40)
    with service(where, replay(log)) as svc:
        def settled() -> dict[str, Any] | None:
            s = svc.call("status")
            if s["channels"][0]["state"] != "ended" or s["buffer"]["queued_items"]:
                return None
            again = svc.call("status")

            def items(status: dict[str, Any]) -> list[int]:
                return [c["items"] for c in status["buffer"]["classes"].values()]

            return again if items(again) == items(s) else None

        status = wait_until(settled, 15, "the replay read to its end and committed")
        ch = status["channels"][0]
        assert ch["frames"] == status["pipeline"]["frames_in"] == 3040
        assert (ch["unknown_ids"], ch["unknown_frames"]) == (1, 40)
        assert ch["known_share"] == round(3000 / 3040, 4)
        assert ch["where"] == str(log)
        out = bavard("buffer", "--state-dir", str(where / "state"), "--json")
        assert out.returncode == 0, out.stderr
        on_file = json.loads(out.stdout)
        for name, c in status["buffer"]["classes"].items():
            assert c["items"] == on_file["classes"][name]["items"], name
        assert status["buffer"]["classes"]["samples"]["items"] == \
            status["pipeline"]["samples_kept"] > 1000
        text = bavard("status", "--socket", str(svc.socket)).stdout
        assert "drive  replay" in text and "ENDED" in text and "1 unknown ids (40 frames)" in text


def test_signals_lists_every_decodable_signal_with_its_selection(where: Path) -> None:
    obd = ('\n[[channels]]\nname = "obd"\nobd = true\ninterface = "virtual"\n'
           f'channel = "bv-signals-{os.getpid()}"\n')
    with service(where, replay(drive(where, 200), speed=1.0) + obd) as svc:
        everything = svc.call("signals")
        assert everything["count"] == len(everything["signals"])
        by_name = {(s["channel"], s["message"], s["signal"]): s for s in everything["signals"]}
        speed = by_name[("drive", "VehicleDynamics", "VehicleSpeed")]
        assert (speed["unit"], speed["minimum"], speed["maximum"], speed["selected"],
                speed["id"]) == ("km/h", 0, 300, True, 0xD0)
        assert by_name[("drive", "WheelSpeeds", "WheelSpeeds_Counter")]["selected"] is False
        rpm = by_name[("obd", "OBD", "ENGINE_RPM")]
        assert (rpm["unit"], rpm["selected"]) == ("rpm", True)
        assert any(s["choices"] for s in everything["signals"])  # the DBC's value tables
        some = svc.call("signals", channel="drive", signals="*Speed*")
        assert some["count"] > 1 and all("Speed" in s["signal"] and s["channel"] == "drive"
                                         for s in some["signals"])
        assert svc.error("signals", channel="nope").code == protocol.BAD_ARGS
        assert svc.error("signals", signals=5).code == protocol.BAD_ARGS
        assert svc.error("signals", bogus=1).code == protocol.BAD_ARGS
        assert svc.error("status", verbose=True).code == protocol.BAD_ARGS


# -- uploads -----------------------------------------------------------------------------------


def test_pause_stops_uploads_survives_a_restart_and_resume_restarts_them(where: Path) -> None:
    with HttpPeer() as peer:
        with service(where, simulator(), upload(peer.url)) as svc:
            wait_until(lambda: len(peer.requests) >= 2, 15, "uploads going")
            out = bavard("pause", "--socket", str(svc.socket), "--reason", "brake job",
                         "--json")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["paused"] is True
            up = wait_until(lambda: (u := svc.call("status")["upload"])["state"] == "paused"
                            and u, 10, "the uploader says paused")
            assert (up["paused"], up["paused_reason"]) == (True, "brake job")
            sent = len(peer.requests)
            held = svc.call("status")["buffer"]["classes"]["samples"]["items"]
            time.sleep(1.5)
            assert len(peer.requests) == sent  # nothing more left the box
            assert svc.call("status")["buffer"]["classes"]["samples"]["items"] > held
            # upload --now says it is paused, and does nothing
            now = bavard("upload", "--now", "--socket", str(svc.socket))
            assert now.returncode == 1 and "paused" in now.stderr and "bavard resume" in now.stderr
            assert "PAUSED" in bavard("status", "--socket", str(svc.socket)).stdout
        assert (where / "state" / FILE_NAME).is_file()
        with service(where, simulator(), upload(peer.url)) as svc:  # a restart
            up = wait_until(lambda: (u := svc.call("status")["upload"])["state"] == "paused"
                            and u, 10, "still paused after the restart")
            assert up["paused_reason"] == "brake job"
            time.sleep(1.0)
            assert len(peer.requests) == sent
            out = bavard("resume", "--socket", str(svc.socket), "--json")
            assert out.returncode == 0, out.stderr
            result = json.loads(out.stdout)
            assert result["was_paused"] is True and result["paused"] is False
            wait_until(lambda: len(peer.requests) > sent + 1, 15, "uploads again")
            assert svc.call("status")["upload"]["paused"] is False
            again = bavard("upload", "--now", "--socket", str(svc.socket), "--json")
            assert again.returncode == 0, again.stderr
            assert "looks at the buffer now" in json.loads(again.stdout)["message"]
        kinds = [e.kind for r in peer.requests for e in decode(r.body).events]
        assert "upload.paused" in kinds and "upload.resumed" in kinds
        assert not (where / "state" / FILE_NAME).exists()


def test_retry_dead_letters_brings_refused_batches_back(where: Path) -> None:
    log = drive(where, lines=3000)
    with HttpPeer() as peer:
        peer.script(Reply(400, body=b"unknown vehicle"), Reply(400), Reply(400))
        with service(where, replay(log), upload(peer.url)) as svc:
            def refused_and_drained() -> dict[str, Any] | None:
                s = svc.call("status")
                left = sum(c["items"] for c in s["buffer"]["classes"].values())
                ended = s["channels"][0]["state"] == "ended"
                return s if ended and left == 0 and s["upload"]["refused"] == 3 else None

            status = wait_until(refused_and_drained, 20, "three batches refused, the rest sent")
            dead = status["buffer"]["dead_letter_batches"]
            assert dead == 3 and status["buffer"]["dead_letter_items"] > 0
            kept = status["pipeline"]["samples_kept"]
            delivered = sum(len(decode(r.body).samples) for r in peer.requests[3:])
            assert delivered < kept  # the refused ones are missing at the receiver
            out = bavard("buffer", "retry-dead-letters", "--socket", str(svc.socket), "--json")
            assert out.returncode == 0, out.stderr
            result = json.loads(out.stdout)
            assert (result["batches"], result["items"]) == (
                3, status["buffer"]["dead_letter_items"])
            assert result["service"] is True
            wait_until(lambda: sum(len(decode(r.body).samples) for r in peer.requests[3:])
                       == kept, 15, "every sample at the receiver")
            after = svc.call("status")["buffer"]
            assert (after["dead_letter_batches"], after["dead_letter_items"]) == (0, 0)
            assert svc.call("buffer.retry-dead-letters")["batches"] == 0


# -- the buffer --------------------------------------------------------------------------------


def test_purge_removes_a_class_and_says_how_much(where: Path) -> None:
    with service(where, simulator(speed=20.0)) as svc:
        wait_until(lambda: svc.call("status")["buffer"]["classes"]["samples"]["items"] > 2000,
                   15, "samples stored")
        ask = bavard("buffer", "purge", "--class", "samples", "--socket", str(svc.socket))
        assert ask.returncode == 2 and ask.stdout == ""
        assert "would delete" in ask.stderr and "--yes" in ask.stderr
        assert svc.call("status")["buffer"]["classes"]["samples"]["purged"] == 0
        out = bavard("buffer", "purge", "--class", "samples", "--yes", "--socket",
                     str(svc.socket), "--json")
        assert out.returncode == 0, out.stderr
        purged = json.loads(out.stdout)
        assert purged["class"] == "samples" and purged["items"] > 2000 and purged["bytes"] > 0
        buffer = svc.call("status")["buffer"]
        assert buffer["classes"]["samples"]["purged"] == purged["items"]
        assert buffer["classes"]["samples"]["items"] < purged["items"]  # new ones only
        assert buffer["classes"]["events"]["items"] >= 1  # service.start kept
        text = bavard("buffer", "purge", "--class", "frames", "--yes", "--socket",
                      str(svc.socket))
        assert text.returncode == 0 and text.stdout.startswith("purged 0 frames")
        assert svc.call("buffer.purge", **{"class": "frames"})["items"] == 0
        # a pause with uploads off is kept for when they are on; resume ends it
        paused = svc.call("upload.pause", reason="later")
        assert (paused["paused"], paused["already"], paused["uploads"]) == (True, False, "off")
        assert svc.call("upload.pause")["already"] is True
        assert svc.call("upload.resume")["was_paused"] is True
        assert svc.call("upload.resume")["was_paused"] is False
        assert svc.error("buffer.purge").code == protocol.BAD_ARGS
        assert svc.error("buffer.purge", **{"class": "bogus"}).code == protocol.BAD_ARGS
        assert svc.error("upload.pause", reason=5).code == protocol.BAD_ARGS
        assert svc.error("upload.now").code == protocol.FAILED  # no [upload]
        events = svc.call("status")["buffer"]["classes"]["events"]["items"]
        assert events >= 5  # service.start, three purges, the pause and the resume


# -- no service --------------------------------------------------------------------------------


def test_without_a_service_the_commands_say_so_or_work_on_the_files(where: Path) -> None:
    state = where / "state"
    with service(where, replay(drive(where, 500))) as svc:
        wait_until(lambda: svc.call("status")["channels"][0]["state"] == "ended", 10, "ended")
        # a service holds the buffer: working on the file behind its back is refused
        held = bavard("buffer", "purge", "--class", "samples", "--yes", "--socket",
                      str(where / "elsewhere"), "--state-dir", str(state))
        assert held.returncode == 1 and "another process holds the buffer" in held.stderr
        pause = bavard("pause", "--socket", str(where / "elsewhere"), "--state-dir", str(state))
        assert pause.returncode == 1 and "a process holds the buffer" in pause.stderr
        assert not (state / FILE_NAME).exists()
    gone = str(where / "ctl")
    status = bavard("status", "--socket", gone, "--state-dir", str(state))
    assert status.returncode == NO_SERVICE
    assert "no bavard service is listening" in status.stderr
    assert "systemctl start bavard" in status.stderr
    assert "samples" in status.stdout  # the buffer file's figures all the same
    shown = json.loads(bavard("status", "--socket", gone, "--state-dir", str(state),
                              "--json").stdout)
    assert shown["service"] is None and shown["buffer"]["classes"]["samples"]["items"] > 0
    now = bavard("upload", "--now", "--socket", gone)
    assert now.returncode == NO_SERVICE and "no bavard service" in now.stderr

    paused = bavard("pause", "--socket", gone, "--state-dir", str(state), "--reason", "x")
    assert paused.returncode == 0 and "written directly" in paused.stderr
    assert json.loads((state / FILE_NAME).read_text())["reason"] == "x"
    resumed = bavard("resume", "--socket", gone, "--state-dir", str(state))
    assert resumed.returncode == 0 and "removed directly" in resumed.stderr
    assert not (state / FILE_NAME).exists()

    items = shown["buffer"]["classes"]["samples"]["items"]
    purge = bavard("buffer", "purge", "--class", "samples", "--yes", "--socket", gone,
                   "--state-dir", str(state), "--json")
    assert purge.returncode == 0, purge.stderr
    assert "working on the buffer file" in purge.stderr
    assert json.loads(purge.stdout)["items"] == items
    retry = bavard("buffer", "retry-dead-letters", "--socket", gone, "--config",
                   str(where / "bavard.toml"))
    assert retry.returncode == 0 and retry.stdout.startswith("moved 0 dead-letter batches")
    after = json.loads(bavard("buffer", "--state-dir", str(state), "--json").stdout)
    assert after["classes"]["samples"]["items"] == 0
    assert after["classes"]["samples"]["purged"] == items
    assert after["classes"]["events"]["items"] >= 2  # service.start and .stop kept


def test_a_socket_that_cannot_be_made_leaves_the_service_running(where: Path) -> None:
    config = where / "bavard.toml"
    config.write_text(simulator() + f'\n[store]\nstate_dir = "{where / "state"}"\n'
                      f'\n[control]\nsocket = "{where / "missing" / "ctl"}"\n')
    svc = Service(config, where / "missing" / "ctl", where)
    try:
        svc.start()  # READY=1 all the same
        assert "no control socket, the service runs on without it" in svc.log.read_text()
        assert svc.proc is not None and svc.proc.poll() is None
        out = bavard("status", "--socket", str(svc.socket), "--config", str(config))
        assert out.returncode == NO_SERVICE and "samples" in out.stdout
    finally:
        svc.stop()
        svc.notify.close()
