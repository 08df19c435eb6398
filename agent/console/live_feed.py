"""Where ``bavard live`` gets its samples: the running service, or a bus or a log read
straight through the project's own sources and decoder.

A feed's :meth:`Feed.run` hands batches of :class:`~agent.console.live_model.LiveSample`
to a sink until its source ends (it returns why) or the stop event is set; the
sink also gets how many samples the service dropped for this client since the
previous batch (too slow a reader: the service never waits for one) and how many
stream items were not samples.

* :class:`ServiceFeed`: ``subscribe samples`` on the control socket: every decoded
  sample, with ``kept`` saying whether the service's policy stores it.
* :class:`DirectFeed`: a :class:`~agent.sources.base.Source` (a python-can bus, a log
  replayed in real time or faster) through a
  :class:`~agent.decode.decoder.ChannelDecoder` that selects every signal (or those
  of ``--signals``); no policy, so ``kept`` is None.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.console.live_model import LiveSample
from agent.control.client import ControlClient
from agent.decode.decoder import ChannelDecoder
from agent.errors import ControlError
from agent.globs import GlobSet
from agent.sources.base import Source

#: sink(samples, dropped, unreadable)
Sink = Callable[[list[LiveSample], int, int], None]
BATCH_SAMPLES = 256  # a direct feed hands on at least this often...
BATCH_SECONDS = 0.05  # ...and at least this often (seconds) when samples wait


class Feed(ABC):
    #: what the header says the source is
    label: str = ""
    #: how many signals the source can decode (within --signals/--channel), if known
    known: int | None = None
    #: how many of those the service's selection decodes, if it says
    selected: int | None = None

    @abstractmethod
    def run(self, sink: Sink, stop: threading.Event) -> str:
        """Feed ``sink`` until the source ends (return why) or ``stop`` is set
        (return ``"stopped"``). BavardError when the source fails."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Wake a :meth:`run` blocked in another thread (``stop`` is set already)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source."""


class ServiceFeed(Feed):
    """The service's ``samples`` stream on an open control connection.

    ``signals``: globs (one is passed to the service, which then sends only those;
    several are matched here); ``channel``: only that channel's samples.
    """

    def __init__(self, client: ControlClient, signals: Sequence[str] = (),
                 channel: str | None = None) -> None:
        self.client = client
        self.channel = channel
        self.signals = tuple(signals)
        self._globs = GlobSet(self.signals) if len(self.signals) > 1 else None
        self.label = f"service {client.path}"
        self._count_signals()

    def _count_signals(self) -> None:
        """How many decodable signals the service has within the globs and channel, and
        how many of them it selects (its ``signals`` command); None when it does not say.
        ControlError for a channel on which it decodes nothing (a typo, a raw channel)."""
        try:
            result = self.client.call("signals")
        except ControlError as exc:
            if exc.code:  # an error answer: an older service; the connection is fine
                return
            raise
        entries = result.get("signals")
        if not isinstance(entries, list):
            return
        globs = GlobSet(self.signals) if self.signals else None
        count = selected = 0
        channels = {str(e.get("channel")) for e in entries if isinstance(e, dict)}
        if self.channel is not None and self.channel not in channels:
            raise ControlError(f"--channel {self.channel}: the service decodes no signal on "
                               f"it (channels with signals: {', '.join(sorted(channels))})")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if self.channel is not None and entry.get("channel") != self.channel:
                continue
            if globs is not None and not globs.matches(str(entry.get("message")),
                                                       str(entry.get("signal"))):
                continue
            count += 1
            selected += entry.get("selected") is True
        self.known, self.selected = count, selected

    def run(self, sink: Sink, stop: threading.Event) -> str:
        args: dict[str, Any] = {"channel": self.channel}
        if len(self.signals) == 1:
            args["signals"] = self.signals[0]
        globs = self._globs
        try:
            for message in self.client.stream("samples", **args):
                if stop.is_set():
                    return "stopped"
                samples, unreadable = _samples(message.get("items"), globs)
                dropped = message.get("dropped")
                sink(samples, dropped if isinstance(dropped, int) else 0, unreadable)
        except ControlError as exc:
            if stop.is_set():
                return "stopped"
            if exc.code:  # an error answer: a refused subscription
                raise
            return str(exc).removeprefix(f"{self.client.path}: ")  # the header names it
        return "the service ended the stream"

    def interrupt(self) -> None:
        self.client.interrupt()  # from a signal handler too (close() is not safe there)

    def close(self) -> None:
        self.client.close()


def _samples(items: Any, globs: GlobSet | None) -> tuple[list[LiveSample], int]:
    samples: list[LiveSample] = []
    unreadable = 0
    for item in items if isinstance(items, list) else ():
        try:
            sample = LiveSample.from_item(item)
        except ValueError:
            unreadable += 1
            continue
        if globs is None or globs.matches(sample.message, sample.signal):
            samples.append(sample)
    return samples, unreadable


class DirectFeed(Feed):
    """``source``'s frames through ``decoder`` (``channel``: only that channel's)."""

    def __init__(self, source: Source, decoder: ChannelDecoder, label: str,
                 known: int | None = None, channel: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.decoder = decoder
        self.label = label
        self.known = known
        self.channel = channel
        self.clock = clock

    def run(self, sink: Sink, stop: threading.Event) -> str:
        decode = self.decoder.decode
        clock = self.clock
        channel = self.channel
        batch: list[LiveSample] = []
        started = clock()

        def flush() -> None:  # also when a quiet bus calls on_idle
            nonlocal batch, started
            if batch:
                sink(batch, 0, 0)
                batch = []
            started = clock()

        self.source.on_idle = flush
        for frame in self.source.frames(stop):
            if channel is not None and frame.channel != channel:
                continue
            decoded = decode(frame)
            if decoded is not None:
                batch.extend(_live(decoded.samples()))
            if len(batch) >= BATCH_SAMPLES or clock() - started >= BATCH_SECONDS:
                flush()
        flush()
        if stop.is_set():
            return "stopped"
        return self.source.unreadable() or "the log ended"

    def close(self) -> None:
        self.source.close()


def _live(samples: Iterable[Any]) -> list[LiveSample]:
    return [LiveSample(s.timestamp, s.channel, s.message, s.signal, s.value, s.unit, s.label,
                       None) for s in samples]
