"""Uploads paused by hand (``bavard pause``), kept across restarts in the state directory.

A technician pauses uploads to work on the vehicle or its link without the box
spending the data plan, or to keep what the buffer holds on the box for a
while; it stays paused after a restart or a reboot until ``bavard resume``.
The buffer keeps filling meanwhile (within its quota and age limits).

The state is a small JSON file, ``upload-paused.json``, in the state
directory: present means paused (``since``: wall clock, ``reason``: what the
technician said), absent means not. It is replaced atomically, and written by
the service (through its control socket) or, when no service runs, by the
command itself. A file that cannot be read or parsed still means paused (a
technician meant to pause; an unreadable file is logged and the reason says so):
``bavard resume`` deletes it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.atomic_file import write_atomically
from agent.errors import BavardError

log = logging.getLogger(__name__)

FILE_NAME = "upload-paused.json"
MAX_REASON = 500  # characters of the reason kept


@dataclass(frozen=True)
class Paused:
    since: float | None  # wall clock; None when the file did not say
    reason: str


class PauseSwitch:
    """Whether uploads are paused; thread-safe (the control socket's thread sets it,
    the uploader's thread reads it)."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.clock = clock
        self._lock = threading.Lock()
        self._paused = self._load()

    @property
    def paused(self) -> Paused | None:
        """None when uploads may go; else since when and why they may not."""
        return self._paused

    def pause(self, reason: str = "") -> tuple[Paused, bool]:
        """Pause (kept across restarts); the pause and whether it is new. BavardError when
        it cannot be written (a pause that a restart would forget is not done)."""
        with self._lock:
            current = self._paused
            if current is not None:
                return current, False
            paused = Paused(self.clock(), reason[:MAX_REASON])
            try:
                write_atomically(self.path, [json.dumps(
                    {"since": paused.since, "reason": paused.reason}).encode()])
            except OSError as exc:
                raise BavardError(f"cannot pause uploads: cannot write {self.path}: "
                                  f"{exc.strerror or exc}") from None
            self._paused = paused
        log.warning("uploads paused by hand%s", f": {paused.reason}" if paused.reason else "")
        return paused, True

    def resume(self) -> Paused | None:
        """Resume; the pause that ended, or None when uploads were not paused."""
        with self._lock:
            current = self._paused
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BavardError(f"cannot resume uploads: cannot delete {self.path}: "
                                  f"{exc.strerror or exc}") from None
            self._paused = None
        if current is not None:
            log.warning("uploads resumed by hand")
        return current

    def _load(self) -> Paused | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("%s: cannot read it (%s): uploads stay paused until `bavard resume`",
                      self.path, exc.strerror or exc)
            return Paused(None, f"unreadable pause file {self.path}")
        try:
            raw = json.loads(text)
            since = raw.get("since")
            return Paused(float(since) if since is not None else None,
                          str(raw.get("reason", ""))[:MAX_REASON])
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("%s: not a pause record (%s): uploads stay paused until `bavard "
                      "resume`", self.path, exc)
            return Paused(None, f"unreadable pause file {self.path}")
