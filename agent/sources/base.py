"""What every frame source shares.

A source yields :class:`~agent.frames.Frame` objects from ``frames(stop)``.
The public method does the shared work (counting, honouring the stop event)
and calls one private hook, ``_frames``, that each implementation overrides,
in the style of python-can's ``BusABC.recv`` / ``_recv_internal``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from agent.frames import Frame


@dataclass
class SourceStats:
    """Counters a source keeps while it runs."""

    frames: int = 0
    # kind of problem -> how many times it was seen and skipped
    # (e.g. "comment", "error_frame", "bad_hex", "truncated", "remote")
    skipped: Counter[str] = field(default_factory=Counter)


class Source(ABC):
    """A stream of frames from one channel."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()
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

    @abstractmethod
    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        """The implementation's frames; return when exhausted or when ``stop`` is set."""

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
