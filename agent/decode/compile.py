"""Compile a cantools message into one Python function that decodes it.

cantools' ``decode_message`` goes through bitstruct, dicts and a conversion
object per signal. For a message known in advance we can instead generate the
shifts and masks once::

    def decode(data):
        B = _from_bytes(data, "big"); L = _from_bytes(data, "little")
        r0 = (L >> 0) & 0xFFFF
        r1 = (L >> 16) & 0xFF
        vr0 = r0
        vr1 = r1 * 0.5 + -40.0
        return S0, (vr0, vr1), None, 0 <= vr0 <= 100 and -40 <= vr1 <= 85

The arithmetic is the same as cantools' (integer scale and offset stay
integers, identity conversions return the raw value, IEEE floats are unpacked
from the same bits), so values are identical. Multiplexed messages become
nested ``if`` branches on the multiplexer value; each branch returns its own
tuple of signal descriptions, so the caller pairs values with signals by
position. The third item holds the DBC choice label of each value (or None
for the whole tuple when the branch has no signal with choices), the fourth
tells whether every value is within its DBC range.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.frames import SignalInfo

# decode(data) -> (signals, values, labels or None, all values in range?);
# KeyError for an unknown multiplexer value
DecodeFn = Callable[
    [bytes],
    tuple[tuple[SignalInfo, ...], tuple[Any, ...], tuple[str | None, ...] | None, bool],
]


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
    if field.word == "B":
        return field.mask << field.shift
    little = field.mask << field.shift
    return int.from_bytes(little.to_bytes(length, "little"), "big")


def _numeric_conversion(signal: Any) -> Any:
    conversion = signal.conversion
    # NamedSignalConversion wraps the numeric one; choices are labels only here
    return getattr(conversion, "_conversion", conversion)


def _literal(value: Any, namespace: dict[str, Any], name: str) -> str:
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    namespace[name] = value
    return name


def _expression(signal: Any, length: int, namespace: dict[str, Any]) -> str:
    """Python expression giving the raw value of ``signal`` (before scaling)."""
    field = bit_field(signal, length)
    raw = f"(({field.word} >> {field.shift}) & {field.mask:#x})"
    if signal.is_float:
        fmt = {32: ">f", 64: ">d", 16: ">e"}[signal.length]
        namespace[f"_unpack{signal.length}"] = struct.Struct(fmt).unpack
        return f"_unpack{signal.length}({raw}.to_bytes({signal.length // 8}, 'big'))[0]"
    if signal.is_signed:
        sign = 1 << (signal.length - 1)
        return f"(({raw} ^ {sign:#x}) - {sign:#x})"
    return raw


def _scaled(signal: Any, raw_name: str, namespace: dict[str, Any]) -> str:
    conversion = _numeric_conversion(signal)
    kind = type(conversion).__name__
    if kind == "IdentityConversion":
        return raw_name
    scale = _literal(conversion.scale, namespace, f"_scale_{raw_name}")
    if conversion.offset == 0 and conversion.scale > 0 and not signal.is_float:
        # int * positive scale: adding 0 changes nothing, not even the sign of a zero
        return f"{raw_name} * {scale}"
    offset = _literal(conversion.offset, namespace, f"_offset_{raw_name}")
    return f"{raw_name} * {scale} + {offset}"


def _always_in_range(signal: Any, minimum: float, maximum: float) -> bool:
    """True when every raw value the signal's bits can hold scales into [minimum, maximum]."""
    if signal.is_float:
        return False
    n = signal.length
    if signal.is_signed:
        raw_lo, raw_hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    else:
        raw_lo, raw_hi = 0, (1 << n) - 1
    conversion = _numeric_conversion(signal)
    scale = getattr(conversion, "scale", 1)
    offset = getattr(conversion, "offset", 0)
    ends = (raw_lo * scale + offset, raw_hi * scale + offset)
    return bool(minimum <= min(ends) and max(ends) <= maximum)


@dataclass
class CompiledMessage:
    """A message's generated decoder and what the change filter needs."""

    name: str
    frame_id: int
    is_extended: bool
    length: int
    decode: DecodeFn
    selector_mask: int  # bits of the multiplexer signals (big-endian word)
    selector_bytes: int  # a frame shorter than this cannot pick its branch
    source: str  # generated code, for debugging


