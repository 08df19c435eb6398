"""A source read in a thread of its own, its frames decoded, every wait bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.frames import Event, Frame


class SourceReader:
    """``source.frames()`` in a thread; each frame through ``decoder.decode`` into
    ``values`` (signal name -> value); the source's events kept in ``events``."""

    strict = False  # True: every frame must decode

    def __init__(self, source: Any, decoder: Any) -> None:
        self.source = source
        self.decoder = decoder
        self.frames: list[Frame] = []
        self.values: list[dict[str, float]] = []
        self.events: list[Event] = []
        self.stop = threading.Event()
        source.on_event = self.events.append
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for frame in self.source.frames(self.stop):
            self.frames.append(frame)
            decoded = self.decoder.decode(frame)
            assert decoded is not None or not self.strict, frame
            if decoded is not None:
                self.values.append(dict(zip((s.name for s in decoded.signals), decoded.values,
                                            strict=True)))

    def __enter__(self) -> SourceReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.source.close()

    def wait_for(self, what: Callable[[], object], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert self.thread.is_alive(), "the source ended"
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)
