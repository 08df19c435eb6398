"""Where each decoded sample, event and frame may go: consent and purposes, before the
store.

The pipeline hands its output to one :class:`Router`; the router hands each
destination's buffer (an :class:`Outlet`) only what its purpose may receive
(agent.privacy.purposes), and only while the owner's consent for that purpose
stands (agent.privacy.consent). What a purpose without consent would have
received is not stored at all: it is counted (``withheld``), never written
and filtered later.

On the way, the box works out what it can itself (agent.insights: driving
events, trips, maintenance): its events are routed like the sources' own.

Positions (signals named ``Latitude``/``Longitude``, any message) go to no
destination whose purpose has ``geohash = 0`` (the default). For the others,
each destination's :class:`~agent.privacy.zones.PositionGate` holds the trip's
positions and, at the trip's end, releases them coarsened to the purpose's
geohash precision, minus the privacy zones at both ends of the trip.

Threads: the pipeline's consumer calls :meth:`put_samples`, :meth:`put_events`
and :meth:`put_frames`; the service's monitor calls :meth:`quiet` and the
command thread :meth:`withdraw`: one lock keeps them in order.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.frames import Event, Frame, Sample
from agent.globs import GlobSet
from agent.privacy.purposes import POSITION_SIGNALS, Purpose

if TYPE_CHECKING:
    from agent.config import SignalRule
    from agent.privacy.zones import PositionGate

log = logging.getLogger(__name__)


class Sink(Protocol):
    def put_samples(self, samples: Sequence[Sample], block: bool = True) -> bool: ...

    def put_events(self, events: Sequence[Event], block: bool = True) -> bool: ...

    def put_frames(self, frames: Sequence[Frame], block: bool = True) -> bool: ...


class Consent(Protocol):
    def granted(self, purpose: str) -> bool: ...


@dataclass
class Outlet:
    """One destination's buffer and what it may receive."""

    name: str
    purpose: Purpose
    sink: Sink
    gate: PositionGate | None = None  # None: no position for this purpose
    stored: dict[str, int] = field(default_factory=lambda: {"samples": 0, "events": 0,
                                                            "frames": 0, "positions": 0})
    withheld: dict[str, int] = field(default_factory=lambda: {"samples": 0, "events": 0,
                                                              "frames": 0, "positions": 0})


