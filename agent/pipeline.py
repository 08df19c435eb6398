"""Wire sources -> decode -> policy -> sink, one thread per source.

Each source thread reads frames and hands them on in chunks through one
bounded ``queue.Queue``; the consumer (the caller's thread) decodes, applies
the rules and passes the kept samples to the sink.

Overflow policy of the frame queue: a log replay or the simulator waits for
room (back-pressure, nothing lost); a live bus (``Source.live``) cannot wait,
so a chunk that finds the queue full is dropped and counted in
``ChannelRuntime.dropped``.

Events: a source may notice events (an OBD trouble code that appeared); it hands
them to the same queue, after the frames read before them, where they wait for
room like a log's frames (never dropped while the pipeline runs), and the
consumer passes them to the event sink in that order.

Stopping: the stop event ends the readers; what they read, and what a live
bus had received but they had not read yet (``Source.drain``), is handed on
and consumed, then the reader threads are joined within :data:`JOIN_BUDGET`
seconds *in all* (a reader stuck in a read that ignores the stop is left
behind, a daemon thread) and the sources are closed.

Tap: the control socket's subscribers (``bavard live``, ``record``) see what the
consumer sees through ``Pipeline.tap`` (:mod:`agent.control.tap`): one attribute
read per chunk while nobody is subscribed, references appended to bounded
per-subscriber queues otherwise (a stuck subscriber loses items, never slows
the pipeline).

Time: ``clock`` (monotonic seconds) is injected; it paces replays and the
simulator, times a live source's chunks and bounds the joins.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import ChannelConfig, Config
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.decode.gps import GpsDecoder
from agent.decode.obd import ObdDecoder
from agent.errors import BavardError
from agent.frames import Decoded, Event, Frame, Sample
from agent.insights.roles import Roles
from agent.policy.rules import RuleSet
from agent.policy.selection import Selector
from agent.sources import Source, source_class
from agent.sources.bcm_plan import BcmMessage, bcm_plan
from agent.sources.can_filters import can_filters_for

if TYPE_CHECKING:
    from agent.control.tap import Tap

log = logging.getLogger(__name__)

CHUNK_FRAMES = 512  # frames per queue item
CHUNK_SECONDS = 0.05  # a live source hands on what it has at least this often
# (on a quiet bus: when its source calls on_idle, every can_bus.RECV_TIMEOUT)
QUEUE_CHUNKS = 64  # bounded queue depth, in chunks
JOIN_BUDGET = 2.0  # seconds for joining every reader thread at the end of run(), together

Sink = Callable[[list[Sample]], None]
RawSink = Callable[[list[Frame]], None]
EventSink = Callable[[list[Event]], None]
# a queue item: a chunk of one channel's frames, events, or a reader's end (None)
_Item = tuple[int, list[Frame]] | list[Event] | None


def channel_dbcs(cfg: ChannelConfig) -> tuple[Path, ...]:
    """The DBCs that decode a channel; the simulator defaults to the demo vehicle's."""
    if cfg.dbc or cfg.kind != "simulator":
        return cfg.dbc
    from agent.resources import demo_dbc_path

    return (demo_dbc_path(),)


