"""The batch: what the agent uploads, as Python values (the wire form is in codec).

A batch holds the samples, events and raw frames of one vehicle between two
store sequence numbers, plus what a backend needs to read them without the
DBC files: each signal's unit, scaling and value labels. Equality is
*identity of content*: floats compare by their bits (NaN equals the same NaN,
``-0.0`` differs from ``0.0``) and ``1`` differs from ``1.0``, so
``decode(encode(batch)) == batch`` means nothing was changed on the way.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.frames import Event, Frame, Sample

# (channel, message, signal)
SignalKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class SignalMeta:
    """What the DBC says about one signal: enough to read its values without the DBC.

    ``scale`` and ``offset`` keep their type (a DBC's ``(1,-40)`` gives ints),
    ``choices`` maps raw values to the DBC's VAL_ labels.
    """

    unit: str = ""
    scale: int | float = 1
    offset: int | float = 0
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: dict[int, str] | None = None

    @classmethod
    def from_cantools(cls, signal: Any) -> SignalMeta:
        """The metadata of a cantools ``Signal``."""
        choices = None
        if signal.choices:
            choices = {int(raw): str(label) for raw, label in signal.choices.items()}
        return cls(unit=signal.unit or "", scale=signal.scale, offset=signal.offset,
                   minimum=signal.minimum, maximum=signal.maximum, choices=choices)


def signal_metadata(channel: str, databases: Sequence[Any]) -> dict[SignalKey, SignalMeta]:
    """Every signal of ``databases`` (cantools), keyed for the batches of ``channel``.

    Earlier databases win on a duplicated message name, as they do in the decoder.
    """
    out: dict[SignalKey, SignalMeta] = {}
    for db in databases:
        for message in db.messages:
            for signal in message.signals:
                out.setdefault((channel, message.name, signal.name),
                               SignalMeta.from_cantools(signal))
    return out


@dataclass(eq=False)
class Batch:
    """One upload: the records of ``vehicle_id`` with store sequence numbers
    ``seq_first``..``seq_last`` (inclusive).

    ``vehicle_id`` is pseudonymous (:func:`agent.batch.codec.pseudonymous_vehicle_id`),
    never the VIN. ``signals`` is optional metadata, typically only for the
    signals used in the batch (:meth:`with_metadata` picks those); the
    encoded batch is readable without it.
    """

    vehicle_id: str
    seq_first: int
    seq_last: int
    dbc_fingerprint: str = ""
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    signals: dict[SignalKey, SignalMeta] = field(default_factory=dict)

    @property
    def batch_id(self) -> str:
        """Stable across retries: derived from the vehicle id and the sequence range only."""
        from agent.batch.codec import batch_id

        return batch_id(self.vehicle_id, self.seq_first, self.seq_last)

    @property
    def time_range(self) -> tuple[float, float] | None:
        """(earliest, latest) timestamp of every record, NaN ignored; None when there is none."""
        return time_range(self.timestamps())

    def timestamps(self) -> Iterator[float]:
        for s in self.samples:
            yield s.timestamp
        for e in self.events:
            yield e.timestamp
        for f in self.frames:
            yield f.timestamp

    def with_metadata(self, known: dict[SignalKey, SignalMeta]) -> Batch:
        """A copy whose ``signals`` holds the entries of ``known`` that the samples use."""
        used = {(s.channel, s.message, s.signal) for s in self.samples}
        signals = {key: meta for key, meta in known.items() if key in used}
        return Batch(self.vehicle_id, self.seq_first, self.seq_last, self.dbc_fingerprint,
                     list(self.samples), list(self.events), list(self.frames), signals)

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.vehicle_id, _int_key(self.seq_first), _int_key(self.seq_last),
            self.dbc_fingerprint,
            [(_float_key(s.timestamp), s.channel, s.message, s.signal, _value_key(s.value),
              s.unit, s.label, _int_key(s.flags)) for s in self.samples],
            [(_float_key(e.timestamp), e.channel, e.kind, e.detail, _int_key(e.priority))
             for e in self.events],
            [(_float_key(f.timestamp), f.channel, _int_key(f.arbitration_id),
              bool(f.is_extended), bool(f.is_fd), bytes(f.data)) for f in self.frames],
            {key: _meta_key(meta) for key, meta in self.signals.items()},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return self._identity() == other._identity()

    __hash__ = None  # type: ignore[assignment]  # mutable


def time_range(timestamps: Iterable[float]) -> tuple[float, float] | None:
    """Earliest and latest of ``timestamps`` in IEEE totalOrder (``-0.0 < 0.0``), NaN ignored."""
    values = [t for t in map(float, timestamps) if t == t]
    if not values:
        return None
    first, last = min(values), max(values)
    if first == 0.0:  # min() keeps whichever zero came first
        negative = any(t == 0.0 and math.copysign(1.0, t) < 0 for t in values)
        first = -0.0 if negative else 0.0
    if last == 0.0:
        positive = any(t == 0.0 and math.copysign(1.0, t) > 0 for t in values)
        last = 0.0 if positive else -0.0
    return first, last


def total_order_key(x: float) -> int:
    """An int that sorts float64s in IEEE 754 totalOrder (Rust's ``f64::total_cmp``)."""
    bits: int = struct.unpack(">q", struct.pack(">d", x))[0]
    return bits ^ 0x7FFF_FFFF_FFFF_FFFF if bits < 0 else bits


def _float_key(x: float) -> bytes:
    return struct.pack(">d", float(x))


def _int_key(x: Any) -> Any:
    return (type(x).__name__, x)


def _value_key(x: Any) -> Any:
    if isinstance(x, float):
        return ("float", _float_key(x))
    return _int_key(x)


def _num_key(x: Any) -> Any:
    return None if x is None else _value_key(x)


def _meta_key(meta: SignalMeta) -> Any:
    return (meta.unit, _num_key(meta.scale), _num_key(meta.offset), _num_key(meta.minimum),
            _num_key(meta.maximum),
            None if meta.choices is None else sorted(meta.choices.items()))

