"""The bounded queue between the pipeline and the writer thread.

Producers hand over lists of items of one class; the writer takes everything
queued at once. The bound is ``queue_items`` items over all classes.

Overflow policy, chosen per call:

- ``block=True`` (log replay, simulator, and the pipeline's single consumer
  thread): wait for room; nothing is lost and the producer slows down to the
  writer's pace. A list larger than the whole bound is let in when the queue
  is empty. ``close()`` wakes every waiting producer; what it then puts is
  dropped and counted.
- ``block=False`` (live sources that cannot wait): make room by dropping
  queued items of *lower* classes, oldest first; if that is not enough, drop
  the incoming list. Every dropped item is counted per class
  (``dropped_queue.<class>``).

The inbox also carries the writer's control requests (next_batch, ack, ...),
so that one condition variable wakes the writer for data, requests and stop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agent.errors import StoreError
from agent.store.settings import Kind

Request = tuple[Callable[[], Any], "Future[Any]"]


@dataclass
class Work:
    """What the writer took in one go."""

    items: dict[Kind, list[Sequence[Any]]]
    count: int
    dropped: dict[Kind, int]
    requests: list[Request]
    closing: bool


@dataclass
class Inbox:
    capacity: int  # items over all classes
    wake_items: int  # wake the writer when this many are queued (its commit_items)
    monotonic: Callable[[], float] = time.monotonic
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _lists: dict[Kind, deque[Sequence[Any]]] = field(
        default_factory=lambda: {k: deque() for k in Kind})
    _total: int = 0
    _first_at: float = 0.0  # when the oldest queued item came in
    _dropped: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    _requests: deque[Request] = field(default_factory=deque)
    _closing: bool = False
    _finished: bool = False

    # -- producers -----------------------------------------------------------------------

    def put(self, kind: Kind, items: Sequence[Any], block: bool = True) -> bool:
        """Queue ``items``; False when they were dropped (see the module's policy)."""
        n = len(items)
        if not n:
            return True
        with self._cond:
            if block:
                while not self._closing and self._total and self._total + n > self.capacity:
                    self._cond.wait()
            if self._closing:  # before making room: queued items are still committed
                self._dropped[kind] += n
                return False
            if not block and self._total + n > self.capacity:
                self._make_room(kind, self._total + n - self.capacity)
                if self._total + n > self.capacity:
                    self._dropped[kind] += n
                    return False
            if not self._total:
                self._first_at = self.monotonic()
                self._cond.notify_all()
            self._lists[kind].append(items)
            self._total += n
            if self._total >= self.wake_items > self._total - n:
                self._cond.notify_all()
            return True

    def _make_room(self, kind: Kind, need: int) -> None:
        """Drop queued lists of lower classes, lowest class and oldest first."""
        for lower in Kind:
            if lower >= kind:
                return
            lists = self._lists[lower]
            while lists and need > 0:
                dropped = len(lists.popleft())
                self._total -= dropped
                self._dropped[lower] += dropped
                need -= dropped
            if need <= 0:
                return

    def request(self, call: Callable[[], Any]) -> Future[Any]:
        """Have the writer thread run ``call``; its result or exception lands in the future."""
        future: Future[Any] = Future()
        with self._cond:
            if self._finished:
                future.set_exception(StoreError("the store is closed"))
                return future
            self._requests.append((call, future))
            self._cond.notify_all()
        return future

    def close(self) -> None:
        """Ask the writer to finish: it takes what is queued, commits it and stops."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def finish(self, unanswered: Iterable[Request] = ()) -> None:
        """The writer has stopped: refuse further requests, and fail those it will not run
        (queued, or taken but not run: ``unanswered``) unless their caller gave up."""
        with self._cond:
            self._closing = self._finished = True
            left = [*unanswered, *self._requests]
            self._requests.clear()
            self._cond.notify_all()
        for _call, future in left:
            if not future.done() and (future.running() or future.set_running_or_notify_cancel()):
                future.set_exception(StoreError("the store is closed"))

    @property
    def depth(self) -> int:
        return self._total

    # -- the writer ----------------------------------------------------------------------

    def wait(self, commit_interval: float, max_wait: float) -> Work:
        """Wait until there is something to do, then take it all.

        Returns when a request is queued, the inbox is closing, ``wake_items``
        are queued, the oldest queued item has waited ``commit_interval``, or
        after ``max_wait`` (for the writer's housekeeping).
        """
        with self._cond:
            end = self.monotonic() + max_wait
            while not (self._requests or self._closing or self._total >= self.wake_items):
                now = self.monotonic()
                timeout = end - now
                if self._total:
                    timeout = min(timeout, self._first_at + commit_interval - now)
                if timeout <= 0:
                    break
                self._cond.wait(timeout)
            work = Work(items={k: list(v) for k, v in self._lists.items() if v},
                        count=self._total, dropped=self._dropped, requests=list(self._requests),
                        closing=self._closing)
            for lists in self._lists.values():
                lists.clear()
            self._total = 0
            self._dropped = dict.fromkeys(Kind, 0)
            self._requests.clear()
            self._cond.notify_all()  # producers waiting for room
            return work
