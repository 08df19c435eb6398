"""What the receiver does with one upload, whatever carried it: check it, store it once.

Python API::

    from agent.receiver.core import Receiver

    receiver = Receiver.open("received")        # or Receiver(ReceiverDb(...), max_decodes=2)
    receiver = Receiver(None, lake=Lake("lake"))  # the Parquet lake only (agent.lake)
    receiver = Receiver(ReceiverDb("received"), lake=Lake("lake"))   # both
    outcome = receiver.accept(payload, claimed_id="…", transport="https")
    outcome.status      # "stored" | "duplicate" | "invalid"
    outcome.reason      # why it was invalid ("" otherwise)
    receiver.stats()    # the counters (ReceiverDb.counters)
    receiver.close()

:meth:`Receiver.accept` is safe to call from many threads at once (the HTTP
server's request threads and the MQTT network thread): decoding, the costly
part, runs in the caller's thread; only the write is serialised
(:class:`~agent.receiver.database.ReceiverDb`). At most ``max_decodes`` (2)
batches are checked and stored at once, whichever transport brought them: each
takes memory in proportion to the records it announces (up to a few hundred MB
for the largest batch the format allows, docs/batch-format.md §5.1), and the
decoding is pure Python, so more at once would not go faster. A caller waits
``busy_wait`` seconds (30) for its turn, then gets a ReceiverError (HTTP 503
with Retry-After; MQTT: not acknowledged, so the broker sends it again).

The checks, in order, all before anything is written:

1. the whole batch decodes (:func:`agent.batch.codec.decode`: header, CRC, zstd,
   every field, the envelope against the body, and the envelope's batch id
   against the one computed from its vehicle and sequence range);
2. that batch id is recomputed here too (``batch_id(vehicle, seq_first,
   seq_last)``), so the dedupe key never depends on the codec's checks alone;
3. the id the transport claims (HTTP ``Idempotency-Key``, MQTT 5 user property
   ``batch-id``) equals it. ``claimed_id=None`` means the transport carries none
   (MQTT 3.1.1): the envelope is then the only id, which is enough to dedupe.

Where it is stored: the SQLite database (:class:`~agent.receiver.database.ReceiverDb`),
the Parquet lake (:class:`agent.lake.Lake`), or both. Each dedupes on its own by the
batch id; the outcome is "stored" when either wrote it now, "duplicate" when both
had it. The lake first: a batch in the database but not in the lake (a lake write
that failed) is written there on the retry. With a database, the counters are its
own (they survive a restart); without, they are this process's
(:class:`~agent.receiver.counters.MemoryCounters`). A vehicle id that cannot name a
lake partition makes the batch invalid.

A duplicate is decoded in full too: a corrupted retry is refused, not mistaken
for the good copy already stored. A failure to *write* is not an outcome but a
:class:`~agent.errors.ReceiverError`, so that the transport asks the sender to
try again (HTTP 503, no MQTT acknowledgement) instead of refusing the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.batch import BatchFormatError, batch_id, decode, read_envelope
from agent.errors import LakeError, ReceiverError
from agent.receiver.counters import MemoryCounters
from agent.receiver.database import ReceiverDb

if TYPE_CHECKING:
    from agent.lake import Lake

log = logging.getLogger(__name__)

Status = Literal["stored", "duplicate", "invalid"]


@dataclass(frozen=True)
class Outcome:
    """What became of one upload."""

    status: Status
    batch_id: str | None  # None when not even the envelope could be read
    vehicle: str | None
    reason: str = ""  # why it is invalid
    samples: int = 0

    @property
    def accepted(self) -> bool:
        """Stored now or before: the sender may forget it."""
        return self.status != "invalid"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "batch_id": self.batch_id}
        if self.reason:
            out["reason"] = self.reason
        return out


DEFAULT_MAX_DECODES = 2
DEFAULT_BUSY_WAIT = 30.0  # seconds a batch waits for its turn before "busy"


class Receiver:
    """Checks and stores uploads in a :class:`ReceiverDb` and/or a lake (see the module
    docstring)."""

    def __init__(self, db: ReceiverDb | None, clock: Callable[[], float] = time.time, *,
                 lake: Lake | None = None, max_decodes: int = DEFAULT_MAX_DECODES,
                 busy_wait: float = DEFAULT_BUSY_WAIT) -> None:
        if max_decodes < 1:
            raise ValueError(f"max_decodes must be >= 1, not {max_decodes}")
        if db is None and lake is None:
            raise ValueError("a receiver needs a database, a lake or both")
        self._db = db
        self.lake = lake
        self._memory = MemoryCounters() if db is None else None
        self.clock = clock
        self.max_decodes = max_decodes
        self.busy_wait = busy_wait
        self._turns = threading.BoundedSemaphore(max_decodes)

    @classmethod
    def open(cls, directory: str | Path, **options: Any) -> Receiver:
        """A receiver storing into ``directory/receiver.sqlite`` (created if needed);
        ``options``: ``max_decodes``, ``busy_wait``."""
        return cls(ReceiverDb(directory), **options)

    def accept(self, payload: bytes, claimed_id: str | None, transport: str) -> Outcome:
        """Check ``payload`` (one encoded batch) and store it unless already stored.

        ReceiverError when it could not be written, or had to wait for its turn more
        than ``busy_wait`` seconds (the sender should retry).
        """
        if not self._turns.acquire(timeout=self.busy_wait):
            raise ReceiverError(f"busy: {self.max_decodes} batches were being checked and "
                                f"stored for {self.busy_wait:g} s")
        try:
            return self._accept(payload, claimed_id, transport)
        finally:
            self._turns.release()

    def _accept(self, payload: bytes, claimed_id: str | None, transport: str) -> Outcome:
        received_at = self.clock()
        try:
            batch = decode(payload)
            envelope = read_envelope(payload)
        except BatchFormatError as exc:
            vehicle = _vehicle_if_readable(payload)
            return self._invalid(None, vehicle, f"invalid batch: {exc}", transport)
        expected = batch_id(envelope.vehicle_id, envelope.seq_first, envelope.seq_last)
        if envelope.batch_id != expected:  # decode checks this too; this is the dedupe key
            return self._invalid(envelope.batch_id, envelope.vehicle_id,
                                 f"batch id {envelope.batch_id} is not the id of its vehicle "
                                 f"and sequence range ({expected})", transport)
        if claimed_id is not None and claimed_id.strip() != envelope.batch_id:
            return self._invalid(envelope.batch_id, envelope.vehicle_id,
                                 f"claimed batch id {claimed_id!r} is not the batch's id "
                                 f"{envelope.batch_id}", transport)
        if self.lake is not None:
            try:
                self.lake.check_vehicle(envelope.vehicle_id)
            except LakeError as exc:
                return self._invalid(envelope.batch_id, envelope.vehicle_id, str(exc),
                                     transport)
        stored = self.lake.write(batch, envelope) if self.lake is not None else False
        if self._db is not None:
            stored = self._db.store(batch, envelope, transport, received_at) or stored
        else:
            self._count(envelope.vehicle_id, "received", "stored" if stored else "duplicates")
        status: Status = "stored" if stored else "duplicate"
        log.info("%s batch %s of vehicle %s (seq %d..%d, %d samples, %d bytes) via %s",
                 status, envelope.batch_id, envelope.vehicle_id, envelope.seq_first,
                 envelope.seq_last, envelope.samples, envelope.size, transport)
        return Outcome(status, envelope.batch_id, envelope.vehicle_id,
                       samples=len(batch.samples))

    def refuse(self, reason: str, transport: str) -> Outcome:
        """Count an upload refused before it was even read (over a size limit)."""
        return self._invalid(None, None, reason, transport)

    def stats(self) -> dict[str, Any]:
        """The counters: ``{"total": {...}, "vehicles": {...}}``."""
        if self._db is not None:
            return self._db.counters()
        assert self._memory is not None
        return self._memory.counters()

    @property
    def db(self) -> ReceiverDb:
        """The database (ReceiverError for a lake-only receiver)."""
        if self._db is None:
            raise ReceiverError("this receiver writes a lake only: it has no database")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _count(self, vehicle: str, *names: str) -> None:
        if self._memory is not None:
            self._memory.count(vehicle, *names)

    def _invalid(self, bid: str | None, vehicle: str | None, reason: str,
                 transport: str) -> Outcome:
        log.warning("refused a batch via %s: %s", transport, reason)
        if self._db is not None:
            self._db.count_invalid(vehicle)
        else:
            self._count(vehicle or "", "received", "invalid")
        return Outcome("invalid", bid, vehicle, reason)


def _vehicle_if_readable(payload: bytes) -> str | None:
    """The vehicle of a batch whose body is bad but whose envelope is good, for the counters."""
    try:
        return read_envelope(payload).vehicle_id
    except BatchFormatError:
        return None
