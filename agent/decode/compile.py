"""Compile a cantools message into Python functions that decode it.

cantools' ``decode_message`` goes through bitstruct, dicts and a conversion
object per signal. For a message known in advance we can instead generate the
shifts and masks once. Two functions come out of one generated body::

    def values(data):                      # (signals, values, labels, in range?)
        L = _from_bytes(data, 'little')
        r0 = ((L >> 0) & 0xffff)
        r1 = ((L >> 16) & 0xff)
        vr0 = r0 * 0.25
        vr1 = r1 + -40
        return _S0, (vr0, vr1, ), None, -40 <= vr1 <= 150

    def decode(data, ts, channel):         # a Decoded record, or None if unchanged
        L = _from_bytes(data, 'little')
        b = L & 0xffffff                   # only with a change filter
        if _common[0] == b:
            return None
        ...same body...
        _common[0] = b                     # remembered only when a record comes out
        if -40 <= vr1 <= 150:
            return _new(_Decoded, (ts, channel, _name, _S0, (vr0, vr1, ), None, None))
        return _flag(_new(_Decoded, (...)))

The arithmetic is the same as cantools' (integer scale and offset stay
integers, identity conversions return the raw value, IEEE floats are unpacked
from the same bits), so values are identical. Multiplexed messages become
nested ``if`` branches on the multiplexer value; each branch has its own
tuple of signal descriptions, paired with the values by position. Labels are
the DBC choice names (None for the whole tuple when no signal has choices).
Range checks are generated only for signals whose bits can hold a value
outside the DBC's range.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent.frames import Decoded, SignalInfo

log = logging.getLogger(__name__)

# values(data) -> (signals, values, labels or None, all values in range?)
ValuesFn = Callable[
    [bytes],
    tuple[tuple[SignalInfo, ...], tuple[Any, ...], tuple[str | None, ...] | None, bool],
]
# decode(data, timestamp, channel) -> Decoded, or None when the change filter skips it
DecodeFn = Callable[[bytes, float, str], Decoded | None]
# Both raise KeyError for a multiplexer value that the DBC does not define.


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


def _big_to_little(mask: int, length: int) -> int:
    """A mask over the big-endian word of a frame, as a mask over its little-endian word."""
    return int.from_bytes(mask.to_bytes(length, "big"), "little")


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
    if conversion.scale == 1:  # x * 1 is x, for ints and floats alike
        return f"{raw_name} + {offset}"
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


class _Return(NamedTuple):
    """Where a branch of the generated body returns, and what."""

    indent: str
    const: str  # the name of the branch's SignalInfo tuple
    values: str
    labels: str
    in_range: str  # an expression, "True" when no value needs a range check


Line = str | _Return


@dataclass(frozen=True)
class ChangeFilter:
    """Skip a frame whose ``common_mask`` bits equal those of the last decoded frame and
    whose ``page_mask`` bits equal those of the last decoded frame with the same
    ``selector_mask`` bits (multiplexer value). Masks are over
    ``int.from_bytes(data, "big")``."""

    common_mask: int  # signals in every frame (the multiplexer itself, when selected)
    page_mask: int = 0  # multiplexed signals, each on one page
    selector_mask: int = 0


@dataclass
class CompiledMessage:
    """A message's generated decoders."""

    name: str
    length: int
    values: ValuesFn
    decode: DecodeFn
    selector_bytes: int  # a frame shorter than this cannot pick its branch
    source: str  # the generated code, for debugging
    # forget what the change filter remembers, so that it lets the next frame through
    # (after a frame decoded without it, e.g. a short one)
    forget: Callable[[], None]


def multiplexer_mask(message: Any) -> int:
    """The bits of all multiplexer signals of ``message`` (big-endian word)."""
    mask = 0
    for signal in message.signals:
        if signal.is_multiplexer:
            mask |= big_word_mask(bit_field(signal, message.length), message.length)
    return mask


