"""Crash safety of the store: SIGKILL at random moments, and damaged files at start-up.

The kill loop starts tests/helpers/ingest_child.py, which numbers every item
it stores and prints, after each commit, one past the highest number
committed. The parent kills it at a random moment (during start-up, a
commit, a batch hand-out, anywhere), then checks the database as the next
start-up will find it: ``PRAGMA integrity_check`` is ok, every number the
child reported committed is there, none twice, and the numbers stored are
exactly 0..N-1 with no gap (a commit is all or nothing). The next child
carries on from N. Chunks checked in an earlier round must still be there,
unchanged: only the new ones are decoded.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.frames import Event, Frame, Sample
from agent.store import DB_NAME, Kind, Store, StoreConfig
from agent.store.codec import decode

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "helpers" / "ingest_child.py"
KILLS = 50
BUDGET = 50.0  # seconds for the whole kill loop (the test must stay under 60 s)


def item_number(kind: Kind, item: Sample | Event | Frame) -> int:
    if kind == Kind.EVENT:
        assert isinstance(item, Event)
        return int(item.detail)
    if kind == Kind.FRAME:
        assert isinstance(item, Frame)
        return int.from_bytes(item.data, "big")
    assert isinstance(item, Sample)
    return int(item.value)


class Checker:
    """What the database held after the previous kills, to check the next one against."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chunks: dict[int, tuple[int, int, int, int]] = {}  # seq_first -> metadata
        self.next_number = 0

    def check(self, reported: int) -> None:
        """After a kill: ``reported`` is the child's last 'committed' number."""
        if not self.path.exists():  # killed before it even created the file
            assert not self.chunks and reported <= self.next_number
            return
        db = sqlite3.connect(self.path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_schema")}
            if "chunk" not in tables:  # killed before the schema was created
                assert not self.chunks and reported <= self.next_number
                return
            rows = db.execute("SELECT seq_first, seq_last, class, items, codec, body FROM chunk "
                              "ORDER BY seq_first").fetchall()
        finally:
            db.close()
        seen: dict[int, tuple[int, int, int, int]] = {}
        new_numbers: list[int] = []
        last_seq = 0
        for seq_first, seq_last, cls, items, codec, body in rows:
            assert seq_first > last_seq, "chunk sequence ranges overlap"
            assert seq_last - seq_first + 1 == items
            last_seq = seq_last
            meta = (seq_last, cls, items, len(body))
            seen[seq_first] = meta
            if seq_first in self.chunks:
                assert self.chunks[seq_first] == meta, f"chunk {seq_first} changed"
                continue
            decoded = decode(Kind(cls), codec, body)
            assert len(decoded) == items
            new_numbers.extend(item_number(Kind(cls), it) for it in decoded)
        missing = set(self.chunks) - set(seen)
        assert not missing, f"chunks lost: {sorted(missing)[:5]}"
        new_numbers.sort()
        top = self.next_number + len(new_numbers)
        assert new_numbers == list(range(self.next_number, top)), "duplicate or missing items"
        assert top >= reported, f"committed up to {reported} but only {top} stored"
        self.chunks = seen
        self.next_number = top


def read_lines(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    checker = Checker(tmp_path / DB_NAME)
    started = time.monotonic()
    kills = commits_seen = 0
    while kills < KILLS:
        assert time.monotonic() - started < BUDGET, f"only {kills} kills in {BUDGET} s"
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path), str(checker.next_number),
             str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=read_lines, args=(child.stdout, lines), daemon=True)
        reader.start()
        # from "not even started" to "well into ingesting": start-up takes ~0.2 s here
        time.sleep(rng.uniform(0.05, 0.6))
        assert child.stderr is not None
        if child.poll() is not None:
            pytest.fail(f"child ended by itself ({child.returncode}): {child.stderr.read()}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        reader.join(5)
        errors = child.stderr.read()
        child.stderr.close()
        assert "Traceback" not in errors, errors
        reported = max((int(line.split()[1]) for line in lines
                        if line.startswith("committed ") and line.endswith("\n")),
                       default=0)
        commits_seen += sum(1 for line in lines if line.startswith("committed "))
        checker.check(reported)
        kills += 1
    assert commits_seen > KILLS, "the kills should land among many commits"
    assert checker.next_number > 1000


def _fill(path: Path, n: int = 3000) -> None:
    with Store(StoreConfig(state_dir=path, commit_items=500, chunk_items=500)) as store:
        store.put_samples([Sample(float(i), "can0", "M", "S", i) for i in range(n)])
        store.put_events([Event(1.0, "can0", "dtc", "P0001")])


def _start_fresh(path: Path, caplog: pytest.LogCaptureFixture) -> Store:
    with caplog.at_level(logging.ERROR, logger="agent.store"):
        store = Store(StoreConfig(state_dir=path)).start()
    return store


def test_garbage_database_is_moved_aside_and_store_starts_fresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / DB_NAME
    garbage = random.Random(1).randbytes(50_000)
    db.write_bytes(garbage)
    store = _start_fresh(tmp_path, caplog)
    try:
        assert any(r.levelno == logging.ERROR and "corrupt" in r.getMessage()
                   for r in caplog.records)
        aside = list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == garbage
        store.put_events([Event(5.0, "can0", "dtc", "P0420")])
        store.flush()
        batch = store.next_batch()
        assert batch is not None and batch.events == [Event(5.0, "can0", "dtc", "P0420")]
        assert store.stats().counters.get("corrupt_recoveries") == 1
    finally:
        store.close()


def test_truncated_database_is_moved_aside_and_store_starts_fresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _fill(tmp_path, 20_000)
    db = tmp_path / DB_NAME
    assert not Path(f"{db}-wal").exists()  # a clean close checkpoints into the file
    size = db.stat().st_size
    assert size > 64 * 1024
    with db.open("r+b") as f:
        f.truncate(size // 2)
    store = _start_fresh(tmp_path, caplog)
    try:
        assert any(r.levelno == logging.ERROR and "moved aside" in r.getMessage()
                   for r in caplog.records)
        assert len(list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))) == 1
        stats = store.stats()
        assert stats.classes["samples"].items == 0
        store.put_samples([Sample(1.0, "can0", "M", "S", 1)])
        store.flush()
        assert store.stats().classes["samples"].items == 1
    finally:
        store.close()


