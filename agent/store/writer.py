"""The writer thread: the only owner of the SQLite connection.

One round of its loop: wait on the inbox (for ``commit_items`` queued items,
``commit_interval`` after the oldest queued one arrived, a request, or
close), encode what came in into chunks, store them in one transaction
(evicting per agent.store.quota when needed), delete what is too old, run
the queued requests (next_batch, ack, ... sent by the Store), and checkpoint
the WAL every ``checkpoint_interval``.

Failures it survives, without ever stopping the agent:

- *Full disk* (agent.store.disk). When a write fails (SQLITE_FULL or ENOSPC;
  SQLITE_IOERR and other write errors are treated alike): roll back, give the
  ballast back, retry without growing the file, then without the lowest
  pending class, then the next, counting what is dropped
  (``dropped_full.<class>``). Events that still cannot be written are held in
  memory (up to ``HELD_EVENTS``) and retried at the next round.
- *Corrupt database*, *no database* (agent.store.database): moved aside and
  started afresh; or ``unavailable``, holding events, counting the rest as
  dropped, opened again every few seconds.
- Items that cannot be encoded (a bug upstream) are dropped and counted
  (``dropped_invalid.<class>``); an ``on_commit`` that raises is logged.

A bug (any other exception) stops the writer with ``logging.exception``;
the store then refuses requests with StoreError and drops what is put; the
rest of the agent runs on (and the service's watchdog stops pinging, since the
writer no longer answers). One that happens while opening the database (a
setting SQLite cannot take, say) is an ``open_error``, as a state directory
that cannot be used is: ``Store.start()`` fails with it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.errors import StoreError
from agent.store import batches, disk, maintenance, quota, schema
from agent.store.codec import CODEC_MSGPACK_ZSTD, Chunk, Encoder
from agent.store.database import Database
from agent.store.inbox import Inbox, Request
from agent.store.settings import Kind, StoreConfig
from agent.store.stats import BufferStats, read_stats

log = logging.getLogger(__name__)

HOUSEKEEPING = 1.0  # seconds between rounds when nothing comes in
HELD_EVENTS = 10_000  # events kept in memory while the disk is full
ATTEMPTS = 4  # transactions tried per round when the disk is full
INSERT = (f"INSERT INTO chunk ({schema.CHUNK_FIELDS}, body) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class CommitInfo:
    """Passed to ``on_commit`` after each commit of new items (in the writer thread)."""

    seq_last: int  # the highest sequence number given so far
    stored: dict[Kind, int]  # items this commit stored, per class
    items: int  # items this commit took from the queue (stored, or dropped for room)


@dataclass
class _Txn:
    """What a transaction changes besides the rows: applied only once it is committed."""

    counters: Counter[str] = field(default_factory=Counter)
    stored: Counter[Kind] = field(default_factory=Counter)
    held: list[Chunk] = field(default_factory=list)


class Writer(threading.Thread):
    def __init__(self, config: StoreConfig, inbox: Inbox, clock: Callable[[], float],
                 on_commit: Callable[[CommitInfo], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="store-writer", daemon=True)
        self.config = config
        self.path = config.db_path
        self.inbox = inbox
        self.clock = clock
        self.on_commit = on_commit
        self.database = Database(config, clock, monotonic, on_open=self._shrink)
        self.disk = disk.Disk(self.path, config, monotonic)
        self.opened = threading.Event()  # the first attempt to open is over
        self.open_error: StoreError | None = None
        self.crashed: BaseException | None = None
        self.held: list[Chunk] = []  # events not written for lack of disk
        self._requests: list[Request] = []  # this round's: failed if the writer stops
        self._encoder = Encoder()

    @property
    def state(self) -> str:
        return self.database.state

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            try:
                self._open()
            finally:
                self.opened.set()
            if self.open_error is None:
                self._loop()
        except BaseException as exc:  # a bug: keep the agent up, say it loudly
            self.crashed = exc
            log.exception("store writer stopped: %s", exc)
        finally:
            self.inbox.finish(unanswered=self._requests)
            self.database.close(checkpoint=self.crashed is None)
            self.database.unlock()
            self.opened.set()

    def _open(self) -> None:
        """Lock and open the database; what stops it goes to ``open_error``."""
        try:
            self.database.lock()
            self.database.open()
        except StoreError as exc:
            self.open_error = exc
        except Exception as exc:  # a bug, or a setting SQLite cannot take: not running
            self.crashed = exc
            log.exception("store writer failed at start: %s", exc)
            self.open_error = StoreError(f"{self.path}: the store cannot start: "
                                         f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        base = self.database
        while True:
            work = self.inbox.wait(self.config.commit_interval, HOUSEKEEPING)
            self._requests = work.requests
            for kind, n in work.dropped.items():
                if n:
                    base.unsaved[f"dropped_queue.{kind.label}"] += n
            if base.reopen_due:
                base.reopen()
            if base.db is not None and base.state == "ok":
                self.disk.make_ballast()
            if work.items or self.held:
                self._commit(work.items, work.count)
            self._expire()
            for call, future in work.requests:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        future.set_exception(exc)
            self._requests = []
            base.checkpoint()
            if work.closing:
                if base.unsaved and base.db is not None:
                    self._commit({}, 0)
                return

    def _shrink(self) -> None:
        """After opening: a file beyond its share of the quota (the quota was lowered) is
        brought back within it, and its free pages given back to the filesystem."""
        db = self.database.db
        assert db is not None
        space = quota.Space.measure(db, self.path, self.config)
        if space.pages * space.page_size <= space.limit:
            return
        if space.live > space.limit:
            self._write([], 0, squeeze_to=space.limit)
        if self.database.db is not None:
            disk.give_back(self.database.db, self.path)

    # -- storing ---------------------------------------------------------------------------

    def _commit(self, items: dict[Kind, list[Sequence[Any]]], count: int) -> None:
        chunks = []
        size = self.config.chunk_items
        for kind in sorted(items, reverse=True):  # events first
            lists = items[kind]
            flat = lists[0] if len(lists) == 1 else list(itertools.chain.from_iterable(lists))
            for i in range(0, len(flat), size):
                part = flat[i:i + size]
                try:
                    chunks.append(self._encoder.chunk(kind, part))
                except StoreError as exc:  # not a Sample/Event/Frame of plain values
                    log.error("store: %d %s dropped, they cannot be stored: %s", len(part),
                              kind.label, exc)
                    self.database.unsaved[f"dropped_invalid.{kind.label}"] += len(part)
        held, self.held = self.held, []
        self._write(held + chunks, count)

    def _write(self, chunks: list[Chunk], count: int, squeeze_to: int | None = None) -> None:
        base = self.database
        chunks = sorted(chunks, key=lambda c: -c.kind)  # events first, in order
        squeezed = self.disk.squeezed
        for attempt in range(ATTEMPTS):
            if base.db is None:
                break
            txn = _Txn()
            try:
                seq, tight = self._transaction(base.db, chunks, txn, squeezed, squeeze_to)
            except (sqlite3.Error, OSError) as exc:
                base.rollback()
                if schema.is_corrupt(exc):
                    base.reopen(corrupt=exc)
                    continue
                base.unsaved["disk_full" if schema.is_disk_full(exc) else "write_errors"] += 1
                base.set_state("disk-full", f"cannot write ({exc}): dropping the lowest classes")
                if not squeezed and self.disk.release_ballast():
                    base.checkpoint(force=True)  # the WAL's pages can now go into the file
                squeezed = True
                self.disk.squeeze()
                if attempt:  # already squeezed once: let the lowest class go
                    lowest = min((c.kind for c in chunks if c.kind < Kind.EVENT), default=None)
                    for c in chunks:
                        if c.kind == lowest:
                            base.unsaved[f"dropped_full.{c.kind.label}"] += c.items
                    chunks = [c for c in chunks if c.kind != lowest]
                continue
            base.next_seq = seq
            base.unsaved.clear()
            base.dirty = True
            self._hold(txn.held)
            if tight:
                # the file grew in the WAL and the disk is tight: copy it in now, before
                # someone else takes the space the checkpoint needs (see docs/store.md)
                base.checkpoint(force=True)
            if self.on_commit is not None and count:
                try:
                    self.on_commit(CommitInfo(seq - 1, dict(txn.stored), count))
                except Exception:
                    log.exception("store: on_commit failed")
            return
        # nothing could be written
        self._hold([c for c in chunks if c.kind == Kind.EVENT])
        for c in chunks:
            if c.kind != Kind.EVENT:
                base.unsaved[f"dropped_full.{c.kind.label}"] += c.items

    def _hold(self, events: list[Chunk]) -> None:
        """Keep event chunks in memory for the next round, up to HELD_EVENTS items."""
        held = sum(h.items for h in self.held)
        for c in events:
            if held + c.items <= HELD_EVENTS:
                self.held.append(c)
                held += c.items
            else:
                self.database.unsaved[f"dropped_full.{c.kind.label}"] += c.items

    def _transaction(self, db: sqlite3.Connection, chunks: list[Chunk], txn: _Txn,
                     squeezed: bool, squeeze_to: int | None) -> tuple[int, bool]:
        """Store the chunks in one transaction. Returns the next sequence number, and
        whether the disk is so tight that the WAL should be checkpointed at once."""
        base = self.database
        db.execute("BEGIN IMMEDIATE")
        page_size = base.page_size
        txn_bytes = sum(quota.cost(len(c.body), page_size) for c in chunks)
        space = quota.Space.measure(db, self.path, self.config, txn_bytes)
        disk_full = space.disk_bound or squeezed
        if disk_full:
            base.set_state("disk-full", "the filesystem is nearly full: the store keeps within "
                           "the space it has, dropping the lowest classes")
        else:
            base.set_state("ok", "disk space is back")
        limit = space.file_limit(squeezed)
        room = quota.Room(db, limit if squeeze_to is None else min(limit, squeeze_to),
                          page_size, base.inflight, txn.counters)
        room.make(Kind.EVENT, 0)  # over the limit already: the lowest classes go first
        room.limit -= space.wal_extra
        now = self.clock()
        seq = base.next_seq
        for c in chunks:
            if not room.make(c.kind, quota.cost(len(c.body), page_size)):
                # nothing lower is left: the incoming chunk is the one to go; but events
                # wait in memory for a full disk
                if c.kind == Kind.EVENT and disk_full:
                    txn.held.append(c)
                else:
                    txn.counters[f"evicted.{c.kind.label}"] += c.items
                continue
            db.execute(INSERT, (seq, seq + c.items - 1, int(c.kind), c.items, c.ts_first,
                                c.ts_last, now, CODEC_MSGPACK_ZSTD, len(c.body), c.body))
            txn.stored[c.kind] += c.items
            seq += c.items
        txn.counters.update(base.unsaved)
        schema.add_counters(db, txn.counters)
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq,))
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute("COMMIT")
        grown = (pages - space.pages) * page_size
        return seq, grown > 0 and space.fs_free - grown < 2 * txn_bytes + self.config.wal_reserve

    def _expire(self) -> None:
        base = self.database
        if base.db is None:
            return
        try:
            base.db.execute("BEGIN IMMEDIATE")
            counters = quota.expire(base.db, self.config, self.clock(), base.inflight,
                                    base.page_size)
            if counters:
                schema.add_counters(base.db, counters)
                base.db.execute("COMMIT")
                base.dirty = True
            else:
                base.db.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            base.rollback()
            if schema.is_corrupt(exc):
                base.reopen(corrupt=exc)
            elif not schema.is_disk_full(exc):
                log.error("store: cannot delete old data: %s", exc)

    # -- requests (run in this thread, sent by the Store) -----------------------------------

    def next_batch(self, max_items: int | None, max_seconds: float | None,
                   min_kind: Kind = Kind.FRAME) -> batches.RawBatch | None:
        base = self.database
        if base.db is None:
            return None
        result: batches.RawBatch | None = base.guard(
            "next_batch", lambda db: batches.next_batch(db, max_items, max_seconds,
                                                        base.inflight, min_kind))
        return result

    def finish_batch(self, action: str, seq_first: int, seq_last: int, reason: str = "") -> int:
        """ack, dead_letter or release a batch; the items concerned (0: no such batch)."""
        base = self.database

        def run(db: sqlite3.Connection) -> int:
            if action == "ack":
                info = batches.ack(db, seq_first, seq_last)
            elif action == "dead_letter":
                info = batches.move_to_dead_letter(db, seq_first, seq_last, reason, self.clock())
            else:  # release: nothing to write, it is no longer in flight
                info = batches.batch_info(db, seq_first, seq_last)
            base.inflight.discard(seq_first)
            if info is None:
                return 0
            kind, items = info
            if action == "dead_letter":
                log.warning("store: batch %d..%d (%d %s) moved to the dead letters: %s",
                            seq_first, seq_last, items, kind.label, reason)
            base.dirty |= action != "release"
            return items

        if action not in ("ack", "release", "dead_letter"):
            raise ValueError(action)
        result: int = base.guard(action, run)
        return result

    def purge(self, kind: Kind, in_flight_too: bool = False) -> maintenance.Purged:
        """Delete what the buffer holds of ``kind`` and is not in flight (events held in
        memory for a full disk too), then give the freed pages back to the filesystem.
        ``in_flight_too``: a batch being uploaded goes as well (consent revoked: its
        acknowledgement, if it comes, finds nothing)."""
        base = self.database
        inflight = None if in_flight_too else base.inflight
        purged: maintenance.Purged = base.guard(
            "purge", lambda db: maintenance.purge(db, kind, inflight))
        base.dirty = True
        held = 0
        if kind == Kind.EVENT and self.held:
            held = sum(c.items for c in self.held)
            self.held = []
            base.unsaved["purged.events"] += held
        if base.db is not None:
            disk.give_back(base.db, self.path)
        log.warning("store: purged %d %s (%d bytes) by hand; %d in flight left", purged.items
                    + held, kind.label, purged.bytes, purged.in_flight)
        return dataclasses.replace(purged, items=purged.items + held)

    def purge_dead_letters(self) -> maintenance.Retried:
        """Delete every dead letter."""
        base = self.database
        purged: maintenance.Retried = base.guard("purge-dead-letters",
                                                 maintenance.purge_dead_letters)
        base.dirty = True
        return purged

    def retry_dead_letters(self) -> maintenance.Retried:
        """Move the dead letters back among the data waiting for upload."""
        base = self.database
        retried: maintenance.Retried = base.guard(
            "retry-dead-letters", lambda db: maintenance.retry_dead_letters(db, self.clock()))
        base.dirty = True
        if retried.batches:
            log.warning("store: %d dead-letter batches (%d items) moved back for upload",
                        retried.batches, retried.items)
        return retried

    def stats(self, queued: int) -> BufferStats:
        base = self.database
        held = sum(c.items for c in self.held)
        if base.db is None:
            return BufferStats(path=str(self.path), classes={}, used_bytes=0, live_bytes=0,
                               quota_bytes=self.config.quota_bytes, state=base.state,
                               queued_items=queued, inflight_batches=0, held_events=held)
        if base.unsaved:
            self._write([], 0)
        result: BufferStats = base.guard(
            "stats", lambda db: read_stats(db, self.path, self.clock(), base.unsaved))
        return dataclasses.replace(result, state=base.state, queued_items=queued,
                                   inflight_batches=len(base.inflight), held_events=held)

    def flush(self) -> None:
        """Runs after this round's commit: persist pending counters, checkpoint."""
        if self.database.unsaved and self.database.db is not None:
            self._write([], 0)
        self.database.checkpoint(force=True)