def compile_message(
    message: Any,
    wanted: Callable[[str, str], bool],
) -> CompiledMessage | None:
    """Generate the decoder for the signals of ``message`` that ``wanted(msg, sig)``.

    Multiplexer signals are always read (to pick a branch) but only returned
    when wanted. Returns None when no signal of the message is wanted.
    """
    length = message.length
    namespace: dict[str, Any] = {"_from_bytes": int.from_bytes}
    counter = [0]
    selector_mask = 0
    selector_bytes = 0
    any_wanted = False

    def info(signal: Any) -> SignalInfo:
        minimum, maximum = signal.minimum, signal.maximum
        if minimum == 0 and maximum == 0:  # DBC convention: [0|0] means "no range"
            minimum = maximum = None
        choices = None
        if signal.choices:
            choices = {int(k): str(v) for k, v in signal.choices.items()}
        return SignalInfo(message.name, signal.name, signal.unit or "", minimum, maximum,
                          choices, bit_field(signal, length).needed_bytes)

    def body(tree: list[Any], taken: list[tuple[Any, str]], indent: str) -> list[str]:
        """Lines decoding ``tree``; ``taken`` holds (signal, raw variable) read so far."""
        nonlocal selector_mask, selector_bytes, any_wanted
        lines: list[str] = []
        taken = list(taken)
        mux_nodes: list[tuple[Any, dict[int, list[Any]]]] = []
        for node in tree:
            if isinstance(node, str):
                signal = message.get_signal_by_name(node)
                if wanted(message.name, node):
                    index = counter[0]
                    counter[0] += 1
                    var = f"r{index}"
                    lines.append(f"{indent}{var} = {_expression(signal, length, namespace)}")
                    taken.append((signal, var))
                    any_wanted = True
            else:
                for mux_name, branches in node.items():
                    mux_nodes.append((message.get_signal_by_name(mux_name), branches))
        if not mux_nodes:
            lines.extend(_return(taken, indent))
            return lines
        # independent multiplexers at one level: branch on the first, and
        # decode the others inside each of its branches
        (mux, branches), rest = mux_nodes[0], [{m.name: b} for m, b in mux_nodes[1:]]
        mux_field = bit_field(mux, length)
        selector_mask |= big_word_mask(mux_field, length)
        selector_bytes = max(selector_bytes, mux_field.needed_bytes)
        mux_var = f"m{counter[0]}"
        counter[0] += 1
        lines.append(f"{indent}{mux_var} = {_expression(mux, length, namespace)}")
        if wanted(message.name, mux.name):
            taken.append((mux, mux_var))
            any_wanted = True
        by_subtree: dict[int, list[int]] = {}
        subtrees: dict[int, list[Any]] = {}
        for value, subtree in branches.items():
            by_subtree.setdefault(id(subtree), []).append(value)
            subtrees[id(subtree)] = subtree
        keyword = "if"
        for key, values in by_subtree.items():
            test = (f"{mux_var} == {values[0]}" if len(values) == 1
                    else f"{mux_var} in {frozenset(values)!r}")
            lines.append(f"{indent}{keyword} {test}:")
            lines.extend(body(subtrees[key] + rest, taken, indent + "    "))
            keyword = "elif"
        lines.append(f"{indent}raise KeyError({mux_var})")
        return lines

    returns = [0]

    def _return(taken: list[tuple[Any, str]], indent: str) -> list[str]:
        const = f"_S{returns[0]}"
        returns[0] += 1
        infos = tuple(info(sig) for sig, _var in taken)
        namespace[const] = infos
        lines = []
        checks = []
        labels = []
        for i, (sig, var) in zip(infos, taken, strict=True):
            lines.append(f"{indent}v{var} = {_scaled(sig, var, namespace)}")
            if (i.minimum is not None and i.maximum is not None
                    and not _always_in_range(sig, i.minimum, i.maximum)):
                lo = _literal(i.minimum, namespace, f"_min_{var}")
                hi = _literal(i.maximum, namespace, f"_max_{var}")
                checks.append(f"{lo} <= v{var} <= {hi}")
            if i.choices:
                namespace[f"_choices_{var}"] = i.choices
                labels.append(f"_choices_{var}.get({var}), ")
            else:
                labels.append("None, ")
        values = "".join(f"v{var}, " for _sig, var in taken)
        label_expr = f"({''.join(labels)})" if any(i.choices for i in infos) else "None"
        in_range = " and ".join(checks) if checks else "True"
        lines.append(f"{indent}return {const}, ({values}), {label_expr}, {in_range}")
        return lines

    lines = body(message.signal_tree, [], "    ")
    if not any_wanted:
        return None
    header = ["def decode(data):"]
    code = "\n".join(lines)
    if "B >>" in code:
        header.append("    B = _from_bytes(data, 'big')")
    if "L >>" in code:
        header.append("    L = _from_bytes(data, 'little')")
    source = "\n".join(header + lines) + "\n"
    exec(compile(source, f"<bavard decoder {message.name}>", "exec"), namespace)
    fn = namespace["decode"]
    return CompiledMessage(
        name=message.name,
        frame_id=message.frame_id,
        is_extended=bool(message.is_extended_frame),
        length=length,
        decode=fn,
        selector_mask=selector_mask,
        selector_bytes=selector_bytes,
        source=source,
    )