def compile_message(
    message: Any,
    wanted: Callable[[str, str], bool],
    change: ChangeFilter | None = None,
    flag: Callable[[Decoded], Decoded] | None = None,
) -> CompiledMessage | None:
    """Generate the decoders for the signals of ``message`` that ``wanted(msg, sig)``.

    Multiplexer signals are always read (to pick a branch) but only returned
    when wanted. ``change`` adds the change filter to ``decode``; ``flag`` is
    called with a record holding a value outside its DBC range (default: returned
    as is). Returns None when no signal of the message is wanted.
    """
    length = message.length
    common: list[int | None] = [None]  # change filter: the bits of the last decoded frame
    last: dict[int, int] = {}  # ... and, per multiplexer value, its page bits
    namespace: dict[str, Any] = {
        "_from_bytes": int.from_bytes, "_new": tuple.__new__, "_Decoded": Decoded,
        "_flag": flag or (lambda d: d), "_common": common, "_last": last,
        "_name": message.name,
    }
    counter = [0]
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

    # a multiplexer already read: (signal, variable holding its raw value, branches)
    Pending = tuple[Any, str, dict[int, list[Any]]]

    def body(tree: list[Any], taken: list[tuple[Any, str]], pending: list[Pending],
             indent: str) -> list[Line]:
        """Lines decoding ``tree``; ``taken`` holds (signal, raw variable) read so far,
        in cantools' order; ``pending`` the multiplexers read but not yet branched on."""
        nonlocal selector_bytes, any_wanted
        lines: list[Line] = []
        taken = list(taken)
        pending = list(pending)
        for node in tree:
            names = [node] if isinstance(node, str) else list(node)
            for name in names:
                signal = message.get_signal_by_name(name)
                is_mux = not isinstance(node, str)
                if not (is_mux or wanted(message.name, name)):
                    continue
                if bit_field(signal, length).needed_bytes > length:
                    log.warning("%s.%s does not fit in the message's %d bytes: not decoded",
                                message.name, name, length)
                    continue
                if name in unpacked:  # read at the top by one struct.unpack
                    var = unpacked[name]
                else:
                    var = f"r{counter[0]}"
                    counter[0] += 1
                    lines.append(f"{indent}{var} = {_expression(signal, length, namespace)}")
                if wanted(message.name, name):
                    taken.append((signal, var))
                    any_wanted = True
                if is_mux:
                    selector_bytes = max(selector_bytes, bit_field(signal, length).needed_bytes)
                    pending.append((signal, var, node[name]))
        if not pending:
            lines.extend(_return(taken, indent))
            return lines
        # independent multiplexers at one level: branch on the first, and on the
        # others inside each of its branches
        (_mux, mux_var, branches), rest = pending[0], pending[1:]
        keyword = "if"
        for value, subtree in branches.items():  # cantools: one subtree per value
            lines.append(f"{indent}{keyword} {mux_var} == {value}:")
            lines.extend(body(subtree, taken, rest, indent + "    "))
            keyword = "elif"
        lines.append(f"{indent}raise KeyError({mux_var})")
        return lines

    returns = [0]

    def _return(taken: list[tuple[Any, str]], indent: str) -> list[Line]:
        """The end of a branch: scale, check ranges, then a :class:`_Return` that
        each of the two functions turns into its own return statement."""
        const = f"_S{returns[0]}"
        returns[0] += 1
        infos = tuple(info(sig) for sig, _var in taken)
        namespace[const] = infos
        lines: list[Line] = []
        checks = []
        labels = []
        names = []
        for i, (sig, var) in zip(infos, taken, strict=True):
            scaled = _scaled(sig, var, namespace)
            name = var if scaled == var else f"v{var}"
            if name != var:
                lines.append(f"{indent}{name} = {scaled}")
            names.append(name)
            if (i.minimum is not None and i.maximum is not None
                    and not _always_in_range(sig, i.minimum, i.maximum)):
                lo = _literal(i.minimum, namespace, f"_min_{var}")
                hi = _literal(i.maximum, namespace, f"_max_{var}")
                checks.append(f"{lo} <= {name} <= {hi}")
            if i.choices:
                namespace[f"_choices_{var}"] = i.choices
                labels.append(f"_choices_{var}.get({var}), ")
            else:
                labels.append("None, ")
        values = "".join(f"{name}, " for name in names)
        label_expr = f"({''.join(labels)})" if any(i.choices for i in infos) else "None"
        in_range = " and ".join(checks) if checks else "True"
        lines.append(_Return(indent, const, values, label_expr, in_range))
        return lines

    top_level = [n for node in message.signal_tree for n in ([node] if isinstance(node, str)
                                                               else list(node))]
    unpack_lines, unpacked = _struct_unpack(
        [message.get_signal_by_name(n) for n in top_level
         if wanted(message.name, n) or message.get_signal_by_name(n).is_multiplexer],
        length, namespace)
    lines: list[Line] = [*unpack_lines, *body(message.signal_tree, [], [], "    ")]
    if not any_wanted:
        return None
    code = "\n".join(line for line in lines if isinstance(line, str))

    uses_big, uses_little = "B >>" in code, "L >>" in code

    def unpack(skip: str = "") -> list[str]:
        """Lines computing the words the body reads, but ``skip`` (already there)."""
        out = []
        if uses_big and skip != "B":
            out.append("    B = _from_bytes(data, 'big')")
        if uses_little and skip != "L":
            out.append("    L = _from_bytes(data, 'little')")
        return out

    values_fn = ["def values(data):", *unpack()]
    for line in lines:
        values_fn += [line] if isinstance(line, str) else [
            f"{line.indent}return {line.const}, ({line.values}), {line.labels}, {line.in_range}"]
    decode_fn = ["def decode(data, ts, channel):"]
    # test the change and look up the memo on the word the body reads anyway
    # (little-endian if only Intel signals): one from_bytes, masks, dict look-ups
    word, order = ("L", "little") if uses_little and not uses_big else ("B", "big")

    def mask(big_mask: int) -> str:
        return f"{_big_to_little(big_mask, length) if word == 'L' else big_mask:#x}"

    decode_fn.append(f"    {word} = _from_bytes(data, '{order}')")
    remember: list[str] = []
    if change is not None:
        test, remember = _change_test(change, word, mask)
        decode_fn += test
    decode_fn += unpack(skip=word)
    for line in lines:
        decode_fn += [line] if isinstance(line, str) else _decode_return(line, remember)
    source = "\n".join(values_fn) + "\n\n" + "\n".join(decode_fn) + "\n"
    exec(compile(source, f"<bavard decoder {message.name}>", "exec"), namespace)

    def forget() -> None:
        common[0] = None
        last.clear()

    return CompiledMessage(
        name=message.name,
        length=length,
        values=namespace["values"],
        decode=namespace["decode"],
        selector_bytes=selector_bytes,
        source=source,
        forget=forget,
    )


