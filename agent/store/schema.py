"""The database: its tables, how it is opened, checked and, when corrupt, moved aside.

::

    chunk        one row per (class, commit) chunk of items, oldest = lowest seq_first
      seq_first  INTEGER PRIMARY KEY   sequence number of the chunk's first item
      seq_last   INTEGER               ... of its last item (seq_last - seq_first + 1 = items)
      class      INTEGER               Kind: 0 frames, 1 samples, 2 events
      items      INTEGER
      ts_first   REAL, ts_last REAL    smallest and largest item timestamp (source time)
      stored_at  REAL                  wall clock at commit: what ages are measured from
      codec      INTEGER               body format (agent.store.codec)
      nbytes     INTEGER               length of body
      batch      INTEGER NULL          seq_first of the upload batch it was handed out in
      body       BLOB                  last, so that reading the other columns skips it
    dead_letter  the same columns, plus reason TEXT and dead_at REAL
    counter      name -> value: evicted.<class>, expired.<class>, dropped_queue.<class>,
                 dropped_full.<class>, dead_letter.batches, dead_letter.items, ...
    meta         key -> value: next_seq (never reused, even when the table is empty),
                 quota_bytes (for ``bavard buffer``)

``PRAGMA user_version`` holds the schema version. Sequence numbers are global
over the classes: ranges of different chunks never overlap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from agent.errors import StoreError
from agent.private_files import make_private_file, restrict

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CORRUPT_SUFFIX = ".corrupt-"
_COLUMNS = """
    seq_first INTEGER PRIMARY KEY,
    seq_last  INTEGER NOT NULL,
    class     INTEGER NOT NULL,
    items     INTEGER NOT NULL,
    ts_first  REAL NOT NULL,
    ts_last   REAL NOT NULL,
    stored_at REAL NOT NULL,
    codec     INTEGER NOT NULL,
    nbytes    INTEGER NOT NULL,
    batch     INTEGER,
    body      BLOB NOT NULL"""
DDL = f"""
CREATE TABLE chunk ({_COLUMNS});
CREATE INDEX chunk_by_class ON chunk (class, seq_first);
CREATE INDEX chunk_by_batch ON chunk (batch) WHERE batch IS NOT NULL;
CREATE TABLE dead_letter ({_COLUMNS},
    reason    TEXT NOT NULL,
    dead_at   REAL NOT NULL);
CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('next_seq', 1);
PRAGMA user_version = {SCHEMA_VERSION};
"""
CHUNK_FIELDS = "seq_first, seq_last, class, items, ts_first, ts_last, stored_at, codec, nbytes"

# SQLite primary result codes (the low byte of an extended code)
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26


class CorruptDatabase(Exception):
    """The file is not a usable database of ours (internal: the store moves it aside)."""


def error_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of an exception, or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, a quota, or SQLITE_FULL; SQLITE_IOERR is treated the same (transient)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return error_code(exc) in (SQLITE_FULL, SQLITE_IOERR)


def is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, CorruptDatabase) or error_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def connect(path: Path, page_size: int = 4096) -> sqlite3.Connection:
    """Open (creating if needed) the database for writing; transactions are explicit.

    The file is created 0600 before SQLite opens it (SQLite gives its ``-wal`` and
    ``-shm`` the database's mode), and an older one open to others is narrowed.
    """
    make_private_file(path)
    db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
    try:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new file
        db.execute(f"PRAGMA page_size = {page_size}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot use WAL mode (journal_mode is {mode})")
        # FULL: the WAL is fsynced at every commit (about once a second), so what a
        # power cut may lose is bounded by the commit interval, not the checkpoints
        db.execute("PRAGMA synchronous = FULL")
        # Debian's SQLite is built with SECURE_DELETE: every freed page would be zeroed
        # through the WAL, doubling the I/O of eviction and failing it on a full disk.
        db.execute("PRAGMA secure_delete = FAST")
    except BaseException:
        db.close()
        raise
    return db


def prepare(db: sqlite3.Connection, path: Path, check: str, wal_reserve: int) -> None:
    """Check an opened database and create the schema in a new one.

    Raises CorruptDatabase (or sqlite3's own error) when the file is not ours,
    damaged, or of a newer schema.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if check != "none":
        pragma = "quick_check" if check == "quick" else "integrity_check"
        rows = db.execute(f"PRAGMA {pragma}(5)").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise CorruptDatabase(f"{pragma}: " + "; ".join(str(r[0]) for r in rows))
    if version == 0:
        tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables:
            raise CorruptDatabase("tables present but no schema version: not a bavard buffer")
        db.executescript("BEGIN IMMEDIATE;" + DDL + "COMMIT;")
    elif version != SCHEMA_VERSION:
        raise CorruptDatabase(f"schema version {version}, this agent reads {SCHEMA_VERSION}")
    else:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        missing = {"chunk", "dead_letter", "counter", "meta"} - names
        if missing:
            raise CorruptDatabase(f"tables missing: {', '.join(sorted(missing))}")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA journal_size_limit = {wal_reserve}")
    db.execute(f"PRAGMA wal_autocheckpoint = {max(wal_reserve // 2 // page_size, 8)}")


def adopt(db: sqlite3.Connection, at_least: int, now: float, quota_bytes: int) -> int:
    """Record the quota and return the next sequence number: above every number stored
    and ``at_least``. A new database starts at ``int(now) << 24``, above the numbers of
    any earlier database on this box (unless the clock went back), so that one started
    fresh after corruption does not reuse batch ranges."""
    stored = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    top = db.execute("SELECT max(seq_last) FROM (SELECT max(seq_last) AS seq_last FROM chunk "
                     "UNION ALL SELECT max(seq_last) FROM dead_letter)").fetchone()[0]
    next_seq = max(stored[0] if stored else 1, (top or 0) + 1, at_least)
    if next_seq == 1:  # nothing ever stored here, nor by this process
        next_seq = max(1, int(now) << 24)
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                   [("next_seq", next_seq), ("quota_bytes", quota_bytes)])
    db.execute("COMMIT")
    return next_seq


def add_counters(db: sqlite3.Connection, counts: Mapping[str, int]) -> None:
    """Add to the counter table (inside the caller's transaction)."""
    db.executemany("INSERT INTO counter VALUES (?, ?) ON CONFLICT (name) "
                   "DO UPDATE SET value = value + excluded.value",
                   [(k, v) for k, v in counts.items() if v])


def move_aside(path: Path, clock: Callable[[], float], keep: int) -> Path:
    """Rename a damaged database (and its WAL) to ``*.corrupt-<UTC timestamp>``.

    The ``-shm`` index is rebuilt by SQLite, so it is deleted. Only the ``keep``
    newest moved-aside databases are kept, so a box that keeps corrupting its
    buffer cannot fill its disk with them. Returns the new name of the database.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}-{n}")
    suffix = target.name[len(path.name):]
    wal = Path(f"{path}-wal")
    for src, dst in ((path, target), (wal, wal.with_name(wal.name + suffix))):
        if src.exists():
            os.replace(src, dst)
            restrict(dst)  # 0600 like the database, even one made by an older version
    with contextlib.suppress(FileNotFoundError):
        Path(f"{path}-shm").unlink()
    olds = corrupt_files(path)
    for old in olds[: max(len(olds) - keep, 0)]:
        for p in (old, old.with_name(old.name.replace(path.name, path.name + "-wal", 1))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return target


def corrupt_files(path: Path) -> list[Path]:
    """The moved-aside databases beside ``path``, oldest first (the names sort by time)."""
    if not path.parent.is_dir():
        return []
    prefix = path.name + CORRUPT_SUFFIX
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def file_bytes(db: sqlite3.Connection) -> tuple[int, int, int]:
    """(page size, pages in the file, pages on the freelist)."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return page_size, pages, free


def wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0
