"""The receiver's counters when no database keeps them (a lake-only receiver).

The same shape as :meth:`agent.receiver.database.ReceiverDb.counters`: received,
stored, duplicates and invalid, in total and per vehicle. They live in memory, so
they count what *this* process received since it started; the lake itself is the
record of what was stored (``agent.lake.read.batch_ids``).
"""

from __future__ import annotations

import threading
from typing import Any

from agent.receiver.schema import COUNTER_NAMES


class MemoryCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vehicles: dict[str, dict[str, int]] = {}

    def count(self, vehicle: str, *names: str) -> None:
        with self._lock:
            row = self._vehicles.setdefault(vehicle, dict.fromkeys(COUNTER_NAMES, 0))
            for name in names:
                row[name] += 1

    def counters(self) -> dict[str, Any]:
        with self._lock:
            vehicles = {v: dict(row) for v, row in sorted(self._vehicles.items())}
        total = dict.fromkeys(COUNTER_NAMES, 0)
        for row in vehicles.values():
            for name, value in row.items():
                total[name] += value
        return {"total": total, "vehicles": vehicles}
