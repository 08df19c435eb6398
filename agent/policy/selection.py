"""Which signals are selected, by include/exclude globs.

A glob with a dot matches ``Message.Signal``; a glob without one matches the
signal name alone. A signal is selected when an include glob matches it and
no exclude glob does. Matching is case-sensitive, like DBC names.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase


def glob_matches(pattern: str, message: str, signal: str) -> bool:
    if "." in pattern:
        return fnmatchcase(f"{message}.{signal}", pattern)
    return fnmatchcase(signal, pattern)


def any_matches(patterns: Iterable[str], message: str, signal: str) -> bool:
    return any(glob_matches(p, message, signal) for p in patterns)


class Selector:
    """``selector(message, signal)`` is True when the signal is selected."""

    def __init__(self, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)

    def __call__(self, message: str, signal: str) -> bool:
        return any_matches(self.include, message, signal) and not any_matches(
            self.exclude, message, signal
        )
