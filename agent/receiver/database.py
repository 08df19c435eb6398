"""The receiver's storage: ``DIR/receiver.sqlite``, one transaction per batch.

Python API (what the demo and the end-to-end tests use)::

    from agent.receiver.database import ReceiverDb

    with ReceiverDb("received") as db:          # creates DIR and the file if needed
        db.counters()                           # {"total": {...}, "vehicles": {id: {...}}}
        db.batches(vehicle=None)                # [BatchRecord], in arrival order
        db.batch(batch_id)                      # the whole Batch back, or None
        db.samples(vehicle=None, batch_id=None) # [Sample], in arrival order
        db.events(...), db.frames(...)          # [Event], [Frame]
        db.signal_meta(vehicle)                 # {(channel, message, signal): SignalMeta}
        db.read(sql, params)                    # rows of any read-only query

``ReceiverDb(dir, readonly=True)`` opens an existing file without writing
(``bavard receive --summary`` does, while a receiver may be running).

Decisions:

- *One transaction per batch*: the batch row, its samples, events, frames and
  metadata, and the counters go in with one ``BEGIN IMMEDIATE`` ... ``COMMIT``,
  so a crash leaves all of a batch or none of it, and the counters always agree
  with the rows. ``synchronous=FULL``: a commit is on disk before the sender is
  told (HTTP 201, MQTT PUBACK), since the sender deletes what it was told is safe.
- *Dedupe by batch id*: the id depends only on the vehicle and the sequence range
  (docs/batch-format.md §6), so a retried batch has the same id. It is the
  primary key of ``batch``; a batch whose id is already there is counted as a
  duplicate and its rows are not written again (the check and the insert are in
  the same write transaction, so two threads cannot both store it).
- *Exact values*: see :mod:`agent.receiver.values`; what is read back equals
  what was sent (``db.batch(id) == batch`` under the model's bit-exact equality).
- *Thread safety*: one connection guarded by a lock. The work per batch is a few
  bulk inserts, far cheaper than decoding it, which the callers do outside the lock.

Files: ``DIR`` is created 0700 and ``receiver.sqlite`` (with its ``-wal`` and
``-shm``) 0600 whatever the umask (:mod:`agent.private_files`): what vehicles
sent is personal data.

Errors: :class:`~agent.errors.ReceiverError` for a directory or file that
cannot be used and for a failed write (the caller then tells the sender to
try again: HTTP 503, no MQTT acknowledgement).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.batch import Batch, Envelope, SignalKey, SignalMeta
from agent.errors import ReceiverError
from agent.frames import Event, Frame, Sample
from agent.private_files import make_private_dir, make_private_file
from agent.receiver.schema import COUNTER_NAMES, DB_NAME, DDL, SCHEMA_VERSION
from agent.receiver.values import (
    float_from_sql,
    from_sql,
    int_from_sql,
    to_sql,
    value_from_sql,
    value_to_sql,
)

BUSY_TIMEOUT_MS = 10_000  # another process (a summary) may hold a read lock briefly


@dataclass(frozen=True)
class BatchRecord:
    """One row of the ``batch`` table."""

    batch_id: str
    vehicle: str
    seq_first: int
    seq_last: int
    ts_first: float | None
    ts_last: float | None
    samples: int
    events: int
    frames: int
    signals: int
    bytes: int
    dbc_fingerprint: str
    received_at: float
    transport: str


_BATCH_FIELDS = ("batch_id, vehicle, seq_first, seq_last, ts_first, ts_last, samples, events, "
                 "frames, signals, bytes, dbc_fingerprint, received_at, transport")


class ReceiverDb:
    """The receiver's database in ``directory`` (see the module docstring)."""

    def __init__(self, directory: str | Path, *, readonly: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            if readonly:
                if not self.path.exists():
                    raise ReceiverError(f"{self.directory}: no receiver database "
                                        f"({DB_NAME}) here")
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                     isolation_level=None, check_same_thread=False)
            else:
                make_private_dir(self.directory)
                make_private_file(self.path)  # 0600, and so its -wal and -shm
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise ReceiverError(f"{self.directory}: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise ReceiverError(f"{self.path}: cannot open: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if not readonly:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                if version == 0:
                    db.executescript("BEGIN IMMEDIATE;" + DDL + "COMMIT;")
                    version = SCHEMA_VERSION
        except sqlite3.Error as exc:
            db.close()
            raise ReceiverError(f"{self.path}: not a usable receiver database: {exc}") from None
        if version != SCHEMA_VERSION:
            db.close()
            raise ReceiverError(f"{self.path}: schema version {version}, this receiver "
                                f"knows {SCHEMA_VERSION}")
        self._db = db

    # -- writing ---------------------------------------------------------------------------

    def store(self, batch: Batch, envelope: Envelope, transport: str,
              received_at: float | None = None) -> bool:
        """Store a decoded batch and its rows in one transaction, and count it.

        True when stored, False when its id was already there (counted as a
        duplicate, nothing else written). ReceiverError when the write failed
        (nothing of it is kept).
        """
        received_at = time.time() if received_at is None else received_at
        vehicle = envelope.vehicle_id
        with self._write() as db:
            known = db.execute("SELECT 1 FROM batch WHERE batch_id = ?",
                               (envelope.batch_id,)).fetchone()
            if known:
                _count(db, vehicle, "received", "duplicates")
                return False
            _insert_batch(db, batch, envelope, transport, received_at)
            _count(db, vehicle, "received", "stored")
            return True

    def count_invalid(self, vehicle: str | None) -> None:
        """Count a batch that was refused (``vehicle`` None when even that was unreadable)."""
        with self._write() as db:
            _count(db, vehicle or "", "received", "invalid")

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ReceiverDb:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (for reports such as :mod:`agent.receiver.summary`)."""
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise ReceiverError(f"{self.path}: {exc}") from None

    def counters(self) -> dict[str, Any]:
        """``{"total": {name: n}, "vehicles": {vehicle: {name: n}}}``; vehicle "" is the
        one of batches too broken to say theirs."""
        total = dict.fromkeys(COUNTER_NAMES, 0)
        vehicles: dict[str, dict[str, int]] = {}
        for vehicle, name, value in self.read(
                "SELECT vehicle, name, value FROM counter ORDER BY vehicle, name"):
            vehicles.setdefault(vehicle, dict.fromkeys(COUNTER_NAMES, 0))[name] = value
            total[name] = total.get(name, 0) + value
        return {"total": total, "vehicles": vehicles}

    def has_batch(self, batch_id: str) -> bool:
        return bool(self.read("SELECT 1 FROM batch WHERE batch_id = ?", (batch_id,)))

    def batches(self, vehicle: str | None = None) -> list[BatchRecord]:
        """The stored batches, in the order they arrived."""
        where, params = _where(vehicle=vehicle)
        rows = self.read(f"SELECT {_BATCH_FIELDS} FROM batch {where} "
                         f"ORDER BY received_at, batch_id", params)
        return [_batch_record(row) for row in rows]

    def samples(self, vehicle: str | None = None, batch_id: str | None = None) -> list[Sample]:
        """The stored samples, in arrival order (within a batch: the batch's order)."""
        where, params = _where(vehicle=vehicle, batch_id=batch_id)
        rows = self.read("SELECT ts, channel, message, signal, value, value_type, unit, label, "
                         f"flags FROM sample {where} ORDER BY rowid", params)
        return [Sample(float_from_sql(ts), channel, message, signal,
                       value_from_sql(vtype, value), unit, label, int_from_sql(flags))
                for ts, channel, message, signal, value, vtype, unit, label, flags in rows]

    def events(self, vehicle: str | None = None, batch_id: str | None = None) -> list[Event]:
        where, params = _where(vehicle=vehicle, batch_id=batch_id)
        rows = self.read("SELECT ts, channel, kind, detail, priority FROM event "
                         f"{where} ORDER BY rowid", params)
        return [Event(float_from_sql(ts), channel, kind, detail, int_from_sql(priority))
                for ts, channel, kind, detail, priority in rows]

    def frames(self, vehicle: str | None = None, batch_id: str | None = None) -> list[Frame]:
        where, params = _where(vehicle=vehicle, batch_id=batch_id)
        rows = self.read("SELECT ts, channel, arbitration_id, is_extended, is_fd, data FROM "
                         f"frame {where} ORDER BY rowid", params)
        return [Frame(float_from_sql(ts), channel, arb, bool(ext), bool(fd), bytes(data))
                for ts, channel, arb, ext, fd, data in rows]

    def signal_meta(self, vehicle: str, dbc_fingerprint: str | None = None,
                    batch_id: str | None = None) -> dict[SignalKey, SignalMeta]:
        """What the batches of ``vehicle`` said about their signals (the latest wins)."""
        where, params = _where(vehicle=vehicle, dbc_fingerprint=dbc_fingerprint,
                               batch_id=batch_id)
        rows = self.read("SELECT channel, message, signal, unit, scale, offset, minimum, "
                         f"maximum, choices FROM signal_meta {where} ORDER BY rowid", params)
        out: dict[SignalKey, SignalMeta] = {}
        for channel, message, signal, unit, scale, offset, minimum, maximum, choices in rows:
            out[(channel, message, signal)] = SignalMeta(
                unit, _number(scale), _number(offset), from_sql(minimum), from_sql(maximum),
                None if choices is None else {int(k): str(v) for k, v in json.loads(choices)})
        return out

    def batch(self, batch_id: str) -> Batch | None:
        """The stored batch rebuilt from its rows (None when unknown)."""
        found = self.read(f"SELECT {_BATCH_FIELDS} FROM batch WHERE batch_id = ?", (batch_id,))
        if not found:
            return None
        rec = _batch_record(found[0])
        return Batch(rec.vehicle, rec.seq_first, rec.seq_last, rec.dbc_fingerprint,
                     self.samples(batch_id=batch_id), self.events(batch_id=batch_id),
                     self.frames(batch_id=batch_id),
                     self.signal_meta(rec.vehicle, batch_id=batch_id))

    # -- internals -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ReceiverError(f"{self.path}: the receiver database is closed")
        return self._db

    def _write(self) -> _Transaction:
        if self.readonly:
            raise ReceiverError(f"{self.path}: opened read-only")
        return _Transaction(self)


class _Transaction:
    """``with db._write() as conn``: the lock, BEGIN IMMEDIATE, COMMIT or ROLLBACK."""

    def __init__(self, owner: ReceiverDb) -> None:
        self.owner = owner

    def __enter__(self) -> sqlite3.Connection:
        self.owner._lock.acquire()
        try:
            db = self.owner._conn()
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self.owner._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise ReceiverError(f"{self.owner.path}: cannot write: {exc}") from None
            raise
        return db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            db = self.owner._conn()
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as commit_exc:
                    exc = commit_exc
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise ReceiverError(f"{self.owner.path}: cannot write: {exc}") from None
        finally:
            self.owner._lock.release()


def _count(db: sqlite3.Connection, vehicle: str, *names: str) -> None:
    db.executemany("INSERT INTO counter (vehicle, name, value) VALUES (?, ?, 1) "
                   "ON CONFLICT (vehicle, name) DO UPDATE SET value = value + 1",
                   [(vehicle, name) for name in names])


def _insert_batch(db: sqlite3.Connection, batch: Batch, env: Envelope, transport: str,
                  received_at: float) -> None:
    bid, vehicle = env.batch_id, env.vehicle_id
    db.execute(f"INSERT INTO batch ({_BATCH_FIELDS}) VALUES ({', '.join('?' * 14)})",
               (bid, vehicle, to_sql(env.seq_first), to_sql(env.seq_last),
                to_sql(env.time_first), to_sql(env.time_last), len(batch.samples),
                len(batch.events), len(batch.frames), len(batch.signals), env.size,
                env.dbc_fingerprint, received_at, transport))
    db.executemany(
        "INSERT INTO sample (batch_id, vehicle, ts, channel, message, signal, value, "
        "value_type, unit, label, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _sample_rows(bid, vehicle, batch.samples))
    db.executemany(
        "INSERT INTO event (batch_id, vehicle, ts, channel, kind, detail, priority) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(bid, vehicle, to_sql(e.timestamp), e.channel, e.kind, e.detail, to_sql(e.priority))
         for e in batch.events])
    db.executemany(
        "INSERT INTO frame (batch_id, vehicle, ts, channel, arbitration_id, is_extended, "
        "is_fd, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(bid, vehicle, to_sql(f.timestamp), f.channel, f.arbitration_id, int(f.is_extended),
          int(f.is_fd), bytes(f.data)) for f in batch.frames])
    db.executemany(
        "INSERT INTO signal_meta (vehicle, dbc_fingerprint, channel, message, "
        "signal, unit, scale, offset, minimum, maximum, choices, batch_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(vehicle, env.dbc_fingerprint, channel, message, signal, meta.unit,
          to_sql(meta.scale), to_sql(meta.offset), to_sql(meta.minimum), to_sql(meta.maximum),
          None if meta.choices is None else json.dumps(sorted(meta.choices.items())), bid)
         for (channel, message, signal), meta in batch.signals.items()])


