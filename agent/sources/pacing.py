"""Pace a stream of timestamped items: as fast as possible, real time, or xN."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Wait so that items come out at ``speed`` times the rate of their timestamps.

    ``speed == 0`` means as fast as possible (never waits). Waiting uses
    ``stop.wait`` so that a stop request interrupts it at once; ``clock`` is
    injected so tests can run on a virtual clock.
    """

    def __init__(
        self,
        speed: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._clock = clock
        self._wait = wait if wait is not None else stop.wait
        self._origin: tuple[float, float] | None = None  # (first timestamp, clock then)

    def pace(self, timestamp: float) -> None:
        """Return when the item stamped ``timestamp`` is due."""
        if self.speed == 0:
            return
        if self._origin is None:
            self._origin = (timestamp, self._clock())
            return
        ts0, clock0 = self._origin
        due = clock0 + (timestamp - ts0) / self.speed
        delay = due - self._clock()
        if delay > 0:
            # a timestamp years ahead waits until stop, instead of an OverflowError
            self._wait(min(delay, threading.TIMEOUT_MAX))
