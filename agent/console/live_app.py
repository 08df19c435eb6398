"""Run ``bavard live``'s full-screen table.

The screen: the feed runs in a thread and adds to the model under a lock; the main
thread reads the keys, draws at most :data:`REFRESH` times a second (at once after a
key) with rich's ``Live`` on the terminal's alternate screen, and on the way out (q,
Ctrl-C, SIGTERM, SIGHUP) stops the feed and gives the terminal back as it was.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.live import Live

from agent.console import keys as k
from agent.console.keys import RawKeys
from agent.console.live_feed import Feed
from agent.console.live_model import LiveModel, LiveSample
from agent.console.live_view import render
from agent.errors import BavardError

REFRESH = 4.0  # screen updates per second
JOIN = 2.0  # seconds the feed's thread may take to stop


class LiveScreen:
    """The table on ``console`` (rich), fed by ``feed``, driven by ``keys``."""

    def __init__(self, feed: Feed, console: Any, keys: RawKeys,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.feed = feed
        self.console = console
        self.keys = keys
        self.clock = clock
        self.model = LiveModel(clock)
        self.model.known = feed.known
        self.model.selected = feed.selected
        self.stop = threading.Event()
        self.quit = threading.Event()
        self._lock = threading.Lock()
        self._page = 1

    def _sink(self, samples: list[LiveSample], dropped: int, unreadable: int) -> None:
        with self._lock:
            self.model.add(samples)
            self.model.dropped += dropped
            self.model.unreadable += unreadable

    def _feed(self) -> None:
        try:
            why = self.feed.run(self._sink, self.stop)
        except BavardError as exc:
            why = str(exc)
        except Exception as exc:  # a bug: shown, not a silent frozen table
            why = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.model.ended = why

    def run(self) -> int:
        thread = threading.Thread(target=self._feed, name="live-feed", daemon=True)
        with signals_end(self.quit), self.keys, \
                Live(console=self.console, screen=True, auto_refresh=False) as live:
            thread.start()
            try:
                self._loop(live)
            except KeyboardInterrupt:
                pass
            finally:
                self.stop.set()
                self.feed.interrupt()
                thread.join(JOIN)
                self.feed.close()
        return 0

    def _loop(self, live: Any) -> None:
        next_draw = 0.0
        while not self.quit.is_set():
            pressed = self.keys.read(max(0.0, min(next_draw - self.clock(), 1 / REFRESH)))
            for key in pressed:
                self._key(key)
            if pressed or self.clock() >= next_draw:
                with self._lock:
                    screen, self._page = render(self.model, self.feed.label,
                                                self.console.size.height)
                live.update(screen, refresh=True)
                next_draw = self.clock() + 1 / REFRESH

    def _key(self, key: str) -> None:
        model = self.model
        with self._lock:
            shown = len(model.view())
            moves = {k.UP: -1, k.DOWN: 1, k.PAGE_UP: -self._page, k.PAGE_DOWN: self._page,
                     k.HOME: -shown, k.END: shown}
            if key in moves:
                model.scroll(moves[key], shown, self._page)
            elif key == k.ESC or key == k.CLEAR_LINE:
                model.set_filter("")
            elif key == k.BACKSPACE:
                model.backspace()
            elif key == " ":
                model.toggle_pause()
            elif key in ("q", "Q") and not model.filter:
                self.quit.set()
            elif len(key) == 1:
                model.type_char(key)


@contextlib.contextmanager
def signals_end(event: threading.Event, then: Callable[[], None] | None = None
                ) -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) set ``event`` (and call ``then``)
    instead of killing the process, so the terminal is restored on the way out."""
    def handler(signum: int, frame: object) -> None:
        event.set()
        if then is not None:
            then()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
