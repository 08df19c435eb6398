"""``bavard obd`` through the running service: the command line as a process, the
service's OBD source asking the vehicle between two of its polls.

Two services: one in this process (its OBD channel on the simulated engine and
gearbox ECUs over python-can's virtual bus, which only this process sees), and
``bavard run`` as a process with its OBD channel on a scripted ELM327 on a pty.
The request queue the commands go through (agent.sources.obd_requests) is
checked on its own with a thread in the source's place.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.consent import grant_for
from helpers.control_service import wait_for_socket
from helpers.elm_peer import ElmPeer
from test_obd_source import VIN, Car

from agent.control import protocol
from agent.control.client import ControlClient
from agent.errors import ObdAdapterError, ObdError
from agent.service.daemon import Daemon
from agent.sources.obd_requests import RequestQueue
from agent.sources.simulator.obd_ecu import SimulatedEcus

ROOT = Path(__file__).resolve().parents[1]
AFTER_HARSH_BRAKE = 215.0  # vehicle seconds: P0500 is stored (obd_answers.harsh_brake)

CONFIG = """
[[channels]]
name = "obd"
obd = true
interface = "virtual"
channel = "{bus}"
pids = {{ENGINE_RPM = 0.5, VEHICLE_SPEED = 0.5}}
dtc_interval = 1.0

[[channels]]
name = "elm"
obd = true
port = "{missing}"

[store]
state_dir = "{state}"
commit_interval = 0.2

