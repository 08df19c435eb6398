"""End to end through faults: a replayed drive -> the agent (the real service) -> a receiver.

After each fault, every sample the pipeline produced from the drive is at the
receiver exactly once, and the agent's counters agree with the receiver's:

* HTTP: the receiver answering 500, 429 with Retry-After, hanging past the
  timeout, closing the connection mid-body and before answering, and taking a
  batch but losing its answer (the agent sends it again; the receiver drops it);
* MQTT: the Mosquitto broker stopped and restarted mid-stream;
* the link: the agent in a network namespace of the test's own, the receiver
  (HTTPS) in another, the veth between them going down and up twice while data
  flows, the agent reading the real kernel state; and a metered link that
  carries events only, then an unmetered one that carries the rest.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker
from helpers.certs import make_certs
from helpers.consent import grant_for
from helpers.http_peer import (
    CLOSE_BEFORE_RESPONSE,
    CLOSE_MID_BODY,
    HANG,
    LOSE_ANSWER,
    HttpPeer,
    Reply,
    Request,
)
from helpers.netns import Net

from agent.config import load_config
from agent.frames import Event, Sample
from agent.pipeline import Pipeline
from agent.receiver.core import Receiver
from agent.receiver.database import ReceiverDb
from agent.receiver.mqtt_subscriber import subscribe
from agent.service.daemon import Daemon
from agent.service.notify import Notifier
from agent.store.buffer import Store
from agent.store.settings import StoreConfig
from agent.upload.uploader import UploadStats

ROOT = Path(__file__).resolve().parents[1]
DRIVE_FRAMES = 5000  # the first 14 s of the shipped sample drive
WAIT = 60.0

RULES = """
[selection]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*Speed*"
on_change = true
deadband = 0.5

[[signals]]
match = "*"
on_change = true

