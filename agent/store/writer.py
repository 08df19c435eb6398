"""The writer thread: the only owner of the SQLite connection.

One round of its loop: wait on the inbox (for ``commit_items`` queued items,
``commit_interval`` after the oldest queued one arrived, a request, or
close), encode what came in into chunks, store them in one transaction
(evicting per agent.store.quota when needed), delete what is too old, run
the queued requests (next_batch, ack, ... sent by the Store), and checkpoint
the WAL every ``checkpoint_interval``.

Failures it survives, without ever stopping the agent:

- *Full disk.* Before every commit the filesystem's free space is read
  (statvfs), so as the disk fills up the store stops growing its file and
  keeps within the space it has, evicting by the policy. When a write fails
  all the same (SQLITE_FULL or ENOSPC; SQLITE_IOERR and other write errors
  are treated alike): roll back, delete the ballast file (see ``_ballast``)
  so that the pending WAL checkpoint can complete, retry without growing the
  file, then without the lowest pending class, then the next, counting what
  is dropped (``dropped_full.<class>``). Events that still cannot be written
  are held in memory (up to ``HELD_EVENTS``) and retried at the next round.
  After a failed write the file is not grown for ``SQUEEZE_SECONDS`` (statvfs
  may not tell the truth: quotas, thin provisioning); then it grows again if
  the disk has room.
- *Corrupt database* (at start-up or later): the file and its WAL are moved
  aside as ``*.corrupt-<UTC time>``, logged with ``logging.error``, and a
  fresh database is started. Its sequence numbers start at
  ``int(clock()) << 24``, above those of any earlier database (unless the
  clock went back), so batch ranges are not reused.
- *No database at all* (the file cannot be created on a full disk): the
  writer keeps running, holds events, counts the rest as dropped, and tries
  again every ``REOPEN_INTERVAL`` seconds.

A bug (an unexpected exception) stops the writer with ``logging.exception``;
the store then refuses requests with StoreError and drops what is put,
counting it; the rest of the agent runs on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from agent.errors import StoreError
from agent.store import batches, quota, schema
from agent.store.codec import CODEC_MSGPACK_ZSTD, Encoder
from agent.store.inbox import Inbox
from agent.store.settings import Kind, StoreConfig
from agent.store.stats import BufferStats, read_stats

log = logging.getLogger(__name__)

HOUSEKEEPING = 1.0  # seconds between rounds when nothing comes in
REOPEN_INTERVAL = 5.0  # seconds between attempts to open the database when it could not be
HELD_EVENTS = 10_000  # events kept in memory while the disk is full
ATTEMPTS = 4  # transactions tried per round when the disk is full
SQUEEZE_SECONDS = 10.0  # after SQLITE_FULL, do not try to grow the file for this long
STATE_LOG_INTERVAL = 60.0  # state changes logged at most this often (the rest at debug)


@dataclass(frozen=True)
class CommitInfo:
    """Passed to ``on_commit`` after each commit of new items (in the writer thread)."""

    seq_last: int  # the highest sequence number given so far
    stored: dict[Kind, int]  # items this commit stored, per class
    items: int  # items this commit took from the queue (stored, or dropped for room)


@dataclass
class _Chunk:
    kind: Kind
    items: int
    ts_first: float
    ts_last: float
    body: bytes


@dataclass
class _Txn:
    """What a transaction changes besides the rows: applied only once it is committed."""

    counters: Counter[str] = field(default_factory=Counter)
    stored: Counter[Kind] = field(default_factory=Counter)
    held: list[_Chunk] = field(default_factory=list)

    def write(self, db: sqlite3.Connection) -> None:
        if self.counters:
            db.executemany("INSERT INTO counter VALUES (?, ?) ON CONFLICT (name) "
                           "DO UPDATE SET value = value + excluded.value",
                           [(k, v) for k, v in self.counters.items() if v])


class Writer(threading.Thread):
    def __init__(self, config: StoreConfig, inbox: Inbox, clock: Callable[[], float],
                 on_commit: Callable[[CommitInfo], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="store-writer", daemon=True)
        self.config = config
        self.path = config.db_path
        self.inbox = inbox
        self.clock = clock
        self.monotonic = monotonic
        self.on_commit = on_commit
        self.db: sqlite3.Connection | None = None
        self.opened = threading.Event()  # the first attempt to open is over
        self.open_error: BaseException | None = None
        self.crashed: BaseException | None = None
        self.state = "starting"
        self.next_seq = 1
        self.inflight: dict[int, int] = {}  # batch seq_first -> seq_last
        self.held: list[_Chunk] = []  # events not written for lack of disk
        self.unsaved: Counter[str] = Counter()  # counted, not yet in the counter table
        self._encoder = Encoder()
        self._page_size = 4096
        self._lock_fd: int | None = None
        self._last_checkpoint = monotonic()
        self._last_open_try = 0.0
        self._squeeze_until = 0.0
        self._state_logged = -STATE_LOG_INTERVAL
        self._dirty = False

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._open_first()
            if self.open_error is None:
                self._loop()
        except BaseException as exc:  # a bug: keep the agent up, say it loudly
            self.crashed = exc
            log.exception("store writer stopped: %s", exc)
        finally:
            for _call, future in self.inbox.finish():
                future.set_exception(StoreError("the store is closed"))
            self._close_db(checkpoint=self.crashed is None)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self.opened.set()

    def _loop(self) -> None:
        cfg = self.config
        while True:
            work = self.inbox.wait(cfg.commit_items, cfg.commit_interval, HOUSEKEEPING)
            for kind, n in work.dropped.items():
                if n:
                    self.unsaved[f"dropped_queue.{kind.label}"] += n
            if self.db is None and self.monotonic() - self._last_open_try >= REOPEN_INTERVAL:
                self._open()
            self._ballast()
            if work.items or self.held:
                self._commit(work.items, work.count)
            self._expire()
            for call, future in work.requests:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        future.set_exception(exc)
            self._checkpoint()
            if work.closing:
                if self.unsaved and self.db is not None:
                    self._commit({}, 0)
                return

    # -- opening ---------------------------------------------------------------------------

    def _open_first(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            self.open_error = StoreError(f"state directory {self.path.parent}: "
                                         f"{exc.strerror or exc}")
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.open_error = StoreError(f"{self.path.parent}: another process holds the buffer")
            return
        self._lock_fd = fd
        try:
            self._open()
        except StoreError as exc:
            self.open_error = exc
        finally:
            self.opened.set()

    def _open(self) -> None:
        """Open (or create) the database; a corrupt one is moved aside and replaced."""
        self._last_open_try = self.monotonic()
        for _attempt in range(3):
            db = None
            try:
                db = schema.connect(self.path)
                schema.prepare(db, self.path, self.config.check_on_open, self.config.wal_reserve)
                self._adopt(db)
                return
            except (sqlite3.Error, schema.CorruptDatabase, OSError) as exc:
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        db.close()
                if schema.is_corrupt(exc):
                    self._move_aside(exc)
                    continue
                if schema.is_disk_full(exc):
                    if self.state != "unavailable":
                        log.error("store: cannot open %s, the disk is full (%s); events are "
                                  "kept in memory, the rest dropped, until it can", self.path, exc)
                    self.state = "unavailable"
                    return
                raise StoreError(f"{self.path}: cannot open the buffer: {exc}") from None
        raise StoreError(f"{self.path}: still unusable after moving it aside")

    def _adopt(self, db: sqlite3.Connection) -> None:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        top = db.execute("SELECT max(seq_last) FROM (SELECT max(seq_last) AS seq_last FROM chunk "
                         "UNION ALL SELECT max(seq_last) FROM dead_letter)").fetchone()[0]
        next_seq = max(meta.get("next_seq", 1), (top or 0) + 1, self.next_seq)
        if next_seq == 1 and top is None:
            next_seq = max(1, int(self.clock()) << 24)  # a new database: see the docstring
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       [("next_seq", next_seq), ("quota_bytes", self.config.quota_bytes)])
        db.execute("COMMIT")
        self.db = db
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self.next_seq = next_seq
        self.inflight.clear()
        self.state = "ok"
        self._shrink()

    def _move_aside(self, exc: BaseException) -> None:
        target = schema.move_aside(self.path, self.clock, self.config.keep_corrupt)
        log.error("store: the buffer database %s is corrupt (%s); moved aside as %s, "
                  "starting a fresh one: its data is lost", self.path, exc, target.name)
        self.unsaved["corrupt_recoveries"] += 1

    def _recover(self, exc: BaseException) -> None:
        """The database went bad while in use."""
        self._close_db(checkpoint=False)
        self._move_aside(exc)
        self._open()

    def _close_db(self, checkpoint: bool) -> None:
        db, self.db = self.db, None
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute("ROLLBACK")
            if checkpoint:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def _shrink(self) -> None:
        """After start-up: bring an over-quota file (the quota was lowered) back within it."""
        assert self.db is not None
        space = quota.Space.measure(self.db, self.path, self.config)
        if space.live <= space.limit:
            return
        self._write([], 0, squeeze_to=space.limit)
        try:
            # executescript steps it to the end: execute() would free a single page
            self.db.executescript("PRAGMA incremental_vacuum;")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("store: cannot shrink %s: %s", self.path, exc)

    # -- storing ---------------------------------------------------------------------------

    def _encode(self, items: dict[Kind, list[Sequence[Any]]]) -> list[_Chunk]:
        chunks = []
        size = self.config.chunk_items
        for kind in sorted(items, reverse=True):  # events first
            lists = items[kind]
            flat = lists[0] if len(lists) == 1 else list(itertools.chain.from_iterable(lists))
            for i in range(0, len(flat), size):
                part = flat[i:i + size]
                try:
                    stamps = list(map(itemgetter(0), part))
                    chunks.append(_Chunk(kind, len(part), float(min(stamps)),
                                         float(max(stamps)), self._encoder.encode(part)))
                except (StoreError, TypeError, ValueError, IndexError) as exc:
                    # not a Sample/Event/Frame of plain values: a bug upstream
                    log.error("store: %d %s dropped, they cannot be stored: %s", len(part),
                              kind.label, exc)
                    self.unsaved[f"dropped_invalid.{kind.label}"] += len(part)
        return chunks

    def _commit(self, items: dict[Kind, list[Sequence[Any]]], count: int) -> None:
        chunks = self._encode(items)
        held, self.held = self.held, []
        self._write(held + chunks, count)

    def _write(self, chunks: list[_Chunk], count: int, squeeze_to: int | None = None) -> None:
        chunks = sorted(chunks, key=lambda c: -c.kind)  # events first, in order
        # after SQLITE_FULL, stay within the file for a while: statvfs may not tell the
        # truth (quotas, thin provisioning), and trying to grow on every round would fail
        # on every round
        squeezed = self.monotonic() < self._squeeze_until
        for attempt in range(ATTEMPTS):
            if self.db is None:
                break
            txn = _Txn()
            try:
                seq = self._transaction(chunks, txn, squeezed, squeeze_to)
            except (sqlite3.Error, OSError) as exc:
                self._rollback()
                if schema.is_corrupt(exc):
                    self._recover(exc)
                    continue
                self.unsaved["disk_full" if schema.is_disk_full(exc) else "write_errors"] += 1
                self._set_state("disk-full", f"cannot write ({exc}): dropping the lowest classes")
                if not squeezed:
                    self._release_ballast()
                squeezed = True
                self._squeeze_until = self.monotonic() + SQUEEZE_SECONDS
                if attempt:  # already squeezed once: let the lowest class go
                    lowest = min((c.kind for c in chunks if c.kind < Kind.EVENT), default=None)
                    for c in chunks:
                        if c.kind == lowest:
                            self.unsaved[f"dropped_full.{c.kind.label}"] += c.items
                    chunks = [c for c in chunks if c.kind != lowest]
                continue
            self.next_seq = seq
            self.unsaved.clear()
            self._hold(txn.held)
            self._dirty = True
            if self.on_commit is not None and count:
                self.on_commit(CommitInfo(seq - 1, dict(txn.stored), count))
            return
        # nothing could be written
        self._hold([c for c in chunks if c.kind == Kind.EVENT])
        for c in chunks:
            if c.kind != Kind.EVENT:
                self.unsaved[f"dropped_full.{c.kind.label}"] += c.items

    def _hold(self, events: list[_Chunk]) -> None:
        """Keep event chunks in memory for the next round, up to HELD_EVENTS items."""
        held = sum(h.items for h in self.held)
        for c in events:
            if held + c.items <= HELD_EVENTS:
                self.held.append(c)
                held += c.items
            else:
                self.unsaved[f"dropped_full.{c.kind.label}"] += c.items

    def _transaction(self, chunks: list[_Chunk], txn: _Txn, squeezed: bool,
                     squeeze_to: int | None) -> int:
        """Store the chunks in one transaction; returns the next sequence number."""
        db = self.db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        txn_bytes = sum(quota.cost(len(c.body), self._page_size) for c in chunks)
        space = quota.Space.measure(db, self.path, self.config, txn_bytes)
        if space.disk_bound or squeezed:
            self._set_state("disk-full", "the filesystem is nearly full: the store keeps within "
                            "the space it has, dropping the lowest classes")
        else:
            self._set_state("ok", "disk space is back")
        limit = space.live + space.room(squeezed)  # what the file's live pages may reach
        if squeeze_to is not None:
            limit = min(limit, squeeze_to)
        page_size = space.page_size

        def over(extra: int) -> int:  # how many bytes must go before ``extra`` fits
            _, pages, free = schema.file_bytes(db)
            return (pages - free) * page_size + extra - limit

        # over the limit already (quota lowered, disk filled up): lowest classes first
        while (excess := over(0)) > 0 and self._evict(txn, Kind.EVENT, excess, page_size):
            pass
        limit -= space.wal_extra
        now = self.clock()
        seq = self.next_seq
        for c in chunks:
            need = quota.cost(len(c.body), page_size)
            while (excess := over(need)) > 0 and self._evict(txn, c.kind, excess, page_size):
                pass
            if over(need) > 0:  # nothing lower is left: the incoming chunk is the one to go
                if c.kind == Kind.EVENT and space.fs_limit < space.limit:
                    txn.held.append(c)  # the disk, not the quota, is full: wait for it
                else:
                    txn.counters[f"evicted.{c.kind.label}"] += c.items
                continue
            self._insert(db, [(seq, seq + c.items - 1, int(c.kind), c.items, c.ts_first,
                               c.ts_last, now, CODEC_MSGPACK_ZSTD, len(c.body), c.body)])
            txn.stored[c.kind] += c.items
            seq += c.items
        txn.counters.update(self.unsaved)
        txn.write(db)
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq,))
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute("COMMIT")
        grown = (pages - space.pages) * space.page_size
        if grown > 0 and space.fs_free - grown < 2 * space.txn_bytes + self.config.wal_reserve:
            # the file grew in the WAL and the disk is tight: copy it in now, before
            # someone else takes the space the checkpoint needs (see docs/store.md)
            self._checkpoint(force=True)
        return seq

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            db.executemany(f"INSERT INTO chunk ({schema.CHUNK_FIELDS}, body) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _evict(self, txn: _Txn, kind: Kind, need: int, page_size: int) -> int:
        """Delete by the eviction policy until ``need`` bytes are free; the bytes freed."""
        assert self.db is not None
        freed = 0
        for victim in quota.victims(self.db, kind, self.inflight):
            gone, items = quota.delete(self.db, victim, page_size)
            freed += gone
            for k, n in items.items():
                name = "evicted_dead" if victim.table == "dead_letter" else "evicted"
                txn.counters[f"{name}.{k.label}"] += n
            if freed >= need:
                break
        return freed

    def _set_state(self, state: str, why: str) -> None:
        if state != self.state:
            level = logging.INFO if state == "ok" else logging.WARNING
            now = self.monotonic()
            if now - self._state_logged < STATE_LOG_INTERVAL:  # flapping near the limit
                level = logging.DEBUG
            else:
                self._state_logged = now
            log.log(level, "store: %s", why)
            self.state = state

    def _rollback(self) -> None:
        if self.db is not None and self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("store: rollback failed: %s", exc)

    # -- housekeeping ----------------------------------------------------------------------

    def _expire(self) -> None:
        db = self.db
        if db is None:
            return
        txn = _Txn()
        try:
            db.execute("BEGIN IMMEDIATE")
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            for victim in quota.expired(db, self.config, self.clock(), self.inflight):
                _gone, items = quota.delete(db, victim, page_size)
                name = "expired_dead" if victim.table == "dead_letter" else "expired"
                for k, n in items.items():
                    txn.counters[f"{name}.{k.label}"] += n
            if txn.counters:
                txn.write(db)
                db.execute("COMMIT")
                self._dirty = True
            else:
                db.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            if schema.is_corrupt(exc):
                self._recover(exc)
            elif not schema.is_disk_full(exc):
                log.error("store: cannot delete old data: %s", exc)

    def _ballast(self) -> None:
        """(Re)create the ballast file when the disk has room for it again.

        The ballast (``wal_reserve`` bytes, part of the quota) is what the store gives
        back to the filesystem when it is full: a commit that grew the database
        puts the new pages in the WAL, and the checkpoint that copies them into
        the file needs that much free disk. If someone else took the last bytes
        in between, nothing can be written (the WAL cannot be reused before a
        complete checkpoint), until the ballast is deleted.
        """
        path = schema.ballast_path(self.path)
        size = self.config.wal_reserve
        if self.db is None or self.state != "ok" or schema.ballast_size(self.path) == size:
            return
        try:
            st = os.statvfs(path.parent)
            if st.f_bavail * st.f_frsize < 2 * size + self.config.min_free_bytes:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, 0)  # the quota (and so its size) may have changed
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("store: no ballast: %s", exc)
            with contextlib.suppress(OSError):
                path.unlink()

    def _release_ballast(self) -> None:
        path = schema.ballast_path(self.path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("store: cannot delete the ballast %s: %s", path, exc)
            return
        log.warning("store: the disk is full: gave the ballast's %d bytes back to finish "
                    "the WAL checkpoint", self.config.wal_reserve)
        self._checkpoint(force=True)

    def _checkpoint(self, force: bool = False) -> None:
        now = self.monotonic()
        if self.db is None or not (self._dirty or force):
            return
        if not force and now - self._last_checkpoint < self.config.checkpoint_interval:
            return
        self._last_checkpoint = now
        self._dirty = False
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # retried at the next one; expected on a full disk
            level = logging.WARNING if self.state == "ok" else logging.DEBUG
            log.log(level, "store: WAL checkpoint failed: %s", exc)

    # -- requests (run in this thread, sent by the Store) -----------------------------------

    def _guard(self, what: str, call: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``call`` on the connection; its failures become StoreError."""
        if self.db is None:
            raise StoreError(f"{what}: the buffer is unavailable (disk full)")
        try:
            return call(self.db)
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            if schema.is_corrupt(exc):
                self._recover(exc)
            raise StoreError(f"{what}: {exc}") from None

    def next_batch(self, max_items: int | None,
                   max_seconds: float | None) -> batches.RawBatch | None:
        if self.db is None:
            return None
        result: batches.RawBatch | None = self._guard(
            "next_batch", lambda db: batches.next_batch(db, max_items, max_seconds,
                                                        self.inflight))
        return result

    def finish_batch(self, action: str, seq_first: int, seq_last: int, reason: str = "") -> int:
        """ack, dead_letter or release a batch; the items concerned (0: no such batch)."""

        def run(db: sqlite3.Connection) -> int:
            if action == "release":
                info = batches.batch_info(db, seq_first, seq_last)
                self.inflight.pop(seq_first, None)
                return 0 if info is None else info[1]
            db.execute("BEGIN IMMEDIATE")
            if action == "ack":
                info = batches.ack(db, seq_first, seq_last)
                names = ["acked.{}"]
            else:
                info = batches.move_to_dead_letter(db, seq_first, seq_last, reason, self.clock())
                names = ["dead_letter.items"]
            if info is None:
                db.execute("ROLLBACK")
                self.inflight.pop(seq_first, None)
                return 0
            kind, items = info
            txn = _Txn()
            for name in names:
                txn.counters[name.format(kind.label)] += items
            if action == "dead_letter":
                txn.counters["dead_letter.batches"] += 1
                log.warning("store: batch %d..%d (%d %s) moved to the dead letters: %s",
                            seq_first, seq_last, items, kind.label, reason)
            txn.write(db)
            db.execute("COMMIT")
            self.inflight.pop(seq_first, None)
            self._dirty = True
            return items

        if action not in ("ack", "release", "dead_letter"):
            raise ValueError(action)
        result: int = self._guard(action, run)
        return result

    def stats(self, queued: int) -> BufferStats:
        held = sum(c.items for c in self.held)
        if self.db is None:
            return BufferStats(path=str(self.path), classes={}, used_bytes=0, live_bytes=0,
                               quota_bytes=self.config.quota_bytes, state=self.state,
                               queued_items=queued, inflight_batches=0, held_events=held)
        if self.unsaved:
            self._write([], 0)
        result: BufferStats = self._guard(
            "stats", lambda db: read_stats(db, self.path, self.clock(), self.unsaved))
        return dataclasses.replace(result, state=self.state, queued_items=queued,
                                   inflight_batches=len(self.inflight), held_events=held)

    def flush(self) -> None:
        """Runs after this round's commit: persist pending counters, checkpoint."""
        if self.unsaved and self.db is not None:
            self._write([], 0)
        self._checkpoint(force=True)
