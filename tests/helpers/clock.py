"""A monotonic clock a test moves forward, for the daemon and the store."""

from __future__ import annotations

import time


class Monotonic:
    """The real monotonic clock plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
