"""The pipeline's tap: what the control socket's subscribers see of the live data.

The pipeline's consumer thread must not slow down for a technician's laptop, so
the tap does almost nothing there: with nobody subscribed the pipeline reads
:attr:`Tap.active` once per chunk and calls nothing; with subscribers it hands
over *references*, once per chunk (a chunk of frames, a chunk's decoded records
each with the samples the policy kept of it, a list of events), that each
:class:`Subscription` appends to its own bounded queue. No dictionary is built
and no JSON is written on that thread: the control server's thread takes the
references, turns them into the protocol's items (docs/control.md), filters
them and writes them.

Overflow: a subscription holds at most :data:`DEPTH` items (frames, samples or
events) that its peer has not been sent yet; what comes while it is full is
dropped and counted in :attr:`Subscription.dropped`, per subscription. A peer
that stopped reading thus costs the pipeline one comparison and one addition
per chunk (and one lookup per record for a samples subscription with a glob),
whatever it subscribed to; and while no samples subscription has room
(:meth:`Tap.room`), the pipeline holds no decoded record for the tap: a
chunk's records held until its end cost it about a fifth of its speed in the
garbage collector's passes (scripts/bench_control.py).

Threads: each subscription's queue has one feeding side and one taking side,
and each counter one writer (``appended`` and ``dropped``: the feeding side,
``taken``: the server), so no lock is taken on the pipeline's path. Events may
come from two threads (the pipeline's and the daemon's own), so ``events``
takes a lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Collection, Iterable
from typing import Any

from agent.control.protocol import BAD_ARGS
from agent.errors import ControlError
from agent.frames import Decoded, Event, Frame, Sample, SignalInfo
from agent.globs import GlobSet

TOPICS = ("frames", "samples", "events")
DEPTH = 16_384  # items waiting per subscription; more are dropped and counted
MAX_SELECTIONS = 4096  # distinct signal sets remembered per subscription (then forgotten)


class Subscription:
    """One peer's subscription: its filter, its bounded queue and its counters.

    Queue entries, by topic: ``frames``: a chunk of one channel's frames (the
    pipeline's own list); ``samples``: a chunk's ``(decoded, kept)`` pairs, each a
    decoded record and the samples the policy kept of it; ``events``: a list of
    events.
    """

    __slots__ = ("_selections", "appended", "channel", "depth", "dropped", "globs", "queue",
                 "signals", "taken", "topic")

    def __init__(self, topic: str, channel: str | None, signals: str | None,
                 depth: int = DEPTH) -> None:
        self.topic = topic
        self.channel = channel
        self.signals = signals
        self.globs = GlobSet((signals,)) if signals else None
        self.depth = depth
        self.queue: deque[Any] = deque()
        self.appended = 0  # items appended (the feeding side)
        self.taken = 0  # items taken (the server)
        self.dropped = 0  # items lost while the queue was full (the feeding side)
        self._selections: dict[tuple[SignalInfo, ...], tuple[int, ...]] = {}

    def selected(self, signals: tuple[SignalInfo, ...]) -> tuple[int, ...]:
        """Indices of ``signals`` that the subscription's glob matches (all of them
        without a glob), worked out once per distinct set of signals."""
        found = self._selections.get(signals)
        if found is None:
            globs = self.globs
            found = tuple(i for i, info in enumerate(signals)
                          if globs is None or globs.matches(info.message, info.name))
            if len(self._selections) >= MAX_SELECTIONS:
                self._selections = {}
            self._selections[signals] = found
        return found

    def offer(self, entry: Any, n: int) -> None:
        """A queue entry of ``n`` items from the feeding side: queued, or dropped and
        counted when the queue is full."""
        if self.appended - self.taken >= self.depth:
            self.dropped += n
        else:
            self.queue.append(entry)
            self.appended += n

    def count(self, values: int, signal_sets: Iterable[tuple[SignalInfo, ...]]) -> int:
        """Items a chunk of the samples topic is for this subscription: all ``values``
        without a glob, else those of the signals (of each record) the glob selects."""
        if self.globs is None:
            return values
        selected = self.selected
        return sum(len(selected(signals)) for signals in signal_sets)

    def take(self, budget: int) -> list[Any]:
        """Queue entries, oldest first, of at most ``budget`` items in all (but at least
        the first entry, which may hold more: a chunk of frames)."""
        out: list[Any] = []
        queue, samples = self.queue, self.topic == "samples"
        taken = 0
        while queue:
            entry = queue[0]
            n = self.size(entry) if samples else len(entry)
            if out and taken + n > budget:
                break
            out.append(queue.popleft())
            taken += n
        self.taken += taken
        return out

    def items(self, entries: list[Any]) -> list[dict[str, Any]]:
        """Queue entries as the protocol's stream items (docs/control.md). A value that
        is not a finite number (an IEEE float signal's NaN) is null: strict JSON."""
        if self.topic == "frames":
            return [{"t": f[0], "ch": f[1], "id": f[2], "ext": f[3], "fd": f[4],
                     "data": f[5].hex()} for chunk in entries for f in chunk]
        if self.topic == "events":
            return [{"t": e[0], "ch": e[1], "kind": e[2], "detail": e[3], "prio": e[4]}
                    for batch in entries for e in batch]
        out: list[dict[str, Any]] = []
        isfinite = math.isfinite
        for decoded, kept in (pair for chunk in entries for pair in chunk):
            ts, channel, message, infos, values, labels, _ = decoded
            # the policy keeps a subset of the record's signals, in their order
            names = None if len(kept) == len(values) else {s[3] for s in kept}
            for i in self.selected(infos):
                info, value = infos[i], values[i]
                out.append({"t": ts, "ch": channel, "msg": message, "sig": info.name,
                            "v": value if isfinite(value) else None, "unit": info.unit,
                            "label": labels[i] if labels is not None else None,
                            "kept": names is None or info.name in names})
        return out

    def size(self, entry: Any) -> int:
        """Items in a queue entry of the samples topic (what it counted as)."""
        return self.count(sum(len(decoded[4]) for decoded, _ in entry),
                          (decoded[3] for decoded, _ in entry))


class Tap:
    """Where the pipeline hands its data to the control socket's subscribers.

    The pipeline reads :attr:`active` (anybody subscribed?) and :attr:`sampling`
    (anybody subscribed to samples?) without a lock, once per chunk.
    ``channels``: the names of the running configuration's channels (the daemon
    sets them at each start and reload); when set, a subscription to another
    channel is refused.
    """

    def __init__(self, channels: Collection[str] | None = None, depth: int = DEPTH) -> None:
        self.channels = channels
        self.depth = depth
        self.active = False
        self.sampling = False
        self._frames: tuple[Subscription, ...] = ()
        self._samples: tuple[Subscription, ...] = ()
        self._events: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()  # subscribe/unsubscribe, and the events' two feeders

    # --- the feeding side (the pipeline's thread; events also the daemon's)

    def frames(self, frames: list[Frame]) -> None:
        """A chunk of one channel's frames, as the pipeline received it."""
        if not frames:
            return
        channel = frames[0][1]
        n = len(frames)
        for sub in self._frames:
            if sub.channel is not None and sub.channel != channel:
                continue
            sub.offer(frames, n)

    def decoded(self, records: list[tuple[Decoded, list[Sample]]], values: int) -> None:
        """A chunk's decoded frames (records of either decoder, all of one channel), each
        with the samples of it that the policy keeps (a subset of its signals, in their
        order); ``values``: how many signal values the records hold in all."""
        if not records:
            return
        channel = records[0][0][1]
        for sub in self._samples:
            if sub.channel is not None and sub.channel != channel:
                continue
            n = sub.count(values, (decoded[3] for decoded, _ in records))
            if n:
                sub.offer(records, n)

    def room(self, channel: str) -> bool:
        """Whether a samples subscription of ``channel`` can take more now. When none can,
        the pipeline keeps nothing of a chunk for the tap (it only counts with
        :meth:`overflow`): held records would cost it the garbage collector's passes."""
        return any(sub.appended - sub.taken < sub.depth for sub in self._samples
                   if sub.channel is None or sub.channel == channel)

    def overflow(self, channel: str, values: int,
                 signal_sets: list[tuple[SignalInfo, ...]]) -> None:
        """A chunk of ``channel`` that no samples subscription had room for: ``values``
        signal values in all, ``signal_sets`` the signals of each decoded record (the
        decoders' own tuples), counted as dropped by each subscription."""
        for sub in self._samples:
            if sub.channel is not None and sub.channel != channel:
                continue
            sub.dropped += sub.count(values, signal_sets)

    def events(self, events: list[Event]) -> None:
        """Events the pipeline's sources noticed, or the daemon's own."""
        if not events or not self._events:
            return
        with self._lock:
            for sub in self._events:
                channel = sub.channel
                mine = events if channel is None else [e for e in events if e[1] == channel]
                if mine:
                    sub.offer(mine, len(mine))

    # --- the server's side

    def subscribe(self, topic: str, channel: str | None = None, signals: str | None = None
                  ) -> Subscription:
        """A new subscription; ControlError (code bad-args) for an unknown topic or
        channel, or a signal glob on a topic other than samples."""
        if topic not in TOPICS:
            raise ControlError(f"topic: {topic!r} is not one of {', '.join(TOPICS)}", BAD_ARGS)
        channels = self.channels
        if channel is not None and channels is not None and channel not in channels:
            known = ", ".join(sorted(channels)) or "none"
            raise ControlError(f"channel: no channel {channel!r} (channels: {known})", BAD_ARGS)
        if signals is not None and topic != "samples":
            raise ControlError(f"signals: a glob filters the samples topic, not {topic}",
                               BAD_ARGS)
        sub = Subscription(topic, channel, signals or None, self.depth)
        with self._lock:
            self._set(topic, (*self._of(topic), sub))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Ends ``sub`` (nothing more is appended to it). Safe to call again."""
        with self._lock:
            self._set(sub.topic, tuple(s for s in self._of(sub.topic) if s is not sub))
        sub.queue.clear()

    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._frames + self._samples + self._events

    def _of(self, topic: str) -> tuple[Subscription, ...]:
        subs: tuple[Subscription, ...] = getattr(self, f"_{topic}")
        return subs

    def _set(self, topic: str, subs: tuple[Subscription, ...]) -> None:
        setattr(self, f"_{topic}", subs)
        self.sampling = bool(self._samples)
        self.active = bool(self._frames or self._samples or self._events)
