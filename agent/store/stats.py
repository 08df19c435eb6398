"""What the buffer holds, read from the database (by the writer, or by ``bavard buffer``
in another process through a read-only connection)."""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.store import disk, schema
from agent.store.settings import Kind


@dataclass(frozen=True)
class ClassStats:
    items: int = 0
    bytes: int = 0  # compressed bodies
    chunks: int = 0
    oldest_age: float | None = None  # seconds since the oldest chunk was stored
    in_batches: int = 0  # items handed out for upload and not yet acked
    evicted: int = 0  # deleted for room (quota or full disk)
    expired: int = 0  # deleted for age
    dropped_queue: int = 0  # never stored: the input queue was full
    dropped_full: int = 0  # never stored: the disk was full (SQLITE_FULL/ENOSPC)
    acked: int = 0  # delivered and deleted
    purged: int = 0  # deleted by hand (``bavard buffer purge``)


@dataclass(frozen=True)
class BufferStats:
    path: str
    classes: dict[str, ClassStats]  # "events", "samples", "frames"
    used_bytes: int  # page_count * page_size + WAL size + ballast file
    live_bytes: int  # pages not on the freelist
    quota_bytes: int | None
    dead_letter_batches: int = 0
    dead_letter_items: int = 0
    dead_letter_bytes: int = 0
    next_seq: int = 0
    oldest_age: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    corrupt_files: list[str] = field(default_factory=list)
    # filled in by a running Store only
    state: str | None = None  # "ok", "disk-full" (the filesystem bounds the store), "unavailable"
    queued_items: int | None = None
    inflight_batches: int | None = None
    held_events: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_stats(db: sqlite3.Connection, path: Path, now: float,
               unsaved: Mapping[str, int] | None = None) -> BufferStats:
    """The statistics of an open buffer database (any connection, read-only is enough).

    ``unsaved``: counts not yet written to the counter table (a running writer's)."""
    counters = Counter(dict(db.execute("SELECT name, value FROM counter").fetchall()))
    counters.update(unsaved or {})
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    rows = db.execute("SELECT class, sum(items), sum(nbytes), count(*), min(stored_at), "
                      "sum(CASE WHEN batch IS NULL THEN 0 ELSE items END) FROM chunk "
                      "GROUP BY class").fetchall()
    per = {r[0]: r for r in rows}
    classes = {}
    oldest_at: float | None = None
    for kind in sorted(Kind, reverse=True):
        r = per.get(int(kind))
        label = kind.label
        c = {name: counters.get(f"{name}.{label}", 0)
             for name in ("evicted", "expired", "dropped_queue", "dropped_full", "acked",
                          "purged")}
        if r is None:
            classes[label] = ClassStats(**c)
            continue
        oldest_at = r[4] if oldest_at is None else min(oldest_at, r[4])
        classes[label] = ClassStats(items=r[1], bytes=r[2], chunks=r[3],
                                    oldest_age=max(0.0, now - r[4]), in_batches=r[5], **c)
    dead = db.execute("SELECT count(DISTINCT batch), coalesce(sum(items), 0), "
                      "coalesce(sum(nbytes), 0) FROM dead_letter").fetchone()
    page_size, pages, free = schema.file_bytes(db)
    return BufferStats(
        path=str(path), classes=classes,
        used_bytes=pages * page_size + schema.wal_size(path) + disk.ballast_size(path),
        live_bytes=(pages - free) * page_size,
        quota_bytes=meta.get("quota_bytes"),
        dead_letter_batches=dead[0], dead_letter_items=dead[1], dead_letter_bytes=dead[2],
        next_seq=meta.get("next_seq", 0),
        oldest_age=None if oldest_at is None else max(0.0, now - oldest_at),
        counters=dict(sorted(counters.items())),
        corrupt_files=[p.name for p in schema.corrupt_files(path)],
    )


def read_stats_file(path: Path, now: float) -> BufferStats:
    """The statistics of the buffer at ``path`` without writing to it (``bavard buffer``).

    StoreError when there is no buffer there or it cannot be read.
    """
    if not path.is_file():
        raise StoreError(f"no buffer at {path}")
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != schema.SCHEMA_VERSION:
            raise StoreError(f"{path}: not a bavard buffer of schema {schema.SCHEMA_VERSION} "
                             f"(user_version {version})")
        return read_stats(db, path, now)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    finally:
        db.close()
