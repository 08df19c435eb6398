"""The data budget of metered links: bytes per day and per month, kept across restarts.

Every attempt over a metered link is charged (payload plus :data:`OVERHEAD` for
the protocol and TLS framing), delivered or not: the operator pays for what was
sent, not for what arrived. Periods are calendar days and months in UTC (a
carrier's billing day is not known to the box; UTC keeps a reboot across a
time-zone change from granting a second day). Periods only move forward: a
clock that steps back (a Pi without RTC boots at its last saved time, or in
1970, until NTP answers) keeps charging the period already started instead of
starting a "new" one, and then another on the way forward, each from zero. The
price: a clock that was once set far ahead keeps that period until it is reached.

The state is a small JSON file in the state directory, replaced atomically
(temporary file, fsync, rename) after each charge, so a power cut keeps the
last charge or the one before, never a torn file. An unreadable file is
reported and treated as a fresh period: a box never stops uploading events
because of it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.atomic_file import write_atomically

log = logging.getLogger(__name__)

OVERHEAD = 1024  # bytes per attempt: headers, TLS records, TCP/IP framing (an estimate)
FILE_NAME = "metered-budget.json"


@dataclass
class Spent:
    day: str  # "2026-11-26"
    month: str  # "2026-11"
    day_bytes: int = 0
    month_bytes: int = 0


class DataBudget:
    def __init__(self, state_dir: Path, daily: int | None, monthly: int | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.daily = daily
        self.monthly = monthly
        self.clock = clock
        self.spent = self._load()

    def _periods(self) -> tuple[str, str]:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")

    def _load(self) -> Spent:
        day, month = self._periods()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            spent = Spent(str(raw["day"]), str(raw["month"]), int(raw["day_bytes"]),
                          int(raw["month_bytes"]))
        except FileNotFoundError:
            return Spent(day, month)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("metered budget: %s unreadable (%s); starting a fresh period",
                        self.path, exc)
            return Spent(day, month)
        return spent

    def _roll(self) -> Spent:
        day, month = self._periods()
        s = self.spent
        if month > s.month:  # ISO dates sort as they come
            s.month, s.month_bytes = month, 0
        if day > s.day:
            s.day, s.day_bytes = day, 0
        return s

    def allows(self, payload_bytes: int) -> bool:
        """Would sending ``payload_bytes`` now stay within both limits?"""
        s = self._roll()
        cost = payload_bytes + OVERHEAD
        return ((self.daily is None or s.day_bytes + cost <= self.daily)
                and (self.monthly is None or s.month_bytes + cost <= self.monthly))

    def charge(self, payload_bytes: int) -> None:
        s = self._roll()
        cost = payload_bytes + OVERHEAD
        s.day_bytes += cost
        s.month_bytes += cost
        self._save()

    def usage(self) -> dict[str, int | None]:
        """Limits, spent and left in the current day and month (for ``bavard status``;
        reads without rolling the periods, so any thread may call it)."""
        day, month = self._periods()
        s = self.spent
        day_spent = s.day_bytes if s.day >= day else 0
        month_spent = s.month_bytes if s.month >= month else 0
        return {"daily_bytes": self.daily, "monthly_bytes": self.monthly,
                "day_spent": day_spent, "month_spent": month_spent,
                "day_left": None if self.daily is None else max(0, self.daily - day_spent),
                "month_left": (None if self.monthly is None
                               else max(0, self.monthly - month_spent))}

    def seconds_to_reset(self) -> float:
        """Until the next UTC midnight: the earliest moment the budget can grow."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()

    def _save(self) -> None:
        try:
            write_atomically(self.path, [json.dumps(vars(self.spent)).encode()])
        except OSError as exc:  # a full disk must not stop the upload of events
            log.warning("metered budget: cannot save %s: %s", self.path, exc)
