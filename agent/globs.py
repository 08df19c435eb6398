"""Signal globs: the one way the configuration names signals.

A glob with a dot matches ``Message.Signal``; a glob without one matches the
signal name alone. ``*``, ``?`` and ``[...]`` work as in :mod:`fnmatch`.
Selection and rules match case-sensitively, like DBC names; the volatile
patterns match case-insensitively (:mod:`agent.volatile`).

Both the decoder (which signals are counters) and the policy (selection,
rules) use these, so this module depends on neither.

:class:`GlobSet` compiles a list of globs once. A glob without wildcards is a
dictionary look-up; the others are joined, up to :data:`CHUNK` at a time, into
one regular expression each, so a look-up over 10,000 globs costs a few
hundred regex calls, not 10,000 ``fnmatch`` calls (which took 3.5 minutes to
start with 100,000 ``[[signals]]`` rules and the Ford DBC's 2,150 signals).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

CHUNK = 64  # wildcard globs per combined regular expression
_WILDCARDS = frozenset("*?[")

__all__ = ["GlobSet", "glob_matches", "has_wildcard", "signal_names", "unmatched_globs"]


def has_wildcard(pattern: str) -> bool:
    """True when ``pattern`` has a ``*``, ``?`` or ``[``: it is not a literal name."""
    return not _WILDCARDS.isdisjoint(pattern)


def glob_matches(pattern: str, message: str, signal: str, *, case_sensitive: bool = True) -> bool:
    """One glob against one signal (see the module docstring)."""
    return GlobSet((pattern,), case_sensitive=case_sensitive).matches(message, signal)


class _Family:
    """Globs of one kind (dotted, or signal name only), compiled."""

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.literal: dict[str, int] = {}  # name -> index of the first literal glob
        self.wild: list[tuple[int, str]] = []  # (index, glob), in order
        self._chunks: list[tuple[int, re.Pattern[str], list[tuple[int, re.Pattern[str]]]]] = []

    def add(self, index: int, pattern: str) -> None:
        if has_wildcard(pattern):
            self.wild.append((index, pattern))
        else:
            self.literal.setdefault(pattern.casefold() if self.flags else pattern, index)

    def compile(self) -> None:
        for start in range(0, len(self.wild), CHUNK):
            part = self.wild[start:start + CHUNK]
            singles = [(i, re.compile(fnmatch.translate(p), self.flags)) for i, p in part]
            joined = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for _, p in part),
                                self.flags)
            self._chunks.append((part[0][0], joined, singles))

    def first(self, name: str, limit: int) -> int | None:
        """The index of the first glob matching ``name``, if below ``limit``."""
        best = self.literal.get(name.casefold() if self.flags else name)
        if best is not None and best >= limit:
            best = None
        bound = limit if best is None else best
        for start, joined, singles in self._chunks:
            if start >= bound:
                break
            if joined.match(name) is None:
                continue
            for index, single in singles:
                if index >= bound:
                    break
                if single.match(name) is not None:
                    return index
        return best


class GlobSet:
    """A list of globs compiled once.

    ``first(message, signal)`` is the index of the first glob that matches (the
    rules: first match wins), ``matches`` whether any does.
    """

    def __init__(self, patterns: Iterable[str], *, case_sensitive: bool = True) -> None:
        self.patterns = tuple(patterns)
        self.case_sensitive = case_sensitive
        flags = 0 if case_sensitive else re.IGNORECASE
        self._dotted = _Family(flags)
        self._plain = _Family(flags)
        for index, pattern in enumerate(self.patterns):
            (self._dotted if "." in pattern else self._plain).add(index, pattern)
        self._dotted.compile()
        self._plain.compile()

    def __len__(self) -> int:
        return len(self.patterns)

    def __repr__(self) -> str:
        return f"GlobSet({self.patterns!r}, case_sensitive={self.case_sensitive})"

    def first(self, message: str, signal: str) -> int | None:
        end = len(self.patterns)
        plain = self._plain.first(signal, end)
        dotted = self._dotted.first(f"{message}.{signal}", end if plain is None else plain)
        return dotted if dotted is not None else plain

    def matches(self, message: str, signal: str) -> bool:
        return self.first(message, signal) is not None


def signal_names(databases: Iterable[Any]) -> list[tuple[str, str]]:
    """``(message, signal)`` of every signal of cantools ``databases``, in order."""
    return [(m.name, s.name) for db in databases for m in db.messages for s in m.signals]


def unmatched_globs(globs: Sequence[str], databases: Iterable[Any], *,
                    case_sensitive: bool = True) -> list[str]:
    """The globs of ``globs`` that match no signal of any of ``databases`` (cantools
    databases), once each, in their order: a typo, or a DBC other than the one meant.
    Callers warn about them (``config check``, the service's log, ``decode --signals``)."""
    names = signal_names(databases)
    flags = 0 if case_sensitive else re.IGNORECASE

    def fold(text: str) -> str:
        return text if case_sensitive else text.casefold()

    subjects = {True: list(dict.fromkeys(f"{m}.{s}" for m, s in names)),
                False: list(dict.fromkeys(s for _, s in names))}
    literals = {dotted: {fold(n) for n in subjects[dotted]} for dotted in (True, False)}
    unique = list(dict.fromkeys(globs))
    matched: set[str] = set()
    wild: dict[bool, list[str]] = {True: [], False: []}
    for pattern in unique:
        dotted = "." in pattern
        if has_wildcard(pattern):
            wild[dotted].append(pattern)
        elif fold(pattern) in literals[dotted]:
            matched.add(pattern)
    for dotted, patterns in wild.items():
        for start in range(0, len(patterns), CHUNK):
            part = patterns[start:start + CHUNK]
            joined = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in part), flags)
            # only a name that one of the chunk's globs matches can match any of them
            candidates = [n for n in subjects[dotted] if joined.match(n) is not None]
            for pattern in part:
                single = re.compile(fnmatch.translate(pattern), flags)
                if any(single.match(n) is not None for n in candidates):
                    matched.add(pattern)
    return [p for p in unique if p not in matched]