def test_header_only_truncation_and_empty_file(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A file cut inside its first page is not a database; an empty file is a new one."""
    _fill(tmp_path)
    db = tmp_path / DB_NAME
    with db.open("r+b") as f:
        f.truncate(60)
    _start_fresh(tmp_path, caplog).close()
    assert len(list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))) == 1

    other = tmp_path / "empty"
    other.mkdir()
    (other / DB_NAME).write_bytes(b"")
    caplog.clear()
    _start_fresh(other, caplog).close()
    assert not list(other.glob("*.corrupt-*"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_garbage_wal_is_ignored_and_committed_data_kept(tmp_path: Path) -> None:
    _fill(tmp_path)
    Path(f"{tmp_path / DB_NAME}-wal").write_bytes(random.Random(2).randbytes(40_000))
    with Store(StoreConfig(state_dir=tmp_path)) as store:
        stats = store.stats()
        assert stats.classes["samples"].items == 3000
        assert stats.classes["events"].items == 1
        assert not stats.corrupt_files


def test_only_the_newest_corrupt_files_are_kept(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    clock = [1_700_000_000.0]  # 2023-11-14 22:13:20 UTC
    for i in range(4):
        (tmp_path / DB_NAME).write_bytes(b"not a database at all, " * 100 + bytes([i]))
        clock[0] += 60
        Store(StoreConfig(state_dir=tmp_path, keep_corrupt=2), clock=lambda: clock[0]).start(
        ).close()
    kept = sorted(p.name for p in tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    assert kept == [f"{DB_NAME}.corrupt-20231114T221620Z", f"{DB_NAME}.corrupt-20231114T221720Z"]
    assert (tmp_path / kept[-1]).read_bytes().endswith(b"\x03")