def open_source(
    cfg: ChannelConfig,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
    can_filters: list[dict[str, Any]] | None = None,
    start_time: float | None = None,
    state_dir: Path | None = None,
    bcm_plan: list[BcmMessage] | None = None,
) -> Source:
    """Open the source a channel is configured for.

    ``can_filters``: python-can receive filters for a live bus (None: every frame).
    ``bcm_plan``: the kernel content filters of a decoded SocketCAN bus (see
    :func:`uses_bcm`), None for every other channel.
    ``start_time`` stamps a simulated vehicle's first frame unless its channel says
    ``start`` (default: a fixed date, so that its output is reproducible).
    ``state_dir``: where an OBD channel keeps the trouble codes it saw (the service's;
    None: nowhere).
    """
    cls: Any = source_class(cfg.kind)
    if cfg.obd is not None:
        memory = None if state_dir is None else Path(state_dir) / f"obd-{cfg.name}.dtcs.json"
        return cls(cfg.name, cfg.obd, channel=cfg.name, clock=clock, memory=memory)
    if cfg.gps is not None:
        return cls(cfg.name, cfg.gps, channel=cfg.name, clock=clock)
    if cfg.kind == "replay":
        return cls(cfg.name, cfg.log, speed=cfg.speed, channel=cfg.name, clock=clock, wait=wait)
    if cfg.kind == "simulator":
        if cfg.start is not None:  # the channel's own ``start`` wins: replays repeat
            start_time = cfg.start
        extra = {} if start_time is None else {"start_time": start_time}
        return cls(cfg.name, seed=cfg.seed, speed=cfg.speed, channel=cfg.name, clock=clock,
                   wait=wait, **extra)
    return cls(cfg.name, interface=cfg.interface, channel=cfg.channel, bitrate=cfg.bitrate,
               fd=cfg.fd, data_bitrate=cfg.data_bitrate, can_filters=can_filters, clock=clock,
               reader=cfg.reader, bcm_plan=bcm_plan)


def chunk_decoder(decoder: Decoder) -> Callable[[list[Frame]], list[Decoded]]:
    """``decoder``'s records of a chunk of frames, in order: a DBC channel's decoder does
    the whole chunk in one call; the others, frame by frame."""
    if isinstance(decoder, ChannelDecoder):
        return decoder.decode_many
    decode = decoder.decode
    return lambda frames: [d for frame in frames if (d := decode(frame)) is not None]


def uses_bcm(cfg: ChannelConfig) -> bool:
    """True for a channel whose frames the kernel filters by content (CAN_BCM): a
    decoded SocketCAN bus read with ``reader = "auto"`` or ``"bcm"``."""
    return (cfg.kind == "can" and cfg.mode == "decoded" and cfg.interface == "socketcan"
            and cfg.reader in ("auto", "bcm"))


def feeds_events(config: Config) -> Callable[[str, str], bool]:
    """``(message, signal) -> True`` for the signals the box's insights read: the
    kernel must not throttle them (a throttled signal can lose a state change)."""
    if not config.insights.enabled:
        return lambda message, signal: False
    roles = Roles(config.insights)
    return lambda message, signal: roles.role(message, signal) is not None


Decoder = ChannelDecoder | ObdDecoder | GpsDecoder


@dataclass
class ChannelRuntime:
    config: ChannelConfig
    source: Source
    decoder: Decoder
    databases: list[Any] = field(default_factory=list)  # cantools databases, for metadata
    dropped: int = 0  # frames dropped because the queue was full (live sources only)
    error: str | None = None  # why the source stopped early, if it did
    ended: bool = False  # its reader has finished (a log read to its end, or stopped)


