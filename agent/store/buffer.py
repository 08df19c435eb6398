"""The durable store-and-forward buffer: what the rest of the agent talks to.

::

    pipeline ──put_samples/put_events/put_frames──▶ Inbox (bounded) ──▶ writer thread ──▶ SQLite
    uploader ──next_batch / ack / release / dead_letter──▶ (requests run by the writer)

Why chunks and not one row per item: one row per sample (about 450k rows/s
with batches of 1,000, far less with any index) would make SQLite the
bottleneck and the file large. Instead each commit stores, per class, one
row per chunk of up to ``chunk_items`` items, its body zstd-compressed msgpack
(agent.store.codec): the writer sustains about 1.1M samples/s, 4.6 bytes a
sample on disk (the decoded MoTeC sample log), atomic per commit; eviction,
ages and upload batches work on whole chunks, which is granular enough (a
chunk is at most one commit's worth).
Sequence numbers are per item, so a batch is still named by the exact range
of items it holds.

Thread model: producers and the uploader may call from any thread; only the
writer thread touches the connection (the requests are queued to it and the
caller waits for the answer). Bodies are decoded in the caller's thread.

Durability (docs/store.md has the details): a commit at least every
``commit_interval`` (1 s) or ``commit_items``; a killed agent loses only what
was not committed. WAL with ``synchronous=FULL`` fsyncs the WAL at each commit,
so a power cut loses the same: at most ``commit_interval`` of data, never a
corrupt file.

Input queue overflow (agent.store.inbox): ``block=True`` waits for room
(replay, simulator); ``block=False`` drops queued items of lower classes
first, then the incoming ones, and counts them.

Time: ``clock`` (wall clock, seconds since the epoch) stamps chunks at commit
and measures ages: tests pass a virtual clock. The commit interval, the
disk-full squeeze and the reopen interval are on ``monotonic`` (real time by
default: the commit interval bounds what a crash may lose); tests may move it.
``close()`` wakes the writer at once (it waits on the inbox's condition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, NamedTuple, TypeVar

from agent.errors import StoreError
from agent.frames import Event, Frame, Sample
from agent.store import batches, codec
from agent.store.inbox import Inbox
from agent.store.maintenance import Purged, Retried
from agent.store.settings import Kind, StoreConfig
from agent.store.stats import BufferStats
from agent.store.writer import CommitInfo, Writer

log = logging.getLogger(__name__)

T = TypeVar("T")
REQUEST_TIMEOUT = 60.0  # seconds a call waits for the writer thread


class StoredBatch(NamedTuple):
    """A batch for upload: unpacks as ``(seq_first, seq_last, samples, events, frames)``.

    It holds one class: two of the three lists are empty.
    """

    seq_first: int
    seq_last: int
    samples: list[Sample]
    events: list[Event]
    frames: list[Frame]

    @property
    def kind(self) -> Kind:
        return Kind.EVENT if self.events else Kind.FRAME if self.frames else Kind.SAMPLE

    @property
    def items(self) -> int:
        return len(self.samples) + len(self.events) + len(self.frames)


class Store:
    """The buffer. ``start()`` it (or use ``with``), ``close()`` it to commit what is queued."""

    def __init__(self, config: StoreConfig, *, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[CommitInfo], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        problems = config.problems()
        if problems:
            raise StoreError("store configuration: " + "; ".join(problems))
        self.config = config
        self.clock = clock
        self._inbox = Inbox(config.queue_items, config.commit_items, monotonic)
        self._writer = Writer(config, self._inbox, clock, on_commit, monotonic)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Store:
        """Open the database (moving a corrupt one aside), start the writer thread and
        wait for its first round: when this returns, the writer runs.

        StoreError when the state directory cannot be used at all (permissions,
        another process holds it) or the writer fails at start (a setting SQLite cannot
        take); a full disk or a corrupt file does not stop it.
        """
        writer = self._writer
        writer.start()
        writer.opened.wait()
        if writer.open_error is not None:
            writer.join()
            raise writer.open_error
        try:  # one whole round of the writer's loop (commit, expiry, requests)
            self._call(lambda: None)
        except StoreError as exc:
            writer.join(1.0)  # a dead writer is gone at once; a stuck one is left
            why = writer.crashed if writer.crashed is not None else exc
            raise StoreError(f"{self.path}: the store writer stopped at start: "
                             f"{type(why).__name__}: {why}") from None
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, checkpoint and stop the writer. Idempotent."""
        self._inbox.close()
        if self._writer.is_alive():
            self._writer.join(timeout)
            if self._writer.is_alive():
                log.error("store: the writer did not stop within %s s", timeout)

    def __enter__(self) -> Store:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        return str(self.config.db_path)

    # -- producers ------------------------------------------------------------------------

    def put(self, kind: Kind, items: Sequence[Any], block: bool = True) -> bool:
        """Queue items of one class; False when they were dropped (see agent.store.inbox)."""
        return self._inbox.put(kind, items, block)

    def put_samples(self, samples: Sequence[Sample], block: bool = True) -> bool:
        return self._inbox.put(Kind.SAMPLE, samples, block)

    def put_events(self, events: Sequence[Event], block: bool = True) -> bool:
        return self._inbox.put(Kind.EVENT, events, block)

    def put_frames(self, frames: Sequence[Frame], block: bool = True) -> bool:
        return self._inbox.put(Kind.FRAME, frames, block)

    # -- the uploader ---------------------------------------------------------------------

    def next_batch(self, max_items: int | None = None, max_seconds: float | None = None,
                   min_kind: Kind = Kind.FRAME) -> StoredBatch | None:
        """The oldest data not in flight, of the highest class present (and at least
        ``min_kind``: a metered link may carry only events), marked in flight.

        None when there is nothing to upload. A batch whose chunks cannot be
        decoded is moved to the dead letters and the next one is returned. The move
        is queued to the writer without waiting for it: it runs before the request
        for the next batch, and a writer too slow to answer now (a stuck SD card)
        does it later; the batch is never left in flight until a restart.
        """
        while True:
            raw = self._call(lambda: self._writer.next_batch(max_items, max_seconds, min_kind),
                             abandoned=self._release_abandoned)
            if raw is None:
                return None
            try:
                items: list[Any] = []
                for codec_id, body in raw.bodies:
                    items.extend(codec.decode(raw.kind, codec_id, body))
            except StoreError as exc:
                log.error("store: batch %d..%d cannot be read: %s", raw.seq_first,
                          raw.seq_last, exc)
                self._inbox.request(partial(self._writer.finish_batch, "dead_letter",
                                            raw.seq_first, raw.seq_last, f"unreadable: {exc}"))
                continue
            return StoredBatch(raw.seq_first, raw.seq_last,
                               items if raw.kind == Kind.SAMPLE else [],
                               items if raw.kind == Kind.EVENT else [],
                               items if raw.kind == Kind.FRAME else [])

    def _release_abandoned(self, future: Future[batches.RawBatch | None]) -> None:
        """A next_batch whose caller gave up waiting: what it handed out is released."""
        raw = None if future.cancelled() or future.exception() else future.result()
        if raw is not None:
            self._inbox.request(lambda: self._writer.finish_batch("release", raw.seq_first,
                                                                  raw.seq_last))

    def ack(self, seq_first: int, seq_last: int) -> int:
        """The batch was delivered: delete it. Returns its items (0 if already gone)."""
        return self._finish("ack", seq_first, seq_last)

    def release(self, seq_first: int, seq_last: int) -> int:
        """The upload failed: the batch is no longer in flight and will come back as the
        same range. Returns its items (0 if there is no such batch)."""
        return self._finish("release", seq_first, seq_last)

    def dead_letter(self, seq_first: int, seq_last: int, reason: str = "") -> int:
        """The receiver refused the batch for good: keep it aside, never upload it again."""
        return self._finish("dead_letter", seq_first, seq_last, reason)

    def _finish(self, action: str, seq_first: int, seq_last: int, reason: str = "") -> int:
        return self._call(lambda: self._writer.finish_batch(action, seq_first, seq_last, reason))

    # -- by hand (agent.store.maintenance) --------------------------------------------------

    def purge(self, kind: Kind, timeout: float | None = None,
              in_flight_too: bool = False) -> Purged:
        """Delete what the buffer holds of ``kind``, except a batch in flight (unless
        ``in_flight_too``); what is queued before the call is committed first, so it
        goes too."""
        return self._call(lambda: self._writer.purge(kind, in_flight_too), timeout)

    def purge_dead_letters(self, timeout: float | None = None) -> Retried:
        """Delete every dead letter (what was deleted, counted as a Retried)."""
        return self._call(self._writer.purge_dead_letters, timeout)

    def retry_dead_letters(self, timeout: float | None = None) -> Retried:
        """Move the dead letters back among the data waiting for upload."""
        return self._call(self._writer.retry_dead_letters, timeout)

    # -- everyone ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Return once everything queued before the call is committed (StoreError after
        ``timeout``, by default ``REQUEST_TIMEOUT``)."""
        self._call(self._writer.flush, timeout)

    def stats(self, timeout: float | None = None) -> BufferStats:
        return self._call(lambda: self._writer.stats(self._inbox.depth), timeout)

    @property
    def state(self) -> str:
        """"ok", "disk-full", "unavailable", or "stopped"."""
        return self._writer.state if self._writer.is_alive() else "stopped"

    def _call(self, call: Callable[[], T], timeout: float | None = None,
              abandoned: Callable[[Future[T]], None] | None = None) -> T:
        """Have the writer thread run ``call`` and return its result.

        On a timeout the request is cancelled; if the writer is already running it,
        ``abandoned`` gets the future once it is done (to undo what nobody will get).
        """
        if not self._writer.is_alive():
            raise StoreError("the store is not running")
        timeout = REQUEST_TIMEOUT if timeout is None else timeout
        future: Future[T] = self._inbox.request(call)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if not future.cancel() and abandoned is not None:
                future.add_done_callback(abandoned)
            raise StoreError(f"the store did not answer within {timeout} s") from None
