"""The privacy ledger: what left the box, for which purpose and to whom, and what was purged.

``privacy.db`` in the state directory (SQLite, WAL, 0600 with its sidecars)
keeps, for ``bavard privacy report``:

- one row per batch a destination acknowledged: destination, purpose, batch id,
  when it was sent, its size on the wire, the items of each class it held and
  the time range of its data;
- per destination, purpose and day (UTC, of the sending), how many values of
  each signal (``Message.Signal``), events of each kind and frames of each
  channel left;
- one row per purge (a revoked consent, ``bavard buffer purge``): when, what
  destination and purpose, why, how many items and bytes.

Bounded: what is older than :data:`KEEP_DAYS` days is deleted (at start and
once a day). The ledger never stops an upload: a database that cannot be
opened or written is logged (at most once a minute, with how many records were
lost meanwhile) and counted in :attr:`Ledger.failures`; a corrupt one is moved
aside (``privacy.db.corrupt``, replacing an older one) and a new one started.
Threads: every uploader and the command thread share one connection, one at a
time (a lock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.errors import BavardError
from agent.private_files import SQLITE_SIDECARS, make_private_file

log = logging.getLogger(__name__)

DB_NAME = "privacy.db"
CORRUPT_SUFFIX = ".corrupt"
KEEP_DAYS = 400
DAY = 86_400.0
RETRY_OPEN = 60.0  # seconds between two attempts at a database that would not open
WARN_EVERY = 60.0  # seconds between two warnings of records the ledger lost
CONTENT_KINDS = ("signal", "event", "frames")
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    purpose TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    sent_at REAL NOT NULL,
    nbytes INTEGER NOT NULL,
    items INTEGER NOT NULL,
    classes TEXT NOT NULL,
    ts_first REAL,
    ts_last REAL
);
CREATE INDEX IF NOT EXISTS uploads_sent ON uploads (sent_at);
CREATE TABLE IF NOT EXISTS contents (
    day TEXT NOT NULL,
    destination TEXT NOT NULL,
    purpose TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, destination, purpose, kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purges (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    destination TEXT NOT NULL,
    purpose TEXT NOT NULL,
    reason TEXT NOT NULL,
    items INTEGER NOT NULL,
    nbytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS purges_at ON purges (at);
"""


def utc_day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


