"""Python expressions that read, scale and range-check one signal of a frame.

The pieces :mod:`agent.decode.compile` puts together: where a signal's bits are
(:class:`BitField`, over ``int.from_bytes(data, "little"/"big")``, or one byte of
``data`` when they all fit in it), how the byte-aligned integers of a frame come
out of one ``struct.unpack``, cantools' scaling written as Python arithmetic (so
values are identical), and range tests, on the raw integer where that is exact.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BitField:
    """Where a signal's raw bits are, as ``(word >> shift) & mask`` of one big integer."""

    word: str  # "B" (big-endian word of the frame) or "L" (little-endian)
    shift: int
    mask: int
    needed_bytes: int


def bit_field(signal: Any, length: int) -> BitField:
    """The bit field of a cantools signal in a frame of ``length`` bytes."""
    mask = (1 << signal.length) - 1
    if signal.byte_order == "little_endian":
        return BitField("L", signal.start, mask, (signal.start + signal.length + 7) // 8)
    sequential_start = 8 * (signal.start // 8) + 7 - signal.start % 8
    return BitField("B", 8 * length - sequential_start - signal.length, mask,
                    (sequential_start + signal.length + 7) // 8)


def big_word_mask(field: BitField, length: int) -> int:
    """The field's bits as a mask over ``int.from_bytes(data, "big")``."""
    if field.word == "B":  # a signal that does not fit (strict=False): its bits inside
        return field.mask << field.shift if field.shift >= 0 else field.mask >> -field.shift
    little = (field.mask << field.shift) & ((1 << 8 * length) - 1)
    return int.from_bytes(little.to_bytes(length, "little"), "big")


def big_to_little(mask: int, length: int) -> int:
    """A mask over the big-endian word of a frame, as a mask over its little-endian word."""
    return int.from_bytes(mask.to_bytes(length, "big"), "little")


def numeric_conversion(signal: Any) -> Any:
    """The signal's scale-and-offset conversion (cantools' object)."""
    conversion = signal.conversion
    # NamedSignalConversion wraps the numeric one; choices are labels only here
    return getattr(conversion, "_conversion", conversion)


def literal(value: Any, namespace: dict[str, Any], name: str) -> str:
    """``value`` as Python source: its repr when exact, else a name bound to it in
    ``namespace`` (a NaN, an infinity, a Decimal)."""
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    namespace[name] = value
    return name


def in_one_byte(field: BitField, bits: int, length: int) -> str | None:
    """The field as an expression on one byte of ``data``, when its bits are all in one:
    cheaper than a shift of the whole frame's integer, and the integer may not be needed."""
    if field.shift < 0 or field.shift % 8 + bits > 8:
        return None
    offset = field.shift % 8
    index = field.shift // 8 if field.word == "L" else length - 1 - field.shift // 8
    if offset + bits == 8:
        return f"data[{index}]" if offset == 0 else f"(data[{index}] >> {offset})"
    return f"(data[{index}] & {field.mask:#x})" if offset == 0 else (
        f"((data[{index}] >> {offset}) & {field.mask:#x})")


def expression(signal: Any, length: int, namespace: dict[str, Any]) -> str:
    """Python expression giving the raw value of ``signal`` (before scaling)."""
    field = bit_field(signal, length)
    raw = (in_one_byte(field, signal.length, length)
           or f"(({field.word} >> {field.shift}) & {field.mask:#x})")
    if signal.is_float:
        fmt = {32: ">f", 64: ">d", 16: ">e"}[signal.length]
        namespace[f"_unpack{signal.length}"] = struct.Struct(fmt).unpack
        return f"_unpack{signal.length}({raw}.to_bytes({signal.length // 8}, 'big'))[0]"
    if signal.is_signed:
        sign = 1 << (signal.length - 1)
        return f"(({raw} ^ {sign:#x}) - {sign:#x})"
    return raw


def scaled_expression(signal: Any, raw_name: str, namespace: dict[str, Any]) -> str:
    conversion = numeric_conversion(signal)
    kind = type(conversion).__name__
    if kind == "IdentityConversion":
        return raw_name
    scale = literal(conversion.scale, namespace, f"_scale_{raw_name}")
    if conversion.offset == 0 and conversion.scale > 0 and not signal.is_float:
        # int * positive scale: adding 0 changes nothing, not even the sign of a zero
        return f"{raw_name} * {scale}"
    offset = literal(conversion.offset, namespace, f"_offset_{raw_name}")
    if conversion.scale == 1:  # x * 1 is x, for ints and floats alike
        return f"{raw_name} + {offset}"
    return f"{raw_name} * {scale} + {offset}"


def always_in_range(signal: Any, minimum: float, maximum: float) -> bool:
    """True when every raw value the signal's bits can hold scales into [minimum, maximum]."""
    if signal.is_float:
        return False
    n = signal.length
    if signal.is_signed:
        raw_lo, raw_hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    else:
        raw_lo, raw_hi = 0, (1 << n) - 1
    conversion = numeric_conversion(signal)
    scale = getattr(conversion, "scale", 1)
    offset = getattr(conversion, "offset", 0)
    ends = (raw_lo * scale + offset, raw_hi * scale + offset)
    return bool(minimum <= min(ends) and max(ends) <= maximum)


def raw_check(signal: Any, var: str, minimum: float, maximum: float,
               namespace: dict[str, Any]) -> str | None:
    """``minimum <= scaled <= maximum`` as a test of the raw integer ``var``, when the
    scaling never decreases (a positive scale): the raw values in range are then one
    interval, found by bisection with the generated code's own arithmetic, so the test
    is exact. One comparison instead of two when one end of the raw range is in range.
    None when the scaled value must be tested, or no raw value is in range."""
    conversion = numeric_conversion(signal)
    if signal.is_float or getattr(conversion, "scale", 1) <= 0:
        return None
    n = signal.length
    low, high = (-(1 << (n - 1)), (1 << (n - 1)) - 1) if signal.is_signed else (0, (1 << n) - 1)
    scratch = dict(namespace)
    scaled = eval(f"lambda r: {scaled_expression(signal, 'r', scratch)}", scratch)

    def first(ok: Callable[[int], bool], a: int, b: int) -> int:
        """The smallest r in [a, b] with ok(r) (ok never goes from True to False)."""
        while a < b:
            middle = (a + b) // 2
            a, b = (a, middle) if ok(middle) else (middle + 1, b)
        return a

    lo = first(lambda r: minimum <= scaled(r), low, high)
    if not minimum <= scaled(lo):
        return None
    above = first(lambda r: scaled(r) > maximum, low, high)
    hi = above - 1 if scaled(above) > maximum else high
    if lo > hi:
        return None
    if lo == low and hi == high:
        return None  # never out of range (always_in_range says so first)
    if lo == low:
        return f"{var} <= {hi}"
    if hi == high:
        return f"{lo} <= {var}"
    return f"{lo} <= {var} <= {hi}"


STRUCT_CODES = {8: "b", 16: "h", 32: "i", 64: "q"}


def struct_unpack(signals: list[Any], length: int, namespace: dict[str, Any]
                   ) -> tuple[list[str], dict[str, str]]:
    """One ``struct.unpack`` per byte order for the byte-aligned 8/16/32/64-bit integer
    signals that do not overlap: a single C call instead of a shift and a mask each.
    Returns the lines and the variable of each signal read that way."""
    lines: list[str] = []
    unpacked: dict[str, str] = {}
    for order, prefix in (("little_endian", "<"), ("big_endian", ">")):
        fields = []
        for signal in signals:
            if signal.is_float or signal.length not in STRUCT_CODES:
                continue
            if signal.byte_order != order:
                continue
            first_bit = (signal.start if order == "little_endian"
                         else 8 * (signal.start // 8) + 7 - signal.start % 8)
            if first_bit % 8 or first_bit // 8 + signal.length // 8 > length:
                continue
            fields.append((first_bit // 8, signal))
        fields.sort(key=lambda f: f[0])
        fmt, position = prefix, 0
        taken: dict[str, str] = {}  # signal -> variable
        for offset, signal in fields:
            if offset < position:
                continue  # overlaps the previous field: read with a shift instead
            code = STRUCT_CODES[signal.length]
            fmt += "x" * (offset - position) + (code if signal.is_signed else code.upper())
            position = offset + signal.length // 8
            taken[signal.name] = f"s{len(unpacked) + len(taken)}"
        if len(taken) < 2:  # one field: a shift and a mask is as cheap
            continue
        unpacked.update(taken)
        struct_name = f"_struct_{order}"
        namespace[struct_name] = struct.Struct(fmt).unpack_from
        lines.append(f"    {', '.join(taken.values())}, = {struct_name}(data)")
    return lines, unpacked
