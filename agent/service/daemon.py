"""``bavard run``: sources -> decode -> policy -> store -> upload, as a service.

Threads: one per source and the pipeline's consumer (agent.pipeline), the
store's writer (agent.store), the uploader (agent.upload.uploader), the
watchdog (agent.service.watchdog); the main thread only handles signals and
looks after the others. Queues between them are bounded: see the pipeline's
and the store's overflow policies.

Signals (the handlers set flags that the main thread acts on; a stop signal
also interrupts the main thread while it checks and builds a configuration):

* SIGTERM, SIGINT: stop the sources, hand what was read to the store, stop the
  uploader (a batch in flight is released, not lost), commit, exit 0: within
  :data:`STOP_BUDGET` seconds. During the start-up (large DBCs take seconds to
  parse and compile) the signal cuts it short at once: exit 0 before READY=1,
  nothing started left running; during a reload's preparation, the reload is
  dropped and the running pipeline stops as above.
* SIGHUP: read the configuration again, checked as ``bavard config check``
  checks it (agent.validation). The new pipeline is built *before* the running
  one is touched: DBCs loaded, decoders compiled, sources opened, the
  uploader's transport and identity made. A configuration with problems,
  or one that cannot start (DBCs that cannot be loaded, a bus interface that
  cannot exist here, a log that cannot be opened), is rejected with every
  problem logged, and the running one goes on untouched. Otherwise the old
  workers are stopped and the new ones started; the store and what it holds
  are kept (a changed ``[store]`` needs a restart). A live bus is read by
  both for a moment: the new source skips the frames the old one already
  read (by their receive time), so the swap neither loses nor repeats a frame
  (one the old socket dropped, overloaded, comes from the new one, a little
  out of order).

systemd (Type=notify): READY=1 once the store's writer runs and the sources are
open (a CAN bus absent at start is a ``bus.down``, opened when it appears; a
store whose writer cannot start is a failed start, exit 1 before READY=1);
WATCHDOG=1 only while the pipeline, the store's writer and the uploader show
progress (each beats, busy or idle: a thread stuck in a call, or a store writer
stopped by a bug, stops the pings and systemd restarts the service); a STATUS=
line with frames/s, buffer depth, the age of the last upload and each OBD
channel's PID values per second.

The control socket (agent.control, docs/control.md): once the store and the
workers run, and before READY=1, a ControlServer listens on ``[control]
socket`` for the technician's commands (agent.control.commands) and feeds the
subscribers of live data from the pipeline's tap. A socket that cannot be made
is logged as an error and the service runs on without it: the console is not
worth a vehicle's data. A reload swaps its commands; ``[control]`` itself takes
effect at the next restart. Uploads paused by hand (agent.upload.pause) stay
paused across restarts.

Events of its own life go into the buffer like any other (uploaded first):
``service.start``, ``service.stop``, ``service.reload`` and
``service.reload-rejected`` on channel ``agent``, and what a technician did
through the control socket (``upload.paused``, ``upload.resumed``,
``buffer.purged``, ``buffer.dead-letters-retried``); ``bus.down`` and ``bus.up``
on a CAN channel whose reads fail and come back (the source reopens the bus
with backoff and counts the gap), and on an OBD channel whose adapter or
vehicle stops answering; the events the sources notice (an OBD channel's
``dtc.set``, ``dtc.cleared``, ``obd.mil``); ``vehicle.identified`` when an OBD
channel read a VIN the box did not know (the VIN itself stays on the box).

The pseudonym of the batches comes from the VIN (agent.service.identity): the
configured one, else the one an OBD channel read (now or at an earlier start).
While neither is known and an OBD channel will read one, the uploader waits
for it (at most :data:`VIN_WAIT` s), so that the first batches do not go
under the pseudonym of an unknown VIN; the buffer fills meanwhile.

Exit status: 0 after a stop, 78 (EX_CONFIG) for a configuration that cannot be
used at start (the unit does not restart on it), 1 for any other failure to start.

Time: ``clock`` (wall clock) stamps events and simulated frames; ``monotonic``
times everything else (the watchdog's beats, the looks at the buffer, stop
deadlines, the pipeline's chunks): both injected, for tests.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import Config
from agent.control.tap import Tap
from agent.errors import BavardError, ConfigError, StoreError
from agent.frames import Event
from agent.pipeline import Pipeline
from agent.privacy.consent import ConsentBook
from agent.privacy.destinations import LOCAL, MAIN, Destination, destinations_of
from agent.privacy.ledger import Ledger
from agent.privacy.router import Router
from agent.service import owner
from agent.service.notify import Notifier
from agent.service.status import RateMeter, file_sha256
from agent.service.watchdog import Watchdog
from agent.sources.can_bus import CanBusSource
from agent.sources.obd import ObdSource
from agent.store.buffer import Store
from agent.store.writer import CommitInfo
from agent.validation import UsableConfig, load_usable_config

if TYPE_CHECKING:  # the upload side is imported only when [upload] is configured
    from agent.control.server import ControlServer
    from agent.upload.connectivity import InterfaceRules
    from agent.upload.pause import PauseSwitch
    from agent.upload.transport import Transport
    from agent.upload.uploader import Identity, Uploader

log = logging.getLogger(__name__)

EX_CONFIG = 78
STOP_BUDGET = 5.0  # seconds from SIGTERM to exit
MONITOR = 2.0  # seconds between the main thread's looks at the others
# seconds between two looks at the buffer's depth, which also prove the writer alive: it
# scans the chunk table, so not every MONITOR (a quarter of the writer's allowed silence)
STATS_EVERY = 10.0
SILENCE = 30.0  # a thread may be silent this long before the watchdog gives up on it
VIN_WAIT = 60.0  # seconds the first uploads wait for an OBD channel to read the VIN


@dataclass
class _Worker:
    thread: threading.Thread
    stop: threading.Event


@dataclass
class _Upload:
    """What the uploader of a configuration needs, made (and checked) before it starts."""

    identity: Identity
    rules: InterfaceRules
    transport: Transport


@dataclass
class _Prepared:
    """A configuration made ready to run: every step that may fail is behind it."""

    config: Config
    pipeline: Pipeline
    upload: dict[str, _Upload]  # by destination (none when nothing leaves the box)

    def discard(self) -> None:
        self.pipeline.close()
        for upload in self.upload.values():
            upload.transport.close()


class _StopNow(BaseException):
    """SIGTERM or SIGINT while the main thread starts or prepares a reload: raised by the
    handler to cut that short (not an Exception: nothing on the way may take it for a
    failure)."""


class Daemon:
    def __init__(self, config_path: Path, *, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 silence: float = SILENCE) -> None:
        self.config_path = Path(config_path)
        self.silence = silence
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.monotonic = monotonic
        self.config: Config | None = None
        self.store: Store | None = None  # the first destination's (main, or local)
        self.stores: dict[str, Store] = {}  # by destination (agent.privacy.destinations)
        self.destinations: list[Destination] = []
        self.pipeline: Pipeline | None = None
        self.router: Router | None = None  # consent and purposes, before the stores
        self.consent: ConsentBook | None = None
        self.ledger: Ledger | None = None
        self.uploaders: dict[str, Uploader] = {}  # by destination
        self._granted: set[str] = set()  # purposes granted at the last look (expiry)
        self._pipeline_worker: _Worker | None = None
        self._uploader_workers: dict[str, _Worker] = {}
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._interruptible = False  # a stop signal now interrupts the main thread
        self.watchdog = Watchdog(self.notifier, status=self.status_line, clock=monotonic)
        self.started = monotonic()
        self.rates = RateMeter(monotonic)  # frames/s, and their recent history
        self.tap = Tap()  # the control socket's subscribers see the pipeline through it
        self.control: ControlServer | None = None
        self.pause: PauseSwitch | None = None  # uploads paused by hand (from the state dir)
        self.config_sha256: str | None = None  # of the configuration file running
        self._loaded_sha256: str | None = None  # ... and of the one last loaded
        self._depth = 0
        self._pipeline_ended_logged = False
        self._stats_at = float("-inf")  # monotonic time of the last look at the buffer
        self._gaps: dict[str, tuple[int, bool]] = {}  # channel -> (gaps seen, down now)
        self._vin: str | None = None  # the VIN an OBD channel read, once seen
        # the uploaders waiting for that VIN: (configuration, what they need, deadline)
        self._upload_waiting: tuple[Config, dict[str, _Upload], float] | None = None

    @property
    def uploader(self) -> Uploader | None:
        """The first destination's uploader (``main``): what status and commands show."""
        return next(iter(self.uploaders.values()), None)

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()
        if self._interruptible:  # the main thread is busy starting: interrupt it there
            self._interruptible = False
            raise _StopNow

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
        watchdog_stop = threading.Event()
        dog = threading.Thread(target=self.watchdog.run, args=(watchdog_stop,),
                               name="watchdog", daemon=True)
        try:
            try:
                self._interruptible = True
                code = self._start_up()
                self._interruptible = False  # the last step: a signal from now on sets a flag
            except _StopNow:
                code = 0
            if code is not None:
                if code == 0:
                    log.info("stopped during the start-up")
                return code
            assert self.config is not None
            self.watchdog.register("store-writer", self.silence)
            gc.freeze()  # the DBCs and decoders live for ever: keep them out of collections
            self.notifier.ready(self.status_line())
            channels = ", ".join(f"{c.name} ({c.kind})" for c in self.config.channels)
            log.info("running: %s", channels)
            self.event("service.start", f"bavard {__version__}: {channels}")
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
            self.event("service.stop", "SIGTERM or SIGINT")
            return 0
        finally:
            self._interruptible = False
            deadline = self.monotonic() + STOP_BUDGET - 0.5
            if self.control is not None:  # no command may find the workers half stopped
                self.control.close()
                self.control = None
            self._stop_workers(deadline)
            watchdog_stop.set()
            for store in self.stores.values():
                store.close(timeout=max(0.5, deadline - self.monotonic()))
            self.notifier.close()

    def _start_up(self) -> int | None:
        """Read the configuration, start the store and the workers: None when running,
        else the exit status. A stop signal meanwhile raises _StopNow."""
        log.info("starting bavard %s with %s", __version__, self.config_path)
        if self._stop_requested:
            return 0
        try:
            usable = self._load()
        except ConfigError as exc:
            _log_problems(f"{self.config_path}: configuration rejected", exc)
            return EX_CONFIG
        config = usable.config
        self.destinations = destinations_of(config)
        for dest in self.destinations:
            try:
                store = Store(dest.store, clock=self.clock, monotonic=self.monotonic,
                              on_commit=self._on_commit(dest.name))
                self.stores[dest.name] = store  # closed on the way out, whatever happens
                self.store = self.store or store
                store.start()
            except StoreError as exc:
                log.error("cannot open the buffer of %s: %s", dest.name, exc)
                return 1
        # after the stores: they made the state directory
        self.consent = ConsentBook(Path(config.store.state_dir), clock=self.clock)
        self.ledger = Ledger(Path(config.store.state_dir), clock=self.clock)
        owner.log_consent(self)
        self._granted = {d.purpose for d in self.destinations if self.consent.granted(d.purpose)}
        from agent.upload.pause import PauseSwitch

        self.pause = PauseSwitch(config.store.state_dir, self.clock)
        try:
            self._launch(self._prepare(config, usable.databases))
        except ConfigError as exc:
            _log_problems(f"{self.config_path}: configuration rejected", exc)
            return EX_CONFIG
        except BavardError as exc:
            log.error("cannot start: %s", exc)
            return 1
        self._start_control(config)
        return None

    def _start_control(self, config: Config) -> None:
        """The control socket, if ``[control]`` wants one; a socket that cannot be made is
        logged and the service runs on without it."""
        settings = config.control
        if not settings.enabled:
            log.info("no control socket ([control] enabled = false)")
            return
        from agent.control.commands import service_commands
        from agent.control.server import ControlServer

        # set first: a stop signal in start() leaves it for run()'s finally to close
        self.control = ControlServer(settings.socket_path(), service_commands(self), self.tap,
                                     hello={"version": __version__},
                                     group=settings.group or None,
                                     max_clients=settings.max_clients)
        try:
            self.control.start()
        except BavardError as exc:
            self.control = None
            log.error("no control socket, the service runs on without it: %s", exc)

    def _load(self) -> UsableConfig:
        """The configuration file, checked as ``bavard config check`` checks it (every DBC
        loaded, the transport built...); its warnings logged. ConfigError otherwise."""
        digest = file_sha256(self.config_path)  # before: a file changed meanwhile shows
        usable = load_usable_config(self.config_path)
        for warning in usable.warnings:
            log.warning("%s: %s", self.config_path, warning)
        self._loaded_sha256 = digest
        return usable

    def _prepare(self, config: Config, databases: Mapping[Path, Any] | None = None
                 ) -> _Prepared:
        """Every step of starting ``config`` that may fail, and nothing that runs yet:
        the DBCs loaded (``databases``: those loaded already, by path), the decoders
        compiled, the sources opened, the uploader's identity and transport made.
        BavardError when it cannot start."""
        pipeline = Pipeline.from_config(config, clock=self.monotonic, start_time=self.clock(),
                                        databases=databases,
                                        state_dir=Path(config.store.state_dir))
        uploads: dict[str, _Upload] = {}
        try:
            for dest in destinations_of(config):
                if dest.upload is not None:
                    uploads[dest.name] = self._prepare_upload(config, dest, pipeline)
        except BaseException:
            pipeline.close()
            for upload in uploads.values():
                upload.transport.close()
            raise
        return _Prepared(config, pipeline, uploads)

    def _prepare_upload(self, config: Config, dest: Destination, pipeline: Pipeline
                        ) -> _Upload:
        from agent.service.identity import identity
        from agent.upload.connectivity import InterfaceRules
        from agent.upload.transport import open_transport

        upload = dest.upload
        assert upload is not None
        who = identity(config, pipeline, dest.name)
        rules = InterfaceRules.with_overrides(dict(upload.interfaces))
        return _Upload(who, rules, open_transport(upload.transport()))

    def _launch(self, prepared: _Prepared, previous: Pipeline | None = None) -> None:
        """Start the workers of a prepared configuration (nothing here fails on the
        configuration). ``previous``: the pipeline it takes over from, stopped."""
        assert self.store is not None
        config, pipeline = prepared.config, prepared.pipeline
        if previous is not None:
            _take_over(previous, pipeline)
        self.config, self.pipeline = config, pipeline
        self.config_sha256 = self._loaded_sha256
        pipeline.tap = self.tap
        self.tap.channels = frozenset(c.name for c in config.channels)
        self.rates.update(pipeline)  # frames/s from now on
        router = owner.make_router(self, config)
        self.router = router
        beat = self.watchdog.register("pipeline", self.silence)
        stop = threading.Event()
        thread = threading.Thread(target=pipeline.run, name="pipeline", daemon=True,
                                  args=(router.put_samples, stop, router.put_frames, beat,
                                        router.put_events))
        self._pipeline_worker = _Worker(thread, stop)
        self._pipeline_ended_logged = False
        self._gaps = {}  # new sources count their gaps from zero
        thread.start()
        if prepared.upload:
            if self._vin_awaited(config, pipeline):
                log.info("uploads wait for an OBD channel to read the VIN (at most %.0f s), "
                         "which gives the batches their pseudonym", VIN_WAIT)
                self._upload_waiting = (config, prepared.upload, self.monotonic() + VIN_WAIT)
            else:
                for name, upload in prepared.upload.items():
                    self._start_uploader(config, name, upload)

    def _vin_awaited(self, config: Config, pipeline: Pipeline) -> bool:
        """No VIN is configured or known yet, and an OBD channel will read one."""
        from agent.service.identity import read_vin

        return (self._vin is None and not read_vin(config)
                and any(ch.config.obd is not None for ch in pipeline.channels))

    def _start_waiting_uploader(self) -> None:
        """The uploader that waited for the VIN: started once it is read, or at the end of
        the wait (the pseudonym of ``UNKNOWN`` then, until a VIN is read)."""
        waiting = self._upload_waiting
        if waiting is None:
            return
        config, prepared, deadline = waiting
        if self._vin is None and self.monotonic() < deadline:
            return
        from agent.service.identity import destination_vehicle_id

        self._upload_waiting = None
        if self._vin is None:
            log.warning("no OBD channel read the VIN within %.0f s: uploading under the "
                        "pseudonym of an unknown VIN until one does", VIN_WAIT)
        for name, upload in prepared.items():
            who = dataclasses.replace(
                upload.identity, vehicle_id=destination_vehicle_id(config, name, self._vin or ""))
            self._start_uploader(config, name, dataclasses.replace(upload, identity=who))

    def _start_uploader(self, config: Config, name: str, prepared: _Upload) -> None:
        from agent.upload.budget import DataBudget
        from agent.upload.connectivity import Connectivity
        from agent.upload.uploader import Uploader

        dest = next(d for d in destinations_of(config) if d.name == name)
        upload, store = dest.upload, self.stores[name]
        assert upload is not None
        # made here, once the old uploader has stopped: it charged the same file until then;
        # one file for every destination: the link's budget is the box's, not theirs
        budget = DataBudget(config.store.state_dir, upload.metered_daily_bytes,
                            upload.metered_monthly_bytes, self.clock)
        worker_name = "uploader" if name in (MAIN, LOCAL) else f"uploader-{name}"
        beat = self.watchdog.register(worker_name, self.silence)
        uploader = Uploader(store, prepared.transport, upload, prepared.identity,
                            connectivity=Connectivity(prepared.rules), budget=budget,
                            clock=self.clock, beat=beat, pause=self.pause,
                            allowed=owner.consent_check(self, dest.purpose),
                            on_delivered=owner.ledger_recorder(self, name, dest.purpose))
        stop = threading.Event()
        thread = threading.Thread(target=uploader.run, args=(stop,), name=worker_name,
                                  daemon=True)
        self.uploaders[name] = uploader
        self._uploader_workers[name] = _Worker(thread, stop)
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
        waiting, self._upload_waiting = self._upload_waiting, None
        if waiting is not None:
            for upload in waiting[1].values():
                upload.transport.close()
        pipeline_worker, self._pipeline_worker = self._pipeline_worker, None
        if pipeline_worker is not None:
            pipeline_worker.stop.set()
            pipeline_worker.thread.join(max(0.1, deadline - 1.0 - self.monotonic()))
            if pipeline_worker.thread.is_alive():
                log.error("the pipeline did not stop in time; frames it holds are lost")
            self.watchdog.unregister("pipeline")
        if self.router is not None:
            self.router.close()  # what the box worked out is kept for the next start
        workers, self._uploader_workers = self._uploader_workers, {}
        uploaders, self.uploaders = self.uploaders, {}
        for name, worker in workers.items():
            worker.stop.set()
            uploaders[name].wake()
            uploaders[name].transport.close()  # unblocks a send waiting for its answer
        for name, worker in workers.items():
            worker.thread.join(max(0.1, deadline - self.monotonic()))
            if worker.thread.is_alive():
                log.error("the uploader of %s did not stop in time; its batch comes back at "
                          "start", name)
            self.watchdog.unregister(worker.thread.name)

    # -- reload ------------------------------------------------------------------------------

    def _reload(self) -> None:
        log.info("reloading %s", self.config_path)
        assert self.config is not None
        prepared: _Prepared | None = None
        try:
            self._interruptible = True  # a stop meanwhile does not wait for a large file
            usable = self._load()
            config = usable.config
            if config.store != self.config.store:
                log.warning("[store] changed: it takes effect at the next restart")
                config = dataclasses.replace(config, store=self.config.store)
            if config.control != self.config.control:
                log.warning("[control] changed: it takes effect at the next restart")
                config = dataclasses.replace(config, control=self.config.control)
            config = owner.keep_destinations(self.config, config)
            prepared = self._prepare(config, usable.databases)
            self._interruptible = False
        except _StopNow:
            if prepared is not None:
                prepared.discard()
            log.info("reload cut short by a stop request")
            return
        except Exception as exc:  # BavardError, or a bug: either way the running one stays
            self._interruptible = False
            headline = f"{self.config_path}: new configuration rejected, the running one stays"
            if isinstance(exc, BavardError):
                _log_problems(headline, exc)
            else:
                log.exception("%s: %s", headline, exc)
            self.notifier.status("reload rejected: see the log")
            self.event("service.reload-rejected", str(exc)[:500])
            return
        self.notifier.reloading("reloading")
        previous = self.pipeline
        self._stop_workers(self.monotonic() + STOP_BUDGET - 1.0)
        self._launch(prepared, previous)
        if self.control is not None:
            from agent.control.commands import service_commands

            self.control.commands = service_commands(self)
        self.notifier.ready(self.status_line())
        log.info("reloaded")
        self.event("service.reload", str(self.config_path))

    # -- looking after the others ------------------------------------------------------------

    def _on_commit(self, name: str) -> Callable[[CommitInfo], None]:
        def committed(info: CommitInfo) -> None:  # in that store's writer thread
            uploader = self.uploaders.get(name)
            if uploader is not None:
                uploader.wake()
        return committed

    def _monitor(self) -> None:
        now = self.monotonic()
        if now - self._stats_at >= min(STATS_EVERY, self.silence / 4):
            self._stats_at = now
            try:  # writers that answer within the time are alive
                depth = 0
                for store in self.stores.values():
                    stats = store.stats(timeout=min(MONITOR * 2, self.silence / 2))
                    depth += sum(c.items for c in stats.classes.values())
                self._depth = depth
                self.watchdog.beat("store-writer")
            except (StoreError, KeyError) as exc:
                log.warning("a store did not answer: %s", exc)
        if self.router is not None:
            self.router.quiet(self.clock())
        self._granted = owner.watch_expiry(self, self._granted)
        worker = self._pipeline_worker
        if worker is not None and not worker.thread.is_alive() and not self._pipeline_ended_logged:
            # the sources ended (a log replayed to its end): nothing more to watch there
            log.info("every source has ended; uploading what is buffered")
            self._pipeline_ended_logged = True
            self.watchdog.unregister("pipeline")
        pipeline = self.pipeline
        if pipeline is not None:
            self._bus_events(pipeline)
            self._vin_read(pipeline)
            self._start_waiting_uploader()
            self.rates.update(pipeline)

    # -- the owner's commands (agent.control.privacy_commands) ---------------------------

    def grant(self, purpose: str, until: float | None, uid: int) -> dict[str, Any]:
        return owner.grant(self, purpose, until, uid)

    def revoke(self, purpose: str, uid: int) -> dict[str, Any]:
        return owner.revoke(self, purpose, uid)

    def rotate_key(self, destination: str) -> dict[str, Any]:
        return owner.rotate_key(self, destination)

    @property
    def upload_waiting(self) -> bool:
        """The uploader waits for an OBD channel to read the VIN."""
        return self._upload_waiting is not None

    def event(self, kind: str, detail: str, priority: int = 1,
              channel: str = "agent") -> None:
        """An event of the service's own life into the buffer (uploaded first, as events
        are) and to the control socket's subscribers: starts, stops, reloads, bus gaps,
        a technician's commands. Never blocks (any thread may call it)."""
        events = [Event(self.clock(), channel, kind, detail, priority)]
        self.tap.events(events)
        if self.router is not None:  # consent and purposes, like the sources' events
            self.router.put_events(events, block=False)

    def _bus_events(self, pipeline: Pipeline) -> None:
        """``bus.down`` and ``bus.up`` events from the sources' gap counters (counted, so
        a gap that began and ended between two looks still gives both)."""
        for ch in pipeline.channels:
            stats = ch.source.stats
            gaps = stats.gaps
            name = ch.config.name
            seen, down = self._gaps.get(name, (0, False))
            if gaps > seen:
                self.event("bus.down", f"{name}: reads failed, reopening (gap {gaps})", 2,
                            name)
                seen, down = gaps, True
            if down and not stats.in_gap:
                self.event("bus.up", f"{name}: reading again; {gaps} gaps, "
                                      f"{stats.gap_seconds:.1f} s in all", 2, name)
                down = False
            self._gaps[name] = (seen, down)

    def _vin_read(self, pipeline: Pipeline) -> None:
        """A VIN an OBD channel read from the vehicle becomes the pseudonym's source
        (unless ``[vehicle] vin`` is configured) and is kept for the next start."""
        config = self.config
        if config is None or config.vehicle.vin.strip():
            return
        for ch in pipeline.channels:
            vin = ch.source.vin
            if not vin or vin == self._vin:
                continue
            from agent.service.identity import destination_vehicle_id, read_vin, remember_vin

            self._vin = vin
            if vin != read_vin(config):
                remember_vin(config, vin)
                self.event("vehicle.identified", f"VIN read on {ch.config.name}; the "
                                                  "pseudonym follows it", 1, ch.config.name)
            for name, uploader in self.uploaders.items():
                pseudonym = destination_vehicle_id(config, name, vin)
                if uploader.identity.vehicle_id != pseudonym:
                    log.info("vehicle pseudonym of %s from the VIN read on %s", name,
                             ch.config.name)
                    uploader.identity = dataclasses.replace(uploader.identity,
                                                            vehicle_id=pseudonym)
            return

    def status_line(self) -> str:
        parts = [f"{self.rates.total:,.0f} frames/s", f"buffer {self._depth:,} items"]
        pipeline = self.pipeline
        for ch in pipeline.channels if pipeline is not None else ():
            if isinstance(ch.source, ObdSource):  # what the adapter's budget achieves
                rate = sum(ch.source.rates().values())
                parts.append(f"OBD {ch.config.name} {rate:,.1f} PIDs/s")
        uploader = self.uploader
        if uploader is None:
            parts.append("upload off")
        else:
            last = uploader.stats.last_upload
            age = "never" if last is None else f"{max(0.0, self.clock() - last):,.0f} s ago"
            parts.append(f"upload {uploader.stats.state}, last {age}")
        return ", ".join(parts)


def _take_over(previous: Pipeline, pipeline: Pipeline) -> None:
    """A new CAN source on the bus an old one read skips what the old one read: both
    were open for a moment, and the new one queued those frames too."""
    old = {ch.source.where: ch.source for ch in previous.channels
           if isinstance(ch.source, CanBusSource)}
    for ch in pipeline.channels:
        if isinstance(ch.source, CanBusSource) and ch.source.where in old:
            ch.source.take_over(old[ch.source.where])


def _log_problems(headline: str, exc: BavardError) -> None:
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    log.error("%s:\n  %s", headline, "\n  ".join(problems))
