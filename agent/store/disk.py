"""Disk space: the filesystem's free space, the ballast file, giving pages back.

The writer keeps the database within the quota (agent.store.quota) and within
what the filesystem has free beyond ``min_free_bytes``, read with statvfs
before every commit. When a write fails all the same (SQLITE_FULL or ENOSPC:
a user quota, thin provisioning, another process faster than us), it gives
back the ballast and does not grow the file for ``SQUEEZE_SECONDS``.

The ballast (``buffer.ballast``, ``wal_reserve`` bytes, part of the quota) is
what the store gives back to the filesystem when it is full: a commit that
grew the database puts the new pages in the WAL, and the checkpoint that
copies them into the file needs that much free disk. If someone else took the
last bytes in between, nothing can be written (the WAL cannot be reused
before a complete checkpoint) until the ballast is deleted. It is recreated
once the disk has room again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from agent.store.settings import BALLAST_NAME, StoreConfig

log = logging.getLogger(__name__)

SQUEEZE_SECONDS = 10.0  # after SQLITE_FULL, do not try to grow the file for this long
UNKNOWN_FREE = 1 << 62  # free bytes assumed when statvfs fails


def fs_free(directory: Path) -> int:
    """Bytes of the filesystem free for us (statvfs ``f_bavail``)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return UNKNOWN_FREE
    return st.f_bavail * st.f_frsize


def ballast_path(db_path: Path) -> Path:
    return db_path.with_name(BALLAST_NAME)


def ballast_size(db_path: Path) -> int:
    try:
        return os.stat(ballast_path(db_path)).st_size
    except FileNotFoundError:
        return 0


class Disk:
    """The writer's dealings with the filesystem around its database at ``db_path``."""

    def __init__(self, db_path: Path, config: StoreConfig,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db_path = db_path
        self.ballast = ballast_path(db_path)
        self.reserve = config.wal_reserve
        self.min_free = config.min_free_bytes
        self.monotonic = monotonic
        self._squeeze_until = 0.0

    @property
    def squeezed(self) -> bool:
        """True for ``SQUEEZE_SECONDS`` after a write failed for lack of space: statvfs may
        not tell the truth (quotas, thin provisioning), and trying to grow the file on
        every round would fail on every round."""
        return self.monotonic() < self._squeeze_until

    def squeeze(self) -> None:
        self._squeeze_until = self.monotonic() + SQUEEZE_SECONDS

    def make_ballast(self) -> None:
        """(Re)create the ballast file at its size if the disk has room for it."""
        if ballast_size(self.db_path) == self.reserve:
            return
        if fs_free(self.ballast.parent) < 2 * self.reserve + self.min_free:
            return
        try:
            fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, 0)  # the quota (and so its size) may have changed
                os.posix_fallocate(fd, 0, self.reserve)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("store: no ballast: %s", exc)
            with contextlib.suppress(OSError):
                self.ballast.unlink()

    def release_ballast(self) -> bool:
        """Delete the ballast (the disk is full); True when there was one to give back."""
        try:
            self.ballast.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("store: cannot delete the ballast %s: %s", self.ballast, exc)
            return False
        log.warning("store: the disk is full: gave the ballast's %d bytes back to finish "
                    "the WAL checkpoint", self.reserve)
        return True


def give_back(db: sqlite3.Connection, db_path: Path) -> None:
    """Truncate the file's free pages off its end (``auto_vacuum = INCREMENTAL``)."""
    try:
        # executescript steps it to the end: execute() would free a single page
        db.executescript("PRAGMA incremental_vacuum;")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        log.warning("store: cannot shrink %s: %s", db_path, exc)
