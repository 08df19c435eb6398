"""Which PIDs to ask for next, within an adapter's budget.

An OBD-II adapter answers one request at a time, and each costs a round trip
(tens of milliseconds on a real ELM327): the scheduler spends that budget.

* Each PID has its own period (0: as often as the budget allows). A PID is
  *due* once its period has passed since it was last asked; due PIDs are asked
  first, the shortest period first, the longest overdue first among equals.
* Several due PIDs share one request where the vehicle allows it (up to six
  on CAN: ``01 0C 0D 05``): ``per_request``.
* A PID that gets no answer (NO DATA, or left out of a multi-PID reply)
  ``NO_DATA_LIMIT`` times in a row is dropped, with a warning, and asked again
  after ``RETRY_AFTER`` seconds (doubling up to ``RETRY_MAX``): an ECU that
  does not have it stops costing a round trip each period.
* The achieved rate of each PID (answers per second since it was first asked)
  is a counter, :meth:`PollScheduler.rates`.

Time is the caller's: ``clock`` (monotonic seconds) is injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NO_DATA_LIMIT = 3  # answers missing in a row before a PID is dropped
RETRY_AFTER = 300.0  # seconds before a dropped PID is asked again
RETRY_MAX = 3600.0  # the back-off doubles up to this
MAX_PER_REQUEST = 6  # PIDs in one mode 01 request (ISO 15765-4)


@dataclass
class PidCounters:
    """What one PID cost and gave."""

    period: float
    next_due: float = 0.0
    asked: int = 0
    answered: int = 0
    missing: int = 0  # answers missing in a row
    dropped: int = 0  # times it was dropped
    retry_after: float = RETRY_AFTER  # the next back-off
    dropped_until: float | None = None  # dropped: asked again from this time on
    first_asked: float | None = None


class PollScheduler:
    """Due PIDs first, then by period; several per request; NO DATA drops a PID for a while.

    ``periods``: PID number -> seconds between two askings. ``per_request``: how many
    PIDs one request may carry (1 for adapters or protocols that refuse more).
    """

    def __init__(self, periods: Mapping[int, float], *, per_request: int = MAX_PER_REQUEST,
                 clock: Callable[[], float] = time.monotonic, name: str = "obd") -> None:
        if not 1 <= per_request <= MAX_PER_REQUEST:
            raise ValueError(f"per_request must be 1..{MAX_PER_REQUEST}, got {per_request}")
        self.per_request = per_request
        self.clock = clock
        self.name = name
        now = clock()
        self.pids: dict[int, PidCounters] = {
            pid: PidCounters(period=max(0.0, float(period)), next_due=now)
            for pid, period in periods.items()
        }

    def next(self) -> tuple[list[int], float]:
        """The PIDs to ask now, or ``([], seconds)`` to wait before the next is due
        (``([], inf)`` when every PID is dropped for good or there is none)."""
        now = self.clock()
        due: list[tuple[float, float, int]] = []
        wait = float("inf")
        for pid, c in self.pids.items():
            start = c.next_due if c.dropped_until is None else max(c.next_due, c.dropped_until)
            if start <= now:
                due.append((c.period, start, pid))
            else:
                wait = min(wait, start - now)
        if not due:
            return [], wait
        due.sort()
        return [pid for _, _, pid in due[: self.per_request]], 0.0

    def asked(self, pids: list[int], answered: set[int]) -> list[int]:
        """Count one request: ``answered`` are the PIDs its replies carried. Returns the
        PIDs dropped by this answer (each logged once)."""
        now = self.clock()
        dropped = []
        for pid in pids:
            c = self.pids[pid]
            c.asked += 1
            if c.first_asked is None:
                c.first_asked = now
            # keep the phase; a PID asked more than a period late starts a new one
            c.next_due += c.period
            if c.next_due <= now:
                c.next_due = now + c.period
            if pid in answered:
                c.answered += 1
                c.missing = 0
                if c.dropped_until is not None:
                    log.info("%s: PID %02X answers again", self.name, pid)
                    c.dropped_until = None
                    c.retry_after = RETRY_AFTER
                continue
            c.missing += 1
            if c.missing >= NO_DATA_LIMIT or c.dropped_until is not None:
                # dropped again after its retry, or for the first time: back off longer
                c.dropped += 1
                c.dropped_until = now + c.retry_after
                log.warning("%s: PID %02X gave no answer %d times in a row; asking again "
                            "in %.0f s", self.name, pid, c.missing, c.retry_after)
                c.retry_after = min(c.retry_after * 2, RETRY_MAX)
                c.missing = 0
                dropped.append(pid)
        return dropped

    def rates(self) -> dict[int, float]:
        """Answers per second of each PID since it was first asked."""
        now = self.clock()
        return {pid: (c.answered / (now - c.first_asked)
                      if c.first_asked is not None and now > c.first_asked else 0.0)
                for pid, c in self.pids.items()}

    def fewer_per_request(self, per_request: int) -> None:
        """Carry at most ``per_request`` PIDs per request from now on (an adapter or an
        ECU that refuses several in one)."""
        self.per_request = max(1, min(self.per_request, per_request))
