"""The uploader loop against a real HTTP peer on loopback and a real store: ack only
after 2xx, the exact backoff sequence (full jitter, cap, Retry-After), refusals to the
dead letters without blocking the next batch, shutdown interrupting a backoff; and the
metered data budget kept across restarts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from helpers.http_peer import HttpPeer, Reply

from agent.frames import Event, Sample
from agent.store.buffer import Store
from agent.store.settings import Kind, StoreConfig
from agent.upload.budget import OVERHEAD, DataBudget
from agent.upload.http import HttpTransport
from agent.upload.settings import UploadConfig
from agent.upload.uploader import Identity, Uploader

VEHICLE = "0123456789abcdef0123456789abcdef"


def samples(n: int, t0: float = 1_767_225_600.0) -> list[Sample]:
    return [Sample(t0 + i * 0.01, "vehicle", "Engine", "Rpm", 800 + i, "rpm", None, 0)
            for i in range(n)]


def open_store(tmp_path: Path) -> Store:
    return Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05))


def make_uploader(store: Store, url: str, sleeps: list[float] | None = None,
                  **settings: object) -> Uploader:
    config = UploadConfig(url=url, timeout=2.0, linger=0.0, **settings)  # type: ignore[arg-type]

    def record(seconds: float, stop: threading.Event) -> None:
        assert sleeps is not None
        sleeps.append(seconds)

    return Uploader(store, HttpTransport(config.transport()), config, Identity(VEHICLE),
                    rng=lambda: 0.5, sleep=record if sleeps is not None else None)


def drain(uploader: Uploader, store: Store, timeout: float = 20.0) -> None:
    """Run the loop until the store holds nothing more to upload."""
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            classes = store.stats().classes
            if all(c.items == 0 for c in classes.values()):
                return
            uploader.wake()
            time.sleep(0.05)
        raise AssertionError(f"not drained in {timeout} s: {uploader.stats}")
    finally:
        stop.set()
        uploader.wake()
        thread.join(5)
        assert not thread.is_alive()


def test_retries_with_the_exact_backoff_then_acks_once(tmp_path: Path) -> None:
    sleeps: list[float] = []
    with open_store(tmp_path) as store, HttpPeer() as peer:
        store.put_samples(samples(100))
        store.flush()
        peer.script(Reply(503), Reply(500), Reply(429, retry_after="7"), Reply(408), Reply(201))
        uploader = make_uploader(store, peer.url, sleeps, retry_initial=1.0, retry_max=3.0)
        drain(uploader, store)
        # full jitter (rng 0.5) under caps 1, 2, 3 (capped), 3; Retry-After 7 wins once
        assert sleeps == [0.5, 1.0, 7.0, 1.5]
        keys = {r.headers["Idempotency-Key"] for r in peer.requests}
        assert len(peer.requests) == 5 and len(keys) == 1
        assert uploader.stats.batches == 1 and uploader.stats.items == 100
        assert uploader.stats.transient == 4 and uploader.stats.attempts == 5
        assert store.stats().classes["samples"].acked == 100


def test_a_refused_batch_is_dead_lettered_and_the_next_one_goes(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, HttpPeer() as peer:
        store.put_samples(samples(10))
        store.flush()
        store.put_samples(samples(10, t0=1_767_225_700.0))
        store.flush()
        peer.script(Reply(400, body=b"unknown vehicle"), Reply(200))
        uploader = make_uploader(store, peer.url, [], batch_items=10)
        drain(uploader, store)
        stats = store.stats()
        assert stats.dead_letter_batches == 1 and stats.dead_letter_items == 10
        assert stats.classes["samples"].acked == 10
        assert uploader.stats.refused == 1 and uploader.stats.batches == 1
        assert len({r.headers["Idempotency-Key"] for r in peer.requests}) == 2


def test_events_go_before_samples(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, HttpPeer() as peer:
        store.put_samples(samples(10))
        store.put_events([Event(1_767_225_601.0, "vehicle", "dtc", "P0301", 2)])
        store.flush()
        drain(make_uploader(store, peer.url, []), store)
        from agent.batch.codec import decode

        first, second = (decode(r.body) for r in peer.requests)
        assert first.events and not first.samples
        assert second.samples and not second.events


def test_shutdown_interrupts_the_backoff_and_releases_the_batch(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, HttpPeer() as peer:
        store.put_samples(samples(10))
        store.flush()
        peer.script(*[Reply(503)] * 20)
        uploader = make_uploader(store, peer.url, None, retry_initial=60.0, retry_max=60.0)
        stop = threading.Event()
        thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
        thread.start()
        peer.wait_for_requests(1)
        deadline = time.monotonic() + 10
        while uploader.stats.state != "backoff":  # now in a 30 s backoff
            assert time.monotonic() < deadline, uploader.stats
            time.sleep(0.01)
        started = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 2.0
        stats = store.stats()
        assert stats.classes["samples"].items == 10  # still here, not in flight
        assert stats.inflight_batches == 0  # released: it comes back as the same range
        assert len(peer.requests) == 1


def test_metered_budget_is_kept_across_restarts_and_rolls_over(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 30, 23, 0, tzinfo=UTC).timestamp()]
    budget = DataBudget(tmp_path, daily=10_000, monthly=15_000, clock=lambda: now[0])
    assert budget.allows(10_000 - OVERHEAD) and not budget.allows(10_001 - OVERHEAD)
    budget.charge(6_000)
    again = DataBudget(tmp_path, daily=10_000, monthly=15_000, clock=lambda: now[0])
    assert not again.allows(4_000) and again.allows(1_500)  # the day holds 7,024
    assert again.seconds_to_reset() == 3600.0
    now[0] += 3600  # 1 December: a new day and a new month
    assert again.allows(8_000) and not again.allows(9_000)
    again.charge(6_000)
    now[0] += 86400  # 2 December: a new day, the same month
    assert again.allows(6_000) and not again.allows(8_000)  # the month holds 7,024


def test_min_kind_leaves_samples_for_an_unmetered_link(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.put_samples(samples(5))
        store.flush()
        assert store.next_batch(min_kind=Kind.EVENT) is None
        store.put_events([Event(1_767_225_601.0, "vehicle", "dtc", "P0301", 2)])
        store.flush()
        batch = store.next_batch(min_kind=Kind.EVENT)
        assert batch is not None and batch.kind == Kind.EVENT


def test_a_commit_waking_the_uploader_as_its_idle_wait_ends_goes_at_once(
        tmp_path: Path) -> None:
    """A wake that lands between the end of the idle wait and the clearing of the wake
    (the race of issue 9, 5.3) does not hold the data back until the next wait ends: the
    round that follows the clear looks at the store and sends it. Driven by an injected
    wait, in this thread: no timing."""
    with open_store(tmp_path) as store, HttpPeer() as peer:
        stop = threading.Event()
        seen: list[tuple[float, int]] = []  # (seconds asked, requests the peer had by then)

        def wait(seconds: float) -> bool:
            seen.append((seconds, len(peer.requests)))
            if len(seen) == 1:  # the wait ends with nothing to do, and a commit lands now
                store.put_samples(samples(10))
                store.flush()
                uploader.wake()  # what the daemon's on_commit does
                return False
            stop.set()
            return True

        config = UploadConfig(url=peer.url, timeout=2.0, linger=0.0)
        uploader = Uploader(store, HttpTransport(config.transport()), config, Identity(VEHICLE),
                            wait=wait)
        uploader.run(stop)
        assert seen == [(5.0, 0), (5.0, 1)]  # sent before the uploader waited again
        assert uploader.stats.batches == 1 and store.stats().classes["samples"].acked == 10
