"""The whole daemon on a real bus: ``canplayer`` replays a log into vcan0 while
``bavard run`` decodes it; what the store holds after SIGTERM is what
``bavard decode`` makes of the same log. And ``ip link set vcan0 down`` then
``up`` under a running daemon is a gap, logged, not the daemon's end.

Decisions:

* **Timing**: canplayer replays at the log's own pace (no ``-t``): 2,000 frames
  over 5.7 s, bursts of several frames within a millisecond, as on the car. The
  daemon stamps frames with the kernel's receive time, not the log's, so the
  comparison leaves timestamps out. Nothing else is lost by that: without
  ``[[signals]]`` rules every decoded value is kept, and values depend only on
  the frames and their order, never on time.
* **What is compared**: for each (message, signal), the sequence of values, in
  order. The store may interleave messages differently from the log (it writes
  per chunk and per message), but within one signal the order is the bus's.
* **The selection** takes three messages of the demo vehicle, one of them with
  a 29-bit id; the kernel filter must let exactly those through (the receive
  list's match counters say how many frames the daemon's socket got), and the
  decode of the log with the same ``--signals`` globs gives the same samples.
  The daemon reads through a raw CAN_RAW socket (``reader = "raw"``), whose
  filters these lists show; what CAN_BCM stores instead is compared with it in
  test_vcan_readers.py.
* **Readiness**: the daemon is ready to read when its filters appear in
  ``/proc/net/can/rcvlist_fil``; all frames were handed on when the match
  counters reached the number of selected frames in the log and a second of
  quiet (the store commits at least every second) has passed.
* **Link down and up**: the daemon must outlive it, log the gap's start and
  end (warning, one gap), keep what came before and store what comes after.
  The bus is reopened on the source's backoff (0.1 s doubling), not when the
  link comes up: frames sent before the "back after a gap" line are lost, so
  the test waits for that line, then sends values it never sent before.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.frames import Event
from agent.store import Store, StoreConfig
from tests.conftest import ROOT
from tests.helpers.consent import grant_for
from tests.vcan.conftest import cansend, filter_lines, wait_until

pytestmark = pytest.mark.vcan

LOG = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
FRAMES = 2000  # lines of the sample drive replayed: 5.7 s of driving
SIGNALS = ("VehicleDynamics.*", "EngineData.*", "AmbientConditions.*")
SELECTED_IDS = {"0D0", "100", "18FEF521"}  # those three messages' ids, as in the log
LOG_INTERFACE = "can0"  # `head tests/data/sample_drive.log`: "(1767225600.000064) can0 0C0#..."

Values = dict[tuple[str, str], list[object]]


def log_slice(tmp_path: Path) -> tuple[Path, int]:
    """The first FRAMES lines of the sample drive, and how many of them are selected."""
    lines = LOG.read_text().splitlines(keepends=True)[:FRAMES]
    assert all(f" {LOG_INTERFACE} " in line for line in lines)
    path = tmp_path / "drive.log"
    path.write_text("".join(lines))
    selected = sum(1 for line in lines if line.split()[2].split("#")[0] in SELECTED_IDS)
    return path, selected


def expected_values(log: Path, tmp_path: Path) -> Values:
    out = tmp_path / "decoded.jsonl"
    args = [sys.executable, "-m", "agent", "decode", str(log), "--dbc", str(DBC),
            "--format", "jsonl", "--output", str(out)]
    for glob in SIGNALS:
        args += ["--signals", glob]
    subprocess.run(args, check=True, timeout=60, capture_output=True)
    values: Values = defaultdict(list)
    for line in out.read_text().splitlines():
        record = json.loads(line)
        # `decode` gives every signal; the service leaves counters and checksums out
        if not record["signal"].endswith(("_Counter", "_Checksum")):
            values[(record["message"], record["signal"])].append(record["value"])
    return dict(values)


def stored_values(state_dir: Path, events: list[Event] | None = None,
                  channel: str = "vehicle") -> Values:
    """The stored samples' values per signal, all of ``channel``; the service's events
    go to ``events``."""
    values: Values = defaultdict(list)
    with Store(StoreConfig(state_dir=state_dir)) as store:
        for _ in range(10_000):  # bounded: far more batches than the test makes
            batch = store.next_batch()
            if batch is None:
                break
            assert not batch.frames
            if events is not None:
                events.extend(batch.events)
            for sample in batch.samples:
                assert sample.channel == channel
                values[(sample.message, sample.signal)].append(sample.value)
            store.ack(batch.seq_first, batch.seq_last)
        else:
            pytest.fail("the store never ran out of batches")
    return dict(values)


def test_replayed_log_through_the_daemon_equals_the_decoded_log(vcan0: str,
                                                                 tmp_path: Path) -> None:
    log, selected = log_slice(tmp_path)
    expected = expected_values(log, tmp_path)
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    config.write_text(f"""
[[channels]]
name = "vehicle"
interface = "socketcan"
channel = "{vcan0}"
dbc = "{DBC}"
reader = "raw"  # the CAN_RAW filters are what this test watches (BCM: test_vcan_readers)

