"""One signal's values in one group: a column.

A column has a presence bitmap over the group's rows (``present``, left out when every
row has a value), the values in one of three kinds, optional labels and optional flags:

* ``int``: every value an int, stored as deltas; those that do not fit int64 deltas
  (at most half) go to the exceptions ``exc_index``/``exc_value``.
* ``scaled``: every value a float equal, bit for bit, to ``raw * scale + offset`` for an
  integer raw, stored as raw deltas with the scale and offset; the values without such a
  raw (at most half) are exceptions.
* ``plain``: the values themselves.

Labels as ``label_map`` [[value, label]...] when each value has one label, else as
``labels``, one per value; flags as ``flag_index``/``flag_value`` for the non-zero ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

from agent.batch.exact import INT64_MAX, INT64_MIN, MAX_EXACT, exact_multiples, same
from agent.batch.model import SignalMeta
from agent.batch.validate import fail, get, int_list, kind_of, number
from agent.errors import BatchFormatError

# (signal, unit, rows, values, labels, flags)
DecodedColumn = tuple[str, str, list[int], list[Any], list[str | None], list[int]]


def deltas(xs: Sequence[int]) -> list[int]:
    """The first int, then the differences to the previous one."""
    return [xs[0], *(b - a for a, b in itertools.pairwise(xs))] if xs else []


# -- encode ----------------------------------------------------------------------------------


def encode_column(signal: str, unit: str, rows: list[int], n: int, values: list[Any],
                  labels: list[Any], flags: list[Any], meta: SignalMeta | None
                  ) -> dict[str, Any]:
    """The column of ``signal`` with ``unit``, with values in ``rows`` of a group of ``n``."""
    col: dict[str, Any] = {"signal": signal, "unit": unit}
    if len(rows) < n:
        bitmap = bytearray((n + 7) // 8)
        for r in rows:
            bitmap[r >> 3] |= 1 << (r & 7)
        col["present"] = bytes(bitmap)
    col.update(_encode_values(values, meta))
    col.update(_encode_labels(values, labels))
    if not all(type(f) is int and INT64_MIN <= f <= INT64_MAX for f in flags):
        bad = next(f for f in flags if not (type(f) is int and INT64_MIN <= f <= INT64_MAX))
        raise BatchFormatError(f"{signal}: flags must be int64, not {bad!r}")
    if any(flags):
        nonzero = [i for i, f in enumerate(flags) if f]
        col["flag_index"] = nonzero
        col["flag_value"] = [flags[i] for i in nonzero]
    return col


def _encode_values(values: list[Any], meta: SignalMeta | None) -> dict[str, Any]:
    """Kind ``int`` (deltas), ``scaled`` (raw deltas, scale, offset) or ``plain``; ``int``
    and ``scaled`` take the values they cannot hold (at most half) as exceptions."""
    n = len(values)
    if all(type(v) is int for v in values):
        encoded = _int_deltas(values)
        if len(encoded["exc_index"]) * 2 <= n:
            return {"kind": "int", **_drop_empty(encoded)}
    elif all(type(v) is float for v in values):
        best: dict[str, Any] | None = None
        for scale, offset in _scale_candidates(values, meta):
            scaled = _scaled(values, scale, offset, n // 2)
            if scaled is not None and (
                    best is None or len(scaled["exc_index"]) < len(best["exc_index"])):
                best = scaled
                if not best["exc_index"]:
                    break
        if best is not None:
            return {"kind": "scaled", **_drop_empty(best)}
    if not all(type(v) in (int, float, bool) for v in values):
        bad = next(v for v in values if type(v) not in (int, float, bool))
        raise BatchFormatError(f"a value must be an int or a float, not {bad!r}")
    return {"kind": "plain", "values": values}


def _drop_empty(encoded: dict[str, Any]) -> dict[str, Any]:
    if not encoded["exc_index"]:
        del encoded["exc_index"], encoded["exc_value"]
    return encoded


def _int_deltas(values: list[int]) -> dict[str, Any]:
    stored: list[int] = []
    exc_index: list[int] = []
    prev = 0
    for i, v in enumerate(values):
        d = v - prev
        if INT64_MIN <= v <= INT64_MAX and INT64_MIN <= d <= INT64_MAX:
            stored.append(d)
            prev = v
        else:  # the previous value again (delta 0), the real one in the exceptions
            stored.append(0)
            exc_index.append(i)
    return {"values": stored, "exc_index": exc_index,
            "exc_value": [values[i] for i in exc_index]}


def _scale_candidates(values: list[float], meta: SignalMeta | None
                      ) -> Iterator[tuple[float, float]]:
    """(scale, offset) pairs to try, best guess first: the DBC's; without one (or when it
    does not fit), the smallest step between the first values, the power of ten below it;
    then 1."""
    tried: set[tuple[float, float]] = set()

    def fresh(candidate: tuple[float, float]) -> bool:
        new = candidate not in tried and candidate[0] != 0 and all(
            math.isfinite(x) for x in candidate)
        tried.add(candidate)
        return new

    if meta is not None and isinstance(meta.scale, int | float) and isinstance(
            meta.offset, int | float):
        try:
            candidate = (float(meta.scale), float(meta.offset))
        except OverflowError:
            candidate = (0.0, 0.0)
        if fresh(candidate):
            yield candidate
    finite = [v for v in itertools.islice(values, 256) if math.isfinite(v)]
    steps = [abs(b - a) for a, b in itertools.pairwise(finite) if b != a]
    smallest = float(f"{min(steps, default=0.0):.12g}")  # 0.30000000000000004 - 0.2 -> 0.1
    if 1e-9 <= smallest < 1e9:
        decade = float(f"1e{math.floor(math.log10(smallest))}")
        for candidate in ((smallest, 0.0), (decade, 0.0)):
            if fresh(candidate):
                yield candidate
    if fresh(candidate := (1.0, 0.0)):
        yield candidate


def _scaled(values: list[float], scale: float, offset: float, max_exceptions: int
            ) -> dict[str, Any] | None:
    """Raw ints with ``raw * scale + offset == value`` bit for bit, delta-encoded; None
    when more than ``max_exceptions`` values do not fit."""
    fast = exact_multiples(values, 1.0 / scale, offset, scale)
    if fast is not None:
        return {"values": deltas(fast), "scale": scale, "offset": offset,
                "exc_index": [], "exc_value": []}
    raws: list[int] = []
    exc_index: list[int] = []
    prev = 0
    for i, v in enumerate(values):
        raw = None
        if math.isfinite(v):
            try:
                guess = round((v - offset) / scale)
            except (OverflowError, ValueError, ZeroDivisionError):
                guess = None
            if guess is not None and abs(guess) <= MAX_EXACT:
                for r in (guess, guess - 1, guess + 1):
                    if same(r * scale + offset, v):
                        raw = r
                        break
        if raw is None:
            raws.append(prev)
            exc_index.append(i)
            if len(exc_index) > max_exceptions:
                return None
        else:
            raws.append(raw)
            prev = raw
    return {"values": deltas(raws), "scale": scale, "offset": offset,
            "exc_index": exc_index, "exc_value": [values[i] for i in exc_index]}


def _encode_labels(values: list[Any], labels: list[str | None]) -> dict[str, Any]:
    """``label_map`` [[value, label]...] when each value has one label; else ``labels``."""
    if all(label is None for label in labels):
        return {}
    if not all(label is None or type(label) is str for label in labels):
        bad = next(x for x in labels if not (x is None or type(x) is str))
        raise BatchFormatError(f"a label must be a str or None, not {bad!r}")
    mapping: dict[Any, str] = {}
    consistent = True
    for v, label in zip(values, labels, strict=True):
        if label is None:
            continue
        if v != v or mapping.setdefault(v, label) != label:  # NaN is no key
            consistent = False
            break
    if consistent and all(mapping.get(v) == label for v, label in zip(values, labels,
                                                                      strict=True)):
        return {"label_map": [[v, label] for v, label in mapping.items()]}
    return {"labels": list(labels)}


# -- decode ----------------------------------------------------------------------------------


def decode_column(col: dict[str, Any], n: int, where: str) -> DecodedColumn:
    """A column of a group of ``n`` rows, checked."""
    signal = get(col, "signal", str, where)
    unit = get(col, "unit", str, where)
    rows = _rows_of(get(col, "present", bytes, where, optional=True), n, where)
    count = len(rows)
    kind = get(col, "kind", str, where)
    if kind == "plain":
        values = get(col, "values", list, where)
        if len(values) != count:
            fail(f"{where}.values", f"{len(values)} values for {count} rows present")
        for v in values:
            if type(v) not in (int, float, bool):
                fail(f"{where}.values", f"expected numbers, got {kind_of(v)}")
    elif kind in ("int", "scaled"):
        stored = int_list(col, "values", where, length=count, hi=INT64_MAX)
        values = list(itertools.accumulate(stored))
        if kind == "int":
            if not all(INT64_MIN <= v <= INT64_MAX for v in values):
                fail(f"{where}.values", "a value beyond int64")
        else:
            if not all(-MAX_EXACT <= v <= MAX_EXACT for v in values):
                fail(f"{where}.values", "a raw value beyond ±2**53")
            scale = get(col, "scale", float, where)
            offset = get(col, "offset", float, where)
            values = [r * scale + offset for r in values]
        exc_index = int_list(col, "exc_index", where, optional=True, lo=0, hi=count - 1)
        exc_value = get(col, "exc_value", list, where, optional=bool(not exc_index)) or []
        if len(exc_value) != len(exc_index) or any(
                b <= a for a, b in itertools.pairwise(exc_index)):
            fail(f"{where}.exc_index", "exceptions must be ascending, one value each")
        for i, v in zip(exc_index, exc_value, strict=True):
            values[i] = number(v, f"{where}.exc_value")
    else:
        fail(f"{where}.kind", f"unknown value kind {kind!r} (int, scaled, plain)")
    labels = _decode_labels(col, values, where)
    flags = [0] * count
    flag_index = int_list(col, "flag_index", where, optional=True, lo=0, hi=count - 1)
    flag_value = int_list(col, "flag_value", where, optional=True, length=len(flag_index),
                          hi=INT64_MAX)
    if any(b <= a for a, b in itertools.pairwise(flag_index)) or 0 in flag_value:
        fail(f"{where}.flag_index", "flags must be non-zero, at ascending indices")
    for i, f in zip(flag_index, flag_value, strict=True):
        flags[i] = f
    return signal, unit, rows, values, labels, flags


def _rows_of(present: bytes | None, n: int, where: str) -> list[int]:
    if present is None:
        return list(range(n))
    if len(present) != (n + 7) // 8:
        fail(f"{where}.present", f"{len(present)} bytes for {n} rows "
                                 f"(expected {(n + 7) // 8})")
    bits = int.from_bytes(present, "little")
    if bits >> n:
        fail(f"{where}.present", f"bits set beyond row {n - 1}")
    rows = [r for r in range(n) if bits >> r & 1]
    if not rows:
        fail(f"{where}.present", "a column without values")
    return rows


def _decode_labels(col: dict[str, Any], values: list[Any], where: str) -> list[str | None]:
    if "labels" in col:
        labels = get(col, "labels", list, where)
        if len(labels) != len(values) or not all(x is None or type(x) is str for x in labels):
            fail(f"{where}.labels", f"expected {len(values)} strings or nils")
        return labels
    pairs = get(col, "label_map", list, where, optional=True)
    if not pairs:
        return [None] * len(values)
    mapping: dict[Any, str] = {}
    for pair in pairs:
        if not (type(pair) is list and len(pair) == 2 and type(pair[0]) in (int, float, bool)
                and type(pair[1]) is str):
            fail(f"{where}.label_map", "expected [number, string] pairs")
        mapping[pair[0]] = pair[1]
    get_label = mapping.get
    return [get_label(v) for v in values]
