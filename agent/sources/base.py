"""What every frame source shares.

A source yields :class:`~agent.frames.Frame` objects from ``frames(stop)``.
The public method does the shared work (counting, honouring the stop event)
and calls one private hook, ``_frames``, that each implementation overrides,
in the style of python-can's ``BusABC.recv`` / ``_recv_internal``.

What the pipeline may rely on for every source, declared here rather than
looked up by name:

* ``live``: a class attribute, False unless the source reads a bus that does
  not wait (a live bus cannot be paused: the pipeline drops what finds its
  queue full instead of blocking the reader);
* ``polled``: a class attribute, False unless the source asks for each frame (OBD):
  its frames come slowly, at the pace of its questions, so the pipeline hands
  them on at least every CHUNK_SECONDS like a live bus's, but a full queue
  makes it wait (it asks later), as a log's reader waits;
* ``bursts``: a class attribute, False unless the source reads in bursts (a live
  socket's queue) and overrides ``_batches``: then ``batches(stop)`` hands the
  pipeline a burst at a time, without the per-frame work of ``frames()``;
* ``on_event``: None, or a callable the source calls in its reading thread with
  an :class:`~agent.frames.Event` (a trouble code that appeared): the pipeline
  hands it on to the store, ahead of frames;
* ``vin``: None, or the VIN the source read from the vehicle (OBD mode 09):
  the service derives the vehicle's pseudonym from it;
* ``on_idle``: None, or a callable the source calls in its reading thread
  when nothing came for a while (a quiet live bus, a gap starting), so that
  the pipeline hands on what it holds;
* ``stats.gaps``, ``stats.in_gap``, ``stats.gap_seconds``: the times reading
  stopped and came back (always 0 for a log or the simulator);
* ``drain()``: once ``frames()`` ended on a stop, what the source received but
  did not yield yet (a live bus's receive queue; nothing for the others);
* ``unreadable()``: once ``frames()`` ended, why what was read looks unreadable
  (a log that gave no frame, or mostly bad lines), or None.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar

from agent.frames import Event, Frame


@dataclass
class SourceStats:
    """Counters a source keeps while it runs."""

    frames: int = 0
    # kind of problem -> how many times it was seen and skipped
    # (e.g. "comment", "error_frame", "bad_hex", "truncated", "remote")
    skipped: Counter[str] = field(default_factory=Counter)
    # gaps: reading stopped (a bus that went down or is absent) until it came back
    gaps: int = 0  # gaps started (counted once each)
    gap_seconds: float = 0.0  # total length of the gaps that ended
    in_gap: bool = False  # a gap is going on now


class Source(ABC):
    """A stream of frames from one channel."""

    #: a live bus, which does not wait for its reader (see the module's docstring)
    live: ClassVar[bool] = False
    #: frames asked for one by one (see the module's docstring)
    polled: ClassVar[bool] = False
    #: reads in bursts: ``batches()`` is the cheap way to read it (see the module's docstring)
    bursts: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()
        #: called in the reading thread when nothing came for a while (live sources)
        self.on_idle: Callable[[], None] | None = None
        #: called in the reading thread with each event the source notices (OBD trouble codes)
        self.on_event: Callable[[Event], None] | None = None
        #: the VIN read from the vehicle, once known (OBD sources)
        self.vin: str | None = None
        self._closed = False

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Yield frames until the source is exhausted or ``stop`` is set."""
        stop = stop if stop is not None else threading.Event()
        stats = self.stats
        for frame in self._frames(stop):
            stats.frames += 1
            yield frame
            if stop.is_set():
                return

    def batches(self, stop: threading.Event | None = None) -> Iterator[list[Frame]]:
        """Like :meth:`frames`, a non-empty list of frames at a time."""
        stop = stop if stop is not None else threading.Event()
        stats = self.stats
        for batch in self._batches(stop):
            stats.frames += len(batch)
            yield batch
            if stop.is_set():
                return

    def _batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        """Hook: the frames in lists; one frame a list unless overridden (``bursts``)."""
        for frame in self._frames(stop):
            yield [frame]

    @abstractmethod
    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        """The implementation's frames; return when exhausted or when ``stop`` is set."""

    def drain(self) -> list[Frame]:
        """After ``frames()`` ended on a stop: the frames the source already holds (a live
        bus's receive queue), counted like the others. Call in the reading thread."""
        frames = self._drain()
        self.stats.frames += len(frames)
        return frames

    def _drain(self) -> list[Frame]:
        """Hook: frames received but not yet yielded (none unless overridden)."""
        return []

    def unreadable(self) -> str | None:
        """Why the input looks unreadable once it has been read to its end, or None
        (always None unless overridden: a bus or the simulator is never "unreadable")."""
        return None

    def close(self) -> None:
        """Release what the source holds. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Hook: release resources (bus, file). Called once."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