[selection]
include = {json.dumps(list(SIGNALS))}

[store]
state_dir = "{state}"
""")
    assert filter_lines() == [], "another CAN_RAW filter is on vcan0"
    with bavard_run(config) as (daemon, out):
        assert wait_until(lambda: len(filter_lines()) > 0 or daemon.poll() is not None, 60), \
            "the daemon never opened vcan0"
        assert daemon.poll() is None, "the daemon ended at start"
        # exact filters for the three messages, nothing else
        assert sorted((i, m) for i, m, _ in filter_lines()) == [
            (0x0D0, 0x800007FF), (0x100, 0x800007FF), (0x98FEF521, 0x9FFFFFFF)]
        subprocess.run(["canplayer", "-I", str(log), f"{vcan0}={LOG_INTERFACE}"], check=True,
                       timeout=60)
        matched = wait_until(lambda: sum(m for _, _, m in filter_lines()) >= selected, 10)
        # read, decoded and committed (at least every second): all of it, before the stop
        total = sum(map(len, expected.values()))
        wait_until(lambda: stored_count(state) >= total, 10)
        stop_seconds = stop(daemon)
    output = out.text()
    assert matched, "the daemon's socket did not get every selected frame"
    assert daemon.returncode == 0, output
    assert stop_seconds < 5.0, output
    stored = stored_values(state)
    assert sorted(stored) == sorted(expected)
    for key, values in expected.items():
        assert stored[key] == values, f"{key}: {len(stored[key])} stored, {len(values)} decoded"
    assert sum(map(len, expected.values())) > 1000  # the comparison had something to compare


class Output:
    """The daemon's merged stdout and stderr, read line by line in a thread."""

    def __init__(self, daemon: subprocess.Popen[str]) -> None:
        assert daemon.stdout is not None
        self._stream = daemon.stdout
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:  # ends when the daemon's end closes the pipe
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> bool:
        return wait_until(lambda: any(re.search(pattern, line) for line in self.lines), timeout)

    def so_far(self) -> str:
        return "".join(self.lines)

    def text(self) -> str:
        self._thread.join(5)  # the pipe closes when the daemon is gone
        return self.so_far()


@contextlib.contextmanager
def bavard_run(config: Path) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """``bavard run --config config``, its output read as it comes; killed at the end
    if it still runs (a failed assertion)."""
    grant_for(config)
    daemon = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(daemon)
    try:
        yield daemon, output
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)


def stop(daemon: subprocess.Popen[str]) -> float:
    """SIGTERM, then its exit (at most 15 s): how many seconds that took."""
    daemon.send_signal(signal.SIGTERM)
    started = time.monotonic()
    daemon.wait(timeout=15)
    return time.monotonic() - started


def speed_frame(kmh: float) -> str:
    """A VehicleDynamics frame (0x0D0) whose VehicleSpeed is ``kmh`` (0.01 km/h a bit)."""
    return "0D0#" + (struct.pack("<H", round(kmh * 100)) + bytes(6)).hex().upper()


BEFORE = (12.5, 13.0, 13.5)  # km/h sent before the link goes down
AFTER = (71.25, 72.5, 73.75)  # and after it is up again: values the test never sent before
DOWN_SECONDS = 1.5
STARTED = r"channel vehicle: socketcan:vcan0: read failed \(.*\): gap 1 started"


def speed_config(path: Path, iface: str, state: Path) -> Path:
    path.write_text(f"""
[[channels]]
name = "vehicle"
interface = "socketcan"
channel = "{iface}"
dbc = "{DBC}"
reader = "raw"  # the CAN_RAW filters say when the daemon reads

[selection]
include = ["VehicleDynamics.VehicleSpeed"]

[store]
state_dir = "{state}"
commit_interval = 0.2

[insights]
enabled = false  # the events counted here are the service's and the bus's
""")
    return path


