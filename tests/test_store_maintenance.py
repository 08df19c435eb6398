"""What a technician does to the buffer by hand (agent.store.maintenance): purge a class
(never a batch in flight, the space given back), retry the dead letters (they come back
as data waiting for upload, oldest first, and age from now); both counted, both through
the writer thread of a real Store on a real SQLite file; and the settings a command opens
a buffer with when no service runs (nothing evicted, nothing expired).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.frames import Event, Frame, Sample
from agent.store import DB_NAME, Kind, Store, StoreConfig
from agent.store.maintenance import held_by_a_process, offline_config

T0 = 1_700_000_000.0
DAY = 86_400.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample(i * 0.01, "can0", "Engine", "Rpm", i) for i in range(start, start + n)]


def noisy_samples(n: int, start: int = 0) -> list[Sample]:
    """Values that compress badly, so that a few thousand take real pages."""
    rng = random.Random(start)
    return [Sample(i * 0.01, "can0", "Engine", "Rpm", rng.random())
            for i in range(start, start + n)]


def frames(n: int) -> list[Frame]:
    return [Frame(i * 0.01, "can0", 0x100 + i % 7, False, False, i.to_bytes(8, "big"))
            for i in range(n)]


def events(n: int, start: int = 0) -> list[Event]:
    return [Event(float(i), "can0", "dtc", f"P{i:04d}", 1) for i in range(start, start + n)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(StoreConfig(state_dir=tmp_path, chunk_items=1000), clock=clock) as s:
        yield s


def test_purge_deletes_one_class_and_says_how_much(store: Store) -> None:
    store.put_events(events(3))
    store.put_samples(samples(2500))
    store.put_frames(frames(400))
    store.flush()
    before = store.stats().classes["samples"]
    purged = store.purge(Kind.SAMPLE)
    assert (purged.kind, purged.items, purged.chunks, purged.in_flight) == (Kind.SAMPLE, 2500,
                                                                            3, 0)
    assert purged.bytes == before.bytes > 0
    assert purged.to_dict() == {"class": "samples", "items": 2500, "bytes": before.bytes,
                                "chunks": 3, "in_flight": 0}
    stats = store.stats()
    assert stats.classes["samples"].items == 0
    assert stats.classes["samples"].purged == 2500
    assert stats.counters["purged.samples"] == 2500
    assert stats.classes["events"].items == 3 and stats.classes["frames"].items == 400
    # what comes later is kept as usual
    store.put_samples(samples(10, 5000))
    store.flush()
    assert store.stats().classes["samples"].items == 10


def test_purge_leaves_the_batch_in_flight_and_its_ack_still_works(store: Store) -> None:
    store.put_samples(samples(3000))
    store.flush()
    flying = store.next_batch(max_items=1000)
    assert flying is not None and flying.items == 1000
    purged = store.purge(Kind.SAMPLE)
    assert (purged.items, purged.in_flight) == (2000, 1000)
    assert store.stats().classes["samples"].items == 1000
    assert store.ack(flying.seq_first, flying.seq_last) == 1000
    assert store.next_batch() is None


def test_purge_takes_what_was_queued_before_it(store: Store) -> None:
    store.put_samples(samples(700))  # not committed yet: the writer commits, then purges
    assert store.purge(Kind.SAMPLE).items == 700
    assert store.stats().classes["samples"].items == 0


def test_purge_gives_the_space_back(tmp_path: Path, clock: Clock) -> None:
    with Store(StoreConfig(state_dir=tmp_path, chunk_items=2000), clock=clock) as store:
        for i in range(100):
            store.put_samples(noisy_samples(2000, i * 2000))
        store.flush()
        full = (tmp_path / DB_NAME).stat().st_size
        assert full > 1 << 20
        store.purge(Kind.SAMPLE)
        assert (tmp_path / DB_NAME).stat().st_size < full // 4


def test_purging_an_empty_class_is_nothing(store: Store) -> None:
    purged = store.purge(Kind.FRAME)
    assert (purged.items, purged.bytes, purged.chunks, purged.in_flight) == (0, 0, 0, 0)


def test_dead_letters_come_back_for_upload_oldest_first(tmp_path: Path, clock: Clock) -> None:
    cfg = StoreConfig(state_dir=tmp_path, chunk_items=1000, max_age_samples=10 * DAY,
                      max_age_dead_letters=30 * DAY)
    with Store(cfg, clock=clock) as store:
        retry_and_upload(store, clock)


def retry_and_upload(store: Store, clock: Clock) -> None:
    store.put_samples(samples(3000))
    store.flush()
    refused = []
    for _ in range(2):
        b = store.next_batch(max_items=1000)
        assert b is not None
        refused.append(b)
        assert store.dead_letter(b.seq_first, b.seq_last, "HTTP 422") == 1000
    assert store.stats().dead_letter_batches == 2
    clock.now += 20 * DAY  # older than the samples' maximum age (10 days) by now
    retried = store.retry_dead_letters()
    assert retried.to_dict() == {"batches": 2, "items": 2000, "bytes": retried.bytes}
    assert retried.bytes > 0
    stats = store.stats()
    assert (stats.dead_letter_batches, stats.dead_letter_items) == (0, 0)
    # the third thousand, never refused, aged out; the retried ones count from now
    assert stats.classes["samples"].items == 2000
    assert stats.classes["samples"].expired == 1000
    assert stats.counters["dead_letter.retried_batches"] == 2
    assert stats.counters["dead_letter.retried_items"] == 2000
    store.put_samples(samples(500, 9000))
    store.flush()
    # the retried ones go first, with the very same samples, then the new ones
    got = []
    while (b := store.next_batch()) is not None:
        got.extend(b.samples)
        assert store.ack(b.seq_first, b.seq_last) == b.items
    assert got == refused[0].samples + refused[1].samples + samples(500, 9000)


def test_retrying_no_dead_letters_is_nothing(store: Store) -> None:
    assert store.retry_dead_letters().to_dict() == {"batches": 0, "items": 0, "bytes": 0}


def test_a_store_that_is_not_running_refuses_both(tmp_path: Path) -> None:
    store = Store(StoreConfig(state_dir=tmp_path))
    with pytest.raises(StoreError, match="not running"):
        store.purge(Kind.EVENT)
    with pytest.raises(StoreError, match="not running"):
        store.retry_dead_letters()


def test_the_offline_settings_keep_the_recorded_quota_and_expire_nothing(
        tmp_path: Path, clock: Clock) -> None:
    quota = 64 << 20
    cfg = StoreConfig(state_dir=tmp_path, quota_bytes=quota, max_age_samples=DAY)
    with Store(cfg, clock=clock) as store:
        store.put_samples(samples(500))
    offline = offline_config(tmp_path)
    assert offline.quota_bytes == quota
    assert (offline.max_age_events, offline.max_age_samples, offline.max_age_frames,
            offline.max_age_dead_letters) == (None, None, None, None)
    clock.now += 10 * DAY  # the service's own limit would expire the samples
    with Store(offline, clock=clock) as store:
        assert store.stats().classes["samples"].items == 500
        assert store.purge(Kind.SAMPLE).items == 500


def test_the_offline_settings_need_a_buffer(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no buffer in"):
        offline_config(tmp_path)
    (tmp_path / DB_NAME).write_bytes(b"not a database at all, not even close to one!")
    with pytest.raises(StoreError, match="cannot read"):
        offline_config(tmp_path)


def test_a_second_process_cannot_open_a_held_buffer(store: Store, tmp_path: Path) -> None:
    """The lock that sends `bavard buffer purge` through the socket while a service runs."""
    assert held_by_a_process(tmp_path)
    with pytest.raises(StoreError, match="another process holds the buffer"):
        Store(offline_config(tmp_path)).start()
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # still whole
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_nobody_holds_a_closed_buffer(tmp_path: Path) -> None:
    with Store(StoreConfig(state_dir=tmp_path)):
        assert held_by_a_process(tmp_path)
    assert not held_by_a_process(tmp_path)
    assert not held_by_a_process(tmp_path / "missing")
    with Store(StoreConfig(state_dir=tmp_path)):  # the probe left no lock behind
        pass
