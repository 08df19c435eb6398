"""The owner in control, end to end: the real service (in this process, its control
socket used by the real ``bavard consent`` and ``bavard privacy`` commands), the
simulated vehicle, two destinations of different purposes, each to its own reference
receiver (the garage over HTTP, the insurer over MQTT through a real Mosquitto).

* nothing is stored, nothing leaves, without consent;
* each destination receives only what its purpose may, under its own pseudonym;
* a revoke purges what was pending at once, and nothing of it leaves afterwards;
* ``bavard privacy report`` accounts for every byte each receiver got.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker
from helpers.consent import grant

from agent.config import load_config
from agent.geo.distance import haversine_m
from agent.geo.geohash import coarsen
from agent.pipeline import Pipeline
from agent.privacy.consent import ConsentBook
from agent.privacy.purposes import BUILTIN
from agent.receiver.core import Receiver
from agent.receiver.database import ReceiverDb
from agent.receiver.http_server import HttpReceiver, serve
from agent.receiver.mqtt_subscriber import subscribe
from agent.service.daemon import Daemon
from agent.service.notify import Notifier

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0
SELECTED = ("VehicleDynamics.*", "IgnitionStatus.*", "Odometer.*", "BatteryStatus.*",
            "EngineTemps.*", "GnssPosition.*", "Brake.*")
START = "2026-12-05T23:10:00+01:00"  # the drive cycle at night, Paris time
UPLOAD = ("batch_seconds = 5.0\nlinger = 0.0\nretry_initial = 0.05\nretry_max = 0.3\n"
          "timeout = 2.0\nrequire_link = false\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def write_config(tmp: Path, garage_url: str, insurer_url: str, extra: str = "") -> Path:
    path = tmp / "bavard.toml"
    path.write_text(
        '[[channels]]\nname = "vehicle"\nsimulate = true\nspeed = 0\n'
        f'start = "{START}"\n'
        # what the insights read and the positions; the rest would only make the test slower
        f'[selection]\ninclude = {json.dumps(list(SELECTED))}\n'
        'exclude = ["*Counter*", "*Checksum*"]\n'
        f'[store]\nstate_dir = "{tmp / "state"}"\ncommit_interval = 0.2\n'
        f'[upload]\nurl = "{garage_url}"\npurpose = "maintenance"\n{UPLOAD}'
        f'[destinations.insurer]\nurl = "{insurer_url}"\npurpose = "insurance"\n{UPLOAD}'
        f'[control]\nsocket = "{tmp / "control"}"\ngroup = ""\n'
        '[purposes.insurance]\ngeohash = 5\n'
        '[insights]\nlast_service_km = 33700\ntimezone = "Europe/Paris"\n' + extra)
    return path


class Service:
    """The daemon in this process, and the owner's commands against its socket."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.daemon = Daemon(config, notifier=Notifier({}))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        wait_until(lambda: self.daemon.control is not None and len(self.daemon.uploaders) == 2,
                   "the service runs")
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def cli(self, *args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "agent", *args, "--config",
                              str(self.config), "--socket", str(self.config.parent / "control"),
                              "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def sources_ended(self) -> bool:
        pipeline = self.daemon.pipeline
        return pipeline is not None and all(ch.ended for ch in pipeline.channels)

    def drained(self, name: str) -> bool:
        store = self.daemon.stores[name]
        return not any(c.items for c in store.stats().classes.values())


@contextmanager
def receivers(tmp: Path, broker: Broker, garage_port: int = 0
              ) -> Iterator[tuple[Receiver, HttpReceiver, Receiver]]:
    garage = Receiver.open(tmp / "garage")
    insurer = Receiver.open(tmp / "insurer")
    server = serve(garage, "127.0.0.1", garage_port)
    sub = subscribe(insurer, broker.url, client_id="insurer")
    try:
        yield garage, server, insurer
    finally:
        sub.close()
        server.close()
        garage.close()
        insurer.close()


def received(directory: Path) -> dict[str, Any]:
    with ReceiverDb(directory, readonly=True) as db:
        batches = db.batches()
        return {"batches": batches, "bytes": sum(b.bytes for b in batches),
                "vehicles": {b.vehicle for b in batches}, "samples": db.samples(),
                "events": db.events(), "frames": db.frames()}


def check_positions(config: Path, uploaded: list[Any], precision: int,
                    zone_min_m: float) -> None:
    """Every uploaded position is the geohash cell centre of where the vehicle was at
    that moment, and farther than the smallest zone radius from both ends of the trip
    (where it parked before and after: the simulator's first and last positions)."""
    truth: dict[float, dict[str, float]] = {}
    Pipeline.from_config(load_config(config)).run(
        lambda chunk: [truth.setdefault(s.timestamp, {}).__setitem__(s.signal, s.value)
                       for s in chunk if s.message == "GnssPosition"], threading.Event())
    track = [(p["Latitude"], p["Longitude"]) for _, p in sorted(truth.items())]
    start, end = track[0], track[-1]
    pairs: dict[float, dict[str, float]] = {}
    for s in uploaded:
        pairs.setdefault(s.timestamp, {})[s.signal] = s.value
    assert pairs, "no position reached the insurer"
    for ts, pair in pairs.items():
        lat, lon = truth[ts]["Latitude"], truth[ts]["Longitude"]
        assert (pair["Latitude"], pair["Longitude"]) == pytest.approx(
            coarsen(lat, lon, precision), abs=1e-9)
        assert haversine_m(lat, lon, *start) > zone_min_m
        assert haversine_m(lat, lon, *end) > zone_min_m


def test_nothing_is_stored_or_sent_without_consent(tmp_path: Path, broker: Broker) -> None:
    with receivers(tmp_path, broker) as (_, server, _):
        config = write_config(tmp_path, server.url, broker.url)
        with Service(config) as service:
            wait_until(service.sources_ended, "the drive cycle played")
            time.sleep(1.0)  # a commit interval and an upload round, had anything been stored
            routed = {o["destination"]: o for o in service.daemon.router.status()}
            assert routed["main"]["withheld"]["samples"] > 1000
            assert routed["main"]["stored"] == {"samples": 0, "events": 0, "frames": 0,
                                                "positions": 0}
            assert routed["insurer"]["stored"]["events"] == 0
            assert service.drained("main") and service.drained("insurer")
            shown = service.cli("consent", "show")
            assert not any(p["granted"] for p in shown["purposes"])
    for name in ("garage", "insurer"):
        assert received(tmp_path / name)["batches"] == []


def test_each_destination_gets_its_purpose_under_its_own_pseudonym(
        tmp_path: Path, broker: Broker) -> None:
    with receivers(tmp_path, broker) as (_, server, _):
        config = write_config(tmp_path, server.url, broker.url)
        grant(tmp_path / "state", "maintenance", "insurance")  # before the first sample
        with Service(config) as service:
            wait_until(service.sources_ended, "the drive cycle played")
            wait_until(lambda: service.drained("main") and service.drained("insurer"),
                       "both buffers drained")
            report = service.cli("privacy", "report")
        garage, insurer = received(tmp_path / "garage"), received(tmp_path / "insurer")
    maintenance, insurance = BUILTIN["maintenance"], BUILTIN["insurance"]
    assert garage["samples"] and garage["events"]
    assert not any(s.signal.lower() in ("latitude", "longitude") for s in garage["samples"])
    assert all(maintenance.event_allowed(e.kind) for e in garage["events"])
    assert {e.kind for e in garage["events"]} == {
        "trip.start", "trip.end", "maintenance.service_due", "maintenance.battery",
        "maintenance.coolant"}
    assert {e.kind for e in insurer["events"]} == {
        "trip.start", "trip.end", "driving.harsh_acceleration", "driving.harsh_braking",
        "driving.speeding", "driving.night"}
    assert all(insurance.event_allowed(e.kind) for e in insurer["events"])
    # the insurer: no signal but positions, coarse, none near either end of the trip
    assert {s.signal for s in insurer["samples"]} == {"Latitude", "Longitude"}
    check_positions(config, insurer["samples"], precision=5, zone_min_m=200.0)
    # two pseudonyms that cannot be joined
    assert len(garage["vehicles"]) == 1 and len(insurer["vehicles"]) <= 1
    assert not garage["vehicles"] & insurer["vehicles"]
    # the report accounts for every byte each receiver got
    by_dest = {d["destination"]: d for p in report["purposes"] for d in p["destinations"]}
    assert by_dest["main"]["bytes"] == garage["bytes"] > 0
    assert by_dest["main"]["batches"] == len(garage["batches"])
    assert by_dest.get("insurer", {"bytes": 0})["bytes"] == insurer["bytes"]
    signals = by_dest["main"]["signals"]
    assert sum(signals.values()) == len(garage["samples"])


def test_a_revoke_purges_at_once_and_nothing_of_it_leaves_afterwards(
        tmp_path: Path, broker: Broker) -> None:
    port = free_port()  # the garage's receiver is not there yet: its buffer fills
    config = write_config(tmp_path, f"http://127.0.0.1:{port}/batches", broker.url)
    grant(tmp_path / "state", "maintenance", "insurance")
    with Service(config) as service:
        wait_until(service.sources_ended, "the drive cycle played")
        wait_until(lambda: not service.drained("main"), "the garage's buffer holds data")
        time.sleep(0.5)  # the last commit
        held = sum(c.items for c in service.daemon.stores["main"].stats().classes.values())
        revoked = service.cli("consent", "revoke", "maintenance")
        assert revoked["purged"]["main"]["items"] == held > 1000
        assert service.drained("main")
        with receivers(tmp_path, broker, port) as _:
            service.daemon.uploaders["main"].upload_now()
            time.sleep(3.0)  # rounds of the garage's uploader, had anything been left
            service.daemon.event("test.after", "an event after the revoke")
            time.sleep(1.0)
            report = service.cli("privacy", "report")
        assert service.drained("main")
    assert received(tmp_path / "garage")["batches"] == []
    maintenance = next(p for p in report["purposes"] if p["purpose"] == "maintenance")
    assert maintenance["bytes"] == 0 and maintenance["purged_items"] == held
    assert [h["action"] for h in report["consent_history"]
            if h["purpose"] == "maintenance"] == ["grant", "revoke"]


def test_a_rotated_key_gives_a_new_pseudonym(tmp_path: Path, broker: Broker) -> None:
    with receivers(tmp_path, broker) as (_, server, _):
        config = write_config(tmp_path, server.url, broker.url)
        grant(tmp_path / "state", "maintenance")
        with Service(config) as service:
            before = service.daemon.uploaders["main"].identity.vehicle_id
            insurer_before = service.daemon.uploaders["insurer"].identity.vehicle_id
            granted = service.cli("consent", "grant", "insurance", "--until", "2099-12-31")
            assert granted["purpose"] == "insurance" and granted["granted"]
            shown = {p["purpose"]: p for p in service.cli("consent", "show")["purposes"]}
            assert shown["insurance"]["granted"] and not shown["fleet"]["granted"]
            assert service.daemon.consent is not None
            assert service.daemon.consent.grants()["insurance"]["uid"] == os.getuid()
            rotated = service.cli("privacy", "rotate-key", "insurer")
            assert rotated["destination"] == "insurer"
            after = service.daemon.uploaders["insurer"].identity.vehicle_id
            assert after != insurer_before
            assert service.daemon.uploaders["main"].identity.vehicle_id == before
            wait_until(lambda: received(tmp_path / "garage")["batches"], "a batch arrived")
        assert received(tmp_path / "garage")["vehicles"] == {before}


@pytest.mark.parametrize("purpose", ["diagnostics", "nobody"])
def test_a_destination_with_a_purpose_it_cannot_have_is_refused(tmp_path: Path,
                                                                purpose: str) -> None:
    from agent.config import parse_config
    from agent.errors import ConfigError

    text = ('[[channels]]\nname = "v"\nsimulate = true\n'
            f'[destinations.x]\nurl = "http://127.0.0.1:1/b"\npurpose = "{purpose}"\n')
    with pytest.raises(ConfigError, match=r"destinations\.x\.purpose: "):
        parse_config(text, tmp_path)


def test_a_grant_that_ends_is_purged_like_a_revoke(tmp_path: Path, broker: Broker) -> None:
    port = free_port()  # nothing leaves: the garage's buffer fills until the grant ends
    config = write_config(tmp_path, f"http://127.0.0.1:{port}/batches", broker.url)
    state = grant(tmp_path / "state", "insurance")
    ConsentBook(state).grant("maintenance", time.time() + 4.0, os.getuid())
    with Service(config) as service:
        wait_until(lambda: not service.drained("main"), "the garage's buffer holds data")
        wait_until(lambda: service.daemon.consent is not None
                   and not service.daemon.consent.granted("maintenance"), "the grant ended")
        wait_until(lambda: service.drained("main"), "the monitor purged it", timeout=15)
        report = service.cli("privacy", "report")
    maintenance = next(p for p in report["purposes"] if p["purpose"] == "maintenance")
    assert maintenance["purged_items"] > 0 and maintenance["bytes"] == 0
