"""How much may be stored, and what goes first when it does not all fit.

Space
    The quota covers what the store has on disk: the database file, its WAL
    and the ballast file. The WAL and the ballast get ``wal_reserve`` each
    (1/16 of the quota, 64 KiB to 8 MiB; it is also the WAL's
    ``journal_size_limit`` and twice its auto-checkpoint size); the file gets
    the rest. A commit larger than half the reserve takes its excess off the
    file's share, since the WAL must hold it. What counts as used in the file
    is its pages that are not on the freelist: pages freed by deletions are
    reused, so the file stops growing at its share. A second bound comes from
    the filesystem: the file may grow only into free space beyond
    ``min_free_bytes`` (statvfs), less the coming commit counted twice (it
    goes to the WAL first, into the file at the checkpoint), so the store
    shrinks its own room before the disk is full, not after.

Eviction policy
    When a new chunk does not fit, stored data is deleted in this order:

    1. dead letters, oldest first (they will never be uploaded);
    2. chunks of the lowest class first (frames, then samples, then events),
       oldest first (lowest sequence number), but only of classes no higher
       than the incoming chunk's: samples never push out events. When
       nothing of a lower or equal class is left, the incoming chunk itself
       is dropped (it is the newest of the lowest class present).

    A batch in flight (handed to the uploader, not yet acked or released) is
    never evicted nor expired. A batch released after a failed upload is
    evicted as a whole, so a range handed out once is later either
    delivered whole or gone whole.

Ages
    A chunk older than its class's maximum age (measured from ``stored_at``,
    the wall clock at commit, not the items' own timestamps, which a replayed
    log sets in the past) is deleted at the writer's next round.

Every deleted item is counted per class: ``evicted.<class>`` (no room),
``expired.<class>`` (too old).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.store import disk, schema
from agent.store.settings import Kind, StoreConfig

ROW_BYTES = 64  # a chunk row's columns besides the body, and its cell pointer
SCAN = 64  # rows read per query while looking for victims
MARGIN_PAGES = 16  # b-tree, pointer-map, counter and meta pages a commit also writes


def cost(nbytes: int, page_size: int) -> int:
    """Bytes a chunk of ``nbytes`` takes in the file: whole pages (overflow pages hold
    ``page_size - 4`` bytes each)."""
    usable = page_size - 4
    return -(-(nbytes + ROW_BYTES) // usable) * page_size


@dataclass(frozen=True)
class Space:
    """The database's size and its limits, measured at the start of a transaction."""

    page_size: int
    pages: int  # pages in the file
    free_pages: int  # of which on the freelist
    fs_free: int  # bytes of the filesystem free for us (statvfs f_bavail)
    limit: int  # the file's share of the quota
    min_free: int
    wal_reserve: int
    txn_bytes: int = 0  # what the coming transaction adds: the WAL must hold it

    @classmethod
    def measure(cls, db: sqlite3.Connection, path: Path, config: StoreConfig,
                txn_bytes: int = 0) -> Space:
        page_size, pages, free = schema.file_bytes(db)
        return cls(page_size, pages, free, disk.fs_free(path.parent), config.file_share,
                   config.min_free_bytes, config.wal_reserve, txn_bytes)

    @property
    def live(self) -> int:
        """Bytes of the file in use (not on the freelist)."""
        return (self.pages - self.free_pages) * self.page_size

    @property
    def fs_limit(self) -> int:
        """How large the file may become without eating the filesystem's headroom.

        A transaction's pages go to the WAL first and into the file at the next
        checkpoint, so the filesystem must hold them twice: the coming transaction
        (plus a margin for the b-tree pages it touches) is kept off the file's share.
        """
        wal = self.txn_bytes + MARGIN_PAGES * self.page_size
        return self.pages * self.page_size + self.fs_free - self.min_free - wal

    @property
    def disk_bound(self) -> bool:
        """True when the filesystem, not the quota, is what limits the store."""
        return self.fs_limit < self.limit

    def file_limit(self, squeezed: bool = False) -> int:
        """What the file's live pages may reach (below ``live``: that much must go first,
        whatever its class: the quota was lowered or the disk filled up).

        ``squeezed`` (after SQLITE_FULL): do not grow the file at all.
        """
        limit = min(self.limit, self.fs_limit)
        return min(limit, self.pages * self.page_size) if squeezed else limit

    @property
    def wal_extra(self) -> int:
        """What this transaction's WAL takes beyond the WAL's reserve (it must hold the
        transaction on top of half a reserve, the auto-checkpoint point): it comes off
        the room of the incoming chunks, so only what they may evict makes up for it."""
        wal = self.wal_reserve // 2 + self.txn_bytes + MARGIN_PAGES * self.page_size
        return max(wal - self.wal_reserve, 0)


