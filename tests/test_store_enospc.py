"""A full filesystem, for real: a 2 MiB tmpfs filled up by another file.

The store must keep running, drop the lowest classes first (counting what it
drops), keep the events, and grow again once the space is back. Mounting needs
root (CAP_SYS_ADMIN), which the CI machines have; elsewhere these tests skip.

Two ways to meet a full disk are tested: the honest one, where ``statvfs`` shows
the space running out and the store stays within what it has; and the one where
the filesystem says it has room and then refuses the write (a user quota, thin
provisioning, another process faster than us): SQLite answers SQLITE_FULL and
the store rolls back, gives its ballast back, and retries without the lowest
classes. The second one is made by reporting a large ``f_bavail`` from
``os.statvfs`` (a process edge); the ENOSPC itself is the kernel's.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.frames import Event, Frame, Sample
from agent.store import DB_NAME, Store, StoreConfig, database, disk

FS_SIZE = "2m"
REAL_STATVFS = os.statvfs


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CAP_SYS_ADMIN)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a {FS_SIZE} tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Another process's file taking every free byte."""
    path = directory / "filler"
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\xa5" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert REAL_STATVFS(directory).f_bavail == 0
    return path


class Feed:
    """Numbered items in rounds: 2000 samples and 1000 frames (about 25 KB), 1 event."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0
        self.events = 0

    def round(self, flush: bool = True) -> None:
        n = self.n
        assert self.store.put_samples(
            [Sample(n + i * 1e-3, "can0", "M", "S", (i * 2654435761 + n) % 1000003 / 7.0)
             for i in range(2000)])
        assert self.store.put_frames(
            [Frame(n + i * 1e-3, "can0", 0x100 + i % 50, False, False,
                   ((i * 2654435761 + n) % (1 << 64)).to_bytes(8, "big"))
             for i in range(1000)])
        assert self.store.put_events([Event(float(n), "can0", "dtc", f"P{self.events:04d}")])
        self.events += 1
        self.n += 1
        if flush:
            self.store.flush()


def config(directory: Path) -> StoreConfig:
    return StoreConfig(state_dir=directory / "state", quota_bytes=1536 * 1024,
                       min_free_bytes=0, chunk_items=500, commit_items=10_000,
                       queue_items=20_000)


def integrity(directory: Path) -> str:
    db = sqlite3.connect(directory / "state" / DB_NAME)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def event_details(store: Store) -> list[str]:
    out: list[str] = []
    while (b := store.next_batch()) is not None and b.events:
        out += [e.detail for e in b.events]
    return out


def test_disk_fills_up_the_store_keeps_within_its_space_and_grows_back(small_fs: Path) -> None:
    offset = [0.0]  # the store's monotonic clock is moved forward, not waited for
    with Store(config(small_fs), monotonic=lambda: time.monotonic() + offset[0]) as store:
        feed = Feed(store)
        for _ in range(15):
            feed.round()
        before = store.stats()
        assert before.state == "ok"
        assert before.classes["samples"].evicted == before.classes["frames"].evicted == 0

        filler = fill(small_fs)
        for _ in range(30):
            feed.round()  # never raises, never blocks
        full = store.stats()
        assert full.state == "disk-full"
        assert full.classes["events"].items == feed.events  # every event kept
        assert full.classes["events"].evicted == full.classes["events"].dropped_full == 0
        frames_gone = full.classes["frames"].evicted + full.classes["frames"].dropped_full
        samples_gone = full.classes["samples"].evicted + full.classes["samples"].dropped_full
        assert frames_gone > 0 and samples_gone > 0
        assert full.classes["frames"].items == 0  # the lowest class went first, all of it
        assert integrity(small_fs) == "ok"

        filler.unlink()
        offset[0] += disk.SQUEEZE_SECONDS  # after a SQLITE_FULL the store may grow again now
        full = store.stats()
        for _ in range(10):
            feed.round()
        back = store.stats()
        assert back.state == "ok"
        assert back.classes["samples"].items == full.classes["samples"].items + 10 * 2000
        assert back.classes["samples"].evicted == full.classes["samples"].evicted
        assert back.used_bytes <= 1536 * 1024
        assert event_details(store) == [f"P{i:04d}" for i in range(feed.events)]
    assert integrity(small_fs) == "ok"


def test_sqlite_full_is_survived_when_the_filesystem_claims_room(
        small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "SQUEEZE_SECONDS", 0.3)
    def roomy(path: Any) -> os.statvfs_result:  # "plenty of room", whatever the truth
        st = REAL_STATVFS(path)
        fields = list(st)
        fields[4] = fields[3] = 1 << 30  # f_bfree, f_bavail
        return os.statvfs_result(fields)

    with Store(config(small_fs)) as store:
        feed = Feed(store)
        for _ in range(15):
            feed.round()
        assert (small_fs / "state" / "buffer.ballast").exists()
        monkeypatch.setattr(os, "statvfs", roomy)
        filler = fill(small_fs)
        for _ in range(30):
            feed.round()
        full = store.stats()
        assert full.counters["disk_full"] > 0  # SQLite itself said SQLITE_FULL
        assert not (small_fs / "state" / "buffer.ballast").exists()  # given back
        gone = {k: c.evicted + c.dropped_full for k, c in full.classes.items()}
        assert gone["frames"] > 0 and gone["events"] == 0
        assert full.classes["events"].items + full.held_events == feed.events  # type: ignore[operator]
        assert integrity(small_fs) == "ok"

        monkeypatch.setattr(os, "statvfs", REAL_STATVFS)
        filler.unlink()
        deadline = time.monotonic() + 5  # it tries to grow again after SQUEEZE_SECONDS
        while store.stats().state != "ok" and time.monotonic() < deadline:
            feed.round()
            time.sleep(0.05)
        feed.round()
        back = store.stats()
        assert back.state == "ok" and back.held_events == 0
        assert back.classes["events"].items == feed.events
        assert back.counters["disk_full"] == full.counters["disk_full"]  # no new failures
        assert event_details(store) == [f"P{i:04d}" for i in range(feed.events)]
    assert integrity(small_fs) == "ok"


def test_no_room_for_the_database_at_all(small_fs: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "REOPEN_INTERVAL", 0.05)
    (small_fs / "state").mkdir()
    filler = fill(small_fs)
    with Store(config(small_fs)) as store:  # starts all the same
        feed = Feed(store)
        for _ in range(3):
            feed.round()
        stats = store.stats()
        assert stats.state == "unavailable"
        assert stats.held_events == 3
        with pytest.raises(Exception, match="unavailable"):
            store.ack(1, 2)
        assert store.next_batch() is None

        filler.unlink()
        deadline = time.monotonic() + 5
        while store.state != "ok" and time.monotonic() < deadline:
            feed.round()
            time.sleep(0.02)
        assert store.state == "ok"
        feed.round()
        stats = store.stats()
        assert stats.classes["events"].items == feed.events  # the held ones too
        assert stats.counters["dropped_full.samples"] >= 3 * 2000
        assert stats.counters["dropped_full.frames"] >= 3 * 1000
    assert integrity(small_fs) == "ok"
