"""Counters and checksums ("volatile" signals): which signals they are.

A rolling counter or a checksum changes in every frame; it protects the bus and
is not vehicle data. Two things follow: the decoder's change filter leaves
them out of its "did this frame change?" test (otherwise no frame is ever
unchanged), and the selection leaves them out unless asked for
(:meth:`agent.policy.selection.Selector.from_config`).

A signal is volatile when, in this order (the first that says something wins):

1. the configuration's ``selection.volatile`` patterns: the *last* pattern that
   matches decides; a pattern is a glob, matched case-insensitively, and one
   written ``!glob`` says "not volatile" (``["!*"]`` turns recognition off,
   ``["*Cnt*", "!DrLckCnt*"]`` adds and removes);
2. the DBC: a signal attribute ``BavardVolatile`` given to the signal itself
   (``BA_ "BavardVolatile" SG_ 100 MySignal 1;``, 1 = volatile, 0 = not; the
   attribute is declared ``BA_DEF_ SG_ "BavardVolatile" INT 0 1;``). The
   attribute's default (``BA_DEF_DEF_``) is ignored: DBC editors write one for
   every attribute, and it would switch off the name rule for a whole file;
3. its name: the first or the last word of the signal name is one of
   :data:`COUNTER_WORDS` or :data:`CHECKSUM_WORDS`, ignoring case (or ``Count``
   after ``Msg``/``Message``/``Rolling``/``Alive``). Names are cut into words at
   ``_`` and other separators, digits and camelCase humps: ``COUNTER``,
   ``Counter1``, ``ACC_CNT``, ``AliveCounter``, ``CHKSUM``, ``CRC8``,
   ``CF_Clu_AliveCnt1``, ``StePinAn_No_Cs`` (Ford) are volatile; ``ENCNTRL``,
   ``Account``, ``OdoCount`` and ``DrLckCnt_No_ActlTgate`` (a count of door
   locks, whose ``Cnt`` is in the middle) are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from agent.globs import GlobSet

ATTRIBUTE = "BavardVolatile"
COUNTER_WORDS = frozenset({"counter", "cnt", "alive", "aliv"})
CHECKSUM_WORDS = frozenset({"checksum", "chksum", "chksm", "chks", "cksum", "crc", "cs",
                            "parity"})
_COUNT_AFTER = frozenset({"msg", "message", "rolling", "alive"})  # MsgCount, RollingCount
_WORDS = COUNTER_WORDS | CHECKSUM_WORDS
# an acronym before a capitalised word (ACCAlways -> ACC, Always), a capitalised or
# lower-case word, an acronym, a number
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})

__all__ = ["ATTRIBUTE", "CHECKSUM_WORDS", "COUNTER_WORDS", "Volatility", "dbc_attribute",
           "name_words", "volatile_name"]


def name_words(name: str) -> list[str]:
    """``name`` cut into words, lower-cased: ``"CF_Clu_AliveCnt1"`` -> cf clu alive cnt 1."""
    return [w.lower() for w in _TOKEN.findall(name)]


def volatile_name(signal: str) -> bool:
    """True when the signal's name says counter or checksum (rule 3 of the docstring)."""
    words = [w for w in name_words(signal) if not w.isdigit()]
    if not words:
        return False
    ends = {0, len(words) - 1}
    for i in ends:
        if words[i] in _WORDS:
            return True
        if words[i] == "count" and i > 0 and words[i - 1] in _COUNT_AFTER:
            return True
    return False


def dbc_attribute(signal: Any) -> bool | None:
    """The ``BavardVolatile`` attribute given to a cantools signal, or None."""
    specifics = getattr(signal, "dbc", None)
    attributes = getattr(specifics, "attributes", None) or {}
    attribute = attributes.get(ATTRIBUTE)
    if attribute is None:
        return None
    value = attribute.value
    definition = getattr(attribute, "definition", None)
    choices = getattr(definition, "choices", None)
    if getattr(definition, "type_name", "") == "ENUM" and choices and isinstance(value, int):
        value = choices[value] if 0 <= value < len(choices) else value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None  # another value: not ours to interpret


class Volatility:
    """Which signals are counters and checksums, for ``selection.volatile = patterns``."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = tuple(patterns)
        # the last pattern that matches decides: the first match in the reversed list
        backwards = self.patterns[::-1]
        self._backwards = GlobSet((p[1:] if p.startswith("!") else p for p in backwards),
                                  case_sensitive=False)
        self._says = [not p.startswith("!") for p in backwards]

    def __repr__(self) -> str:
        return f"Volatility({self.patterns!r})"

    def by_config(self, message: str, signal: str) -> bool | None:
        """What the patterns say (the last matching one), or None when none matches."""
        if not self.patterns:
            return None
        index = self._backwards.first(message, signal)
        return None if index is None else self._says[index]

    def is_volatile(self, message: str, signal: str, attribute: bool | None = None) -> bool:
        """Rules 1-3 of the module docstring; ``attribute``: the DBC's word, if any."""
        configured = self.by_config(message, signal)
        if configured is not None:
            return configured
        if attribute is not None:
            return attribute
        return volatile_name(signal)

    def of(self, message: Any, signal: Any) -> bool:
        """For a cantools message and one of its signals (reads the DBC attribute)."""
        return self.is_volatile(message.name, signal.name, dbc_attribute(signal))

    def for_databases(self, databases: Iterable[Any]) -> Callable[[str, str], bool]:
        """``volatile(message, signal)`` by names, knowing the DBC attributes of
        ``databases`` (cantools databases); a name they do not hold goes by rules 1 and 3."""
        attributes = {(m.name, s.name): a for db in databases for m in db.messages
                      for s in m.signals if (a := dbc_attribute(s)) is not None}

        def volatile(message: str, signal: str) -> bool:
            return self.is_volatile(message, signal, attributes.get((message, signal)))

        return volatile
