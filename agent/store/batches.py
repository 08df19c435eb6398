"""The upload side of the buffer: hand out, acknowledge, release, dead-letter batches.

These functions run in the writer thread, on its connection (the Store sends
them there); bodies are decoded by the caller, outside the writer. When one
raises, the caller rolls back the transaction it may have left open.

Choice of what goes next: the highest class first (events, then samples,
then frames: a DTC should not wait behind an hour of samples), and within a
class the oldest chunk not in flight. A batch holds chunks of one class,
consecutive in that class, as many as fit ``max_items`` and ``max_seconds``
(the span of the items' own timestamps), always at least one chunk: the
limits are applied at chunk granularity.

Stable ranges: a batch is named by its first and last sequence numbers. The
chunks are tagged with the batch (``chunk.batch`` = ``seq_first``) in the
same transaction that hands them out, so a released batch, or one that was
in flight when the agent stopped, comes back as exactly the same range,
whatever the limits of the next call. A receiver can drop a repeated range.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container, MutableSet
from dataclasses import dataclass

from agent.errors import StoreError
from agent.store import schema
from agent.store.settings import KINDS_BY_PRIORITY, Kind

SCAN = 256


@dataclass(frozen=True)
class RawBatch:
    """A batch as stored: the chunk bodies, not yet decoded."""

    kind: Kind
    seq_first: int
    seq_last: int
    bodies: list[tuple[int, bytes]]  # (codec, body) per chunk, oldest first


def _rows(db: sqlite3.Connection, kind: Kind, after: int) -> list[tuple[int, ...]]:
    return db.execute("SELECT seq_first, seq_last, items, ts_first, ts_last, batch FROM chunk "
                      "WHERE class = ? AND seq_first > ? ORDER BY seq_first LIMIT ?",
                      (int(kind), after, SCAN)).fetchall()


def _first_free(db: sqlite3.Connection, kind: Kind,
                inflight: Container[int]) -> tuple[int, ...] | None:
    after = -1
    while rows := _rows(db, kind, after):
        for row in rows:
            if row[5] is None or row[5] not in inflight:
                return row
            after = row[0]
    return None


def next_batch(db: sqlite3.Connection, max_items: int | None, max_seconds: float | None,
               inflight: MutableSet[int], min_kind: Kind = Kind.FRAME) -> RawBatch | None:
    """Hand out the next batch of a class >= ``min_kind`` and mark it in flight (its
    ``seq_first`` in ``inflight``)."""
    for kind in KINDS_BY_PRIORITY:
        if kind < min_kind:
            break
        first = _first_free(db, kind, inflight)
        if first is None:
            continue
        key = first[5]
        if key is None:  # a new batch: take the following free chunks that fit
            key = first[0]
            picked = [first[0]]
            items, lo, hi = first[2], first[3], first[4]
            after = first[0]
            done = False
            while not done and (rows := _rows(db, kind, after)):
                for seq_first, _last, n, ts_first, ts_last, batch in rows:
                    after = seq_first
                    lo2, hi2 = min(lo, ts_first), max(hi, ts_last)
                    if (batch is not None
                            or (max_items is not None and items + n > max_items)
                            or (max_seconds is not None and hi2 - lo2 > max_seconds)):
                        done = True
                        break
                    picked.append(seq_first)
                    items, lo, hi = items + n, lo2, hi2
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE chunk SET batch = ? WHERE seq_first = ?",
                           [(key, s) for s in picked])
            db.execute("COMMIT")
        rows = db.execute("SELECT seq_last, codec, body FROM chunk WHERE batch = ? "
                          "ORDER BY seq_first", (key,)).fetchall()
        inflight.add(key)
        return RawBatch(kind, key, rows[-1][0], [(codec, body) for _, codec, body in rows])
    return None


def batch_info(db: sqlite3.Connection, seq_first: int,
               seq_last: int) -> tuple[Kind, int] | None:
    """(class, items) of a handed-out batch, None if there is none by that first number.

    StoreError when the batch exists but ends elsewhere (a caller's mistake)."""
    row = db.execute("SELECT max(seq_last), sum(items), min(class) FROM chunk WHERE batch = ?",
                     (seq_first,)).fetchone()
    if row is None or row[0] is None:
        return None
    if row[0] != seq_last:
        raise StoreError(f"no batch {seq_first}..{seq_last}: the batch starting at {seq_first} "
                         f"ends at {row[0]}")
    return Kind(row[2]), row[1]


def ack(db: sqlite3.Connection, seq_first: int, seq_last: int) -> tuple[Kind, int] | None:
    """Delete a delivered batch, counted (``acked.<class>``), in one transaction;
    (class, items) or None if it is not (or no longer) here."""
    db.execute("BEGIN IMMEDIATE")
    info = batch_info(db, seq_first, seq_last)
    if info is not None:
        db.execute("DELETE FROM chunk WHERE batch = ?", (seq_first,))
        schema.add_counters(db, {f"acked.{info[0].label}": info[1]})
    db.execute("COMMIT")
    return info


def move_to_dead_letter(db: sqlite3.Connection, seq_first: int, seq_last: int, reason: str,
                        now: float) -> tuple[Kind, int] | None:
    """Move a batch to the dead-letter table, counted (``dead_letter.batches``,
    ``dead_letter.items``), in one transaction; (class, items) or None if it is not here."""
    db.execute("BEGIN IMMEDIATE")
    info = batch_info(db, seq_first, seq_last)
    if info is not None:
        db.execute("INSERT INTO dead_letter SELECT seq_first, seq_last, class, items, ts_first, "
                   "ts_last, stored_at, codec, nbytes, batch, body, ?, ? FROM chunk "
                   "WHERE batch = ?", (reason, now, seq_first))
        db.execute("DELETE FROM chunk WHERE batch = ?", (seq_first,))
        schema.add_counters(db, {"dead_letter.batches": 1, "dead_letter.items": info[1]})
    db.execute("COMMIT")
    return info