class Ledger:
    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / DB_NAME
        self.clock = clock
        self.failures = 0  # records lost (not written), since start
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._retry_at = -math.inf
        self._next_prune = -math.inf
        self._unwarned = 0
        self._warned_at = -math.inf
        with self._lock:
            self._connect(quiet=False)

    # --- writing (the uploaders, the purges): never raises

    def uploaded(self, destination: str, purpose: str, batch_id: str, *, nbytes: int,
                 ts_first: float | None, ts_last: float | None, classes: Mapping[str, int],
                 contents: Mapping[tuple[str, str], int]) -> None:
        """A batch ``destination`` acknowledged: ``nbytes`` as sent on the wire,
        ``classes``: items per class (``samples``: n), ``contents``: (``signal``,
        ``Msg.Sig``) / (``event``, kind) / (``frames``, channel) -> count."""
        def write(db: sqlite3.Connection, now: float) -> None:
            counts = {str(k): _count(v, f"classes[{k!r}]") for k, v in classes.items()}
            rows = []
            day = utc_day(now)
            for key, n in contents.items():
                kind, name = key
                if kind not in CONTENT_KINDS or not isinstance(name, str):
                    raise ValueError(f"contents: {key!r} is not (signal|event|frames, name)")
                rows.append((day, destination, purpose, kind, name,
                             _count(n, f"contents[{key!r}]")))
            db.execute("INSERT INTO uploads (destination, purpose, batch_id, sent_at, nbytes,"
                       " items, classes, ts_first, ts_last) VALUES (?,?,?,?,?,?,?,?,?)",
                       (destination, purpose, batch_id, now, _count(nbytes, "nbytes"),
                        sum(counts.values()), json.dumps(counts, sort_keys=True),
                        ts_first, ts_last))
            db.executemany("INSERT INTO contents VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE "
                           "SET count = count + excluded.count", rows)
        self._write(f"the upload of batch {batch_id} to {destination}", write)

    def purged(self, destination: str, purpose: str, *, reason: str, items: int,
               nbytes: int) -> None:
        """What a purge deleted of ``destination``'s pending data, and why."""
        def write(db: sqlite3.Connection, now: float) -> None:
            db.execute("INSERT INTO purges (at, destination, purpose, reason, items, nbytes) "
                       "VALUES (?,?,?,?,?,?)", (now, destination, purpose, str(reason),
                                                _count(items, "items"),
                                                _count(nbytes, "nbytes")))
        self._write(f"the purge of {destination}'s {purpose} data", write)

    # --- reading (the report): BavardError when the ledger cannot be read

    def totals(self, since: float | None = None) -> list[dict[str, Any]]:
        """Per (purpose, destination): batches, bytes, items (and per class), the data's
        time range and the first and last sending, from ``since`` on."""
        rows = self._read("SELECT purpose, destination, count(*), sum(nbytes), sum(items), "
                          "min(ts_first), max(ts_last), min(sent_at), max(sent_at) "
                          "FROM uploads WHERE sent_at >= ? GROUP BY purpose, destination "
                          "ORDER BY purpose, destination", (_since(since),))
        classes = self._read("SELECT purpose, destination, j.key, sum(j.value) FROM uploads, "
                             "json_each(uploads.classes) AS j WHERE sent_at >= ? "
                             "GROUP BY purpose, destination, j.key", (_since(since),))
        per: dict[tuple[str, str], dict[str, int]] = {}
        for purpose, destination, name, n in classes:
            per.setdefault((purpose, destination), {})[name] = n
        return [{"purpose": p, "destination": d, "batches": n, "bytes": nbytes,
                 "items": items, "classes": per.get((p, d), {}), "ts_first": first,
                 "ts_last": last, "first_sent": sent0, "last_sent": sent1}
                for p, d, n, nbytes, items, first, last, sent0, sent1 in rows]

    def contents(self, since: float | None = None) -> list[tuple[str, str, str, str, int]]:
        """(purpose, destination, kind, name, count) summed over the days from the one
        of ``since`` on (counts are kept per UTC day)."""
        day = utc_day(since) if since is not None else ""
        rows = self._read("SELECT purpose, destination, kind, name, sum(count) FROM contents "
                          "WHERE day >= ? GROUP BY purpose, destination, kind, name "
                          "ORDER BY purpose, destination, kind, sum(count) DESC, name", (day,))
        return [tuple(r) for r in rows]

    def purges(self, since: float | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT at, destination, purpose, reason, items, nbytes FROM purges "
                          "WHERE at >= ? ORDER BY at, id", (_since(since),))
        return [{"time": at, "destination": d, "purpose": p, "reason": r, "items": i,
                 "bytes": b} for at, d, p, r, i, b in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- inside

    def _write(self, what: str, write: Callable[[sqlite3.Connection, float], None]) -> None:
        try:
            with self._lock:
                now = self.clock()
                db = self._connect(quiet=True)
                if db is None:
                    raise BavardError(f"{self.path} cannot be opened")
                if now >= self._next_prune:
                    self._prune(db, now)
                with _transaction(db):
                    write(db, now)
        except Exception as exc:  # the ledger must never stop an upload: logged, counted
            self.failures += 1
            self._lost(what, exc)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            self._retry_at = -math.inf
            db = self._connect(quiet=True)
            if db is None:
                raise BavardError(f"{self.path}: the privacy ledger cannot be opened "
                                  "(the service's log says why)")
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise BavardError(f"{self.path}: cannot read the privacy ledger: "
                                  f"{exc}") from None

    def _connect(self, quiet: bool) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        now = self.clock()
        if now < self._retry_at:
            return None
        self._retry_at = now + RETRY_OPEN
        for attempt in (1, 2):
            try:
                self._db = self._open()
                return self._db
            except sqlite3.DatabaseError as exc:
                if attempt == 1 and not isinstance(exc, sqlite3.OperationalError):
                    self._move_aside(exc)
                    continue
                reason = str(exc)
            except OSError as exc:
                reason = exc.strerror or str(exc)
            if not quiet:
                log.error("%s: the privacy ledger cannot be opened (%s): uploads go on, "
                          "unrecorded, until it can", self.path, reason)
            return None
        return None

    def _open(self) -> sqlite3.Connection:
        make_private_file(self.path)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this agent knows "
                                            f"{SCHEMA_VERSION}")
            if version == 0:  # a new file (a reader opening a used one writes nothing)
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for suffix in SQLITE_SIDECARS:  # created by SQLite: narrowed to 0600 too
                with contextlib.suppress(OSError):
                    os.chmod(f"{self.path}{suffix}", 0o600)
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(self.path.name + CORRUPT_SUFFIX)
        log.error("%s is not a usable privacy ledger (%s): moved aside to %s, a new one "
                  "starts (the report's history before now is in that file)", self.path,
                  exc, aside)
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)
        for suffix in SQLITE_SIDECARS:
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        self._next_prune = now + DAY
        cutoff = now - KEEP_DAYS * DAY
        with _transaction(db):
            db.execute("DELETE FROM uploads WHERE sent_at < ?", (cutoff,))
            db.execute("DELETE FROM contents WHERE day < ?", (utc_day(cutoff),))
            db.execute("DELETE FROM purges WHERE at < ?", (cutoff,))

    def _lost(self, what: str, exc: Exception) -> None:
        now = self.clock()
        if now - self._warned_at < WARN_EVERY:
            self._unwarned += 1
            return
        more = (f" ({self._unwarned} more records lost since the last warning)"
                if self._unwarned else "")
        log.error("privacy ledger %s: %s was not recorded (%s: %s)%s; uploads go on",
                  self.path, what, type(exc).__name__, exc, more)
        self._warned_at, self._unwarned = now, 0


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a count, got {value!r}")
    return value


def _since(since: float | None) -> float:
    return -math.inf if since is None else since