@dataclass
class Pipeline:
    """The running pipeline: channels, rules, and the consumer loop."""

    channels: list[ChannelRuntime]
    rules: RuleSet
    clock: Callable[[], float] = time.monotonic  # monotonic seconds
    frames_in: int = 0
    raw_dropped: int = 0  # frames of raw channels run without a raw sink
    events_in: int = 0  # events the sources noticed
    events_dropped: int = 0  # events of a run without an event sink
    samples_decoded: int = 0  # signal values decoded (before the rules)
    samples_kept: int = 0  # of those, the ones the rules keep (given to the sink)
    # the control socket's view of the data (agent.control.tap): frames, each decoded
    # record with what the rules keep of it, events; read once per chunk
    tap: Tap | None = None
    _queue: queue.Queue[_Item] = field(
        default_factory=lambda: queue.Queue(QUEUE_CHUNKS)
    )

    @classmethod
    def from_config(
        cls,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
        start_time: float | None = None,
        databases: Mapping[Path, Any] | None = None,
        state_dir: Path | None = None,
    ) -> Pipeline:
        """Load the DBCs, compile the decoders, then open the sources of ``config``
        (last: a live bus queues what it receives from its opening on).

        ``clock``: monotonic seconds, for the sources and the pipeline.
        ``start_time``: see :func:`open_source` (the daemon stamps simulated frames
        with the wall clock, like a real bus). ``databases``: DBCs already loaded, by
        path (the validation's); the others are loaded here."""
        rules = RuleSet(config.rules)

        def change_rule(message: str, signal: str) -> tuple[bool, float, float | None]:
            rule = rules.rule_for(message, signal)
            if rule is None:
                return (False, 0.0, None)
            return (rule.on_change, rule.min_period, rule.max_period)

        loaded = databases or {}
        decoding = []
        for cfg in config.channels:
            # a raw channel's frames are stored as they are: no DBC is needed
            dbs = [] if cfg.mode == "raw" else [loaded[p] if p in loaded else load_dbc(p)
                                                for p in channel_dbcs(cfg)]
            # counters and checksums are left out unless the selection asks for them
            selector = Selector.from_config(config.selection, dbs)
            decoder: Decoder
            if cfg.obd is not None:
                decoder = ObdDecoder(cfg.name, selector)
            elif cfg.gps is not None:
                decoder = GpsDecoder(cfg.name, selector)
            else:
                decoder = ChannelDecoder(cfg.name, dbs, selector, change_rule,
                                         config.selection.volatile)
            # a live decoded bus: the kernel drops the frames of unselected messages
            filters = (can_filters_for(dbs, selector)
                       if cfg.kind == "can" and cfg.mode == "decoded" else None)
            plan = None
            if uses_bcm(cfg) and isinstance(decoder, ChannelDecoder):
                # ... and, on SocketCAN, those whose selected bits did not change
                plan = bcm_plan(decoder, change_rule, feeds_events(config))
            decoding.append((cfg, decoder, dbs, filters, plan))
        channels: list[ChannelRuntime] = []
        try:
            for cfg, decoder, dbs, filters, plan in decoding:
                source = open_source(cfg, clock, wait, filters, start_time, state_dir, plan)
                channels.append(ChannelRuntime(cfg, source, decoder, dbs))
        except BaseException:
            for ch in channels:
                ch.source.close()
            raise
        return cls(channels, rules, clock)

    def close(self) -> None:
        """Close every source (a pipeline built but never run). Safe to call again."""
        for ch in self.channels:
            ch.source.close()

    def run(self, sink: Sink, stop: threading.Event, raw_sink: RawSink | None = None,
            tick: Callable[[], None] | None = None, event_sink: EventSink | None = None
            ) -> None:
        """Run until every source is exhausted or ``stop`` is set.

        Kept samples go to ``sink``; the frames of channels configured ``mode = "raw"``
        go to ``raw_sink`` as they are (counted in ``raw_dropped`` when there is none).
        ``tick`` is called at least every half second while the loop is alive (the
        daemon's watchdog beat), busy or idle. Events the sources notice go to
        ``event_sink`` (counted in ``events_dropped`` when there is none).
        """
        threads = [
            threading.Thread(target=self._read, args=(i, ch, stop), name=f"source-{ch.config.name}",
                             daemon=True)
            for i, ch in enumerate(self.channels)
        ]
        for t in threads:
            t.start()
        running = len(threads)
        decoders = [chunk_decoder(ch.decoder) for ch in self.channels]
        raw = [ch.config.mode == "raw" for ch in self.channels]
        names = [ch.config.name for ch in self.channels]
        keep = self.rules.filter_decoded
        try:
            while running:
                if tick is not None:
                    tick()
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    # stopped and drained: a reader may have ended without its end marker
                    # (the queue was full), or be stuck in a read that ignores stop
                    if stop.is_set():
                        break
                    continue
                if item is None:
                    running -= 1
                    continue
                tap = self.tap
                if tap is not None and not tap.active:
                    tap = None  # nobody subscribed: nothing more is asked of it
                if isinstance(item, list):
                    self.events_in += len(item)
                    if tap is not None:
                        tap.events(item)
                    if event_sink is not None:
                        event_sink(item)
                    else:
                        self.events_dropped += len(item)
                    continue
                index, frames = item
                self.frames_in += len(frames)
                if tap is not None:
                    tap.frames(frames)
                if raw[index]:
                    if raw_sink is not None:
                        raw_sink(frames)
                    else:
                        self.raw_dropped += len(frames)
                    continue
                records = decoders[index](frames)
                kept = []
                values = 0  # decoded[4] is Decoded.values: an index costs less per frame
                if tap is not None and tap.sampling and tap.room(names[index]):
                    shown = []  # handed to the tap once for the chunk
                    for decoded in records:
                        values += len(decoded[4])
                        some = keep(decoded)
                        kept.extend(some)
                        shown.append((decoded, some))
                    tap.decoded(shown, values)
                elif tap is not None and tap.sampling:  # its subscribers are full: count
                    signal_sets = []  # the decoders' own tuples: nothing new is held
                    for decoded in records:
                        values += len(decoded[4])
                        signal_sets.append(decoded[3])
                        kept.extend(keep(decoded))
                    tap.overflow(names[index], values, signal_sets)
                else:
                    for decoded in records:
                        values += len(decoded[4])
                        kept.extend(keep(decoded))
                self.samples_decoded += values
                self.samples_kept += len(kept)
                if kept:
                    sink(kept)
        finally:
            stop.set()
            deadline = self.clock() + JOIN_BUDGET
            for t in threads:
                t.join(timeout=max(0.0, deadline - self.clock()))
            self.close()

    def _read(self, index: int, ch: ChannelRuntime, stop: threading.Event) -> None:
        source = ch.source
        live = source.live
        timed = live or source.polled  # handed on at least every CHUNK_SECONDS
        clock = self.clock
        chunk: list[Frame] = []
        started = clock()

        def flush() -> None:  # the bus went quiet: hand on what came before
            nonlocal chunk, started
            if chunk:
                self._hand_on(index, ch, chunk, live, stop)
                chunk = []
                started = clock()

        def event(item: Event) -> None:  # waits for room, after the frames before it
            flush()
            if not self._put([item], stop):
                self.events_dropped += 1
                log.warning("event lost at the stop, the queue being full: %s %s",
                            item.kind, item.detail)

        source.on_idle = flush
        source.on_event = event
        try:
            if source.bursts:  # a burst at a time: the clock read once a burst
                for burst in source.batches(stop):
                    chunk.extend(burst)
                    if len(chunk) >= CHUNK_FRAMES or (timed and clock() - started >= CHUNK_SECONDS):
                        self._hand_on(index, ch, chunk, live, stop)
                        chunk = []
                        started = clock()
            else:
                for frame in source.frames(stop):
                    chunk.append(frame)
                    if len(chunk) >= CHUNK_FRAMES or (timed and clock() - started >= CHUNK_SECONDS):
                        self._hand_on(index, ch, chunk, live, stop)
                        chunk = []
                        started = clock()
            chunk.extend(source.drain())  # received before the stop: kept, not discarded
            reason = source.unreadable()
            if reason is not None:
                log.warning("channel %s: %s", ch.config.name, reason)
        except BavardError as exc:
            ch.error = str(exc)
            log.error("channel %s stopped: %s", ch.config.name, exc)
        except Exception as exc:  # a bug, or a foreign library's surprise: say why too
            ch.error = f"{type(exc).__name__}: {exc}"
            log.exception("channel %s stopped", ch.config.name)
        finally:
            if chunk:
                self._hand_on(index, ch, chunk, live, stop)
            ch.ended = True
            self._put(None, stop)

    def _put(self, item: _Item, stop: threading.Event) -> bool:
        """``item`` into the queue, waiting for room; given up (False) only when stopped
        and the queue stays full (the consumer is gone)."""
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                if stop.is_set():
                    return False

    def _hand_on(self, index: int, ch: ChannelRuntime, chunk: list[Frame], live: bool,
                 stop: threading.Event) -> None:
        if live:
            try:
                self._queue.put_nowait((index, chunk))
            except queue.Full:
                ch.dropped += len(chunk)
            return
        while not stop.is_set():
            try:
                self._queue.put((index, chunk), timeout=0.5)
                return
            except queue.Full:
                continue

