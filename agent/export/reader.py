"""What the local buffer holds, read without writing to it (``bavard export``, ``plot``).

The database is opened read-only (``mode=ro``), as ``bavard buffer`` does, so
this works while the service runs and writes: SQLite's WAL lets a reader see
one consistent snapshot, taken at :meth:`BufferReader.snapshot`, while the
writer goes on (the WAL cannot be checkpointed past that snapshot until the
reader ends it, so keep it short: one export).

Both the chunks waiting for upload and the dead letters (batches the receiver
refused) are read: both are data the box still holds. What was uploaded and
acknowledged is deleted from the box and cannot be exported from it.
Chunks are selected by their time span (``ts_first``, ``ts_last``), then each
item by its own timestamp: ``since <= t < until``, so consecutive ranges
never give an item twice. An item without a usable timestamp (NaN) is in no
range.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Collection, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.errors import StoreError
from agent.store import DB_NAME, Kind, schema
from agent.store.codec import decode

_TABLES = ("chunk", "dead_letter")


class BufferReader:
    """A read-only connection to the buffer database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _check_readable(path)
        uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open: {exc}") from None
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"{path}: cannot read: {exc}") from None
        if version != schema.SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"{path}: not a bavard buffer of schema {schema.SCHEMA_VERSION} "
                             f"(user_version {version})")

    def __enter__(self) -> BufferReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def snapshot(self) -> None:
        """Read everything that follows from one state of the database (a read
        transaction, ended by :meth:`close`)."""
        self._query("BEGIN")
        self._query("SELECT count(*) FROM meta")  # a deferred BEGIN snapshots at the first read

    def span(self) -> tuple[float, float] | None:
        """The smallest and largest item timestamp the buffer holds, None when empty."""
        row = self._query(" UNION ALL ".join(
            f"SELECT min(ts_first), max(ts_last) FROM {t}" for t in _TABLES)).fetchall()
        firsts = [r[0] for r in row if r[0] is not None]
        lasts = [r[1] for r in row if r[1] is not None]
        return (min(firsts), max(lasts)) if firsts else None

    def estimate(self, kinds: Collection[Kind], since: float, until: float) -> int:
        """Items in the chunks that overlap ``[since, until)``: at least as many as
        :meth:`items` gives (before its filters)."""
        total = 0
        for table in _TABLES:
            for kind in kinds:
                row = self._query(f"SELECT coalesce(sum(items), 0) FROM {table} WHERE class = ? "
                                  "AND ts_last >= ? AND ts_first < ?",
                                  (int(kind), since, until)).fetchone()
                total += int(row[0])
        return total

    def items(self, kind: Kind, since: float, until: float,
              channels: Collection[str] = ()) -> Iterator[list[Any]]:
        """The items of ``kind`` with ``since <= timestamp < until`` (and of one of
        ``channels`` when given), one list per stored chunk, in the order they were
        stored (time order per channel). StoreError when a chunk cannot be read."""
        query = " UNION ALL ".join(
            f"SELECT seq_first, codec, body FROM {t} "
            "WHERE class = ? AND ts_last >= ? AND ts_first < ?" for t in _TABLES)
        params = (int(kind), since, until) * len(_TABLES)
        wanted = frozenset(channels)
        for seq_first, codec, body in self._query(query + " ORDER BY seq_first", params):
            try:
                chunk = decode(kind, codec, body)
            except StoreError as exc:
                raise StoreError(f"{self.path}: the chunk of {kind.label} starting at "
                                 f"sequence number {seq_first}: {exc}") from None
            chunk = [it for it in chunk if since <= it[0] < until]  # NaN: in no range
            if wanted:
                chunk = [it for it in chunk if it[1] in wanted]
            if chunk:
                yield chunk

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read: {exc}") from None


def buffer_path(state_dir: Path) -> Path:
    """The buffer database of ``state_dir``; StoreError saying what is missing."""
    path = state_dir / DB_NAME
    if path.is_file():
        return path
    if not state_dir.is_dir():
        raise StoreError(f"no buffer: {state_dir} is not a directory (the agent's state "
                         f"directory is [store] state_dir of its configuration: --config FILE "
                         f"reads it from there)")
    raise StoreError(f"no buffer in {state_dir} (no {DB_NAME} there; the agent's state "
                     f"directory is [store] state_dir of its configuration: --config FILE "
                     f"reads it from there)")


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise StoreError(f"no buffer at {path}")
    if not os.access(path, os.R_OK):
        raise StoreError(f"{path}: permission denied: the buffer is readable by the "
                         f"service's user and root only (run this as root, e.g. with sudo)")