_STRUCT_CODES = {8: "b", 16: "h", 32: "i", 64: "q"}


def _struct_unpack(signals: list[Any], length: int, namespace: dict[str, Any]
                   ) -> tuple[list[str], dict[str, str]]:
    """One ``struct.unpack`` per byte order for the byte-aligned 8/16/32/64-bit integer
    signals that do not overlap: a single C call instead of a shift and a mask each.
    Returns the lines and the variable of each signal read that way."""
    lines: list[str] = []
    unpacked: dict[str, str] = {}
    for order, prefix in (("little_endian", "<"), ("big_endian", ">")):
        fields = []
        for signal in signals:
            if signal.is_float or signal.length not in _STRUCT_CODES:
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
            code = _STRUCT_CODES[signal.length]
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


def _change_test(change: ChangeFilter, word: str, mask: Callable[[int], str]
                 ) -> tuple[list[str], list[str]]:
    """Lines that return None when the frame's selected bits did not change, and the
    lines that remember the bits of a frame that gives a record (one with an unknown
    multiplexer value gives none, so it must not be remembered)."""
    if not change.page_mask:
        return [
            f"    b = {word} & {mask(change.common_mask)}",
            "    if _common[0] == b:",
            "        return None",
        ], ["_common[0] = b"]
    return [
        f"    k = {word} & {mask(change.selector_mask)}",
        f"    c = {word} & {mask(change.common_mask)}",
        f"    b = {word} & {mask(change.page_mask)}",
        "    if _common[0] == c and _last.get(k) == b:",
        "        return None",
    ], ["_common[0] = c", "_last[k] = b"]


def _decode_return(r: _Return, remember: list[str]) -> list[str]:
    record = f"_new(_Decoded, (ts, channel, _name, {r.const}, ({r.values}), {r.labels}, None))"
    lines = [f"{r.indent}{line}" for line in remember]
    if r.in_range == "True":
        return [*lines, f"{r.indent}return {record}"]
    return [*lines, f"{r.indent}if {r.in_range}:", f"{r.indent}    return {record}",
            f"{r.indent}return _flag({record})"]