class Router:
    """The pipeline's sinks, fanning out to the outlets (see the module docstring)."""

    def __init__(self, outlets: Sequence[Outlet], consent: Consent,
                 rules: Sequence[SignalRule] = (), insights: Any = None) -> None:
        self.outlets = list(outlets)
        self.consent = consent
        self.insights = insights
        self._lock = threading.Lock()
        self._signals = [GlobSet(o.purpose.signals) for o in self.outlets]
        self._rules = [(GlobSet((r.match,)), frozenset(r.purposes)) for r in rules
                       if r.purposes is not None]
        # message -> signal -> (position?, allowed per outlet)
        self._verdicts: dict[str, dict[str, tuple[bool, tuple[bool, ...]]]] = {}
        self._event_verdicts: dict[str, tuple[bool, ...]] = {}
        self.insight_events = 0

    # -- the pipeline's sinks -------------------------------------------------------------

    def put_samples(self, samples: list[Sample]) -> None:
        with self._lock:
            derived = self.insights.samples(samples) if self.insights is not None else []
            self._samples(samples, derived)
            if derived:
                self.insight_events += len(derived)
                self._events(derived)

    def put_events(self, events: list[Event], block: bool = True) -> None:
        """``block=False``: the service's own events, from any thread: a full buffer
        drops them (counted by the store) rather than wait."""
        with self._lock:
            derived = self.insights.events(events) if self.insights is not None else []
            self._trips(events)
            self._events(events, block)
            if derived:
                self.insight_events += len(derived)
                self._trips(derived)
                self._events(derived)

    def put_frames(self, frames: list[Frame]) -> None:
        with self._lock:
            for outlet in self.outlets:
                if not outlet.purpose.frames:
                    continue
                if self.consent.granted(outlet.purpose.name):
                    outlet.sink.put_frames(frames)
                    outlet.stored["frames"] += len(frames)
                else:
                    outlet.withheld["frames"] += len(frames)

    def quiet(self, now: float) -> None:
        """Time passes without data (a live bus gone quiet may end a trip)."""
        if self.insights is None:
            return
        with self._lock:
            derived = self.insights.quiet(now)
            if derived:
                self.insight_events += len(derived)
                self._trips(derived)
                self._events(derived)

    def withdraw(self, purpose: str) -> int:
        """Consent for ``purpose`` was revoked: forget the positions held for it (the
        buffers are purged by the caller). How many positions were dropped."""
        dropped = 0
        with self._lock:
            for outlet in self.outlets:
                if outlet.purpose.name == purpose and outlet.gate is not None:
                    dropped += outlet.gate.forget()
        return dropped

    # -- routing --------------------------------------------------------------------------

    def _samples(self, samples: list[Sample], derived: list[Event]) -> None:
        granted = [self.consent.granted(o.purpose.name) for o in self.outlets]
        if derived:
            self._trips(derived, ends=False)
        chosen: list[list[Sample]] = [[] for _ in self.outlets]
        positions: list[Sample] = []
        verdicts = self._verdicts
        for sample in samples:
            by_signal = verdicts.get(sample[2])
            verdict = by_signal.get(sample[3]) if by_signal is not None else None
            if verdict is None:
                verdict = self._verdict(sample[2], sample[3])
            position, allowed = verdict
            if position:
                positions.append(sample)
                continue
            for i, ok in enumerate(allowed):
                if ok:
                    chosen[i].append(sample)
        for i, outlet in enumerate(self.outlets):
            if outlet.gate is not None and positions:
                if granted[i]:
                    outlet.gate.offer(positions)
                else:
                    outlet.withheld["positions"] += len(positions)
            picked = chosen[i]
            if not picked:
                continue
            if granted[i]:
                outlet.sink.put_samples(picked)
                outlet.stored["samples"] += len(picked)
            else:
                outlet.withheld["samples"] += len(picked)
        if derived:
            self._trips(derived, starts=False)

    def _verdict(self, message: str, signal: str) -> tuple[bool, tuple[bool, ...]]:
        position = signal.lower() in POSITION_SIGNALS
        named = next((names for globs, names in self._rules if globs.matches(message, signal)),
                     None)
        allowed = tuple(
            (outlet.purpose.name in named) if named is not None else globs.matches(message,
                                                                                   signal)
            for outlet, globs in zip(self.outlets, self._signals, strict=True))
        verdict = (position, allowed)
        self._verdicts.setdefault(message, {})[signal] = verdict
        return verdict

    def _events(self, events: list[Event], block: bool = True) -> None:
        granted = [self.consent.granted(o.purpose.name) for o in self.outlets]
        chosen: list[list[Event]] = [[] for _ in self.outlets]
        for event in events:
            allowed = self._event_verdicts.get(event.kind)
            if allowed is None:
                allowed = tuple(o.purpose.event_allowed(event.kind) for o in self.outlets)
                self._event_verdicts[event.kind] = allowed
            for i, ok in enumerate(allowed):
                if ok:
                    chosen[i].append(event)
        for i, outlet in enumerate(self.outlets):
            picked = chosen[i]
            if not picked:
                continue
            if granted[i]:
                outlet.sink.put_events(picked, block)
                outlet.stored["events"] += len(picked)
            else:
                outlet.withheld["events"] += len(picked)

    def _trips(self, events: list[Event], starts: bool = True, ends: bool = True) -> None:
        """Tell the position gates where trips start and end; a trip's end releases its
        positions (coarsened, zones left out) to the outlets still granted."""
        for event in events:
            if event.kind == "trip.start" and starts:
                for outlet in self.outlets:
                    if outlet.gate is not None:
                        outlet.gate.trip_start(event.timestamp)
            elif event.kind == "trip.end" and ends:
                for outlet in self.outlets:
                    if outlet.gate is None:
                        continue
                    released = outlet.gate.trip_end(event.timestamp)
                    if not released:
                        continue
                    if self.consent.granted(outlet.purpose.name):
                        outlet.sink.put_samples(released)
                        outlet.stored["positions"] += len(released)
                    else:
                        outlet.withheld["positions"] += len(released)

    def close(self) -> None:
        """Keep what the box worked out (an open trip, service and battery history)."""
        if self.insights is not None:
            with self._lock:
                self.insights.close()

    def status(self) -> list[dict[str, Any]]:
        return [{"destination": o.name, "purpose": o.purpose.name,
                 "granted": self.consent.granted(o.purpose.name),
                 "stored": dict(o.stored), "withheld": dict(o.withheld),
                 "positions": None if o.gate is None else o.gate.counts()}
                for o in self.outlets]


def make_gate(purpose: Purpose, rng: random.Random | None = None) -> PositionGate | None:
    """The position gate of a purpose that may receive positions, else None."""
    if purpose.geohash <= 0:
        return None
    from agent.privacy.zones import PositionGate

    return PositionGate(purpose.geohash, purpose.zone_min_m, purpose.zone_max_m,
                        rng=rng or random.Random())

