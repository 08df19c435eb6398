"""What arrived: per vehicle, per signal, plus the counters (``bavard receive --summary``).

``summarize(db) -> Summary``; ``Summary.to_dict()`` is the ``--json`` form (NaN
and infinities written as strings, as the rest of the command line does). The
rendering for a terminal lives in ``agent.cli.receive_cmd``.

Minimum and maximum cover the numeric values only (int and float samples that
SQLite holds as numbers: NaN and integers beyond int64 are left out, booleans
and strings too); a signal without any has ``None`` for both. Times are the
samples' own timestamps (source time), not arrival times.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.receiver.database import ReceiverDb
from agent.receiver.schema import COUNTER_NAMES
from agent.receiver.values import from_sql


@dataclass(frozen=True)
class SignalSummary:
    channel: str
    message: str
    signal: str
    unit: str
    count: int
    first: float | None
    last: float | None
    minimum: int | float | None
    maximum: int | float | None


@dataclass(frozen=True)
class VehicleSummary:
    vehicle: str
    batches: int
    samples: int
    events: int
    frames: int
    bytes: int
    first: float | None  # earliest record timestamp of its batches
    last: float | None
    counters: dict[str, int]
    signals: list[SignalSummary] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    path: str
    counters: dict[str, int]
    vehicles: list[VehicleSummary]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


_NUMERIC = "value_type IN ('int', 'float') AND typeof(value) IN ('integer', 'real')"
_TIMED = "typeof(ts) IN ('integer', 'real')"


def summarize(db: ReceiverDb) -> Summary:
    counters = db.counters()
    per_batch = {
        vehicle: row for vehicle, *row in db.read(
            "SELECT vehicle, count(*), sum(samples), sum(events), sum(frames), sum(bytes), "
            "min(CASE WHEN typeof(ts_first) IN ('integer', 'real') THEN ts_first END), "
            "max(CASE WHEN typeof(ts_last) IN ('integer', 'real') THEN ts_last END) "
            "FROM batch GROUP BY vehicle")
    }
    signals: dict[str, list[SignalSummary]] = {}
    for vehicle, channel, message, signal, unit, count, first, last, lo, hi in db.read(
            f"SELECT vehicle, channel, message, signal, unit, count(*), "
            f"min(CASE WHEN {_TIMED} THEN ts END), max(CASE WHEN {_TIMED} THEN ts END), "
            f"min(CASE WHEN {_NUMERIC} THEN value END), max(CASE WHEN {_NUMERIC} THEN value END) "
            f"FROM sample GROUP BY vehicle, channel, message, signal, unit "
            f"ORDER BY vehicle, channel, message, signal, unit"):
        signals.setdefault(vehicle, []).append(SignalSummary(
            channel, message, signal, unit, count, _float(first), _float(last),
            from_sql(lo), from_sql(hi)))
    vehicles = []
    for vehicle in sorted(set(per_batch) | set(counters["vehicles"])):
        batches, samples, events, frames, nbytes, first, last = per_batch.get(
            vehicle, (0, 0, 0, 0, 0, None, None))
        vehicles.append(VehicleSummary(
            vehicle, batches, samples or 0, events or 0, frames or 0, nbytes or 0,
            _float(first), _float(last),
            counters["vehicles"].get(vehicle, dict.fromkeys(COUNTER_NAMES, 0)),
            signals.get(vehicle, [])))
    return Summary(str(db.path), counters["total"], vehicles)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    return obj