class Room:
    """Makes room under ``limit`` by the eviction policy, inside the caller's transaction,
    counting what goes (``evicted.<class>``, ``evicted_dead.<class>``) in ``counters``."""

    def __init__(self, db: sqlite3.Connection, limit: int, page_size: int,
                 inflight: Container[int], counters: Counter[str]) -> None:
        self.db = db
        self.limit = limit
        self.page_size = page_size
        self.inflight = inflight
        self.counters = counters

    def over(self, extra: int) -> int:
        """How many bytes must go before ``extra`` more fit."""
        _, pages, free = schema.file_bytes(self.db)
        return (pages - free) * self.page_size + extra - self.limit

    def make(self, kind: Kind, extra: int) -> bool:
        """Evict for ``extra`` more bytes, only classes up to ``kind`` (and dead letters);
        False when that is not enough."""
        while (excess := self.over(extra)) > 0:
            freed = 0
            for victim in victims(self.db, kind, self.inflight):
                gone, items = delete(self.db, victim, self.page_size)
                name = "evicted_dead" if victim.table == "dead_letter" else "evicted"
                for k, n in items.items():
                    self.counters[f"{name}.{k.label}"] += n
                freed += gone
                if freed >= excess:
                    break
            if not freed:
                return False
        return True


@dataclass(frozen=True)
class Victim:
    table: str  # "chunk" or "dead_letter"
    kind: Kind
    seq_first: int
    batch: int | None


def victims(db: sqlite3.Connection, kind: Kind, inflight: Container[int]) -> Iterator[Victim]:
    """What to delete to make room for a chunk of ``kind``, in the policy's order.

    The caller deletes each victim before asking for the next one.
    """
    last = -1
    while True:
        rows = db.execute("SELECT seq_first, class FROM dead_letter WHERE seq_first > ? "
                          "ORDER BY seq_first LIMIT ?", (last, SCAN)).fetchall()
        if not rows:
            break
        for seq_first, cls in rows:
            last = seq_first
            yield Victim("dead_letter", Kind(cls), seq_first, None)
    for k in Kind:
        if k > kind:
            return
        last = -1
        while True:
            rows = db.execute("SELECT seq_first, batch FROM chunk WHERE class = ? AND "
                              "seq_first > ? ORDER BY seq_first LIMIT ?",
                              (int(k), last, SCAN)).fetchall()
            if not rows:
                break
            for seq_first, batch in rows:
                last = seq_first
                if batch is None or batch not in inflight:
                    yield Victim("chunk", k, seq_first, batch)


def delete(db: sqlite3.Connection, victim: Victim, page_size: int) -> tuple[int, Counter[Kind]]:
    """Delete a victim (a released batch as a whole); (bytes freed, items per class)."""
    if victim.table == "dead_letter":
        rows = db.execute("DELETE FROM dead_letter WHERE seq_first = ? RETURNING class, items, "
                          "nbytes", (victim.seq_first,)).fetchall()
    elif victim.batch is not None:
        rows = db.execute("DELETE FROM chunk WHERE batch = ? RETURNING class, items, nbytes",
                          (victim.batch,)).fetchall()
    else:
        rows = db.execute("DELETE FROM chunk WHERE seq_first = ? RETURNING class, items, nbytes",
                          (victim.seq_first,)).fetchall()
    freed = 0
    items: Counter[Kind] = Counter()
    for cls, n, nbytes in rows:
        freed += cost(nbytes, page_size)
        items[Kind(cls)] += n
    return freed, items


def expired(db: sqlite3.Connection, config: StoreConfig, now: float,
            inflight: Container[int]) -> Iterator[Victim]:
    """Chunks older than their class's maximum age, then dead letters older than theirs."""
    for k in Kind:
        max_age = config.max_age(k)
        if max_age is None:
            continue
        rows = db.execute("SELECT seq_first, batch FROM chunk WHERE class = ? AND stored_at < ? "
                          "ORDER BY seq_first", (int(k), now - max_age)).fetchall()
        for seq_first, batch in rows:
            if batch is None or batch not in inflight:
                yield Victim("chunk", k, seq_first, batch)
    if config.max_age_dead_letters is not None:
        rows = db.execute("SELECT seq_first, class FROM dead_letter WHERE dead_at < ? "
                          "ORDER BY seq_first", (now - config.max_age_dead_letters,)).fetchall()
        for seq_first, cls in rows:
            yield Victim("dead_letter", Kind(cls), seq_first, None)


def expire(db: sqlite3.Connection, config: StoreConfig, now: float, inflight: Container[int],
           page_size: int) -> Counter[str]:
    """Delete what is too old (inside the caller's transaction); what went, as counters
    (``expired.<class>``, ``expired_dead.<class>``)."""
    counters: Counter[str] = Counter()
    for victim in expired(db, config, now, inflight):
        _gone, items = delete(db, victim, page_size)
        name = "expired_dead" if victim.table == "dead_letter" else "expired"
        for k, n in items.items():
            counters[f"{name}.{k.label}"] += n
    return counters
