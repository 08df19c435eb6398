"""The state of ``bavard live``'s table: one row per signal seen, and what the
technician did to the view (filter, pause, scroll).

Every time here is the model's ``clock`` (monotonic seconds, injected), the time a
sample *arrived*, not its timestamp: a log replayed at 10x shows ten times the
rates, as it shows ten times the changes. Per row:

* value, unit, choice label, and ``kept`` (the service's policy stores it; None
  where there is no policy: straight from a bus or a log);
* rate: samples per second over the last :data:`RATE_WINDOW` seconds (over the
  time since the model started, at least a second, until a whole window passed);
* age: seconds since its last sample;
* highlighted for :data:`HIGHLIGHT` seconds after its value changed (the first
  value is not a change);
* history: its values, one point per :data:`HISTORY_STEP` seconds at most (the
  last value in each step), the newest :data:`HISTORY` of them, for a sparkline.

Pause freezes the rows (values, ages, rates as they were) while samples keep
coming in underneath, so that nothing piles up and resuming shows the present.
The filter is a substring of ``Message.Signal`` (any case) or, with ``*``, ``?`` or
``[``, a signal glob (:mod:`agent.globs`: with a dot against ``Message.Signal``,
without one against the signal name), any case; it applies to frozen rows too.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.globs import GlobSet, has_wildcard

HIGHLIGHT = 1.0  # seconds a changed value stays highlighted
RATE_WINDOW = 5.0  # seconds of samples a rate counts
HISTORY = 32  # points of history kept per signal
HISTORY_STEP = 0.25  # seconds: at most one history point per step


class LiveSample(NamedTuple):
    """One decoded value as the table takes it (the ``samples`` stream's item)."""

    t: float
    channel: str
    message: str
    signal: str
    value: float
    unit: str = ""
    label: str | None = None
    kept: bool | None = None  # None: no policy in between (a bus or a log)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> LiveSample:
        """From a ``samples`` stream item (docs/control.md); ValueError when it is not one.
        A null value (what the service sends for NaN or an infinity) is NaN."""
        try:
            value = item["v"]
            if value is None:
                value = math.nan
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"value {value!r} is not a number")
            label, kept = item.get("label"), item.get("kept")
            return cls(float(item["t"]), str(item["ch"]), str(item["msg"]), str(item["sig"]),
                       value, str(item.get("unit") or ""),
                       None if label is None else str(label),
                       None if kept is None else bool(kept))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a samples item ({exc}): {item!r:.120}") from None


class RowView(NamedTuple):
    """A row as the view draws it, at one moment."""

    channel: str
    name: str  # Message.Signal
    value: str
    unit: str
    rate: float  # samples/s
    age: float  # seconds since the last sample
    kept: bool | None
    highlighted: bool
    history: tuple[float, ...]


@dataclass(slots=True)
class _Row:
    channel: str
    message: str
    signal: str
    value: float
    unit: str
    label: str | None
    kept: bool | None
    seen: float  # clock of the last sample
    changed: float | None = None  # clock of the last change of value
    arrivals: deque[float] = field(default_factory=deque)  # clocks, within the rate window
    history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    history_at: float = -math.inf  # clock of the newest history point


class LiveModel:
    """The live table's rows and view state. Not thread-safe: one thread feeds it and
    reads it (the caller locks)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.rows: dict[tuple[str, str, str], _Row] = {}
        self.samples = 0  # samples taken in, in all
        self.dropped = 0  # samples the service dropped for us (it says how many)
        self.unreadable = 0  # stream items that were not samples
        self.known: int | None = None  # signals the source can decode, when it says
        self.selected: int | None = None  # of those, the ones the service selects
        self.ended: str | None = None  # why the feed ended (the log's end, the service gone)
        self.filter = ""
        self.offset = 0  # first row shown
        self.paused = False
        self._frozen: list[RowView] = []
        self._glob: GlobSet | None = None
        self._batches: deque[tuple[float, int]] = deque()  # (clock, samples): the total rate

    # -- the feed -------------------------------------------------------------

    def add(self, samples: Iterable[LiveSample]) -> None:
        """Take samples in (paused or not)."""
        now = self.clock()
        rows = self.rows
        cutoff = now - RATE_WINDOW
        n = 0
        for s in samples:
            n += 1
            key = (s.channel, s.message, s.signal)
            row = rows.get(key)
            if row is None:
                row = rows[key] = _Row(s.channel, s.message, s.signal, s.value, s.unit,
                                       s.label, s.kept, now)
            else:
                if _differs(row.value, s.value) or row.label != s.label:
                    row.changed = now
                row.value, row.label, row.kept, row.seen = s.value, s.label, s.kept, now
                row.unit = s.unit
            arrivals = row.arrivals
            arrivals.append(now)
            while arrivals[0] < cutoff:
                arrivals.popleft()
            if now - row.history_at >= HISTORY_STEP or not row.history:
                row.history.append(float(s.value))
                row.history_at = now
            else:
                row.history[-1] = float(s.value)
        if n:
            self.samples += n
            self._batches.append((now, n))

    def rate(self) -> float:
        """Samples per second, all signals together (see :meth:`_per_second`)."""
        now = self.clock()
        batches = self._batches
        while batches and batches[0][0] < now - RATE_WINDOW:
            batches.popleft()
        return self._per_second(sum(n for _, n in batches), now)

    def _per_second(self, count: int, now: float) -> float:
        span = min(RATE_WINDOW, max(1.0, now - self.started))
        return count / span

    # -- what the view shows --------------------------------------------------

    def view(self) -> list[RowView]:
        """The rows to draw, in (channel, Message.Signal) order: frozen when paused,
        filtered."""
        rows = self._frozen if self.paused else self._snapshot()
        if not self.filter:
            return rows
        return [r for r in rows if self._matches(r.name)]

    def _snapshot(self) -> list[RowView]:
        now = self.clock()
        out = []
        for key in sorted(self.rows):
            row = self.rows[key]
            arrivals = row.arrivals
            while arrivals and arrivals[0] < now - RATE_WINDOW:
                arrivals.popleft()
            out.append(RowView(
                row.channel, f"{row.message}.{row.signal}",
                row.label if row.label is not None else format_value(row.value), row.unit,
                self._per_second(len(arrivals), now), max(0.0, now - row.seen), row.kept,
                row.changed is not None and now - row.changed < HIGHLIGHT,
                tuple(row.history)))
        return out

    def _matches(self, name: str) -> bool:
        if self._glob is not None:
            message, _, signal = name.partition(".")
            return self._glob.matches(message, signal)
        return self.filter.lower() in name.lower()

    # -- what the technician does ---------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter = text
        self._glob = GlobSet((text,), case_sensitive=False) if has_wildcard(text) else None
        self.offset = 0

    def type_char(self, char: str) -> None:
        self.set_filter(self.filter + char)

    def backspace(self) -> None:
        self.set_filter(self.filter[:-1])

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._frozen = self._snapshot() if self.paused else []

    def scroll(self, lines: int, shown: int, page: int) -> None:
        """Move the first row shown by ``lines`` (within the ``shown`` rows, ``page`` of
        them on the screen)."""
        self.offset = max(0, min(self.offset + lines, shown - page))


def _differs(old: float, new: float) -> bool:
    return old != new and not (old != old and new != new)  # NaN is no change


def format_value(value: float) -> str:
    """A number as a technician reads it: integers whole, floats without binary noise."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return format(value, ".10g")
