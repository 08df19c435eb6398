"""sd_notify without libsystemd: tell systemd that the agent is ready, alive, reloading.

systemd passes a datagram socket in ``NOTIFY_SOCKET`` (a path, or an abstract
name when it starts with ``@``) to a ``Type=notify`` service; the service sends
newline-separated ``KEY=value`` assignments to it (sd_notify(3)):

- ``READY=1`` once start-up is complete (``systemctl start`` returns then);
- ``STATUS=...`` a one-line status shown by ``systemctl status``;
- ``WATCHDOG=1`` a keep-alive, at least every ``WATCHDOG_USEC`` microseconds
  when ``WatchdogSec=`` is set (:func:`watchdog_interval` gives half of it, as
  sd_watchdog_enabled(3) recommends);
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` (systemd >= 253 requires it for
  ``Type=notify-reload``), then ``READY=1`` when the reload is done;
- ``STOPPING=1`` when shutdown begins.

Without ``NOTIFY_SOCKET`` (run by hand, in tests) every call is a no-op. A send
that fails never raises: the first failure is logged as a warning, later ones
at debug level, and the call returns ``False``. The environment, the process id
and the monotonic clock are injectable so tests need no systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = ["Notifier", "notify_address", "watchdog_interval"]


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The socket address of ``NOTIFY_SOCKET``, ready for ``sendto``, or None.

    ``@name`` becomes the abstract address ``\\0name``; an absolute path is kept;
    anything else (empty, relative, ``vsock:`` of systemd >= 254) gives None.
    """
    env = os.environ if environ is None else environ
    value = env.get("NOTIFY_SOCKET", "")
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings, or None when no watchdog is asked for.

    Half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends. None when
    ``WATCHDOG_USEC`` is absent, not a positive integer, or when ``WATCHDOG_PID``
    is set and names another process (the variables were inherited from a
    parent that systemd watches, not this process).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if raw is None:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid is not None:
        try:
            watched = int(raw_pid)
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not an integer", raw_pid)
            return None
        if watched != (os.getpid() if pid is None else pid):
            return None
    return usec / 2_000_000


def _one_line(text: str) -> str:
    """A value for a ``KEY=value`` line: newlines would start a new assignment."""
    return " ".join(text.splitlines())


class Notifier:
    """A client of systemd's notification socket; a no-op outside systemd.

    ``environ`` defaults to ``os.environ`` read once, at construction;
    ``pid`` (for ``WATCHDOG_PID``) to ``os.getpid()``; ``monotonic_ns`` to
    ``time.monotonic_ns`` (the clock of ``MONOTONIC_USEC``, CLOCK_MONOTONIC).
    Safe to call from several threads.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        pid: int | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self._address = notify_address(env)
        self._watchdog_interval = watchdog_interval(env, pid)
        self._monotonic_ns = monotonic_ns
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._failed = False
        raw = env.get("NOTIFY_SOCKET")
        if raw and self._address is None:
            log.warning("ignoring NOTIFY_SOCKET=%r: not a path or an @abstract name", raw)

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify (``NOTIFY_SOCKET`` was usable)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``), or None without a watchdog."""
        return self._watchdog_interval if self.enabled else None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram.

        Returns True when the datagram was sent, False when there is no socket
        or the send failed (logged, never raised).
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._socket.sendto(payload, self._address)
            except OSError as exc:
                self._report(exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``, with a ``STATUS=`` line when given."""
        lines = ["READY=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """``STATUS=text`` (newlines become spaces)."""
        return self.notify("STATUS=" + _one_line(text))

    def watchdog(self, status: str | None = None) -> bool:
        """``WATCHDOG=1``, with a ``STATUS=`` line when given."""
        lines = ["WATCHDOG=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` now; send :meth:`ready` when done."""
        lines = ["RELOADING=1", f"MONOTONIC_USEC={self._monotonic_ns() // 1000}"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``, with a ``STATUS=`` line when given."""
        lines = ["STOPPING=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC=``: ask for more time to start, reload or stop."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def close(self) -> None:
        """Close the socket; a later send opens a new one."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _report(self, exc: OSError) -> None:
        if self._failed:
            log.debug("sd_notify: send failed again: %s", exc)
            return
        self._failed = True
        log.warning(
            "sd_notify: cannot send to NOTIFY_SOCKET %s: %s (further failures logged at debug)",
            self._address.replace("\0", "@") if self._address else None,
            exc,
        )
