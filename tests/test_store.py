"""The store: round trips, batches for upload, quota and eviction, ages, the input queue,
commit triggers, restarts and ``bavard buffer``.

Every test uses a real Store on a real SQLite file in a temporary directory; time
for ages is a virtual clock passed in.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.clock import Monotonic

from agent.cli import buffer_cmd
from agent.frames import OUT_OF_RANGE, Event, Frame, Sample
from agent.store import (
    DB_NAME,
    CommitInfo,
    Kind,
    Store,
    StoreConfig,
    StoreError,
    batches,
    buffer,
    database,
    disk,
    quota,
    schema,
    writer,
)
from agent.store.codec import Encoder, decode
from agent.store.inbox import Inbox

DAY = 86_400.0
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(n: int, start: int = 0, t0: float = 0.0) -> list[Sample]:
    return [Sample(t0 + i * 0.01, "can0", "Engine", "Rpm", i) for i in range(start, start + n)]


def frames(n: int, start: int = 0) -> list[Frame]:
    return [Frame(i * 0.01, "can0", 0x100 + i % 7, i % 2 == 0, False, i.to_bytes(8, "big"))
            for i in range(start, start + n)]


def events(n: int, start: int = 0) -> list[Event]:
    return [Event(float(i), "can0", "dtc", f"P{i:04d}", 1) for i in range(start, start + n)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(StoreConfig(state_dir=tmp_path, chunk_items=1000), clock=clock) as s:
        yield s


def drain(store: Store, **limits: float) -> list[tuple[int, int, Kind, int]]:
    """Take every batch (acking it): (seq_first, seq_last, class, items)."""
    out = []
    while (b := store.next_batch(**limits)) is not None:  # type: ignore[arg-type]
        out.append((b.seq_first, b.seq_last, b.kind, b.items))
        assert store.ack(b.seq_first, b.seq_last) == b.items
    return out


# -- what goes in comes out -------------------------------------------------------------


def test_codec_keeps_every_value_exactly() -> None:
    odd = [
        Sample(1.5, "can0", "M", "S", 1), Sample(1.5, "can0", "M", "S", 1.0),
        Sample(2.0, "can1", "M", "S", -0.0, "V", "Low", OUT_OF_RANGE),
        Sample(2.0, "can1", "M", "S", float("nan")), Sample(3.0, "c", "M", "S", 1 << 70),
        Sample(3.0, "c", "M", "S", -(1 << 64) - 5), Sample(3.0, "c", "M", "S", (1 << 64) - 1),
        Sample(4.0, "c", "Ünïcode", "°C", 2.5, "°C"),
    ]
    back = decode(Kind.SAMPLE, 1, Encoder().encode(odd))
    assert len(back) == len(odd)
    for a, b in zip(odd, back, strict=True):
        assert type(b) is Sample and a[:4] == b[:4] and a[5:] == b[5:]
        assert type(a.value) is type(b.value)
        if isinstance(a.value, float):
            assert math.copysign(1, a.value) == math.copysign(1, b.value)
            assert a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))
        else:
            assert a.value == b.value
    fr = [*frames(3), Frame(9.0, "can0", 0x1FFFFFFF, True, True, bytes(range(64)))]
    assert decode(Kind.FRAME, 1, Encoder().encode(fr)) == fr
    with pytest.raises(StoreError):
        decode(Kind.SAMPLE, 1, b"\x28\xb5\x2f\xfd garbage")


def test_round_trip_events_first_then_samples_then_frames(store: Store) -> None:
    store.put_frames(frames(10))
    store.put_samples(samples(2500))
    store.put_events(events(3))
    store.flush()
    first = store.next_batch()
    assert first is not None
    seq_first, seq_last, got_samples, got_events, got_frames = first  # unpacks as a 5-tuple
    assert got_events == events(3) and got_samples == [] and got_frames == []
    assert seq_last - seq_first == 2
    out_samples: list[Sample] = []
    while (b := store.next_batch(max_items=1000)) is not None and b.samples:
        out_samples += b.samples
        assert b.items <= 1000
    assert out_samples == samples(2500)
    assert b is not None and b.frames == frames(10)
    assert store.next_batch() is None  # everything is in flight


def test_sequence_numbers_are_ranges_of_items_and_never_reused(tmp_path: Path,
                                                               clock: Clock) -> None:
    cfg = StoreConfig(state_dir=tmp_path, chunk_items=100)
    with Store(cfg, clock=clock) as store:
        store.put_samples(samples(250))
        store.flush()
        batches = drain(store)
        assert [b[3] for b in batches] == [250]
        first, last = batches[0][:2]
        assert last - first + 1 == 250
    with Store(cfg, clock=clock) as store:  # empty now, but numbers go on
        store.put_samples(samples(1))
        store.flush()
        b = store.next_batch()
        assert b is not None and b.seq_first == last + 1


def test_a_new_database_numbers_from_the_clock(tmp_path: Path, clock: Clock) -> None:
    with Store(StoreConfig(state_dir=tmp_path), clock=clock) as store:
        store.put_events(events(1))
        store.flush()
        b = store.next_batch()
        assert b is not None and b.seq_first == int(T0) << 24


# -- batches ---------------------------------------------------------------------------


def test_released_batch_comes_back_as_the_same_range(store: Store) -> None:
    store.put_samples(samples(5000))
    store.flush()
    b = store.next_batch(max_items=2000)
    assert b is not None and b.items == 2000
    assert store.release(b.seq_first, b.seq_last) == 2000
    again = store.next_batch(max_items=5000)  # other limits: the same batch all the same
    assert again == b
    other = store.next_batch(max_items=5000)
    assert other is not None and other.seq_first == b.seq_last + 1 and other.items == 3000


def test_batch_in_flight_at_shutdown_comes_back_after_restart(tmp_path: Path,
                                                              clock: Clock) -> None:
    cfg = StoreConfig(state_dir=tmp_path, chunk_items=1000)
    with Store(cfg, clock=clock) as store:
        store.put_samples(samples(3000))
        store.flush()
        b = store.next_batch(max_items=2000)
        assert b is not None
    with Store(cfg, clock=clock) as store:
        assert store.next_batch(max_items=1000) == b


def test_limits_apply_at_chunk_granularity(store: Store) -> None:
    store.put_samples(samples(3000, t0=0.0))  # 3 chunks of 1000, 10 s each
    store.flush()
    b = store.next_batch(max_items=10)  # always at least one chunk
    assert b is not None and b.items == 1000
    b = store.next_batch(max_seconds=15.0)
    assert b is not None and b.items == 1000
    b = store.next_batch(max_seconds=100.0)
    assert b is not None and b.items == 1000 and store.next_batch() is None


def test_ack_deletes_once_and_checks_the_range(store: Store) -> None:
    store.put_samples(samples(1500))
    store.flush()
    b = store.next_batch()
    assert b is not None
    with pytest.raises(StoreError, match="ends at"):
        store.ack(b.seq_first, b.seq_last + 1)
    assert store.ack(b.seq_first, b.seq_last) == 1500
    assert store.ack(b.seq_first, b.seq_last) == 0
    stats = store.stats()
    assert stats.classes["samples"].items == 0 and stats.classes["samples"].acked == 1500


def test_dead_letters_are_kept_counted_and_never_handed_out(store: Store) -> None:
    store.put_events(events(2))
    store.put_samples(samples(10))
    store.flush()
    b = store.next_batch()
    assert b is not None and b.events
    assert store.dead_letter(b.seq_first, b.seq_last, "HTTP 422") == 2
    nb = store.next_batch()
    assert nb is not None and nb.samples
    stats = store.stats()
    assert (stats.dead_letter_batches, stats.dead_letter_items) == (1, 2)
    assert stats.classes["events"].items == 0
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT reason FROM dead_letter").fetchall() == [("HTTP 422",)]


def test_unreadable_chunk_goes_to_the_dead_letters(store: Store) -> None:
    store.put_samples(samples(10))
    store.put_events(events(1))
    store.flush()
    with sqlite3.connect(store.path) as db:  # bit rot in the events' body
        db.execute("UPDATE chunk SET body = x'00112233' WHERE class = 2")
    b = store.next_batch()
    assert b is not None and b.samples == samples(10)
    assert store.stats().dead_letter_items == 1


# -- quota and eviction ------------------------------------------------------------------


QUOTA = 512 * 1024  # the smallest quota allowed: the database file's share is 384 KiB


def quota_store(tmp_path: Path, clock: Clock, quota: int = QUOTA, chunk_items: int = 500,
                ) -> Store:
    cfg = StoreConfig(state_dir=tmp_path, quota_bytes=quota, chunk_items=chunk_items,
                      min_free_bytes=0)
    return Store(cfg, clock=clock).start()


def noisy_samples(n: int, start: int) -> list[Sample]:
    # values that do not compress away: about 8 bytes a sample in a chunk
    return [Sample(i * 0.001, "can0", "M", "S", (i * 2654435761) % 1000003 / 7.0)
            for i in range(start, start + n)]


def test_the_quota_holds_and_frames_go_before_samples(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock)
    try:
        store.put_events(events(5))
        for i in range(40):
            store.put_frames(frames(500, i * 500))
            store.put_samples(noisy_samples(2000, i * 2000))
            store.flush()
            assert store.stats().used_bytes <= QUOTA
        stats = store.stats()
        assert stats.classes["frames"].items == 0  # all the frames went first
        assert stats.classes["frames"].evicted == 40 * 500
        assert 0 < stats.classes["samples"].evicted < 80_000
        assert stats.classes["events"].items == 5 and stats.classes["events"].evicted == 0
        assert stats.used_bytes >= QUOTA * 0.8  # and the quota is used, not wasted
        # what is left of the samples is the newest, in order
        got = [s for b in iter(lambda: store.next_batch(), None) for s in b.samples]
        assert got == noisy_samples(80_000, 0)[-len(got):]
    finally:
        store.close()


def test_samples_never_push_out_events(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock, chunk_items=200)
    try:
        for i in range(30):  # events alone fill it
            store.put_events([Event(float(j), "can0", "dtc", f"{j * 2654435761:x}")
                              for j in range(i * 1000, i * 1000 + 1000)])
            store.flush()
        before = store.stats().classes["events"]
        assert before.evicted > 0  # oldest events made room for newer events
        store.put_samples(noisy_samples(2000, 0))
        store.flush()
        after = store.stats()
        assert after.classes["samples"].items == 0
        assert after.classes["samples"].evicted == 2000  # the incoming samples went
        assert after.classes["events"].items == before.items
        assert after.used_bytes <= QUOTA
    finally:
        store.close()


def fill_until_evicted(store: Store, start: int = 1, most: int = 100) -> int:
    for i in range(start, most):
        store.put_samples(noisy_samples(2000, i * 2000))
        store.flush()
        if store.stats().classes["samples"].evicted:
            return i
    pytest.fail("nothing was ever evicted")


def test_in_flight_batches_are_never_evicted(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock)
    try:
        store.put_samples(noisy_samples(2000, 0))
        store.flush()
        b = store.next_batch()
        assert b is not None
        last = fill_until_evicted(store)
        fill_until_evicted(store, last + 1, last + 30)  # and well beyond
        assert store.ack(b.seq_first, b.seq_last) == b.items  # still there
    finally:
        store.close()


def test_a_released_batch_is_evicted_whole(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock)
    try:
        store.put_samples(noisy_samples(2000, 0))  # 4 chunks
        store.flush()
        b = store.next_batch()
        assert b is not None and b.items == 2000
        store.release(b.seq_first, b.seq_last)
        for i in range(1, 100):
            store.put_samples(noisy_samples(500, i * 2000))  # one chunk at a time
            store.flush()
            with sqlite3.connect(store.path) as db:
                tagged = db.execute("SELECT count(*) FROM chunk WHERE batch = ?",
                                    (b.seq_first,)).fetchone()[0]
            assert tagged in (0, 4)
            if not tagged:
                break
        else:
            pytest.fail("the released batch was never evicted")
        assert store.stats().classes["samples"].evicted == 2000
        assert store.ack(b.seq_first, b.seq_last) == 0
    finally:
        store.close()


def test_dead_letters_are_evicted_first(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock)
    try:
        store.put_samples(noisy_samples(2000, 0))
        store.flush()
        b = store.next_batch()
        assert b is not None
        store.dead_letter(b.seq_first, b.seq_last, "refused")
        store.put_frames(frames(100))
        store.flush()
        for i in range(1, 100):
            store.put_samples(noisy_samples(500, i * 2000))
            store.flush()
            if store.stats().dead_letter_items == 0:
                break
        stats = store.stats()
        assert stats.dead_letter_items == 0
        assert stats.counters["evicted_dead.samples"] == 2000
        assert stats.classes["frames"].items == 100  # the dead letters went before them
        assert stats.classes["samples"].evicted == 0
    finally:
        store.close()


def test_a_lowered_quota_shrinks_the_file_at_start(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock, 4 << 20)
    for i in range(120):
        store.put_samples(noisy_samples(2000, i * 2000))
    store.close()
    db = tmp_path / DB_NAME
    assert db.stat().st_size > 1 << 20
    store = quota_store(tmp_path, clock, QUOTA)
    try:
        stats = store.stats()
        assert stats.used_bytes <= QUOTA
        assert stats.classes["samples"].evicted > 0
    finally:
        store.close()


# -- ages ----------------------------------------------------------------------------------


def test_items_older_than_their_class_maximum_age_go(tmp_path: Path, clock: Clock) -> None:
    cfg = StoreConfig(state_dir=tmp_path, max_age_frames=DAY, max_age_samples=7 * DAY,
                      max_age_events=None, max_age_dead_letters=DAY)
    with Store(cfg, clock=clock) as store:
        store.put_frames(frames(10))
        store.put_samples(samples(10))
        store.put_events(events(1))
        store.flush()
        b = store.next_batch()
        assert b is not None
        store.dead_letter(b.seq_first, b.seq_last, "x")
        store.put_events(events(1, 1))
        store.flush()
        in_flight = store.next_batch()
        assert in_flight is not None and in_flight.events
        clock.now += 2 * DAY
        store.flush()
        stats = store.stats()
        assert stats.classes["frames"].items == 0 and stats.classes["frames"].expired == 10
        assert stats.classes["samples"].items == 10
        assert stats.dead_letter_items == 0 and stats.counters["expired_dead.events"] == 1
        assert stats.classes["samples"].oldest_age == pytest.approx(2 * DAY)
        clock.now += 100 * DAY
        store.flush()
        stats = store.stats()
        assert stats.classes["samples"].expired == 10
        assert stats.classes["events"].items == 1  # no age limit, and in flight anyway


# -- the input queue -----------------------------------------------------------------------


def test_inbox_without_blocking_drops_lower_classes_first() -> None:
    inbox = Inbox(capacity=100, wake_items=100)
    assert inbox.put(Kind.FRAME, frames(40), block=False)
    assert inbox.put(Kind.SAMPLE, samples(50), block=False)
    assert inbox.put(Kind.EVENT, events(30), block=False)  # the frames make room
    assert not inbox.put(Kind.FRAME, frames(25), block=False)  # nothing lower: dropped
    assert not inbox.put(Kind.SAMPLE, samples(30), block=False)  # no frames left to drop
    assert inbox.put(Kind.EVENT, events(20), block=False)  # fits exactly
    work = inbox.wait(1.0, 0.0)
    assert work.count == 100
    assert work.dropped == {Kind.FRAME: 65, Kind.SAMPLE: 30, Kind.EVENT: 0}
    assert [len(x) for x in work.items[Kind.SAMPLE]] == [50]
    assert [len(x) for x in work.items[Kind.EVENT]] == [30, 20]
    assert Kind.FRAME not in work.items


def test_inbox_blocking_waits_for_room_and_close_releases_it() -> None:
    inbox = Inbox(capacity=10, wake_items=10)
    assert inbox.put(Kind.SAMPLE, samples(8))
    done = threading.Event()
    result: list[bool] = []

    def producer() -> None:
        result.append(inbox.put(Kind.SAMPLE, samples(5)))
        result.append(inbox.put(Kind.SAMPLE, samples(8)))
        done.set()

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    assert not done.wait(0.1)  # blocked: 8 + 5 > 10
    assert inbox.wait(1.0, 0.0).count == 8
    assert not done.wait(0.05)  # the second put waits again
    inbox.close()
    assert done.wait(2)
    assert result == [True, False]
    # a single list larger than the whole queue is let in when it is empty
    big = Inbox(capacity=10, wake_items=10)
    assert big.put(Kind.SAMPLE, samples(50))


def test_queue_drops_are_counted_in_the_stats(tmp_path: Path, clock: Clock) -> None:
    cfg = StoreConfig(state_dir=tmp_path, queue_items=100, commit_items=100,
                      commit_interval=60.0)
    with Store(cfg, clock=clock) as store:
        store.put_samples(samples(99), block=False)
        assert not store.put_frames(frames(10), block=False)
        assert store.put_events(events(10), block=False)  # 10 samples go
        stats = store.stats()
        assert stats.classes["frames"].dropped_queue == 10
        assert stats.classes["samples"].dropped_queue == 99  # dropped as one list
        assert stats.classes["events"].items == 10


# -- commits ---------------------------------------------------------------------------------


def test_commit_when_enough_items_or_the_interval_is_over(tmp_path: Path, clock: Clock) -> None:
    commits: list[CommitInfo] = []
    cfg = StoreConfig(state_dir=tmp_path, commit_items=1000, queue_items=5000,
                      commit_interval=0.2)
    with Store(cfg, clock=clock, on_commit=commits.append) as store:
        t = time.monotonic()
        store.put_samples(samples(1000))
        while not commits and time.monotonic() - t < 2:
            time.sleep(0.005)
        assert commits and time.monotonic() - t < 0.15  # by count, not by time
        assert commits[0].items == 1000 and commits[0].stored == {Kind.SAMPLE: 1000}
        t = time.monotonic()
        store.put_events(events(1))
        while len(commits) < 2 and time.monotonic() - t < 2:
            time.sleep(0.005)
        waited = time.monotonic() - t
        assert len(commits) == 2 and 0.15 <= waited < 0.6  # by time
        store.put_frames(frames(3))
    assert commits[-1].stored == {Kind.FRAME: 3}  # close() commits what is queued


def test_close_interrupts_the_writer_wait(tmp_path: Path) -> None:
    store = Store(StoreConfig(state_dir=tmp_path, commit_interval=30.0,
                              checkpoint_interval=30.0)).start()  # the writer waits now
    store.put_samples(samples(5))
    t = time.monotonic()
    store.close()
    assert time.monotonic() - t < 1.0
    with pytest.raises(StoreError):
        store.stats()
    assert not store.put_samples(samples(1))  # after close: dropped, never blocks
    with Store(StoreConfig(state_dir=tmp_path)) as again:
        assert again.stats().classes["samples"].items == 5


def test_items_that_cannot_be_stored_are_dropped_and_counted(store: Store) -> None:
    store.put_samples([Sample(1.0, "can0", "M", "S", object())])  # type: ignore[arg-type]
    store.put_events(events(1))
    store.flush()
    stats = store.stats()
    assert stats.counters["dropped_invalid.samples"] == 1
    assert stats.classes["events"].items == 1 and store.state == "ok"


def test_producers_and_an_uploader_at_once_deliver_everything_once(tmp_path: Path) -> None:
    cfg = StoreConfig(state_dir=tmp_path, commit_interval=0.01, commit_items=500,
                      chunk_items=300, queue_items=2000)
    received: list[int] = []
    failed_once: set[int] = set()
    with Store(cfg) as store:
        stop = threading.Event()

        def produce(base: int) -> None:
            for i in range(0, 20_000, 100):
                store.put_samples(samples(100, base + i))

        def upload() -> None:
            while not stop.is_set():
                b = store.next_batch(max_items=700)
                if b is None:
                    time.sleep(0.002)
                    continue
                if b.seq_first % 3 == 0 and b.seq_first not in failed_once:
                    failed_once.add(b.seq_first)  # some uploads fail, and are retried
                    store.release(b.seq_first, b.seq_last)
                    continue
                received.extend(int(s.value) for s in b.samples)
                store.ack(b.seq_first, b.seq_last)

        producers = [threading.Thread(target=produce, args=(k * 100_000,)) for k in range(3)]
        uploader = threading.Thread(target=upload)
        uploader.start()
        for t in producers:
            t.start()
        for t in producers:
            t.join(30)
        store.flush()
        deadline = time.monotonic() + 30
        while len(received) < 60_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        uploader.join(10)
    assert sorted(received) == [k * 100_000 + i for k in range(3) for i in range(20_000)]
    assert failed_once


# -- start-up ----------------------------------------------------------------------------


def test_one_store_per_state_directory(tmp_path: Path) -> None:
    with Store(StoreConfig(state_dir=tmp_path)), pytest.raises(StoreError, match="another"):
        Store(StoreConfig(state_dir=tmp_path)).start()


def test_unusable_state_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="state directory"):
        Store(StoreConfig(state_dir=tmp_path / "file" / "sub")).start()


def test_bad_settings_are_reported_together() -> None:
    with pytest.raises(StoreError) as err:
        Store(StoreConfig(quota_bytes=1000, commit_items=0, check_on_open="maybe"))
    text = str(err.value)
    assert "quota_bytes" in text and "commit_items" in text and "check_on_open" in text


def test_database_is_wal_and_passes_integrity_check(store: Store) -> None:
    store.put_samples(samples(100))
    store.flush()
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- bavard buffer ----------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    buffer_cmd.add_arguments(parser)
    return buffer_cmd.run(parser.parse_args(list(argv)))


def test_buffer_command_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    clock = Clock(time.time() - 3600)  # stored an hour ago
    with Store(StoreConfig(state_dir=tmp_path, quota_bytes=8 << 20), clock=clock) as store:
        store.put_samples(samples(3000))
        store.put_events(events(2))
        store.flush()
        b = store.next_batch()
        assert b is not None
        store.dead_letter(b.seq_first, b.seq_last, "refused")
        store.next_batch()  # in a batch, not acked
        # read while the agent runs
        assert run_cli("--state-dir", str(tmp_path), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["classes"]["samples"]["items"] == 3000
    assert doc["classes"]["samples"]["in_batches"] > 0
    assert doc["classes"]["events"]["items"] == 0
    assert doc["dead_letter_items"] == 2 and doc["dead_letter_batches"] == 1
    assert doc["quota_bytes"] == 8 << 20 and 0 < doc["used_bytes"] <= 8 << 20
    assert doc["oldest_age"] == pytest.approx(3600, abs=60)
    assert set(doc["classes"]["frames"]) >= {"items", "bytes", "evicted", "expired"}
    assert run_cli("--state-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "samples" in out and "3000" in out and "of 8.0 MiB quota" in out
    assert "oldest item 1h00m ago" in out and "dead letters: 1 batches, 2 items" in out


def test_buffer_command_without_a_buffer(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no buffer"):
        run_cli("--state-dir", str(tmp_path))


# -- regressions ----------------------------------------------------------------------------


def sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    """An error as SQLite raises it, with its result code (13 SQLITE_FULL, 11 SQLITE_CORRUPT)."""
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


def fail_once(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """The next transaction of new items fails with ``exc`` (as the disk or the file would)."""
    real = quota.Space.measure
    calls = [0]

    def measure(*args: object, **kwargs: object) -> quota.Space:
        calls[0] += 1
        if calls[0] == 1:
            raise exc
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(quota.Space, "measure", measure)


def test_a_wrong_range_leaves_no_transaction_open(tmp_path: Path, clock: Clock) -> None:
    with Store(StoreConfig(state_dir=tmp_path, chunk_items=1000), clock=clock) as store:
        store.put_samples(samples(1500))
        store.flush()
        b = store.next_batch()
        assert b is not None
        for finish in (store.ack, store.release, store.dead_letter):
            with pytest.raises(StoreError, match="ends at"):
                finish(b.seq_first, b.seq_last + 1)
            store.put_samples(samples(10))  # the next commit must not find a transaction open
            store.flush()
        stats = store.stats()
        assert stats.state == "ok" and "write_errors" not in stats.counters
        assert stats.classes["samples"].items == 1530
        assert (tmp_path / "buffer.ballast").exists()  # not given back for a caller's mistake
        assert store.ack(b.seq_first, b.seq_last) == 1500


def test_nan_timestamps_are_stored_not_retried_forever(store: Store) -> None:
    nan = float("nan")
    odd = [Event(nan, "can0", "dtc", "P0001", 1), Event(1.0, "can0", "dtc", "P0002", 1)]
    store.put_events(odd)
    store.put_samples([Sample(nan, "can0", "M", "S", 1), *samples(5)])
    store.flush()
    store.put_events(events(1, 9))
    store.flush()
    stats = store.stats()
    assert stats.state == "ok" and stats.held_events == 0 and "write_errors" not in stats.counters
    assert stats.classes["events"].items == 3 and stats.classes["samples"].items == 6
    b = store.next_batch()
    assert b is not None and [e.detail for e in b.events] == ["P0001", "P0002", "P0009"]
    assert math.isnan(b.events[0][0])


def test_items_that_break_the_encoder_do_not_stop_the_writer(store: Store) -> None:
    store.put_samples([Sample(10**400, "can0", "M", "S", 1)])  # type: ignore[arg-type]
    store.put_samples([{"ts": 1.0}])  # type: ignore[list-item]
    store.flush()
    store.put_events(events(1))
    store.flush()
    stats = store.stats()
    assert store.state == "ok" and stats.counters["dropped_invalid.samples"] == 2
    assert stats.classes["events"].items == 1


def test_a_lowered_quota_gives_the_free_pages_back(tmp_path: Path, clock: Clock) -> None:
    store = quota_store(tmp_path, clock, 4 << 20)
    for i in range(100):
        store.put_samples(noisy_samples(2000, i * 2000))
    store.flush()
    drain(store)  # all delivered: the file is mostly free pages
    store.close()
    assert (tmp_path / DB_NAME).stat().st_size > 1 << 20
    store = quota_store(tmp_path, clock, QUOTA)
    try:
        assert store.stats().used_bytes <= QUOTA
    finally:
        store.close()


def test_inbox_put_after_close_drops_only_itself() -> None:
    inbox = Inbox(capacity=10, wake_items=10)
    assert inbox.put(Kind.SAMPLE, samples(8), block=False)
    inbox.close()
    assert not inbox.put(Kind.EVENT, events(5), block=False)
    work = inbox.wait(1.0, 0.0)
    assert work.count == 8 and work.dropped == {Kind.FRAME: 0, Kind.SAMPLE: 0, Kind.EVENT: 5}


def test_a_next_batch_that_times_out_is_not_left_in_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stall = threading.Event()
    go = threading.Event()

    def on_commit(info: CommitInfo) -> None:
        if stall.is_set():
            go.wait(10)

    with Store(StoreConfig(state_dir=tmp_path), on_commit=on_commit) as store:
        store.put_samples(samples(10))
        store.flush()
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 0.2)
        # the writer is busy (a slow commit) before it gets to the request
        stall.set()
        store.put_events(events(1))
        with pytest.raises(StoreError, match="did not answer"):
            store.next_batch()
        go.set()
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 10.0)
        b = store.next_batch()
        assert b is not None and b.events == events(1)
        # the writer is slow in the request itself: the batch it hands out to nobody is released
        real = batches.next_batch

        def slow(*args: Any) -> Any:
            time.sleep(0.4)
            return real(*args)

        monkeypatch.setattr(batches, "next_batch", slow)
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 0.1)
        with pytest.raises(StoreError, match="did not answer"):
            store.next_batch()
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 10.0)
        monkeypatch.setattr(batches, "next_batch", real)
        deadline = time.monotonic() + 5
        while store.stats().inflight_batches != 1:  # until the abandoned batch is released
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = store.next_batch()
        assert again is not None and again.samples == samples(10)
        assert store.stats().inflight_batches == 2


def test_an_on_commit_that_raises_does_not_stop_the_writer(tmp_path: Path) -> None:
    def on_commit(info: CommitInfo) -> None:
        raise RuntimeError("a bug in the callback")

    with Store(StoreConfig(state_dir=tmp_path), on_commit=on_commit) as store:
        store.put_events(events(1))
        store.flush()
        store.put_events(events(1, 1))
        store.flush()
        assert store.state == "ok" and store.stats().classes["events"].items == 2


def test_the_writer_survives_a_database_it_cannot_reopen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(database, "REOPEN_INTERVAL", 0.05)
    with Store(StoreConfig(state_dir=tmp_path)) as store:
        store.put_events(events(1))
        store.flush()
        real = schema.connect

        def cannot_open(*args: Any) -> sqlite3.Connection:
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(schema, "connect", cannot_open)
        fail_once(monkeypatch, sqlite_error(11, "database disk image is malformed"))
        store.put_events(events(1, 1))
        store.flush()  # the file went bad, and no new one can be opened: unavailable
        assert store.state == "unavailable"
        assert store.next_batch() is None
        monkeypatch.setattr(schema, "connect", real)
        deadline = time.monotonic() + 5
        while store.state != "ok" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.state == "ok"
        stats = store.stats()
        assert stats.classes["events"].items == 1  # the held event, in a fresh database
        assert stats.counters["corrupt_recoveries"] == 1 and len(stats.corrupt_files) == 1


def test_events_are_held_not_dropped_while_the_file_may_not_grow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monotonic = Monotonic()
    with Store(StoreConfig(state_dir=tmp_path, chunk_items=500, min_free_bytes=0),
               monotonic=monotonic) as store:
        fail_once(monkeypatch, sqlite_error(13, "database or disk is full"))
        for i in range(20):  # more than the (new, small) file holds without growing
            store.put_events([Event(float(j), "can0", "dtc", f"{j * 2654435761:x}")
                              for j in range(i * 500, i * 500 + 500)])
            store.flush()
        stats = store.stats()
        assert stats.counters["disk_full"] == 1
        assert stats.classes["events"].evicted == stats.classes["events"].dropped_full == 0
        assert stats.classes["events"].items + stats.held_events == 10_000  # type: ignore[operator]
        monotonic.advance(disk.SQUEEZE_SECONDS)  # the file may grow again
        store.flush()
        store.put_events(events(1))
        store.flush()
        stats = store.stats()
        assert stats.state == "ok" and stats.held_events == 0
        assert stats.classes["events"].items == 10_001


def test_a_writer_stopped_by_a_bug_fails_the_requests_it_took(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(self: writer.Writer) -> None:
        raise RuntimeError("a bug")

    with Store(StoreConfig(state_dir=tmp_path)) as store:
        monkeypatch.setattr(writer.Writer, "_expire", bug)
        t = time.monotonic()
        with pytest.raises(StoreError, match="closed"):
            store.flush()  # at once, not after REQUEST_TIMEOUT
        assert time.monotonic() - t < 5
        store._writer.join(5)
        assert store.state == "stopped"
        assert not store.put_events(events(1))


def test_a_writer_that_fails_at_start_fails_the_start(tmp_path: Path) -> None:
    """Regression: a writer that died while opening (here a ``meta`` row that is not a
    number; a quota SQLite cannot hold did the same) left start() returning a store that
    drops everything, and the service reported itself running."""
    with Store(StoreConfig(state_dir=tmp_path)) as store:
        store.put_events(events(1))
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE meta SET value = 'many' WHERE key = 'next_seq'")
    broken = Store(StoreConfig(state_dir=tmp_path))
    with pytest.raises(StoreError, match="cannot start: TypeError"):
        broken.start()
    assert broken.state == "stopped"
    broken.close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # nothing was lost on the way
        assert db.execute("SELECT sum(items) FROM chunk").fetchone()[0] == 1
        db.execute("UPDATE meta SET value = 1 WHERE key = 'next_seq'")
    with Store(StoreConfig(state_dir=tmp_path)) as again:  # the lock was given back
        assert again.stats().classes["events"].items == 1


def test_an_unreadable_batch_is_dead_lettered_even_when_the_writer_is_slow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: when the dead-letter call that follows an undecodable chunk timed out,
    the batch stayed in flight, never handed out again, until a restart."""
    with Store(StoreConfig(state_dir=tmp_path)) as store:
        store.put_events(events(1))
        store.flush()
        with sqlite3.connect(store.path) as db:  # bit rot in the event's body
            db.execute("UPDATE chunk SET body = x'00112233' WHERE class = 2")
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 0.5)
        # Hold the writer inside a request, then queue next_batch and a second hold: the
        # writer takes both in its next round, answers next_batch, and is held again
        # while the caller decodes the batch and asks for its dead-lettering.
        hold1, hold2 = threading.Event(), threading.Event()
        held = threading.Event()

        def hold(until: threading.Event) -> None:
            held.set()
            until.wait(10)

        first = store._inbox.request(lambda: hold(hold1))
        assert held.wait(5)
        errors: list[BaseException] = []
        got: list[object] = []

        def uploader() -> None:
            try:
                got.append(store.next_batch())
            except StoreError as exc:
                errors.append(exc)

        thread = threading.Thread(target=uploader, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while not store._inbox._requests and time.monotonic() < deadline:
            time.sleep(0.005)  # the uploader's request is queued behind the hold
        second = store._inbox.request(lambda: hold(hold2))
        hold1.set()
        first.result(5)
        thread.join(10)  # its next_batch call times out behind the second hold
        assert not thread.is_alive()
        assert len(errors) == 1 and "did not answer" in str(errors[0]), (errors, got)
        hold2.set()
        second.result(5)
        monkeypatch.setattr(buffer, "REQUEST_TIMEOUT", 10.0)
        stats = store.stats()
        assert stats.inflight_batches == 0  # not stranded in flight
        assert (stats.dead_letter_batches, stats.dead_letter_items) == (1, 1)
        store.put_events(events(1, 1))
        store.flush()
        b = store.next_batch()
        assert b is not None and b.events == events(1, 1)
