"""Value types that travel through the pipeline.

All are NamedTuples: cheap to create on the hot path, immutable, picklable.
Timestamps are seconds since the epoch as floats, exactly as the source gave
them (a replayed log keeps the log's timestamps end to end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Sample.flags bits
OUT_OF_RANGE = 1  # value outside the DBC's [minimum, maximum]
TRUNCATED = 2  # decoded from a frame shorter than the DBC says (only signals that fit)


class Frame(NamedTuple):
    """One CAN (or CAN FD) frame as read from a bus or a log."""

    timestamp: float
    channel: str
    arbitration_id: int
    is_extended: bool
    is_fd: bool
    data: bytes


class Sample(NamedTuple):
    """One decoded signal value."""

    timestamp: float
    channel: str
    message: str
    signal: str
    value: int | float
    unit: str = ""
    label: str | None = None  # the DBC choice (VAL_) name of the raw value, if any
    flags: int = 0  # OUT_OF_RANGE | TRUNCATED


class Event(NamedTuple):
    """Something that happened, as opposed to a sampled value (DTC, fault, trip marker)."""

    timestamp: float
    channel: str
    kind: str
    detail: str
    priority: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class SignalInfo:
    """What the pipeline knows of a DBC signal. Compared and hashed by identity."""

    message: str
    name: str
    unit: str
    minimum: float | None
    maximum: float | None
    choices: dict[int, str] | None
    needed_bytes: int  # a frame shorter than this does not hold the signal


class Decoded(NamedTuple):
    """The selected signals of one frame, decoded: one record per frame.

    ``signals``, ``values``, ``labels`` and ``flags`` are parallel; ``labels``
    is None when no signal has choices, ``flags`` when no value is flagged.
    """

    timestamp: float
    channel: str
    message: str
    signals: tuple[SignalInfo, ...]
    values: tuple[int | float, ...]
    labels: tuple[str | None, ...] | None
    flags: tuple[int, ...] | None

    def samples(self) -> list[Sample]:
        ts, channel, message = self.timestamp, self.channel, self.message
        labels, flags = self.labels, self.flags
        return [
            Sample(ts, channel, message, info.name, value, info.unit,
                   labels[i] if labels is not None else None,
                   flags[i] if flags is not None else 0)
            for i, (info, value) in enumerate(zip(self.signals, self.values, strict=True))
        ]