[insights]
enabled = false  # the events counted here are the service's own
"""


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drive") / "drive.log"
    with (ROOT / "tests/data/sample_drive.log").open() as log:
        path.write_text("".join(next(log) for _ in range(DRIVE_FRAMES)))
    return path


def write_config(tmp: Path, drive: Path, upload: str, speed: float = 0.0) -> Path:
    path = tmp / "bavard.toml"
    path.write_text(f'[[channels]]\nname = "vehicle"\nlog = "{drive}"\n'
                    f'dbc = "{ROOT / "dbc/demo_vehicle.dbc"}"\nspeed = {speed}\n' + RULES
                    + f'\n[store]\nstate_dir = "{tmp / "state"}"\ncommit_interval = 0.2\n'
                    + "chunk_items = 500\n"  # small chunks: a replay at full speed still
                    # makes several batches, so that each fault meets one
                    + f"\n[upload]\n{upload}\nbatch_seconds = 2.0\nlinger = 0.0\n"
                      "retry_initial = 0.05\nretry_max = 0.5\ntimeout = 1.0\n")
    (tmp / "state").mkdir(exist_ok=True)
    return path


def expected_samples(config: Path) -> list[Sample]:
    """What the pipeline keeps of the drive: what the receiver must get, once each."""
    kept: list[Sample] = []
    Pipeline.from_config(load_config(config)).run(kept.extend, threading.Event())
    assert len(kept) > 5_000
    return kept


def key(s: Sample) -> tuple[Any, ...]:
    return (s.timestamp, s.channel, s.message, s.signal, repr(s.value), type(s.value),
            s.unit, s.label, s.flags)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


class Agent:
    """The daemon in this process (the fault is on the receiver's side)."""

    def __init__(self, config: Path) -> None:
        grant_for(config)
        self.daemon = Daemon(config, notifier=Notifier({}))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.stats: UploadStats | None = None

    def __enter__(self) -> Agent:
        self.thread.start()
        wait_until(lambda: self.daemon.uploader is not None, "the uploader started")
        return self

    def drained(self) -> bool:
        store = self.daemon.store
        return store is not None and not any(c.items for c in store.stats().classes.values())

    def __exit__(self, *exc: object) -> None:
        if self.daemon.uploader is not None:
            self.stats = self.daemon.uploader.stats
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def check_exactly_once(db: ReceiverDb, expected: list[Sample], stats: UploadStats,
                       duplicates: int) -> None:
    got = db.samples()
    assert Counter(map(key, got)) == Counter(map(key, expected))
    counters = db.counters()["total"]
    assert counters["stored"] == stats.batches == len(db.batches())
    assert counters["duplicates"] == duplicates
    assert counters["invalid"] == 0
    events = db.events()  # the service's own: its start (its stop stays buffered)
    assert [e.kind for e in events] == ["service.start"]
    assert stats.items == len(expected) + len(events) and stats.refused == 0


def answer(receiver: Receiver) -> Callable[[Request], tuple[int, bytes]]:
    """A real receiver behind the misbehaving front."""
    def forward(request: Request) -> tuple[int, bytes]:
        outcome = receiver.accept(request.body, request.headers.get("Idempotency-Key"), "http")
        status = {"stored": 201, "duplicate": 200}.get(outcome.status, 400)
        return status, json.dumps(outcome.to_dict()).encode()
    return forward


def test_http_receiver_faults(tmp_path: Path, drive: Path) -> None:
    receiver = Receiver.open(tmp_path / "received")
    with HttpPeer(upstream=answer(receiver)) as front:
        config = write_config(tmp_path, drive, f'url = "{front.url}"')
        expected = expected_samples(config)
        front.script(Reply(500), Reply(429, retry_after="1"), Reply(action=HANG, hang=3.0),
                     Reply(forward=True), Reply(action=CLOSE_MID_BODY),
                     Reply(action=LOSE_ANSWER), Reply(action=CLOSE_BEFORE_RESPONSE),
                     Reply(503))
        with Agent(config) as agent:
            wait_until(lambda: agent.drained() and len(receiver.db.samples()) >= len(expected),
                       "every sample at the receiver")
    receiver.close()
    assert agent.stats is not None and agent.stats.transient == 7
    with ReceiverDb(tmp_path / "received", readonly=True) as db:
        check_exactly_once(db, expected, agent.stats, duplicates=1)


def test_mqtt_broker_restarted_mid_stream(tmp_path: Path, drive: Path, broker: Broker) -> None:
    receiver = Receiver.open(tmp_path / "received")
    sub = subscribe(receiver, broker.url, client_id="e2e-receiver")
    try:
        assert sub.wait_subscribed(10)
        config = write_config(tmp_path, drive, f'url = "{broker.url}"', speed=3.0)
        expected = expected_samples(config)
        with Agent(config) as agent:
            wait_until(lambda: len(receiver.db.batches()) >= 2, "the first batches")
            broker.restart(signal.SIGTERM)
            wait_until(lambda: len(receiver.db.batches()) >= 4, "batches after the restart")
            broker.restart(signal.SIGKILL)  # mosquitto saved its state after every change
            wait_until(lambda: agent.drained() and len(receiver.db.samples()) >= len(expected),
                       "every sample at the receiver")
            time.sleep(0.5)  # a repeat still on its way would be counted now
    finally:
        sub.close()
        receiver.close()
    assert agent.stats is not None
    with ReceiverDb(tmp_path / "received", readonly=True) as db:
        dups = db.counters()["total"]["duplicates"]  # repeats of batches whose PUBACK was lost
        check_exactly_once(db, expected, agent.stats, duplicates=dups)


def test_mqtt_broker_crash_with_the_receiver_back_after_the_agent(
        tmp_path: Path, drive: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A broker without persistence SIGKILLed mid-stream forgets the receiver's session; the
    agent is back first and hears PUBACK 0x10 (no matching subscribers) until the receiver
    has subscribed again. Every sample arrives, none is stored twice."""
    broker = Broker(tmp_path / "mosquitto", persistence=False).start()
    receiver = Receiver.open(tmp_path / "received")
    sub = subscribe(receiver, broker.url, client_id="e2e-receiver")
    try:
        assert sub.wait_subscribed(10)
        config = write_config(tmp_path, drive, f'url = "{broker.url}"', speed=3.0)
        expected = expected_samples(config)
        with caplog.at_level(logging.WARNING, "agent.upload"), Agent(config) as agent:
            wait_until(lambda: len(receiver.db.batches()) >= 2, "the first batches")
            broker.stop(signal.SIGKILL)
            sub.close()  # before its own reconnect (1 s on): the receiver comes back later
            broker.start()
            wait_until(lambda: "No matching subscribers (0x10)" in caplog.text,
                       "the agent was told that nobody subscribes", timeout=20)
            sub = subscribe(receiver, broker.url, client_id="e2e-receiver")
            wait_until(lambda: agent.drained() and len(receiver.db.samples()) >= len(expected),
                       "every sample at the receiver")
            time.sleep(0.5)  # a repeat still on its way would be counted now
    finally:
        sub.close()
        receiver.close()
        broker.stop()
    assert agent.stats is not None and agent.stats.transient < 200
    with ReceiverDb(tmp_path / "received", readonly=True) as db:
        dups = db.counters()["total"]["duplicates"]  # a PUBACK lost in the crash
        check_exactly_once(db, expected, agent.stats, duplicates=dups)


# ----------------------------------------------------------------- links, in namespaces

A_ADDR, B_ADDR = "10.213.0.1", "10.213.0.2"
M_ADDR, MB_ADDR = "10.213.1.1", "10.213.1.2"


@pytest.fixture
def far_receiver(net: Net, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``bavard receive`` over HTTPS in namespace B, on a certificate for its address."""
    certs = make_certs(tmp_path / "certs", hosts=(B_ADDR,))
    net.ip(net.b, "addr", "add", f"{B_ADDR}/32", "dev", "lo")  # reachable over either link
    directory = tmp_path / "received"
    proc = subprocess.Popen(["ip", "netns", "exec", net.b, sys.executable, "-m", "agent",
                             "receive", "--listen", "0.0.0.0:8443", "--cert",
                             str(certs.server_cert), "--key", str(certs.server_key),
                             "--allow-anonymous", "--dir", str(directory)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "receiving on" in proc.stdout.readline()
        yield f'url = "https://{B_ADDR}:8443/v1/batches"\nca_file = "{certs.ca_file}"', directory
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def run_agent_in(net: Net, config: Path, log: Path) -> subprocess.Popen[bytes]:
    grant_for(config)
    return subprocess.Popen(["ip", "netns", "exec", net.a, sys.executable, "-m", "agent",
                             "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def buffer(state: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "agent", "buffer", "--state-dir", str(state),
                          "--json"], capture_output=True, check=True, cwd=ROOT, timeout=30)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def received(directory: Path) -> int:
    if not (directory / "receiver.sqlite").exists():
        return 0
    with ReceiverDb(directory, readonly=True) as db:
        return len(db.samples())


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_link_flapping(net: Net, far_receiver: tuple[str, Path], tmp_path: Path,
                       drive: Path) -> None:
    upload, directory = far_receiver
    net.veth("eth0", "p0", f"{A_ADDR}/24", f"{B_ADDR}/24")
    config = write_config(tmp_path, drive, upload, speed=2.0)
    expected = expected_samples(config)
    agent = run_agent_in(net, config, tmp_path / "agent.log")
    try:
        for _ in range(2):
            before = received(directory)
            wait_until(lambda b=before: received(directory) > b, "an upload over the link")
            net.ip(net.a, "link", "set", "eth0", "down")
            time.sleep(1.5)  # the agent waits on netlink, buffering
            assert received(directory) - before < len(expected)
            net.ip(net.a, "link", "set", "eth0", "up")
        wait_until(lambda: received(directory) >= len(expected), "every sample after the flaps")
        state = buffer(tmp_path / "state")
    finally:
        stop(agent)
    log = (tmp_path / "agent.log").read_text()
    assert "no link" in log, log
    with ReceiverDb(directory, readonly=True) as db:
        assert Counter(map(key, db.samples())) == Counter(map(key, expected))
        counters = db.counters()["total"]
        assert counters["stored"] == len(db.batches()) and counters["invalid"] == 0
    assert state["classes"]["samples"]["acked"] == len(expected)
    assert state["classes"]["samples"]["items"] == 0


def test_metered_link_carries_events_only(net: Net, far_receiver: tuple[str, Path],
                                          tmp_path: Path, drive: Path) -> None:
    upload, directory = far_receiver
    net.veth("wwan0", "p1", f"{M_ADDR}/24", f"{MB_ADDR}/24")
    net.ip(net.a, "route", "add", "default", "via", MB_ADDR)  # cellular: the default route
    config = write_config(tmp_path, drive, upload)
    expected = expected_samples(config)
    events = [Event(1_767_225_600.0 + i, "vehicle", "dtc", f"P030{i}", 2) for i in range(3)]
    with Store(StoreConfig(state_dir=tmp_path / "state")) as store:
        store.put_events(events)  # waiting from an earlier trip
    agent = run_agent_in(net, config, tmp_path / "agent.log")
    try:
        # the three DTCs and the service's start
        wait_until(lambda: buffer(tmp_path / "state")["classes"]["events"]["acked"] == 4,
                   "the events over the metered link")
        time.sleep(2.0)
        assert received(directory) == 0  # samples wait for an unmetered link
        net.veth("eth0", "p0", f"{A_ADDR}/24", f"{B_ADDR}/24")  # Wi-Fi: the receiver's LAN
        wait_until(lambda: received(directory) >= len(expected), "the samples over eth0")
    finally:
        stop(agent)
    with ReceiverDb(directory, readonly=True) as db:
        assert sorted(e.detail for e in db.events() if e.kind == "dtc") == [
            "P0300", "P0301", "P0302"]
        assert Counter(map(key, db.samples())) == Counter(map(key, expected))
    budget = json.loads((tmp_path / "state/metered-budget.json").read_text())
    assert 0 < budget["day_bytes"] < 20_000  # the events only, not the samples