BACK = r"channel vehicle: socketcan:vcan0: back after a gap of ([0-9.]+) s .*\(gap 1,"


def test_link_down_and_up_under_the_daemon_is_a_logged_gap_not_its_end(
        vcan0: str, link_control: Callable[[str], None], tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = speed_config(tmp_path / "bavard.toml", vcan0, state)
    assert filter_lines() == [], "another CAN_RAW filter is on vcan0"

    def matched() -> int:
        return sum(m for _, _, m in filter_lines())

    with bavard_run(config) as (daemon, output):
        assert wait_until(lambda: len(filter_lines()) > 0 or daemon.poll() is not None, 60), \
            "the daemon never opened vcan0"
        assert daemon.poll() is None, "the daemon ended at start"
        assert [(i, m) for i, m, _ in filter_lines()] == [(0x0D0, 0x800007FF)]
        cansend(*map(speed_frame, BEFORE))
        assert wait_until(lambda: matched() >= len(BEFORE), 5), "the frames before never came"
        # matched means queued on the daemon's socket, not read: wait until they are stored
        # (the socket is shut down when the gap starts, with whatever it still holds)
        assert wait_until(lambda: stored_count(state) >= len(BEFORE), 10), output.so_far()

        link_control("down")
        down_at = time.monotonic()
        assert output.wait_for(STARTED, 5), \
            f"no gap was logged after `ip link set down`:\n{output.so_far()}"
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        assert daemon.poll() is None, f"the daemon ended with the link down:\n{output.text()}"
        link_control("up")
        # the backoff (0.1 s doubling, capped at 5 s) decides when the bus is open again:
        # frames sent before that would be lost, so wait for the log to say so
        assert output.wait_for(BACK, 10), \
            f"the gap never ended after `ip link set up`:\n{output.so_far()}"
        assert [(i, m) for i, m, _ in filter_lines()] == [(0x0D0, 0x800007FF)], \
            "the reopened socket's filter is not the only one on vcan0"
        cansend(*map(speed_frame, AFTER))
        assert wait_until(lambda: matched() >= len(AFTER), 5), "the frames after never came"
        assert wait_until(lambda: stored_count(state) >= len(BEFORE) + len(AFTER), 10), \
            output.so_far()
        assert daemon.poll() is None, f"the daemon ended after the gap:\n{output.text()}"
        stop_seconds = stop(daemon)
    log = output.text()
    assert daemon.returncode == 0, log
    assert stop_seconds < 5.0, log
    assert len(re.findall(r"gap \d+ started", log)) == 1, log  # one gap, counted once
    back = re.search(BACK, log)
    assert back is not None, log
    assert DOWN_SECONDS - 0.5 < float(back.group(1)) < 10, log
    events: list[Event] = []
    stored = stored_values(state, events)
    kinds = [e.kind for e in sorted(events)]
    assert kinds == ["service.start", "bus.down", "bus.up", "service.stop"], events
    assert list(stored) == [("VehicleDynamics", "VehicleSpeed")], stored
    speeds = stored[("VehicleDynamics", "VehicleSpeed")]
    assert speeds == pytest.approx([*BEFORE, *AFTER]), speeds


def stored_count(state: Path) -> int:
    """Samples committed so far, read without writing to the daemon's buffer."""
    from agent.store import DB_NAME, read_stats_file

    try:
        return read_stats_file(state / DB_NAME, time.time()).classes["samples"].items
    except (KeyError, sqlite3.Error):
        return 0


@pytest.fixture
def vcan1(link_control: Callable[[str], None]) -> Iterator[str]:
    """The name of a vcan interface that does not exist yet: ``add()`` creates it."""
    subprocess.run(["ip", "link", "del", "dev", "vcan1"], capture_output=True, timeout=10)
    try:
        yield "vcan1"
    finally:
        subprocess.run(["ip", "link", "del", "dev", "vcan1"], capture_output=True, timeout=10)


ABSENT = r"channel vehicle: socketcan:vcan1: cannot open the bus .*: gap 1 started"
BACK1 = r"channel vehicle: socketcan:vcan1: back after a gap of ([0-9.]+) s .*\(gap 1,"


def test_a_bus_absent_at_start_is_a_bus_down_until_it_appears(vcan1: str,
                                                               tmp_path: Path) -> None:
    """An adapter not there when the service starts (unplugged, its driver still loading)
    is not a failed start: the service runs, says ``bus.down``, and reads the bus from the
    moment it appears (``bus.up``)."""
    state = tmp_path / "state"
    config = speed_config(tmp_path / "bavard.toml", vcan1, state)
    with bavard_run(config) as (daemon, output):
        assert output.wait_for(ABSENT, 60), f"no gap at start:\n{output.so_far()}"
        assert output.wait_for(r"running: vehicle", 10), output.so_far()
        assert daemon.poll() is None, f"the daemon ended at start:\n{output.text()}"
        subprocess.run(["ip", "link", "add", "dev", vcan1, "type", "vcan"], check=True,
                       timeout=10)
        subprocess.run(["ip", "link", "set", "dev", vcan1, "up"], check=True, timeout=10)
        assert output.wait_for(BACK1, 10), f"the bus was never opened:\n{output.so_far()}"
        for frame in map(speed_frame, AFTER):
            subprocess.run(["cansend", vcan1, frame], check=True, timeout=10)
        assert wait_until(lambda: stored_count(state) >= len(AFTER), 10), output.so_far()
        stop(daemon)
    log = output.text()
    assert daemon.returncode == 0, log
    events: list[Event] = []
    stored = stored_values(state, events)
    assert [e.kind for e in sorted(events)] == [
        "service.start", "bus.down", "bus.up", "service.stop"], events
    assert stored == {("VehicleDynamics", "VehicleSpeed"): pytest.approx(list(AFTER))}


class Sender:
    """Sends VehicleSpeed frames of 0.01, 0.02, ... km/h on a raw CAN socket, one every
    ``spacing`` seconds, in a thread, until stopped (bounded: at most ``limit``)."""

    def __init__(self, iface: str, spacing: float = 0.002, limit: int = 20_000) -> None:
        self.sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        self.sock.bind((iface,))
        self.spacing, self.limit = spacing, limit
        self.sent = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.sent < self.limit and not self.stop.wait(self.spacing):
            data = struct.pack("<H", self.sent + 1) + bytes(6)
            self.sock.send(struct.pack("=IB3x8s", 0x0D0, 8, data))
            self.sent += 1

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(5)
        self.sock.close()


def test_a_reload_on_a_live_bus_loses_and_repeats_nothing(vcan0: str, tmp_path: Path) -> None:
    """SIGHUP while frames stream in: the new pipeline's socket is open before the old
    one closes, and it skips what the old one read, so every frame is stored once.
    (Before, the old socket closed first: the frames of the whole swap were lost.)
    In a slow guest (QEMU without KVM) the old reader may fall behind while the reload
    compiles and its socket drop a few frames: the new socket has them."""
    state = tmp_path / "state"
    config = speed_config(tmp_path / "bavard.toml", vcan0, state)
    assert filter_lines() == [], "another CAN_RAW filter is on vcan0"
    with bavard_run(config) as (daemon, output):
        assert wait_until(lambda: len(filter_lines()) > 0 or daemon.poll() is not None, 60), \
            "the daemon never opened vcan0"
        assert output.wait_for(r"running: vehicle", 10), output.so_far()
        with Sender(vcan0) as sender:
            assert wait_until(lambda: sender.sent >= 100, 10)
            daemon.send_signal(signal.SIGHUP)
            assert output.wait_for(r"reloaded", 30), output.so_far()
            reloaded_at = sender.sent
            assert wait_until(lambda: sender.sent >= reloaded_at + 100, 10)
        sent = sender.sent
        wait_until(lambda: stored_count(state) >= sent, 10)
        stop(daemon)
    log = output.text()
    assert daemon.returncode == 0, log
    stored = stored_values(state)
    speeds = [round(v * 100) for v in stored[("VehicleDynamics", "VehicleSpeed")]]
    missing = sorted(set(range(1, sent + 1)) - set(speeds))
    # in order but for frames the old socket dropped (its reader starved by the reload's
    # work): the new one has them, and they come after the old one's last frames
    assert sorted(speeds) == list(range(1, sent + 1)), (
        f"{len(speeds)} stored of {sent} sent (reloaded by {reloaded_at}); "
        f"missing {missing}, twice {sorted(v for v in set(speeds) if speeds.count(v) > 1)}"
        f"\n{log}")
