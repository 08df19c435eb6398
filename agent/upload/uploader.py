"""The uploader loop: store -> batch -> transport -> ack. Nothing lost, nothing twice.

One thread runs :meth:`Uploader.run`. Each round:

1. **Link.** With the connectivity gate on, ask the kernel which link reaches
   the endpoint (agent.upload.connectivity). No link: wait for a netlink change
   (no busy loop), and try again at once when one comes. A link that cannot be
   judged (netlink refused) is logged once and treated as up for that round.
2. **Batch.** Take the next batch from the store, of a class the link may carry
   (a metered link: ``metered_classes`` and above, within the daily and monthly
   budget of agent.upload.budget). Events go at once; samples and frames wait up
   to ``linger`` seconds after a small batch, so that batches are big enough to
   compress well, unless a backlog is draining.
3. **Delivery.** Encode it (agent.batch.codec) and hand it to the transport.
   The store deletes it only after the receiver's acknowledgement (HTTP 2xx,
   MQTT PUBACK). A transient failure is retried with tenacity: exponential
   backoff with full jitter, capped at ``retry_max``, or the receiver's
   Retry-After if longer, sleeping on the stop event so shutdown interrupts it.
   After :data:`ATTEMPTS_PER_BATCH` attempts, or when the link goes, the batch is
   released (it comes back as the same range, so the same batch id) and the
   round starts over, so an event can overtake a stuck sample batch. A refusal
   moves the batch to the store's dead letters and the next batch goes on. On a
   metered link the budget is looked at before every attempt, not once per
   batch: each attempt is charged, and eight of them could cost eight budgets.

By hand (the control socket, agent.control.commands): :meth:`Uploader.upload_now`
ends a linger, a backoff pause or a wait for a link and looks again at once;
a :class:`~agent.upload.pause.PauseSwitch` that is paused makes the uploader
take no new batch (state ``paused``) and ends the retries of the batch in
hand (released, not lost) until it is resumed.

The thread never ends before ``stop``: anything unexpected (a transport or
connectivity bug, an exception nobody wrapped) is logged with its traceback, the
batch in hand is released, and the round starts over after a backoff pause. A
store that cannot take an ack, release or dead-letter in time (a stuck SD card)
does not strand the batch in flight either: the uploader takes nothing new until
the store has taken that step, so a delivered batch is not sent again.

A receiver that got a batch whose acknowledgement was lost gets it again with
the same batch id and drops the repeat: delivery is at least once, storage at
the receiver exactly once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from agent.batch.codec import encode
from agent.batch.model import Batch, SignalKey, SignalMeta
from agent.errors import (
    RefusedUploadError,
    StoreError,
    TransientUploadError,
)
from agent.store.buffer import Store, StoredBatch
from agent.store.settings import Kind
from agent.upload.budget import DataBudget
from agent.upload.connectivity import Connectivity, ConnectivityError, Link
from agent.upload.pause import PauseSwitch
from agent.upload.settings import UploadConfig
from agent.upload.transport import Transport

log = logging.getLogger(__name__)

ATTEMPTS_PER_BATCH = 8  # then release it and choose again (an event may be waiting)
LINK_TTL = 60.0  # seconds a look at the links is trusted when netlink reports no change
IDLE = 5.0  # seconds between looks when there is nothing to do (and watchdog beats)
MAX_DOUBLINGS = 64  # the backoff cap stops doubling here (retry_max caps it long before)
RETRY_AFTER_MAX = 3600.0  # a receiver's Retry-After is honoured up to this
NUDGE_POLL = 0.25  # seconds: how soon a backoff pause notices upload_now()
LINK_STEP = 1.0  # seconds: how soon a wait for a link notices upload_now()


@dataclass(frozen=True)
class Identity:
    """What every batch says about where it comes from."""

    vehicle_id: str
    dbc_fingerprint: str = ""
    signals: dict[SignalKey, SignalMeta] = field(default_factory=dict)


@dataclass
class UploadStats:
    """Counters of the uploader (read by the status line and ``bavard buffer``)."""

    batches: int = 0  # acknowledged by the receiver
    items: int = 0
    bytes: int = 0  # payload bytes acknowledged
    attempts: int = 0
    transient: int = 0  # failed attempts that were retried
    refused: int = 0  # batches dead-lettered
    refused_items: int = 0
    last_upload: float | None = None  # clock time of the last acknowledgement
    last_error: str = ""
    # uploading, waiting-link, idle, backoff, budget, paused, stopped
    state: str = "starting"
    link: str = ""  # why the link in use was chosen, or why there is none


class _Interrupted(Exception):
    """Shutdown or a lost link ends the retries of a batch (it is released)."""


class Uploader:
    def __init__(self, store: Store, transport: Transport, config: UploadConfig,
                 identity: Identity, *, connectivity: Connectivity | None = None,
                 budget: DataBudget | None = None, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random,
                 sleep: Callable[[float, threading.Event], object] | None = None,
                 wait: Callable[[float], object] | None = None,
                 beat: Callable[[], None] = lambda: None,
                 pause: PauseSwitch | None = None,
                 allowed: Callable[[], bool] | None = None,
                 on_delivered: Callable[[StoredBatch, str, int], None] | None = None
                 ) -> None:
        """``sleep(seconds, stop)`` waits between attempts (default: on ``stop``, beating
        the watchdog); ``wait(seconds)`` is the idle wait that :meth:`wake` ends early
        (default: on the wake event); ``rng`` gives the jitter in [0, 1); all for tests.
        ``pause``: uploads paused by hand (none: never paused). ``allowed()``: the owner's
        consent for this destination's purpose stands (checked before each batch and each
        attempt; none: always). ``on_delivered(batch, batch id, bytes)``: after each
        acknowledgement (the privacy ledger)."""
        self.store = store
        self.transport = transport
        self.config = config
        self.identity = identity
        self.connectivity = connectivity
        self.budget = budget
        self.clock = clock
        self.rng = rng
        self.beat = beat
        self.sleep = sleep or self._interruptible_sleep
        self.pause = pause
        self.allowed = allowed
        self.on_delivered = on_delivered
        self.stats = UploadStats()
        self.endpoint = config.transport().host
        #: the link of the last look (None: none found yet, or no connectivity gate)
        self.last_link: Link | None = None
        self._wake = threading.Event()
        self._nudge = threading.Event()  # upload_now(): end a backoff or a wait for a link
        self._idle_wait = wait or self._wake.wait
        self._streak = 0  # consecutive transient failures, across batches
        # Samples and frames wait until then: time.monotonic(), not ``clock``, since a
        # wall clock stepped back (a Pi without RTC set by NTP) would stretch the wait.
        self._linger_until = 0.0
        self._gate_broken = False  # the last look at the links failed (logged once)
        # (when, what) of the last look: reused until netlink reports a change, an
        # attempt fails, or LINK_TTL passes (a DNS answer changes without any event)
        self._link_cache: tuple[float, Link | bool] | None = None
        # (action, batch, reason, payload bytes) the store could not take yet: retried
        # before anything else, so a batch is never left in flight for good.
        self._pending: tuple[str, StoredBatch, str, int] | None = None

    def wake(self) -> None:
        """New data was committed, or stop was set: look again now."""
        self._wake.set()

    def upload_now(self) -> dict[str, Any]:
        """Look at the buffer now and send what it holds (a technician's ``bavard upload
        --now``): end a linger (small batches wait for more data), a backoff pause after
        failures (within :data:`NUDGE_POLL` s) and a wait for a link (within
        :data:`LINK_STEP` s; the links are looked at again). What was going on, for the
        answer: ``state`` before, and which waits it ended."""
        state = self.stats.state
        lingering = time.monotonic() < self._linger_until
        self._linger_until = 0.0
        self._link_cache = None
        self._nudge.set()
        self.wake()
        return {"state": state, "linger_ended": lingering,
                "backoff_ended": state == "backoff",
                "link_wait_ended": state in ("waiting-link", "budget")}

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.beat()
                try:
                    self._round(stop)
                except Exception as exc:  # a bug must not end the uploads until a restart
                    self._streak += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("upload: unexpected failure; trying again after a pause")
                    if not stop.is_set():
                        self._backoff_pause(stop)
        finally:
            self.stats.state = "stopped"
            self.transport.close()

    def _round(self, stop: threading.Event) -> None:
        self._nudge.clear()  # this round looks anyway
        if self._pending is not None and not self._finish_pending():
            self._idle(stop, IDLE)
            return
        if self._paused():
            self.stats.state = "paused"
            self._idle(stop, IDLE)
            return
        if not self._consented():
            self.stats.state = "no-consent"
            self._idle(stop, IDLE)
            return
        link = self._link()
        if link is False:
            self.stats.state = "waiting-link"
            self._wait_for_link(stop)
            return
        metered = isinstance(link, Link) and link.metered
        min_kind = self.config.metered_min_kind if metered else Kind.FRAME
        if time.monotonic() < self._linger_until:
            min_kind = max(min_kind, Kind.EVENT)
        try:
            batch = self.store.next_batch(self.config.batch_items, self.config.batch_seconds,
                                          min_kind)
        except StoreError as exc:
            log.error("upload: the store cannot hand out a batch: %s", exc)
            self._idle(stop, IDLE)
            return
        if batch is None:
            self.stats.state = "idle"
            self._idle(stop, max(0.0, min(IDLE, self._linger_until - time.monotonic())) or IDLE)
            return
        self.stats.state = "uploading"
        try:
            self._upload(batch, link if isinstance(link, Link) else None, stop)
        except Exception:
            self._finish("release", batch)  # whatever went wrong, it comes back
            raise

    def _upload(self, stored: StoredBatch, link: Link | None, stop: threading.Event) -> None:
        first, last = stored.seq_first, stored.seq_last
        identity = self.identity
        batch = Batch(identity.vehicle_id, first, last, identity.dbc_fingerprint,
                      stored.samples, stored.events, stored.frames)
        try:
            payload = encode(batch.with_metadata(identity.signals))
        except Exception as exc:  # a bug upstream: the same batch would fail again, and
            # block every batch of its class behind it; the dead letters keep it
            self._dead_letter(stored, f"cannot encode: {type(exc).__name__}: {exc}")
            return
        budget = self.budget if link is not None and link.metered else None
        if budget is not None and not budget.allows(len(payload)):
            self._finish("release", stored)
            self.stats.state = "budget"
            log.info("upload: metered budget spent; waiting for an unmetered link or the "
                     "next period")
            self._wait_for_link(stop, min(budget.seconds_to_reset(), 600.0))
            return
        batch_id = batch.batch_id
        try:
            self._deliver(batch_id, payload, link, stop)
        except RefusedUploadError as exc:
            self._dead_letter(stored, str(exc))
            return
        except (TransientUploadError, _Interrupted) as exc:
            self._finish("release", stored)
            if (isinstance(exc, TransientUploadError) and not stop.is_set()
                    and not self._paused()):
                self._backoff_pause(stop)  # the streak goes on with the next batch
            return
        self._streak = 0
        self._finish("ack", stored, nbytes=len(payload))
        if self.on_delivered is not None:
            try:
                self.on_delivered(stored, batch_id, len(payload))
            except Exception:  # the account of it must not stop the uploads
                log.exception("upload: cannot record batch %s in the privacy ledger", batch_id)
        small = (stored.items < self.config.batch_items // 2 and
                 _span(stored) < self.config.batch_seconds / 2)
        if stored.kind != Kind.EVENT and small:  # caught up: let the next batch fill
            self._linger_until = time.monotonic() + self.config.linger
        log.debug("upload: batch %s (%d..%d, %d items, %d bytes) delivered", batch_id,
                  first, last, stored.items, len(payload))

    def _paused(self) -> bool:
        return self.pause is not None and self.pause.paused is not None

    def _consented(self) -> bool:
        return self.allowed is None or self.allowed()

    def _finish(self, action: str, stored: StoredBatch, reason: str = "",
                nbytes: int = 0) -> bool:
        """Have the store ack, release or dead-letter ``stored``, and count it. When the
        store cannot (StoreError: it did not answer in time), the step is kept and
        retried at the start of each round; False then."""
        first, last = stored.seq_first, stored.seq_last
        try:
            if action == "ack":
                items = self.store.ack(first, last)
            elif action == "dead_letter":
                items = self.store.dead_letter(first, last, reason[:500])
            else:
                self.store.release(first, last)
                items = 0
        except StoreError as exc:
            if self._pending is None:
                log.error("upload: the store cannot %s batch %d..%d now (%s); trying again "
                          "before anything else", action.replace("_", "-"), first, last, exc)
            self._pending = (action, stored, reason, nbytes)
            return False
        self._pending = None
        st = self.stats
        if action == "ack":
            # 0 when a timed-out ack went through after all: the receiver has it anyway
            st.batches += 1
            st.items += items or stored.items
            st.bytes += nbytes
            st.last_upload = self.clock()
            st.last_error = ""
        elif action == "dead_letter":
            st.refused += 1
            st.refused_items += items or stored.items
            st.last_error = reason
        return True

    def _finish_pending(self) -> bool:
        assert self._pending is not None
        action, stored, reason, nbytes = self._pending
        return self._finish(action, stored, reason, nbytes)

    def _deliver(self, batch_id: str, payload: bytes, link: Link | None,
                 stop: threading.Event) -> None:
        def attempt() -> None:
            if stop.is_set():
                raise _Interrupted("stopping")
            if self._paused():
                raise _Interrupted("uploads paused")
            if not self._consented():
                raise _Interrupted("consent revoked")
            if link is not None and self.connectivity is not None and self._link() is False:
                raise _Interrupted(f"link {link.name} is gone")
            self.beat()
            if link is not None and link.metered and self.budget is not None:
                if not self.budget.allows(len(payload)):
                    raise _Interrupted("the metered budget is spent")
                self.budget.charge(len(payload))
            self.stats.attempts += 1
            try:
                self.transport.send(batch_id, self.identity.vehicle_id, payload)
            except TransientUploadError as exc:
                self._link_cache = None  # look again before the next attempt
                self._streak += 1
                self.stats.transient += 1
                self.stats.last_error = str(exc)
                raise

        retrying = Retrying(
            retry=retry_if_exception_type(TransientUploadError),
            wait=self._wait,
            stop=lambda state: (stop.is_set() or self._paused() or not self._consented()
                                or state.attempt_number >= ATTEMPTS_PER_BATCH),
            sleep=self._sleeper(stop),
            before_sleep=self._log_retry,
            reraise=True,
        )
        retrying(attempt)

    # -- backoff ---------------------------------------------------------------------------

    def backoff(self, streak: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``streak`` consecutive failures: full jitter under an
        exponential cap, or the receiver's Retry-After if that is longer."""
        doublings = min(max(0, streak - 1), MAX_DOUBLINGS)  # 2.0 ** 1024 overflows
        cap = min(self.config.retry_max, self.config.retry_initial * 2 ** doublings)
        delay = self.rng() * cap
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX))
        return delay

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, TransientUploadError) else None
        return self.backoff(self._streak, retry_after)

    def _sleeper(self, stop: threading.Event) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            self.stats.state = "backoff"
            self.sleep(seconds, stop)
            self.stats.state = "uploading"
        return sleep

    def _interruptible_sleep(self, seconds: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + seconds
        beaten = float("-inf")
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._nudge.is_set() or self._paused():
                return  # upload_now(), or paused: this pause is over
            now = time.monotonic()
            if now - beaten >= IDLE:
                self.beat()  # waiting on purpose is progress for the watchdog
                beaten = now
            stop.wait(min(left, NUDGE_POLL))

    def _backoff_pause(self, stop: threading.Event) -> None:
        self._sleeper(stop)(self.backoff(self._streak))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("upload: attempt %d failed (%s); next in %.1f s", state.attempt_number,
                    exc, delay)

    # -- links and waiting -----------------------------------------------------------------

    def _link(self) -> Link | bool:
        """The link to use; True when there is no gate; False when there is no link.

        A look that fails (netlink refused, or a dump that kept changing while links
        flapped) counts as a link for this round only: the next round looks again, so a
        passing failure does not leave metered links unguarded until a restart. Logged
        when it starts failing and when it works again."""
        if self.connectivity is None or not self.config.require_link:
            return True
        now = time.monotonic()
        cached = self._link_cache
        try:
            if (cached is not None and now - cached[0] < LINK_TTL
                    and not self.connectivity.wait_for_change(0.0)):
                return cached[1]  # no netlink change since: no DNS lookup, no dump
            self._link_cache = None
            status = self.connectivity.status(self.endpoint)
        except ConnectivityError as exc:
            if not self._gate_broken:
                log.warning("upload: cannot read the link state (%s); uploading without the "
                            "connectivity gate until it can be read", exc)
            self._gate_broken = True
            self.stats.link = ""
            return True
        if self._gate_broken:
            log.info("upload: the link state can be read again")
            self._gate_broken = False
        if status.reason != self.stats.link:
            log.info("upload: %s", status.reason if status.link else f"no link: {status.reason}")
            self.stats.link = status.reason
        link: Link | bool = status.link if status.link is not None else False
        self._link_cache = (now, link)
        self.last_link = status.link
        return link

    def _wait_for_link(self, stop: threading.Event, timeout: float = 60.0) -> None:
        """Block on netlink until something changes (or the timeout: DNS makes no event).

        The change is consumed here, so the next look must not trust its cache."""
        self._link_cache = None
        deadline = time.monotonic() + timeout
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self._nudge.is_set():
                return  # upload_now(): look again
            self.beat()
            if self.connectivity is None:
                stop.wait(min(left, LINK_STEP))
            elif self.connectivity.wait_for_change(min(left, LINK_STEP), stop):
                return

    def _idle(self, stop: threading.Event, seconds: float) -> None:
        """Wait for a wake (new data, or stop) or ``seconds``. A wake is never lost: one
        that lands after the wait and is cleared here was for data committed before
        it, which the next round's look at the store finds (every ``_idle`` ends a
        round: look, wait, clear, look...)."""
        self._idle_wait(seconds)
        self._wake.clear()

    def _dead_letter(self, stored: StoredBatch, reason: str) -> None:
        log.error("upload: batch %d..%d refused, moved to the dead letters: %s",
                  stored.seq_first, stored.seq_last, reason)
        self._finish("dead_letter", stored, reason)


def _span(stored: StoredBatch) -> float:
    records: list[Any] = stored.samples or stored.events or stored.frames
    if not records:
        return 0.0
    stamps = [r.timestamp for r in records]
    return float(max(stamps) - min(stamps))
