"""``bavard run`` with an ELM327 channel (elm327-emulator on a pty) to a receiver on
loopback: PIDs, trouble-code events, the pseudonym of the VIN read from the car, and
the emulator killed and restarted under the running service."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.consent import grant_for
from helpers.elm_emulator import ElmEmulator, elm_emulator  # noqa: F401 - a fixture

from agent.batch.ids import pseudonymous_vehicle_id
from agent.receiver.core import Receiver
from agent.receiver.http_server import serve

ROOT = Path(__file__).resolve().parents[1]
VIN = "0FTFW1ETXDFC10311"  # begins with 0, ends with 1: python-obd would strip both

ELM_CHANNEL = """
[[channels]]
name = "elm"
obd = true
port = "{port}"
protocol = "6"
pids = {{ENGINE_RPM = 0.2, VEHICLE_SPEED = 0.2, FUEL_LEVEL = 1.0}}
dtc_interval = 1
"""
# the buffer and the upload to the receiver, after the channels
STORE_UPLOAD = """
[store]
state_dir = "{state}"
commit_interval = 0.2

[upload]
url = "{url}"
batch_seconds = 5.0
linger = 0.5
require_link = false
retry_initial = 0.2
retry_max = 1.0
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    got = Receiver.open(tmp_path / "received")
    server = serve(got, "127.0.0.1", 0)
    try:
        yield server.url, tmp_path / "received" / "receiver.sqlite"
    finally:
        server.close()
        got.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def wait_until(what: Callable[[], object], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("timed out; the service said:\n" + log.read_text()[-4000:])
        time.sleep(0.1)


def test_run_with_an_elm327_channel(tmp_path: Path, elm_emulator: ElmEmulator,  # noqa: F811
                                    receiver: tuple[str, Path]) -> None:
    url, db = receiver
    elm_emulator.set_vin(VIN)
    elm_emulator.set_dtcs(stored=["0143"], count_byte=True)
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    config.write_text(ELM_CHANNEL.format(port=elm_emulator.link)
                      + STORE_UPLOAD.format(state=state, url=url))
    log = tmp_path / "log"
    grant_for(config)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "-v", "run", "--config",
                             str(config)], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
                            cwd=ROOT)
    try:
        def samples(signal_name: str) -> int:
            rows = query(db, "select count(*) from sample where channel = 'elm' and "
                             f"message = 'OBD' and signal = '{signal_name}'")
            return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

        def events(kind: str) -> list[str]:
            return [str(r[0]) for r in query(db, f"select detail from event where kind = "
                                                 f"'{kind}' order by ts")]

        wait_until(lambda: samples("ENGINE_RPM") >= 5 and events("dtc.set"), log)
        assert events("dtc.set")[0].startswith("P0143 stored (ECU 7E8)")
        secret = (state / "vehicle-id.secret").read_bytes()
        vehicles = {r[0] for r in query(db, "select vehicle from batch")}
        assert vehicles == {pseudonymous_vehicle_id(VIN, secret)}  # from the first batch on
        assert (state / "vehicle.vin").read_text() == VIN
        assert (state / "vehicle.vin").stat().st_mode & 0o077 == 0
        assert VIN not in db.read_bytes().decode("latin-1")  # the VIN stays on the box

        # the adapter vanishes and comes back: a gap, then the same channel again
        elm_emulator.kill()
        wait_until(lambda: events("bus.down"), log)
        before = samples("ENGINE_RPM")
        elm_emulator.start()
        wait_until(lambda: events("bus.up") and samples("ENGINE_RPM") > before + 3, log)
        assert proc.poll() is None

        elm_emulator.set_dtcs(stored=[], count_byte=True)
        wait_until(lambda: events("dtc.cleared"), log)
        assert events("dtc.cleared")[0].startswith("P0143 stored (ECU 7E8)")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "Traceback" not in text
    assert "adapter fault" in text and "the vehicle answers again" in text


def test_uploads_wait_for_the_vin_at_most_a_minute(tmp_path: Path,
                                                   receiver: tuple[str, Path]) -> None:
    """An OBD adapter that never answers: the batches wait VIN_WAIT for its VIN, then go
    out under the pseudonym of an unknown VIN (the daemon in this process, its monotonic
    clock moved instead of waiting a minute)."""
    import threading

    from helpers.clock import Monotonic

    from agent.service.daemon import VIN_WAIT, Daemon
    from agent.service.identity import UNKNOWN_VIN

    url, db = receiver
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    config.write_text(f"""
[[channels]]
name = "vehicle"
simulate = true
speed = 5

[[channels]]
name = "obd"
obd = true
port = "{tmp_path / 'no-adapter'}"
""" + STORE_UPLOAD.format(state=state, url=url))
    clock = Monotonic()
    grant_for(config)
    daemon = Daemon(config, monotonic=clock)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.store is None or daemon.pipeline is None or not daemon.pipeline.frames_in:
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)
        time.sleep(3.0)  # samples are buffered meanwhile; nothing goes out
        assert daemon.uploader is None and query(db, "select * from batch") == []
        clock.advance(VIN_WAIT + 1)
        while not query(db, "select vehicle from batch"):
            assert time.monotonic() < deadline + 20, "no upload after the wait"
            time.sleep(0.1)
    finally:
        daemon.request_stop()
        runner.join(timeout=10)
    secret = (state / "vehicle-id.secret").read_bytes()
    assert {r[0] for r in query(db, "select vehicle from batch")} == {
        pseudonymous_vehicle_id(UNKNOWN_VIN, secret)}
    assert not (state / "vehicle.vin").exists()
