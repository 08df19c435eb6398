"""``bavard run``: sources -> decode -> policy -> store -> upload, as a service.

Threads: one per source and the pipeline's consumer (agent.pipeline), the
store's writer (agent.store), the uploader (agent.upload.uploader), the
watchdog (agent.service.watchdog); the main thread only handles signals and
looks after the others. Queues between them are bounded: see the pipeline's
and the store's overflow policies.

Signals (the handlers only set flags; the main thread acts on them):

* SIGTERM, SIGINT: stop the sources, hand what was read to the store, stop the
  uploader (a batch in flight is released, not lost), commit, exit 0: within
  :data:`STOP_BUDGET` seconds.
* SIGHUP: read the configuration again. A configuration with problems, or
  DBCs that cannot be loaded, is rejected with every problem logged, and the
  running one stays. Otherwise the pipeline and the uploader are rebuilt; the
  store and what it holds are kept (a changed ``[store]`` needs a restart). The
  frames of a live bus during the swap (well under a second) are not read.

systemd (Type=notify): READY=1 once the sources are open; WATCHDOG=1 only while
the pipeline, the store's writer and the uploader show progress (each beats,
busy or idle: a thread stuck in a call stops the pings and systemd restarts the
service); a STATUS= line with frames/s, buffer depth and the age of the last
upload.

Events of its own life go into the buffer like any other (uploaded first):
``service.start``, ``service.stop``, ``service.reload`` and
``service.reload-rejected`` on channel ``agent``; ``bus.down`` and ``bus.up``
on a CAN channel whose reads fail and come back (the source reopens the bus
with backoff and counts the gap).

Exit status: 0 after a stop, 78 (EX_CONFIG) for a configuration that cannot be
used at start (the unit does not restart on it), 1 for any other failure to start.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent import __version__
from agent.config import Config, load_config
from agent.decode.dbc_files import load_dbc
from agent.errors import BavardError, ConfigError, StoreError
from agent.frames import Event
from agent.pipeline import Pipeline, channel_dbcs
from agent.service.notify import Notifier
from agent.service.watchdog import Watchdog
from agent.store.buffer import Store
from agent.store.writer import CommitInfo

if TYPE_CHECKING:  # the upload side is imported only when [upload] is configured
    from agent.upload.uploader import Uploader

log = logging.getLogger(__name__)

EX_CONFIG = 78
STOP_BUDGET = 5.0  # seconds from SIGTERM to exit
MONITOR = 2.0  # seconds between the main thread's looks at the others
# seconds between two looks at the buffer's depth, which also prove the writer alive: it
# scans the chunk table, so not every MONITOR (a quarter of the writer's allowed silence)
STATS_EVERY = 10.0
SILENCE = 30.0  # a thread may be silent this long before the watchdog gives up on it


@dataclass
class _Worker:
    thread: threading.Thread
    stop: threading.Event


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.time, silence: float = SILENCE) -> None:
        self.config_path = Path(config_path)
        self.silence = silence
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.config: Config | None = None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.uploader: Uploader | None = None
        self._pipeline_worker: _Worker | None = None
        self._uploader_worker: _Worker | None = None
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self.watchdog = Watchdog(self.notifier, status=self.status_line)
        self._rate = (time.monotonic(), 0)  # (when, frames) for frames/s
        self._frames_per_s = 0.0
        self._depth = 0
        self._pipeline_ended_logged = False
        self._stats_at = float("-inf")  # monotonic time of the last look at the buffer
        self._gaps: dict[str, tuple[int, bool]] = {}  # channel -> (gaps seen, down now)

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_reload()

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- life --------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            _log_problems(f"{self.config_path}: configuration rejected", exc)
            return EX_CONFIG
        try:
            self.store = Store(config.store, clock=self.clock,
                               on_commit=self._committed).start()
        except StoreError as exc:
            log.error("cannot open the buffer: %s", exc)
            return 1
        watchdog_stop = threading.Event()
        dog = threading.Thread(target=self.watchdog.run, args=(watchdog_stop,),
                               name="watchdog", daemon=True)
        try:
            try:
                self._start(config)
            except ConfigError as exc:
                _log_problems(f"{self.config_path}: configuration rejected", exc)
                return EX_CONFIG
            except BavardError as exc:
                log.error("cannot start: %s", exc)
                return 1
            self.watchdog.register("store-writer", self.silence)
            gc.freeze()  # the DBCs and decoders live for ever: keep them out of collections
            self.notifier.ready(self.status_line())
            channels = ", ".join(f"{c.name} ({c.kind})" for c in config.channels)
            log.info("running: %s", channels)
            self._event("service.start", f"bavard {__version__}: {channels}")
            dog.start()
            while not self._stop_requested:
                self._wake.wait(MONITOR)
                self._wake.clear()
                if self._reload_requested and not self._stop_requested:
                    self._reload_requested = False
                    self._reload()
                self._monitor()
            self.notifier.stopping("stopping")
            log.info("stopping")
            self._event("service.stop", "SIGTERM or SIGINT")
            return 0
        finally:
            deadline = time.monotonic() + STOP_BUDGET - 0.5
            self._stop_workers(deadline)
            watchdog_stop.set()
            if self.store is not None:
                self.store.close(timeout=max(0.5, deadline - time.monotonic()))
            self.notifier.close()

    def _start(self, config: Config) -> None:
        """Open the sources and start the pipeline and the uploader for ``config``."""
        assert self.store is not None
        pipeline = Pipeline.from_config(config, start_time=self.clock())
        self.config, self.pipeline = config, pipeline
        beat = self.watchdog.register("pipeline", self.silence)
        stop = threading.Event()
        store = self.store
        thread = threading.Thread(target=pipeline.run, name="pipeline", daemon=True,
                                  args=(store.put_samples, stop, store.put_frames, beat))
        self._pipeline_worker = _Worker(thread, stop)
        self._pipeline_ended_logged = False
        self._gaps = {}  # new sources count their gaps from zero
        thread.start()
        if config.upload is not None:
            self._start_uploader(config, pipeline)

    def _start_uploader(self, config: Config, pipeline: Pipeline) -> None:
        from agent.service.identity import identity
        from agent.upload.budget import DataBudget
        from agent.upload.connectivity import Connectivity, InterfaceRules
        from agent.upload.transport import open_transport
        from agent.upload.uploader import Uploader

        upload = config.upload
        assert upload is not None and self.store is not None
        # Everything that may fail comes before the watchdog beat: a beat registered for
        # an uploader that never starts would stop the pings, and systemd the service.
        who = identity(config, pipeline)
        rules = InterfaceRules.with_overrides(dict(upload.interfaces))
        budget = DataBudget(config.store.state_dir, upload.metered_daily_bytes,
                            upload.metered_monthly_bytes, self.clock)
        transport = open_transport(upload.transport())
        beat = self.watchdog.register("uploader", self.silence)
        uploader = Uploader(self.store, transport, upload, who,
                            connectivity=Connectivity(rules), budget=budget, clock=self.clock,
                            beat=beat)
        stop = threading.Event()
        thread = threading.Thread(target=uploader.run, args=(stop,), name="uploader",
                                  daemon=True)
        self.uploader = uploader
        self._uploader_worker = _Worker(thread, stop)
        thread.start()

    def stop_sources(self, timeout: float = 3.0) -> None:
        """Stop reading; what was read goes to the store and the uploader goes on (the
        demo drains the buffer this way before it stops)."""
        worker = self._pipeline_worker
        if worker is not None:
            worker.stop.set()
            worker.thread.join(timeout)

    def _stop_workers(self, deadline: float) -> None:
        """Sources first (what they read goes to the store), then the uploader."""
        pipeline_worker, self._pipeline_worker = self._pipeline_worker, None
        if pipeline_worker is not None:
            pipeline_worker.stop.set()
            pipeline_worker.thread.join(max(0.1, deadline - 1.0 - time.monotonic()))
            if pipeline_worker.thread.is_alive():
                log.error("the pipeline did not stop in time; frames it holds are lost")
            self.watchdog.unregister("pipeline")
        uploader_worker, self._uploader_worker = self._uploader_worker, None
        if uploader_worker is not None and self.uploader is not None:
            uploader_worker.stop.set()
            self.uploader.wake()
            self.uploader.transport.close()  # unblocks a send waiting for its answer
            uploader_worker.thread.join(max(0.1, deadline - time.monotonic()))
            if uploader_worker.thread.is_alive():
                log.error("the uploader did not stop in time; its batch comes back at start")
            self.watchdog.unregister("uploader")
            self.uploader = None

    # -- reload ------------------------------------------------------------------------------

    def _reload(self) -> None:
        log.info("reloading %s", self.config_path)
        try:
            config = load_config(self.config_path)
            for channel in config.channels:  # DBC problems reject the new configuration
                if channel.mode != "raw":
                    for path in channel_dbcs(channel):
                        load_dbc(path)
            if config.upload is not None:  # so do a bad URL, CA or a readable private key,
                from agent.service.identity import id_secret  # and an unusable id secret
                from agent.upload.transport import open_transport

                open_transport(config.upload.transport()).close()
                id_secret(config)
        except BavardError as exc:
            _log_problems(f"{self.config_path}: new configuration rejected, the running one "
                          f"stays", exc)
            self.notifier.status("reload rejected: see the log")
            self._event("service.reload-rejected", str(exc)[:500])
            return
        assert self.config is not None
        self.notifier.reloading("reloading")
        if config.store != self.config.store:
            log.warning("[store] changed: it takes effect at the next restart")
            config = Config(config.channels, config.selection, config.rules, self.config.store,
                            config.upload, config.vehicle)
        old = self.config
        self._stop_workers(time.monotonic() + STOP_BUDGET - 1.0)
        try:
            self._start(config)
        except BavardError as exc:
            log.error("the new configuration cannot start (%s); going back to the old one", exc)
            self._stop_workers(time.monotonic() + 2.0)
            self._start(old)
        self.notifier.ready(self.status_line())
        log.info("reloaded")
        self._event("service.reload", str(self.config_path))

    # -- looking after the others ------------------------------------------------------------

    def _committed(self, info: CommitInfo) -> None:  # in the store's writer thread
        uploader = self.uploader
        if uploader is not None:
            uploader.wake()

    def _monitor(self) -> None:
        store = self.store
        assert store is not None
        now = time.monotonic()
        if now - self._stats_at >= min(STATS_EVERY, self.silence / 4):
            self._stats_at = now
            try:  # a writer that answers within the time is alive
                stats = store.stats(timeout=min(MONITOR * 2, self.silence / 2))
                self._depth = sum(c.items for c in stats.classes.values())
                self.watchdog.beat("store-writer")
            except (StoreError, KeyError) as exc:
                log.warning("the store did not answer: %s", exc)
        worker = self._pipeline_worker
        if worker is not None and not worker.thread.is_alive() and not self._pipeline_ended_logged:
            # the sources ended (a log replayed to its end): nothing more to watch there
            log.info("every source has ended; uploading what is buffered")
            self._pipeline_ended_logged = True
            self.watchdog.unregister("pipeline")
        pipeline = self.pipeline
        if pipeline is not None:
            self._bus_events(pipeline)
            now, frames = time.monotonic(), pipeline.frames_in
            then, before = self._rate
            if now - then >= 1.0:
                self._frames_per_s = (frames - before) / (now - then)
                self._rate = (now, frames)

    def _event(self, kind: str, detail: str, priority: int = 1,
               channel: str = "agent") -> None:
        """An event of the service's own life into the buffer (uploaded first, as events
        are): starts, stops, reloads, bus gaps. Never blocks the main thread."""
        if self.store is not None:
            self.store.put_events([Event(self.clock(), channel, kind, detail, priority)],
                                  block=False)

    def _bus_events(self, pipeline: Pipeline) -> None:
        """``bus.down`` and ``bus.up`` events from the CAN sources' gap counters (counted,
        so a gap that began and ended between two looks still gives both)."""
        for ch in pipeline.channels:
            stats = ch.source.stats
            gaps = int(getattr(stats, "gaps", 0))
            name = ch.config.name
            seen, down = self._gaps.get(name, (0, False))
            if gaps > seen:
                self._event("bus.down", f"{name}: reads failed, reopening (gap {gaps})", 2,
                            name)
                seen, down = gaps, True
            if down and not getattr(stats, "in_gap", False):
                self._event("bus.up", f"{name}: reading again; {gaps} gaps, "
                                      f"{getattr(stats, 'gap_seconds', 0.0):.1f} s in all",
                            2, name)
                down = False
            self._gaps[name] = (seen, down)

    def status_line(self) -> str:
        parts = [f"{self._frames_per_s:,.0f} frames/s", f"buffer {self._depth:,} items"]
        uploader = self.uploader
        if uploader is None:
            parts.append("upload off")
        else:
            last = uploader.stats.last_upload
            age = "never" if last is None else f"{max(0.0, self.clock() - last):,.0f} s ago"
            parts.append(f"upload {uploader.stats.state}, last {age}")
        return ", ".join(parts)


def _log_problems(headline: str, exc: BavardError) -> None:
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    log.error("%s:\n  %s", headline, "\n  ".join(problems))
