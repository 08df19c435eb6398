"""A progress line on a terminal's stderr; silent when stderr is not a terminal."""

from __future__ import annotations

import os
import stat
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int | None, label: str, stream: TextIO | None = None,
                 interval: float = 0.25) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.label = label
        self.interval = interval
        self._next = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        if self.total:
            share = min(done / self.total, 1.0)
            bar = "#" * int(share * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {share:6.1%}")
        else:
            self.stream.write(f"\r{self.label} {done:,}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def count_lines(path: str) -> int | None:
    """Lines in an uncompressed regular text file (fast); None for compressed or binary
    logs, and for anything that is not a regular file (a pipe can be read only once)."""
    if path.endswith((".gz", ".blf")):
        return None
    total = 0
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                total += block.count(b"\n")
    except OSError:
        return None
    return total
