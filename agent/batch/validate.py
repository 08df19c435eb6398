"""Reading untrusted msgpack values: each helper checks the type (and range, length) of
what it takes out of a map and raises BatchFormatError naming the place, e.g.
``body.groups[3]: missing key 'rows'``."""

from __future__ import annotations

from typing import Any, NoReturn

from agent.batch.exact import INT64_MIN, UINT64_MAX
from agent.errors import BatchFormatError


def fail(where: str, problem: str) -> NoReturn:
    raise BatchFormatError(f"{where}: {problem}")


def as_map(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        fail(where, f"expected a map, got {kind_of(x)}")
    return x


def kind_of(x: Any) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a str", bytes: "bytes",
            list: "an array", dict: "a map", type(None): "nil"}.get(type(x), type(x).__name__)


def get(m: dict[str, Any], key: str, types: type | tuple[type, ...], where: str,
        optional: bool = False) -> Any:
    if key not in m:
        if optional:
            return None
        fail(where, f"missing key {key!r}")
    value = m[key]
    if type(value) not in (types if isinstance(types, tuple) else (types,)):
        fail(f"{where}.{key}", f"unexpected {kind_of(value)}")
    return value


def int_list(m: dict[str, Any], key: str, where: str, length: int | None = None,
             optional: bool = False, lo: int = INT64_MIN, hi: int = UINT64_MAX) -> list[int]:
    xs = get(m, key, list, where, optional)
    if xs is None:
        return []
    if not all(type(x) is int and lo <= x <= hi for x in xs):
        bad = next(x for x in xs if not (type(x) is int and lo <= x <= hi))
        fail(f"{where}.{key}", f"expected ints in {lo}..{hi}, got {bad!r}")
    if length is not None and len(xs) != length:
        fail(f"{where}.{key}", f"{len(xs)} entries where {length} are needed")
    return xs


def str_list(m: dict[str, Any], key: str, where: str, length: int) -> list[str]:
    xs = get(m, key, list, where)
    if len(xs) != length:
        fail(f"{where}.{key}", f"{len(xs)} entries where {length} are needed")
    if not all(type(x) is str for x in xs):
        fail(f"{where}.{key}", "expected strings")
    return xs


def number(x: Any, where: str, optional: bool = False) -> Any:
    if optional and x is None:
        return None
    if type(x) not in (int, float):
        fail(where, f"expected a number, got {kind_of(x)}")
    return x


def count_of(m: dict[str, Any], key: str, where: str) -> int:
    n = get(m, key, int, where)
    if n < 0:
        fail(f"{where}.{key}", f"negative count {n}")
    return int(n)
