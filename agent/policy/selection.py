"""Which signals are selected, by include/exclude globs.

A glob with a dot matches ``Message.Signal``; a glob without one matches the
signal name alone (:mod:`agent.globs`). A signal is selected when an include
glob matches it and no exclude glob does. Matching is case-sensitive, like DBC
names.

Counters and checksums (:mod:`agent.volatile`) protect the bus; they are not
vehicle data. :meth:`Selector.from_config` leaves them out, unless
``selection.include_volatile = true`` or an ``include`` entry names the signal
without wildcards (``"Steering.Steering_Counter"``, ``"COUNTER"``): then the
include/exclude globs decide as for any other signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agent.config import SelectionConfig
from agent.globs import GlobSet, has_wildcard
from agent.volatile import Volatility


class Selector:
    """``selector(message, signal)`` is True when the signal is selected.

    ``volatile(message, signal)``, when given, tells the counters and checksums,
    which are then left out unless an include entry without wildcards names them.
    """

    def __init__(self, include: Iterable[str] = ("*",), exclude: Iterable[str] = (),
                 volatile: Callable[[str, str], bool] | None = None) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.volatile = volatile
        self._include = GlobSet(self.include)
        self._exclude = GlobSet(self.exclude)
        self._named = GlobSet(p for p in self.include if not has_wildcard(p))

    @classmethod
    def from_config(cls, selection: SelectionConfig, databases: Iterable[Any] = ()) -> Selector:
        """The selection ``[selection]`` describes, counters and checksums left out by
        default; ``databases`` (cantools) give the ``BavardVolatile`` attributes."""
        volatile = None
        if not selection.include_volatile:
            volatile = Volatility(selection.volatile).for_databases(databases)
        return cls(selection.include, selection.exclude, volatile)

    def __call__(self, message: str, signal: str) -> bool:
        if not self._include.matches(message, signal) or self._exclude.matches(message, signal):
            return False
        volatile = self.volatile
        return (volatile is None or not volatile(message, signal)
                or self._named.matches(message, signal))