def _sample_rows(bid: str, vehicle: str, samples: list[Sample]) -> Iterator[tuple[Any, ...]]:
    for s in samples:
        value_type, value = value_to_sql(s.value)
        yield (bid, vehicle, to_sql(s.timestamp), s.channel, s.message, s.signal, value,
               value_type, s.unit, s.label, to_sql(s.flags))


def _where(**conditions: str | None) -> tuple[str, list[str]]:
    used = {name: value for name, value in conditions.items() if value is not None}
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{name} = ?" for name in used), list(used.values())


def _batch_record(row: tuple[Any, ...]) -> BatchRecord:
    (bid, vehicle, seq_first, seq_last, ts_first, ts_last, samples, events, frames, signals,
     nbytes, fingerprint, received_at, transport) = row
    return BatchRecord(bid, vehicle, int_from_sql(seq_first), int_from_sql(seq_last),
                       _opt_float(from_sql(ts_first)), _opt_float(from_sql(ts_last)), samples,
                       events, frames, signals, nbytes, fingerprint, received_at, transport)


def _opt_float(x: int | float | None) -> float | None:
    return None if x is None else float(x)


def _number(v: Any) -> int | float:
    x = from_sql(v)
    if x is None:
        raise TypeError("a NULL where a number was written")
    return x
