"""The writer's connection to the database: opening it, recovering it, and its state.

Only the writer thread uses a ``Database``. What it survives:

- *Corrupt database* (at start-up or later): the file and its WAL are moved
  aside (agent.store.schema), logged with ``logging.error``, and a fresh
  database is started; its sequence numbers go on from the old one's.
- *No database* (it cannot be created on a full disk, or not reopened after
  a failure): the state is ``unavailable``, and the writer tries again every
  ``REOPEN_INTERVAL`` seconds.

The state (``ok``, ``disk-full``, ``unavailable``) is read by other threads
(``Store.state``): a plain attribute, replaced whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.errors import StoreError
from agent.private_files import make_private_dir
from agent.store import schema
from agent.store.settings import StoreConfig

log = logging.getLogger(__name__)

REOPEN_INTERVAL = 5.0  # seconds between attempts to open the database when it could not be
STATE_LOG_INTERVAL = 60.0  # state changes logged at most this often (the rest at debug)


class Database:
    """The connection (``db``, None while unavailable) and what goes with it."""

    def __init__(self, config: StoreConfig, clock: Callable[[], float],
                 monotonic: Callable[[], float] = time.monotonic,
                 on_open: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.path = config.db_path
        self.clock = clock
        self.monotonic = monotonic
        self.on_open = on_open  # after each successful open (the writer shrinks the file)
        self.db: sqlite3.Connection | None = None
        self.state = "starting"
        self.next_seq = 1  # never goes back, even across a database moved aside
        self.page_size = 4096
        self.inflight: set[int] = set()  # seq_first of the batches handed out
        self.unsaved: Counter[str] = Counter()  # counted, not yet in the counter table
        self.dirty = False  # committed since the last checkpoint
        self._lock_fd: int | None = None
        self._last_checkpoint = monotonic()
        self._last_open_try = 0.0
        self._state_logged = -STATE_LOG_INTERVAL

    # -- opening ---------------------------------------------------------------------------

    def lock(self) -> None:
        """Create the state directory (0700, agent.private_files) and hold its ``flock``:
        one store per directory.

        StoreError when it cannot be used or another process holds it.
        """
        directory = self.path.parent
        try:
            make_private_dir(directory)  # 0700 when created here; an existing one kept as is
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StoreError(f"state directory {directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{directory}: another process holds the buffer") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def open(self) -> None:
        """Open (or create) the database; a corrupt one is moved aside and replaced.

        StoreError when it cannot be used; on a full disk the state is ``unavailable``.
        """
        self._last_open_try = self.monotonic()
        for _attempt in range(3):
            db = None
            try:
                db = schema.connect(self.path)
                schema.prepare(db, self.path, self.config.check_on_open, self.config.wal_reserve)
                self.next_seq = schema.adopt(db, self.next_seq, self.clock(),
                                             self.config.quota_bytes)
                self.page_size = db.execute("PRAGMA page_size").fetchone()[0]
            except (sqlite3.Error, schema.CorruptDatabase, OSError) as exc:
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        db.close()
                if schema.is_corrupt(exc):
                    self._move_aside(exc)
                    continue
                if schema.is_disk_full(exc):
                    self._unavailable(f"cannot open {self.path}, the disk is full ({exc})")
                    return
                raise StoreError(f"{self.path}: cannot open the buffer: {exc}") from None
            self.db = db
            self.inflight.clear()
            self.state = "ok"
            self.on_open()
            return
        raise StoreError(f"{self.path}: still unusable after moving it aside")

    @property
    def reopen_due(self) -> bool:
        return self.db is None and self.monotonic() - self._last_open_try >= REOPEN_INTERVAL

    def reopen(self, corrupt: BaseException | None = None) -> None:
        """Open the database again while running (after a failure, or moving the current
        one aside first when it is ``corrupt``); if that fails, the store is unavailable."""
        self.close(checkpoint=False)
        try:
            if corrupt is not None:
                self._move_aside(corrupt)
            self.open()
        except StoreError as exc:
            self._unavailable(str(exc))

    def _unavailable(self, why: str) -> None:
        if self.state != "unavailable":
            log.error("store: %s; events are kept in memory, the rest dropped, until it can "
                      "be opened (tried every %s s)", why, REOPEN_INTERVAL)
        self.state = "unavailable"

    def _move_aside(self, exc: BaseException) -> None:
        try:
            target = schema.move_aside(self.path, self.clock, self.config.keep_corrupt)
        except OSError as err:
            raise StoreError(f"{self.path} is corrupt ({exc}) and cannot be moved aside: "
                             f"{err}") from None
        log.error("store: the buffer database %s is corrupt (%s); moved aside as %s, "
                  "starting a fresh one: its data is lost", self.path, exc, target.name)
        self.unsaved["corrupt_recoveries"] += 1

    def close(self, checkpoint: bool) -> None:
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

    # -- in use ----------------------------------------------------------------------------

    def set_state(self, state: str, why: str) -> None:
        if state != self.state:
            level = logging.INFO if state == "ok" else logging.WARNING
            now = self.monotonic()
            if now - self._state_logged < STATE_LOG_INTERVAL:  # flapping near the limit
                level = logging.DEBUG
            else:
                self._state_logged = now
            log.log(level, "store: %s", why)
            self.state = state

    def rollback(self) -> None:
        if self.db is not None and self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("store: rollback failed: %s", exc)

    def checkpoint(self, force: bool = False) -> None:
        """A passive WAL checkpoint, every ``checkpoint_interval`` when something was
        committed, or now (``force``)."""
        now = self.monotonic()
        if self.db is None or not (self.dirty or force):
            return
        if not force and now - self._last_checkpoint < self.config.checkpoint_interval:
            return
        self._last_checkpoint = now
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # retried at the next one; expected on a full disk
            level = logging.WARNING if self.state == "ok" else logging.DEBUG
            log.log(level, "store: WAL checkpoint failed: %s", exc)
            return
        self.dirty = False

    def guard(self, what: str, call: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``call`` on the connection, never leaving a transaction open; its failures
        become StoreError (a corrupt database is replaced)."""
        if self.db is None:
            raise StoreError(f"{what}: the buffer is unavailable")
        try:
            return call(self.db)
        except (sqlite3.Error, OSError) as exc:
            self.rollback()
            if schema.is_corrupt(exc):
                self.reopen(corrupt=exc)
            raise StoreError(f"{what}: {exc}") from None
        except BaseException:  # a caller's mistake (a wrong range): StoreError
            self.rollback()
            raise
