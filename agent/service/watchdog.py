"""A progress-based watchdog: ping systemd only while every thread shows progress.

systemd's ``WatchdogSec=`` only proves that *something* in the process still
sends ``WATCHDOG=1``. A ping thread alone would keep a service alive whose
writer is stuck in a call forever. So each worker thread registers a named
*beat* with the longest silence it may keep, and calls it whenever it makes
progress **or** proves that it is alive and idle (an uploader waiting for a
link beats on every wait timeout; a writer stuck inside a call cannot beat)::

    dog = Watchdog(Notifier(), status=lambda: "frames/s 3900, buffer 1.2 MB")
    writer = dog.register("store-writer", max_silence=30.0)
    ...
    writer.beat()                      # in the writer's loop
    ...
    dog.run(stop)                      # in its own thread, until stop is set

Every interval, :meth:`Watchdog.run` sends ``WATCHDOG=1`` (and ``STATUS=``
from the callback) only if every beat is fresh: a beat is *stale* when more
than ``max_silence`` seconds passed since its last call. While one is stale it
stops pinging, so systemd kills and restarts the service once ``WatchdogSec``
runs out, and logs once which beat went silent and since when. If the beat
comes back before systemd acts, pinging resumes (and that is logged too).

The clock is injected (monotonic seconds), and so is the wait: ``run`` takes
anything with ``wait(timeout) -> bool``, a ``threading.Event`` in production,
a virtual clock in the tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.service.notify import Notifier

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_INTERVAL", "Beat", "StaleBeat", "Waiter", "Watchdog"]

DEFAULT_INTERVAL = 10.0
"""Seconds between two checks when systemd asks for no watchdog (status updates only)."""


class Waiter(Protocol):
    """What :meth:`Watchdog.run` waits on: ``threading.Event`` has this shape."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Beat:
    """One registered beat; call :meth:`beat` (or the object itself) to show progress."""

    __slots__ = ("_clock", "last", "max_silence", "name")

    def __init__(self, name: str, max_silence: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.max_silence = max_silence
        self._clock = clock
        self.last = clock()

    def beat(self) -> None:
        """Progress made, or alive and idle: a single attribute store, cheap and thread-safe."""
        self.last = self._clock()

    __call__ = beat

    def __repr__(self) -> str:
        return f"Beat({self.name!r}, max_silence={self.max_silence})"


@dataclass(frozen=True)
class StaleBeat:
    """A beat silent for longer than it may be."""

    name: str
    silent_for: float
    max_silence: float


class Watchdog:
    """Pings systemd while every registered beat is fresh.

    ``interval``: seconds between two checks; by default the notifier's
    (half of ``WATCHDOG_USEC``), else :data:`DEFAULT_INTERVAL`.
    ``status``: a callback giving the ``STATUS=`` line sent with each check;
    an exception in it is logged once and the ping still goes out.
    ``clock``: monotonic seconds. ``wall_clock``: seconds since the epoch, only
    to say in the log since when a beat is silent.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        interval: float | None = None,
        status: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if interval is None:
            interval = notifier.watchdog_interval() or DEFAULT_INTERVAL
        if not interval > 0:
            raise ValueError(f"watchdog interval must be > 0, got {interval}")
        self.notifier = notifier
        self.interval = interval
        self._status = status
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._beats: dict[str, Beat] = {}
        self._reported: set[str] = set()
        self._status_failed = False
        self.pings = 0
        """``WATCHDOG=1`` datagrams sent so far (for tests and the status line)."""

    def register(self, name: str, max_silence: float) -> Beat:
        """Register a beat that must be called at least every ``max_silence`` seconds.

        It counts as fresh from now. Registering a name twice replaces the first.
        """
        if not max_silence > 0:
            raise ValueError(f"beat {name!r}: max_silence must be > 0, got {max_silence}")
        beat = Beat(name, max_silence, self._clock)
        with self._lock:
            self._beats[name] = beat
            self._reported.discard(name)
        return beat

    def unregister(self, name: str) -> None:
        """Forget a beat (its thread ended on purpose); unknown names are ignored."""
        with self._lock:
            self._beats.pop(name, None)
            self._reported.discard(name)

    def beat(self, name: str) -> None:
        """Call the beat registered under ``name``; KeyError if there is none."""
        self._beats[name].beat()

    def stale(self) -> list[StaleBeat]:
        """The beats silent for longer than they may be, now."""
        now = self._clock()
        with self._lock:
            beats = list(self._beats.values())
        return [
            StaleBeat(b.name, now - b.last, b.max_silence)
            for b in beats
            if now - b.last > b.max_silence
        ]

    def check(self) -> bool:
        """One round: ping (with the status line) if every beat is fresh.

        Returns True when ``WATCHDOG=1`` was sent (or would have been, without
        a notification socket). Logs a beat going stale, and coming back, once.
        """
        stale = self.stale()
        self._log_changes(stale)
        status = self._status_line(stale)
        if stale:
            if status is not None:
                self.notifier.status(status)
            return False
        self.notifier.watchdog(status)
        self.pings += 1
        return True

    def run(self, stop: Waiter) -> None:
        """Check now, then every ``interval``, until ``stop.wait`` returns True."""
        while True:
            try:
                self.check()
            except Exception:  # never let a bug here stop the loop silently
                log.exception("watchdog: check failed")
            if stop.wait(self.interval):
                return

    def _status_line(self, stale: list[StaleBeat]) -> str | None:
        text: str | None = None
        if self._status is not None:
            try:
                text = self._status()
            except Exception:
                if not self._status_failed:
                    self._status_failed = True
                    log.exception("watchdog: the status callback failed (logged once)")
        if stale:
            names = ", ".join(f"{s.name} silent {s.silent_for:.0f}s" for s in stale)
            text = f"STALLED: {names}" + (f"; {text}" if text else "")
        return text

    def _log_changes(self, stale: list[StaleBeat]) -> None:
        names = {s.name for s in stale}
        for s in stale:
            if s.name in self._reported:
                continue
            self._reported.add(s.name)
            since = time.strftime(
                "%Y-%m-%d %H:%M:%S %Z", time.localtime(self._wall_clock() - s.silent_for)
            )
            log.error(
                "watchdog: beat %r silent for %.1f s (max %.1f s), since %s; no longer "
                "pinging systemd, which restarts the service when WatchdogSec= runs out",
                s.name,
                s.silent_for,
                s.max_silence,
                since,
            )
        with self._lock:
            back = [n for n in self._reported if n not in names and n in self._beats]
            gone = [n for n in self._reported if n not in self._beats]
        for name in back:
            self._reported.discard(name)
            log.warning(
                "watchdog: beat %r is back%s",
                name,
                "" if stale else "; pinging systemd again",
            )
        for name in gone:
            self._reported.discard(name)
