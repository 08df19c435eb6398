"""Requests from outside for an OBD source's adapter: ``bavard obd`` through the service.

An adapter answers one client (a serial port cannot be shared, and two
programs asking on the same ISO-TP ids take each other's replies), so while
the service holds it, the technician's ``bavard obd dtc`` is run by the OBD
source itself: the control command hands a function to :meth:`RequestQueue.call`,
the source's thread runs it with its own :class:`~agent.obd.client.ObdClient`
between two polls (:meth:`RequestQueue.serve`), and the caller gets its result,
or its exception, back.

Bounded: at most :data:`MAX_PENDING` requests wait (more are refused at once),
and a caller waits at most its ``timeout``; a request whose caller gave up is
not run. A request made while the source is not talking to the vehicle fails
at once, saying why (connecting, or the last fault and that it tries again);
requests still waiting when the session ends fail with the fault that ended it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.errors import ObdError
from agent.obd.client import ObdClient

log = logging.getLogger(__name__)

MAX_PENDING = 4  # requests waiting for the source; more are refused
STOP_POLL = 0.1  # seconds: how often a source waiting for requests looks at its stop event


class _Request:
    def __init__(self, fn: Callable[[ObdClient], Any], what: str, changes_dtcs: bool) -> None:
        self.fn = fn
        self.what = what
        self.changes_dtcs = changes_dtcs
        self.done = threading.Event()
        self.abandoned = False  # the caller stopped waiting: do not run it
        self.result: Any = None
        self.error: BaseException | None = None


class RequestQueue:
    """Functions waiting to run with a source's client (see the module's docstring).

    The source calls :meth:`connected` with its client once the vehicle answers,
    :meth:`disconnected` when the session ends or a fault keeps it from starting,
    :meth:`serve` between two polls, and :meth:`wait` instead of sleeping."""

    def __init__(self, name: str, max_pending: int = MAX_PENDING) -> None:
        self.name = name
        self.max_pending = max_pending
        self.served = 0  # requests run (whatever their outcome)
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._pending: deque[_Request] = deque()
        self._client: ObdClient | None = None
        self._why = "connecting to the adapter"

    # -- the caller's side (the control socket's thread) ------------------------------------

    def call(self, fn: Callable[[ObdClient], Any], timeout: float, what: str = "request",
             *, changes_dtcs: bool = False) -> Any:
        """Run ``fn(client)`` in the source's thread and return what it returns (or raise
        what it raised); ObdError when the source cannot take it or it did not
        finish within ``timeout`` seconds. ``changes_dtcs``: it cleared the trouble codes
        (the source reads them again at once, so the service's events say so)."""
        request = _Request(fn, what, changes_dtcs)
        with self._lock:
            if self._client is None:
                raise ObdError(f"channel {self.name}: not talking to the vehicle now: "
                                      f"{self._why}")
            if len(self._pending) >= self.max_pending:
                raise ObdError(f"channel {self.name}: busy: {len(self._pending)} "
                                      "requests already wait for the adapter; try again")
            self._pending.append(request)
            self._arrived.set()
        if not request.done.wait(timeout):
            with self._lock:
                request.abandoned = True
                if request in self._pending:
                    self._pending.remove(request)
            if not request.done.is_set():
                raise ObdError(f"channel {self.name}: {what}: no answer within "
                                      f"{timeout:g} s (a slow adapter, or a stuck one)")
        if request.error is not None:
            raise request.error
        return request.result

    @property
    def state(self) -> tuple[bool, str | None]:
        """(talking to the vehicle, why not)."""
        with self._lock:
            return self._client is not None, None if self._client is not None else self._why

    # -- the source's side (its reading thread) ---------------------------------------------

    def connected(self, client: ObdClient) -> None:
        with self._lock:
            self._client = client

    def disconnected(self, why: str) -> None:
        """No client any more; every waiting request fails with ``why``."""
        with self._lock:
            self._client = None
            self._why = why
            waiting, self._pending = list(self._pending), deque()
        for request in waiting:
            request.error = ObdError(f"channel {self.name}: {request.what}: {why}")
            request.done.set()

    def serve(self, client: ObdClient) -> bool:
        """Run the waiting requests; True when one of them changed the trouble codes.
        An ObdError (the adapter or the vehicle failed) is handed to the caller and raised
        here too, so that the source reopens the adapter as after any fault; any other
        exception goes to the caller only."""
        changed = False
        while True:
            with self._lock:
                if not self._pending:
                    self._arrived.clear()
                    return changed
                request = self._pending.popleft()
                if request.abandoned:
                    continue
            self.served += 1
            changed = changed or request.changes_dtcs
            try:
                request.result = request.fn(client)
            except ObdError as exc:
                request.error = exc
                request.done.set()
                raise
            except Exception as exc:  # the caller's bug or bad bytes: not the source's end
                log.warning("%s: %s failed: %s", self.name, request.what, exc)
                request.error = exc
            request.done.set()

    def wait(self, stop: threading.Event, timeout: float,
             clock: Callable[[], float] = time.monotonic) -> None:
        """Sleep up to ``timeout`` seconds; return early on a request or on ``stop``
        (looked at every :data:`STOP_POLL` seconds)."""
        deadline = clock() + max(0.0, timeout)
        for _ in range(int(timeout / STOP_POLL) + 2):  # bounded whatever the clock does
            remaining = deadline - clock()
            if remaining <= 0 or stop.is_set():
                return
            if self._arrived.wait(min(remaining, STOP_POLL)):
                return
