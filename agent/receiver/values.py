"""Exact values in SQLite: what the receiver stores is what the batch held, bit for bit.

SQLite keeps an int64 as INTEGER and a float as REAL, and keeps ``-0.0`` and the
infinities in a column *without* a declared type (a ``REAL`` column would turn
``-0.0`` into ``0``). Two things it cannot keep: NaN (bound as NULL, payload lost)
and integers beyond int64 (the format allows any size). So every numeric column
that may hold such a value is declared without a type and holds:

=========================  ====================================================
SQLite storage class        meaning
=========================  ====================================================
INTEGER                     that int
REAL                        that float (finite, infinite, ``-0.0``)
BLOB of 8 bytes             a float given by its IEEE 754 bits, big-endian (NaN)
TEXT                        an int beyond int64, in decimal
NULL                        no value (``None``)
=========================  ====================================================

Ordinary values stay ordinary, so SQL can still compare, sort and aggregate
them (``typeof(x) IN ('integer', 'real')`` keeps to those). A sample value
additionally has a ``value_type`` column (``int``, ``float``, ``bool``, ``str``),
since a bool is an int to SQLite and a string would read as a big integer.
"""

from __future__ import annotations

import math
import struct
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DOUBLE = struct.Struct(">d")

SqlValue = int | float | str | bytes | None


def to_sql(x: int | float | None) -> SqlValue:
    """``x`` as a self-describing SQLite value (see the module docstring)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x if INT64_MIN <= x <= INT64_MAX else str(x)
    if isinstance(x, float):
        return x if x == x else _DOUBLE.pack(x)
    raise TypeError(f"not a number: {type(x).__name__}")


def from_sql(v: Any) -> int | float | None:
    """The number :func:`to_sql` stored as ``v``."""
    if v is None or isinstance(v, int | float):
        return v
    if isinstance(v, bytes):
        return float(_DOUBLE.unpack(v)[0])
    if isinstance(v, str):
        return int(v)
    raise TypeError(f"unexpected SQLite value {v!r}")


def float_from_sql(v: Any) -> float:
    """A float column (a timestamp) back; NULL (never written) reads as NaN."""
    x = from_sql(v)
    return math.nan if x is None else float(x)


def int_from_sql(v: Any) -> int:
    """An integer column (flags, priority, sequence number) back."""
    x = from_sql(v)
    if not isinstance(x, int):
        raise TypeError(f"expected an integer, found {v!r}")
    return x


def value_to_sql(x: Any) -> tuple[str, SqlValue]:
    """A sample value as (value_type, stored value)."""
    if isinstance(x, bool):
        return "bool", int(x)
    if isinstance(x, int):
        return "int", to_sql(x)
    if isinstance(x, float):
        return "float", to_sql(x)
    if isinstance(x, str):
        return "str", x
    raise TypeError(f"a sample value cannot be a {type(x).__name__}")


def value_from_sql(value_type: str, v: Any) -> Any:
    """The sample value that :func:`value_to_sql` stored."""
    if value_type == "bool":
        return bool(v)
    if value_type == "str":
        return str(v)
    value = from_sql(v)
    if value_type == "float":
        return float(value) if value is not None else None
    return value
