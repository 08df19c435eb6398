"""What a technician does to the buffer by hand: purge a class, retry the dead letters.

These functions run in the writer thread, on its connection (the Store sends
them there, as it sends the upload side's requests), whether the service runs
them for ``bavard buffer purge`` through its control socket or the command
opens the Store on the file itself when no service holds it. Each is one
transaction: a power cut leaves the buffer as it was before, or after.

* :func:`purge` deletes every chunk of a class that is not in flight (a batch
  being uploaded now is left alone: its acknowledgement deletes it), counted
  ``purged.<class>``; the file's free pages are then given back to the
  filesystem, since a technician purges to make room.
* :func:`purge_dead_letters` deletes every dead letter (a purpose's consent was
  revoked: agent.privacy.purge).
* :func:`offline_config` is what a command opens the Store with when no
  service runs and no configuration is given: settings that change nothing
  but what is asked (the quota the buffer recorded, no age limits).
* :func:`retry_dead_letters` moves every dead letter back among the chunks,
  as data waiting for upload (not part of any batch: the uploader makes new
  batches of them, oldest first in their class), counted
  ``dead_letter.retried_batches`` and ``dead_letter.retried_items``. They
  count as stored now (``stored_at``), so the age limit of their class does
  not delete them at once; their items keep their own timestamps.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.store import schema
from agent.store.settings import DB_NAME, Kind, StoreConfig


@dataclass(frozen=True)
class Purged:
    """What :func:`purge` deleted, and what it left because it is in flight."""

    kind: Kind
    items: int
    bytes: int  # compressed bodies deleted
    chunks: int
    in_flight: int  # items of the class left alone: a batch being uploaded

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["class"] = self.kind.label
        del out["kind"]
        return out


@dataclass(frozen=True)
class Retried:
    """What :func:`retry_dead_letters` moved back for upload."""

    batches: int
    items: int
    bytes: int  # compressed bodies

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def purge(db: sqlite3.Connection, kind: Kind, inflight: Collection[int] | None) -> Purged:
    """Delete the chunks of ``kind`` not in a batch in flight (``inflight``: the
    ``seq_first`` of each; None: every chunk, in flight or not), in one transaction."""
    flying = sorted(inflight or ())
    free = "batch IS NULL" if inflight is not None else "1"
    if flying:
        free += f" OR batch NOT IN ({', '.join('?' * len(flying))})"
    where = f"class = ? AND ({free})"
    params = (int(kind), *flying)
    db.execute("BEGIN IMMEDIATE")
    items, nbytes, chunks = db.execute(
        f"SELECT coalesce(sum(items), 0), coalesce(sum(nbytes), 0), count(*) FROM chunk "
        f"WHERE {where}", params).fetchone()
    db.execute(f"DELETE FROM chunk WHERE {where}", params)
    schema.add_counters(db, {f"purged.{kind.label}": items})
    left = db.execute("SELECT coalesce(sum(items), 0) FROM chunk WHERE class = ?",
                      (int(kind),)).fetchone()[0]
    db.execute("COMMIT")
    return Purged(kind, items, nbytes, chunks, left)


def purge_dead_letters(db: sqlite3.Connection) -> Retried:
    """Delete every dead letter, in one transaction (consent revoked: nothing of it may
    stay for a retry)."""
    db.execute("BEGIN IMMEDIATE")
    batches, items, nbytes = db.execute(
        "SELECT count(DISTINCT batch), coalesce(sum(items), 0), coalesce(sum(nbytes), 0) "
        "FROM dead_letter").fetchone()
    db.execute("DELETE FROM dead_letter")
    schema.add_counters(db, {"dead_letter.purged_items": items})
    db.execute("COMMIT")
    return Retried(batches, items, nbytes)


def retry_dead_letters(db: sqlite3.Connection, now: float) -> Retried:
    """Move every dead letter back among the chunks waiting for upload, in one
    transaction (see the module's docstring)."""
    db.execute("BEGIN IMMEDIATE")
    batches, items, nbytes = db.execute(
        "SELECT count(DISTINCT batch), coalesce(sum(items), 0), coalesce(sum(nbytes), 0) "
        "FROM dead_letter").fetchone()
    db.execute(f"INSERT INTO chunk ({schema.CHUNK_FIELDS}, batch, body) "
               "SELECT seq_first, seq_last, class, items, ts_first, ts_last, ?, codec, nbytes, "
               "NULL, body FROM dead_letter ORDER BY seq_first", (now,))
    db.execute("DELETE FROM dead_letter")
    schema.add_counters(db, {"dead_letter.retried_batches": batches,
                             "dead_letter.retried_items": items})
    db.execute("COMMIT")
    return Retried(batches, items, nbytes)


def offline_config(state_dir: Path) -> StoreConfig:
    """Settings to open the buffer in ``state_dir`` with that touch nothing by themselves:
    its recorded quota (a smaller one would evict to fit) and no age limits (the
    service's may be longer than the defaults). StoreError when there is no buffer."""
    path = Path(state_dir) / DB_NAME
    if not path.is_file():
        raise StoreError(f"no buffer in {state_dir} (no {DB_NAME} there)")
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5.0)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'quota_bytes'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    quota = StoreConfig().quota_bytes if row is None else int(row[0])
    return StoreConfig(state_dir=Path(state_dir), quota_bytes=quota, max_age_events=None,
                       max_age_samples=None, max_age_frames=None, max_age_dead_letters=None)


def held_by_a_process(state_dir: Path) -> bool:
    """A process holds the store in ``state_dir`` now (the lock of
    agent.store.database); False when nobody does, or the directory cannot be opened."""
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing it releases a lock taken here
    return False