[control]
socket = "{socket}"
"""


def bavard(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def wait_until(what: Callable[[], object], timeout: float = 20.0,
               why: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out: {why()}"
        time.sleep(0.05)


def obd_channels(socket: Path) -> dict[str, dict[str, Any]]:
    with ControlClient.connect(socket, timeout=5) as service:
        return {ch["name"]: ch for ch in service.call("obd.channels")["channels"]}


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[Path, SimulatedEcus, str]]:
    """The service in a thread with the simulated ECUs on a virtual bus; (socket, ECUs,
    the bus's name)."""
    bus = f"bavard-test-obd-control-{os.getpid()}"
    ecus = SimulatedEcus.open("virtual", bus, t0=AFTER_HARSH_BRAKE, speed=1.0).start()
    socket_path = tmp_path / "control"
    config = tmp_path / "bavard.toml"
    config.write_text(CONFIG.format(bus=bus, missing=tmp_path / "ttyUSB9",
                                    state=tmp_path / "state", socket=socket_path))
    grant_for(config)
    daemon = Daemon(config)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    runner.start()
    try:
        wait_until(lambda: socket_path.exists()
                   and obd_channels(socket_path)["obd"]["connected"],
                   why=lambda: f"service result {result}")
        yield socket_path, ecus, bus
    finally:
        daemon.request_stop()
        runner.join(15)
        ecus.stop()
    assert result == [0] and not runner.is_alive()


def test_every_action_through_the_service(in_process: tuple[Path, SimulatedEcus, str]
                                          ) -> None:
    socket_path, ecus, _ = in_process
    via = ["--socket", str(socket_path), "--channel", "obd"]
    done = bavard("obd", "vin", *via, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"vin": ecus.vin, "problems": []}

    done = bavard("obd", "scan", *via, "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 0 and set(doc["ecus"]) == {"7E8", "7E9"}
    assert "0C" in doc["ecus"]["7E8"] and doc["adapter"].startswith(f"virtual {in_process[2]}")

    done = bavard("obd", "read", "ENGINE_RPM", "0x0D", *via, "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 0 and set(doc["values"]) == {"ENGINE_RPM", "VEHICLE_SPEED"}
    assert doc["values"]["ENGINE_RPM"]["unit"] == "rpm" and doc["no_data"] == []

    done = bavard("obd", "read", "ENGINE_RPM", "--watch", "--interval", "0", "--count", "3",
                  *via, "--json")
    assert done.returncode == 0
    assert [set(json.loads(line)["values"]) for line in done.stdout.splitlines()] == [
        {"ENGINE_RPM"}] * 3
    done = bavard("obd", "read", "ENGIN_RPM", *via)
    assert done.returncode == 2 and "did you mean ENGINE_RPM" in done.stderr

    done = bavard("obd", "readiness", *via)
    assert done.returncode == 0 and "ECU 7E8: MIL ON, 1 codes" in done.stdout

    done = bavard("obd", "dtc", *via)
    assert done.returncode == 0
    assert done.stdout.split()[:4] == ["stored", "P0500", "ECU", "7E8"]


class EventWatch:
    """A subscription to the service's events on a socket of our own, read with a
    timeout (a ControlClient's stream blocks without one)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        assert "hello" in self._line()
        self.sock.sendall(protocol.encode({"v": 1, "id": 1, "cmd": "subscribe",
                                           "args": {"topic": "events"}}))
        assert self._line()["ok"]

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the service closed the connection"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def wait_for(self, kind: str, text: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e["kind"] == kind and text in e["detail"]]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {kind} {text}: {self.events}"
            try:
                self.events.extend(self._line().get("items", []))
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


def test_a_clear_needs_yes_and_the_service_notices(
        in_process: tuple[Path, SimulatedEcus, str]) -> None:
    socket_path, ecus, _ = in_process
    watch = EventWatch(socket_path)
    via = ["--socket", str(socket_path), "--channel", "obd"]
    try:
        done = bavard("obd", "dtc", "--clear", *via)
        assert done.returncode == 2 and "add --yes" in done.stderr
        assert ecus.state()[0x7E8].stored  # nothing was cleared

        done = bavard("obd", "dtc", "--clear", "--yes", *via, "--json")
        assert done.returncode == 0, done.stderr
        assert "7E8" in json.loads(done.stdout)["cleared"]
        assert not ecus.state()[0x7E8].stored
        done = bavard("obd", "dtc", *via, "--json")
        assert json.loads(done.stdout)["stored"] == []
        # the source reads the codes again: the service's events say they cleared
        event = watch.wait_for("dtc.cleared", "P0500 stored (ECU 7E8)")
        assert event["ch"] == "obd"
    finally:
        watch.close()


def test_channels_and_what_cannot_be_done(in_process: tuple[Path, SimulatedEcus, str]
                                          ) -> None:
    socket_path, _, bus = in_process
    # two OBD channels: one must be named
    done = bavard("obd", "vin", "--socket", str(socket_path))
    assert done.returncode == 2
    assert "the service has 2 OBD channels (obd, elm): name one with --channel" in done.stderr
    done = bavard("obd", "vin", "--socket", str(socket_path), "--channel", "nope")
    assert done.returncode == 2 and "no channel 'nope' in the service" in done.stderr
    # an adapter that is not there: the reason, at once
    started = time.monotonic()
    done = bavard("obd", "dtc", "--socket", str(socket_path), "--channel", "elm")
    assert done.returncode == 1 and time.monotonic() - started < 20
    assert "channel elm: not talking to the vehicle now: adapter fault:" in done.stderr
    assert "ttyUSB9" in done.stderr and "trying again in" in done.stderr
    # the service's adapter, asked directly: refused before it is opened
    done = bavard("obd", "vin", "--can", bus, "--interface", "virtual",
                  "--socket", str(socket_path))
    assert done.returncode == 1
    assert f"the running service holds virtual {bus} (its channel obd)" in done.stderr
    assert "drop --can" in done.stderr
    # options for a direct adapter make no sense through the service
    done = bavard("obd", "vin", "--socket", str(socket_path), "--baudrate", "38400")
    assert done.returncode == 2 and "--baudrate only with --port or --can" in done.stderr


def test_no_service_says_what_to_run(tmp_path: Path) -> None:
    done = bavard("obd", "dtc", "--socket", str(tmp_path / "control"))
    assert done.returncode == 1
    assert "no bavard service is listening on" in done.stderr
    assert "--port PORT (ELM327) or --can CHANNEL" in done.stderr


@pytest.mark.slow
def test_bavard_run_with_an_elm327(tmp_path: Path) -> None:
    """``bavard run`` as a process, its OBD channel on a scripted ELM327 (a pty)."""
    car = Car()
    car.stored, car.mil = ["P0143"], True
    cleared: list[str] = []

    def clear(peer: ElmPeer, request: str) -> list[Any]:
        cleared.append(request)
        car.stored.clear()
        car.mil = False
        return [("7E8", "0144")]

    answers: dict[str, Any] = car.answers()
    answers["04"] = clear
    socket_path = tmp_path / "control"
    with ElmPeer(answers=answers, protocol="6") as peer:
        peer.voltage = "12.4V"
        config = tmp_path / "bavard.toml"
        config.write_text(f"""
[[channels]]
name = "elm"
obd = true
port = "{peer.path}"
protocol = "6"
pids = {{ENGINE_RPM = 0.5}}
dtc_interval = 1.0

[store]
state_dir = "{tmp_path / 'state'}"

[control]
socket = "{socket_path}"
""")
        log = tmp_path / "service.log"
        grant_for(config)
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)
        try:
            wait_for_socket(proc, socket_path, log, 30.0)
            wait_until(lambda: obd_channels(socket_path)["elm"]["connected"], 30.0,
                       lambda: log.read_text())
            done = bavard("obd", "vin", "--socket", str(socket_path), "--json")
            assert done.returncode == 0 and json.loads(done.stdout)["vin"] == VIN
            done = bavard("obd", "scan", "--socket", str(socket_path))
            assert "battery   12.4 V" in done.stdout
            assert "ECU 7E8   5 PIDs supported: 01 04 05 0C 0D" in done.stdout
            done = bavard("obd", "dtc", "--socket", str(socket_path), "--json")
            assert [d["code"] for d in json.loads(done.stdout)["stored"]] == ["P0143"]
            # the same port, directly: the service holds it
            done = bavard("obd", "vin", "--port", peer.path, "--socket", str(socket_path))
            assert done.returncode == 1 and "drop --port to go through the service" in \
                done.stderr
            done = bavard("obd", "dtc", "--clear", "--yes", "--socket", str(socket_path))
            assert done.returncode == 0 and done.stdout.strip() == "cleared by ECU 7E8"
            assert cleared == ["04"] and car.stored == []
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(15)


# -- the request queue on its own ----------------------------------------------------------


class Worker:
    """A thread in the source's place: serves the queue with ``client`` until stopped."""

    def __init__(self, queue: RequestQueue, client: Any) -> None:
        self.queue = queue
        self.client = client
        self.stop = threading.Event()
        self.raised: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.queue.serve(self.client)
            except ObdError as exc:
                self.raised.append(exc)
            self.queue.wait(self.stop, 1.0)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_queue_runs_in_the_sources_thread_and_gives_back_results() -> None:
    queue = RequestQueue("obd")
    client = object()
    queue.connected(client)  # type: ignore[arg-type]
    with Worker(queue, client) as worker:
        got = queue.call(lambda c: (c is client, threading.current_thread()), 5.0)
        assert got == (True, worker.thread)
        with pytest.raises(ValueError, match="bad bytes"):
            queue.call(lambda c: (_ for _ in ()).throw(ValueError("bad bytes")), 5.0)
        assert worker.raised == []  # not the source's end
        with pytest.raises(ObdAdapterError, match="unplugged"):
            queue.call(lambda c: (_ for _ in ()).throw(ObdAdapterError("unplugged")), 5.0)
        wait_until(lambda: worker.raised, 5.0)  # the source reopens the adapter
        assert queue.served == 3


def test_queue_refuses_when_not_connected_busy_or_too_slow() -> None:
    queue = RequestQueue("obd", max_pending=1)
    with pytest.raises(ObdError, match="not talking to the vehicle now: connecting"):
        queue.call(lambda c: 1, 1.0)
    queue.connected(object())  # type: ignore[arg-type]
    # nobody serves: the caller gives up after its timeout, and the request is not run
    ran: list[int] = []
    started = time.monotonic()
    with pytest.raises(ObdError, match=r"obd vin: no answer within 0.2 s"):
        queue.call(lambda c: ran.append(1), 0.2, "obd vin")
    assert 0.2 <= time.monotonic() - started < 2.0
    queue.serve(object())  # type: ignore[arg-type]
    assert ran == [] and queue.served == 0
    # one waits; the next is refused at once
    waiting: list[BaseException] = []
    first = threading.Thread(target=lambda: _catch(waiting, queue, 5.0), daemon=True)
    first.start()
    wait_until(lambda: queue._pending, 5.0)
    with pytest.raises(ObdError, match="busy: 1 requests already wait"):
        queue.call(lambda c: 1, 1.0)
    # the session ends: the waiting one fails with its reason
    queue.disconnected("the vehicle does not answer: UNABLE TO CONNECT")
    first.join(5)
    assert "obd dtc: the vehicle does not answer: UNABLE TO CONNECT" in str(waiting[0])


def _catch(into: list[BaseException], queue: RequestQueue, timeout: float) -> None:
    try:
        queue.call(lambda c: 1, timeout, "obd dtc")
    except ObdError as exc:
        into.append(exc)
