"""Regressions found in review of the uploader, the data budget, the daemon's upload side
and the vehicle identity: each test failed before its fix.

Real components throughout: the real Store in a tmp dir, the real HttpTransport against
HttpPeer, the real kernel's netlink (in network namespaces of the test's own for a
metered link), real threads; clocks, sleeps and the jitter are injected where the
Uploader allows it, and every wait is bounded.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers.consent import grant_for
from helpers.http_peer import HttpPeer, Reply, Request
from helpers.netns import Net
from helpers.notify_socket import NotifySocket

import agent.store.buffer as buffer_module
from agent.config import load_config
from agent.frames import Event, Sample
from agent.service.daemon import Daemon
from agent.service.identity import SECRET_NAME, id_secret
from agent.service.notify import Notifier
from agent.store.buffer import Store
from agent.store.settings import StoreConfig
from agent.store.writer import CommitInfo
from agent.upload.budget import OVERHEAD, DataBudget
from agent.upload.connectivity import Connectivity, ConnectivityError, InterfaceRules, Status
from agent.upload.http import HttpTransport
from agent.upload.settings import UploadConfig
from agent.upload.uploader import Identity, Uploader

VEHICLE = "0123456789abcdef0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600.0


def samples(n: int, t0: float = T0) -> list[Sample]:
    return [Sample(t0 + i * 0.01, "vehicle", "Engine", "Rpm", 800 + i, "rpm", None, 0)
            for i in range(n)]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


class Running:
    """An uploader's loop in a thread of its own, stopped (bounded) at exit."""

    def __init__(self, uploader: Uploader, before: Callable[[], None] = lambda: None) -> None:
        self.uploader = uploader
        self.stop = threading.Event()
        self.error: list[BaseException] = []

        def main() -> None:
            before()
            try:
                uploader.run(self.stop)
            except BaseException as exc:  # what ends the thread is the bug
                self.error.append(exc)
                raise

        self.thread = threading.Thread(target=main, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.uploader.wake()
        self.thread.join(5)
        assert not self.thread.is_alive()


def drained(store: Store) -> bool:
    return all(c.items == 0 for c in store.stats().classes.values())


def uploader_for(store: Store, url: str, sleeps: list[float], *,
                 clock: Callable[[], float] = time.time,
                 connectivity: Connectivity | None = None, budget: DataBudget | None = None,
                 **settings: object) -> Uploader:
    config = UploadConfig(url=url, **{"timeout": 2.0, "linger": 0.0, **settings})  # type: ignore[arg-type]

    def record(seconds: float, stop: threading.Event) -> None:
        sleeps.append(seconds)
        stop.wait(0.01)

    return Uploader(store, HttpTransport(config.transport()), config, Identity(VEHICLE),
                    connectivity=connectivity, budget=budget, clock=clock, rng=lambda: 0.5,
                    sleep=record)


# -- the uploader thread never dies, and never leaves a batch in flight ----------------------


def test_an_unexpected_transport_error_neither_kills_the_thread_nor_strands_the_batch(
        tmp_path: Path) -> None:
    """A 503 whose Retry-After has 400 digits made the HTTP transport raise OverflowError
    (not an UploadError): the uploader thread died with its batch in flight for ever."""
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as store, \
            HttpPeer() as peer:
        store.put_samples(samples(10))
        store.flush()
        peer.script(Reply(503, retry_after="9" * 400), Reply(201))
        sleeps: list[float] = []
        uploader = uploader_for(store, peer.url, sleeps)
        with Running(uploader) as running:
            wait_until(lambda: drained(store) or not running.thread.is_alive(), "drained")
            assert running.thread.is_alive(), running.error
        assert len(peer.requests) == 2
        assert len({r.headers["Idempotency-Key"] for r in peer.requests}) == 1
        assert uploader.stats.batches == 1 and uploader.stats.items == 10
        assert store.stats().classes["samples"].acked == 10


def test_an_ack_the_store_cannot_take_in_time_is_taken_later_without_sending_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver stored the batch, but the store's writer was stuck (a slow SD card)
    past the request timeout: ``store.ack`` raised StoreError, which killed the thread
    and left the batch in flight (never sent again, never deleted) until a restart."""
    monkeypatch.setattr(buffer_module, "REQUEST_TIMEOUT", 0.5)
    hang, hung, release = threading.Event(), threading.Event(), threading.Event()

    def on_commit(info: CommitInfo) -> None:  # in the writer thread
        if hang.is_set():
            hung.set()
            release.wait(10)

    store = Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05),
                  on_commit=on_commit).start()

    def receiver(request: Request) -> tuple[int, bytes]:  # stores it; the writer sticks once
        if not hung.is_set():
            hang.set()
            store.put_events([Event(T0 + 9, "vehicle", "dtc", "P0420", 2)])
            assert hung.wait(5)
        return 201, b""

    try:
        with HttpPeer(upstream=receiver) as peer:
            store.put_samples(samples(10))
            store.flush()
            uploader = uploader_for(store, peer.url, [])
            with Running(uploader) as running:
                peer.wait_for_requests(1)
                time.sleep(1.5)  # the ack timed out meanwhile
                hang.clear()
                release.set()
                wait_until(lambda: drained(store) or not running.thread.is_alive(), "drained")
                assert running.thread.is_alive(), running.error
            assert len(peer.requests) == 2  # the samples once, then the event
            assert uploader.stats.batches == 2 and uploader.stats.items == 11
            stats = store.stats()
            assert stats.classes["samples"].acked == 10 and stats.inflight_batches == 0
    finally:
        release.set()
        store.close()


def test_backoff_after_days_of_failures_does_not_overflow(tmp_path: Path) -> None:
    """The streak grows across batches; ``2 ** streak`` as a float overflowed after about
    1,025 failures in a row (3.5 days of a receiver down at one attempt per 5 min), and
    the OverflowError killed the uploader."""
    with Store(StoreConfig(state_dir=tmp_path / "state")) as store:
        uploader = uploader_for(store, "http://127.0.0.1:9/", [], retry_initial=1.0,
                                retry_max=300.0)
        assert uploader.backoff(1_025) == 150.0
        assert uploader.backoff(10**6, retry_after=7.0) == 150.0


# -- linger and the connectivity gate ---------------------------------------------------------


def test_samples_are_not_held_back_when_the_wall_clock_steps_back(tmp_path: Path) -> None:
    """Linger was measured on the wall clock: after a small batch, a clock stepped back
    by a day (a Pi without RTC whose time is corrected) held the samples for a day."""
    now = [time.time()]
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as store, \
            HttpPeer() as peer:
        store.put_samples(samples(10))
        store.flush()
        uploader = uploader_for(store, peer.url, [], clock=lambda: now[0], linger=0.5)
        with Running(uploader):
            wait_until(lambda: drained(store), "the first batch")
            now[0] -= 86_400.0
            store.put_samples(samples(10, t0=T0 + 100))
            store.flush()
            uploader.wake()
            wait_until(lambda: drained(store), "the second batch, after the linger")
        assert uploader.stats.batches == 2


class _FlakyNetlink(Connectivity):
    """The real kernel's answers, but the first look fails as a netlink dump can when links
    change during it ("kept changing under us"): the kernel does not do that on cue."""

    def __init__(self) -> None:
        super().__init__(InterfaceRules())
        self.looks = 0

    def status(self, endpoint: str) -> Status:
        self.looks += 1
        if self.looks == 1:
            raise ConnectivityError("rtnetlink: dump links kept changing under us")
        return super().status(endpoint)


def test_one_netlink_failure_does_not_turn_the_link_gate_off_for_good(tmp_path: Path) -> None:
    """One failed look latched the gate off until a restart: every link, metered or
    not, then carried every class without a budget."""
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as store, \
            HttpPeer() as peer:
        connectivity = _FlakyNetlink()
        uploader = uploader_for(store, peer.url, [], connectivity=connectivity)
        with Running(uploader):
            store.put_samples(samples(10))
            store.flush()
            wait_until(lambda: drained(store), "the first batch")
            store.put_samples(samples(10, t0=T0 + 100))
            store.flush()
            uploader.wake()
            wait_until(lambda: drained(store), "the second batch")
        connectivity.close()
        assert connectivity.looks >= 2
        assert uploader.stats.link == "127.0.0.1 is on this machine"


# -- the metered budget ---------------------------------------------------------------------


def test_the_budget_is_not_reset_by_a_clock_that_steps_back(tmp_path: Path) -> None:
    """A Pi without RTC boots at its last saved time (or 1970) before NTP: the budget
    rolled to that "new" day and back again, each time to zero."""
    day = datetime(2026, 11, 26, 0, 10, tzinfo=UTC).timestamp()
    now = [day]
    budget = DataBudget(tmp_path, daily=10_000, monthly=None, clock=lambda: now[0])
    budget.charge(6_000)
    now[0] = day - 3_600.0  # the saved time of yesterday evening
    assert not budget.allows(4_000)
    budget.charge(100)
    rebooted = DataBudget(tmp_path, daily=10_000, monthly=None, clock=lambda: now[0])
    now[0] = 0.0  # no saved time at all
    assert not rebooted.allows(4_000)
    now[0] = day + 60.0  # NTP: the same day as before
    assert not rebooted.allows(4_000) and rebooted.allows(800)
    assert rebooted.spent.day_bytes == 6_000 + 100 + 2 * OVERHEAD
    now[0] = day + 86_400.0  # the next day does start afresh
    assert rebooted.allows(8_000)


libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move the calling thread (only) into network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def test_retries_over_a_metered_link_stay_within_the_budget(net: Net, tmp_path: Path) -> None:
    """The budget was looked at once per batch, then each of up to 8 attempts was charged
    and sent: a receiver refusing connections over cellular cost 8 times the budget."""
    net.veth("wwan0", "p1", "10.213.1.1/24", "10.213.1.2/24")
    net.ip(net.a, "route", "add", "default", "via", "10.213.1.2")
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as store:
        store.put_events([Event(T0 + i, "vehicle", "dtc", f"P030{i}", 2) for i in range(3)])
        store.flush()
        probe = store.next_batch()
        assert probe is not None
        store.release(probe.seq_first, probe.seq_last)
        from agent.batch.codec import encode
        from agent.batch.model import Batch

        size = len(encode(Batch(VEHICLE, probe.seq_first, probe.seq_last, "", [],
                                probe.events, [])))
        daily = 3 * (size + OVERHEAD) + 10  # three attempts, not four
        budget = DataBudget(tmp_path / "state", daily=daily, monthly=None)
        connectivity = Connectivity(InterfaceRules())
        sleeps: list[float] = []
        # nothing listens on port 9 on the far side: every attempt is refused
        uploader = uploader_for(store, "http://10.213.1.2:9/v1/batches", sleeps,
                                connectivity=connectivity, budget=budget)
        with Running(uploader, before=lambda: enter_netns(net.a)):
            wait_until(lambda: uploader.stats.state == "budget", "the budget spent")
        connectivity.close()
        assert uploader.stats.link.startswith("wwan0 (metered)")
        assert uploader.stats.attempts == 3, uploader.stats
        assert budget.spent.day_bytes <= daily
        assert store.stats().inflight_batches == 0


# -- the daemon and the vehicle identity ------------------------------------------------------


def test_a_truncated_pseudonym_secret_is_replaced_not_fatal(tmp_path: Path) -> None:
    """An empty ``vehicle-id.secret`` in the state directory made the HMAC refuse the key
    with a ValueError at every start: a crash loop that buffered nothing."""
    state = tmp_path / "state"
    state.mkdir()
    (state / SECRET_NAME).write_bytes(b"")
    config = tmp_path / "bavard.toml"
    config.write_text(f'[[channels]]\nname = "v"\nsimulate = true\n'
                      f'[store]\nstate_dir = "{state}"\n'
                      f'[upload]\nurl = "http://127.0.0.1:9/"\n')
    secret = id_secret(load_config(config))
    assert len(secret) >= 16
    assert (state / SECRET_NAME).read_bytes() == secret
    assert id_secret(load_config(config)) == secret  # kept from now on


def test_reload_rejects_an_unusable_id_secret_and_the_watchdog_goes_on(tmp_path: Path) -> None:
    """A reload whose ``[vehicle] id_secret_file`` is too short passed the checks, stopped
    the running pipeline, failed to start, and left the new uploader's watchdog beat
    registered with nobody beating it: the pings stopped and systemd killed the service."""
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    base = (f'[[channels]]\nname = "vehicle"\nsimulate = true\nspeed = 2.0\n'
            f'[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n')
    config.write_text(base)
    sock = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                         "WATCHDOG_USEC": "400000"})
    grant_for(config)
    daemon = Daemon(config, notifier=notifier, silence=1.0)
    log_lines: list[str] = []

    import logging

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(record.getMessage())

    handler = Capture()
    logging.getLogger("agent").addHandler(handler)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        sock.wait_for("READY", "1")
        pipeline = daemon.pipeline
        short = tmp_path / "fleet.secret"
        short.write_bytes(b"tooshort")
        config.write_text(base + f'[upload]\nurl = "http://127.0.0.1:9/"\n'
                                 f'[vehicle]\nid_secret_file = "{short}"\n')
        daemon.request_reload()
        wait_until(lambda: any("rejected" in line for line in log_lines), "the rejection")
        assert any("id_secret_file" in line for line in log_lines), log_lines
        assert daemon.pipeline is pipeline and daemon.uploader is None
        time.sleep(2.0)  # twice the allowed silence
        while sock.receive(0.01) is not None:
            pass
        sock.messages.clear()
        sock.wait_for("WATCHDOG", "1", timeout=3)
    finally:
        logging.getLogger("agent").removeHandler(handler)
        daemon.request_stop()
        runner.join(10)
        sock.close()
    assert not runner.is_alive()


class _CountingLooks(Connectivity):
    """The real kernel's answers, counted."""

    def __init__(self) -> None:
        super().__init__(InterfaceRules())
        self.looks = 0

    def status(self, endpoint: str) -> Status:
        self.looks += 1
        return super().status(endpoint)


def test_the_link_is_looked_up_again_only_after_a_change_or_a_failure(tmp_path: Path) -> None:
    """Every round looked the link up (a DNS lookup and netlink dumps), about once a
    second with commits waking the uploader: on a metered link, traffic no budget saw."""
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as store, \
            HttpPeer() as peer:
        connectivity = _CountingLooks()
        uploader = uploader_for(store, peer.url, [], connectivity=connectivity)
        with Running(uploader):
            for i in range(5):
                store.put_samples(samples(10, t0=T0 + 100 * i))
                store.flush()
                uploader.wake()
                wait_until(lambda: drained(store), f"batch {i}")
            assert connectivity.looks == 1
            peer.script(Reply(503))  # a failed attempt: look again before the next one
            store.put_samples(samples(10, t0=T0 + 1000))
            store.flush()
            uploader.wake()
            wait_until(lambda: drained(store), "the batch after the failure")
        connectivity.close()
        assert connectivity.looks == 2
