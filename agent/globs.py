"""Signal globs: the one way the configuration names signals.

A glob with a dot matches ``Message.Signal``; a glob without one matches the
signal name alone. ``*``, ``?`` and ``[...]`` work as in :mod:`fnmatch`.
Selection and rules match case-sensitively, like DBC names; the volatile
patterns match case-insensitively (:mod:`agent.volatile`).

Both the decoder (which signals are counters) and the policy (selection,
rules) use these, so this module depends on neither.

:class:`GlobSet` compiles a list of globs once. A glob without wildcards is a
dictionary look-up; one with wildcards is a regular expression, tried only
when the name contains a piece of its plain text (an index of anchors), so a
look-up over 10,000 globs tries a handful of them, not 10,000 ``fnmatch``
calls (which took 3.5 minutes to start with 100,000 ``[[signals]]`` rules
over the Ford DBC's 2,150 signals; 10,000 rules of either kind now take
well under a second).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

FEW = 32  # up to this many wildcard globs are simply tried in order
ANCHOR = 6  # characters of a glob's longest plain run that index it
_WILDCARDS = frozenset("*?[")

__all__ = ["GlobSet", "glob_matches", "has_wildcard", "signal_names", "unmatched_globs"]


def has_wildcard(pattern: str) -> bool:
    """True when ``pattern`` has a ``*``, ``?`` or ``[``: it is not a literal name."""
    return not _WILDCARDS.isdisjoint(pattern)


def glob_matches(pattern: str, message: str, signal: str, *, case_sensitive: bool = True) -> bool:
    """One glob against one signal (see the module docstring)."""
    return GlobSet((pattern,), case_sensitive=case_sensitive).matches(message, signal)


def literal_runs(pattern: str) -> list[str]:
    """The runs of plain characters that every name ``pattern`` matches contains, read
    as :func:`fnmatch.translate` reads the glob (a ``[`` without a ``]`` is plain)."""
    runs: list[str] = []
    current: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c in "*?":
            runs.append("".join(current))
            current = []
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                current.append(c)
            else:
                runs.append("".join(current))
                current = []
                i = j + 1
        else:
            current.append(c)
    runs.append("".join(current))
    return [r for r in runs if r]


class _Wild:
    """Wildcard globs of one kind (dotted, or signal name only), compiled once.

    With more than :data:`FEW` globs, each is indexed by an *anchor*: up to
    :data:`ANCHOR` characters of its longest plain run, which any name it
    matches contains. A look-up then tries only the globs whose anchor is a
    substring of the name (a dictionary look-up per substring of those lengths),
    plus those without an anchor (``*``, ``?*``): not every glob."""

    def __init__(self, case_sensitive: bool) -> None:
        self.fold = (lambda text: text) if case_sensitive else str.lower
        self.flags = 0 if case_sensitive else re.IGNORECASE
        self.compiled: dict[int, re.Pattern[str]] = {}
        self.order: list[int] = []  # every index, ascending
        self.free: list[int] = []  # indices of globs without an anchor, ascending
        self.by_anchor: dict[str, list[int]] = {}
        self.lengths: list[int] = []

    def add(self, index: int, pattern: str) -> None:
        self.compiled[index] = re.compile(fnmatch.translate(pattern), self.flags)
        self.order.append(index)
        runs = literal_runs(pattern)
        longest = max(runs, key=len) if runs else ""
        if not longest or not longest.isascii():  # lower() and IGNORECASE may disagree
            self.free.append(index)
        else:
            self.by_anchor.setdefault(self.fold(longest[:ANCHOR]), []).append(index)

    def finish(self) -> None:
        self.lengths = sorted({len(a) for a in self.by_anchor})

    def candidates(self, name: str, bound: int) -> list[int]:
        """Indices below ``bound`` of the globs that may match ``name``, ascending."""
        if len(self.order) <= FEW:
            return [i for i in self.order if i < bound]
        key = self.fold(name)
        found = [i for i in self.free if i < bound]
        by_anchor = self.by_anchor
        for length in self.lengths:
            for start in range(len(key) - length + 1):
                hit = by_anchor.get(key[start:start + length])
                if hit is not None:
                    found.extend(i for i in hit if i < bound)
        return sorted(set(found))

    def first(self, name: str, bound: int) -> int | None:
        compiled = self.compiled
        for index in self.candidates(name, bound):
            if compiled[index].match(name) is not None:
                return index
        return None


class _Family:
    """Globs of one kind (dotted, or signal name only): literal ones in a dictionary,
    wildcard ones in a :class:`_Wild`."""

    def __init__(self, case_sensitive: bool) -> None:
        self.fold = (lambda text: text) if case_sensitive else str.lower
        self.literal: dict[str, int] = {}  # name -> index of the first literal glob
        self.wild = _Wild(case_sensitive)

    def add(self, index: int, pattern: str) -> None:
        if has_wildcard(pattern):
            self.wild.add(index, pattern)
        else:
            self.literal.setdefault(self.fold(pattern), index)

    def first(self, name: str, limit: int) -> int | None:
        """The index of the first glob matching ``name``, if below ``limit``."""
        best = self.literal.get(self.fold(name))
        if best is not None and best >= limit:
            best = None
        found = self.wild.first(name, limit if best is None else best)
        return found if found is not None else best


class GlobSet:
    """A list of globs compiled once.

    ``first(message, signal)`` is the index of the first glob that matches (the
    rules: first match wins), ``matches`` whether any does.
    """

    def __init__(self, patterns: Iterable[str], *, case_sensitive: bool = True) -> None:
        self.patterns = tuple(patterns)
        self.case_sensitive = case_sensitive
        self._dotted = _Family(case_sensitive)
        self._plain = _Family(case_sensitive)
        for index, pattern in enumerate(self.patterns):
            (self._dotted if "." in pattern else self._plain).add(index, pattern)
        self._dotted.wild.finish()
        self._plain.wild.finish()

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
    unique = list(dict.fromkeys(globs))
    matched: set[int] = set()
    for dotted in (True, False):
        wild = _Wild(case_sensitive)
        subjects = dict.fromkeys(f"{m}.{s}" if dotted else s for m, s in names)
        literal = {wild.fold(n) for n in subjects}
        for index, pattern in enumerate(unique):
            if ("." in pattern) != dotted:
                continue
            if has_wildcard(pattern):
                wild.add(index, pattern)
            elif wild.fold(pattern) in literal:
                matched.add(index)
        wild.finish()
        end = len(unique)
        waiting = set(wild.order)
        for name in subjects:
            if not waiting:
                break
            for index in wild.candidates(name, end):
                if index in waiting and wild.compiled[index].match(name) is not None:
                    waiting.discard(index)
                    matched.add(index)
    return [p for i, p in enumerate(unique) if i not in matched]
