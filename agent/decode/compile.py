"""Compile a cantools message into Python functions that decode it.

cantools' ``decode_message`` goes through bitstruct, dicts and a conversion
object per signal. For a message known in advance we can instead generate the
shifts and masks once. Two functions come out of one generated body::

    def values(data):                      # (signals, values, labels, in range?)
        L = _from_bytes(data, 'little')
        r0 = ((L >> 0) & 0xffff)
        r1 = data[2]                       # bits all in one byte: read from it
        vr0 = r0 * 0.25
        vr1 = r1 + -40
        return _S0, (vr0, vr1, ), None, r1 <= 190   # -40 <= vr1 <= 150, on the raw value

    def decode(frame):                     # a record's fields, or None if unchanged
        data = frame[5]
        if len(data) != 3:                 # the caller's hook decides (trim, truncate)
            return _other_length(frame)
        L = _from_bytes(data, 'little')
        b = L & 0xffffff                   # only with a change filter
        if _common[0] == b:
            _unchanged[0] += 1             # counted here: the caller tests nothing
            return None
        ...same body...
        _common[0] = b                     # remembered only when a record comes out
        if r1 <= 190:
            return (frame[0], frame[1], _name, _S0, (vr0, vr1, ), None, None)
        f1 = 0                             # else a flag per value, each out-of-range
        if not r1 <= 190:                  # one counted where DecodeStats reads it
            f1 = 1
            _counts[0] += 1
        return (frame[0], frame[1], _name, _S0, (vr0, vr1, ), None, (0, f1, ))

The arithmetic is the same as cantools' (integer scale and offset stay
integers, identity conversions return the raw value, IEEE floats are unpacked
from the same bits), so values are identical. Multiplexed messages become
nested ``if`` branches on the multiplexer value; each branch has its own
tuple of signal descriptions, paired with the values by position; a value the
DBC does not define raises KeyError in ``values`` and goes to the ``bad_mux``
hook in ``decode``. Labels are the DBC choice names (None for the whole tuple
when no signal has choices; a tuple indexed by the raw value for a few unsigned
bits). Range checks are generated only for signals whose bits can hold a value
outside the DBC's range (see :mod:`agent.decode.signal_code`).

Cost per frame decides the layout (``scripts/bench_decode.py`` measures it):
``decode`` takes the frame itself and returns a plain tuple of the record's
fields, which the caller turns into :class:`~agent.frames.Decoded` records a
chunk at a time in one C loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.decode.signal_code import (
    BitField,
    always_in_range,
    big_to_little,
    big_word_mask,
    bit_field,
    expression,
    literal,
    raw_check,
    scaled_expression,
    struct_unpack,
)
from agent.frames import OUT_OF_RANGE, Frame, SignalInfo

__all__ = ["BitField", "ChangeFilter", "CompiledMessage", "DecodeFn", "Hooks", "Record",
           "big_word_mask", "bit_field", "compile_message", "multiplexer_mask"]

log = logging.getLogger(__name__)

# values(data) -> (signals, values, labels or None, all values in range?)
ValuesFn = Callable[
    [bytes],
    tuple[tuple[SignalInfo, ...], tuple[Any, ...], tuple[str | None, ...] | None, bool],
]
# ``values`` raises KeyError for a multiplexer value that the DBC does not define.
# The fields of a Decoded record as a plain tuple: ``decode`` returns those, and its
# caller makes the records of a chunk in one C loop (``map(tuple.__new__, ...)``): from
# Python code, a NamedTuple per frame costs as much as decoding a few signals.
Record = tuple[Any, ...]
# decode(frame) -> Record, or None (skipped by the change filter, or what the hooks say)
DecodeFn = Callable[[Frame], Record | None]


def _not_decoded(frame: Frame, *_: Any) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """Where ``decode`` hands what it does not decode itself, so that a caller can call it
    for every frame with no test around the call."""

    # a frame whose length is not the DBC's: decode it some other way (trim, truncate)
    other_length: Callable[[Frame], Record | None] = _not_decoded
    # a multiplexer value that the DBC does not define: count it (the frame gives None)
    bad_mux: Callable[[Frame, int], None] = _not_decoded
    # unchanged[0] += 1 for each frame that the change filter skips
    unchanged: list[int] = field(default_factory=lambda: [0])


class _BadMux(NamedTuple):
    """Where a branch of the generated body finds no page for a multiplexer value."""

    indent: str
    var: str


class _Return(NamedTuple):
    """Where a branch of the generated body returns, and what."""

    indent: str
    const: str  # the name of the branch's SignalInfo tuple
    values: str
    labels: str
    in_range: str  # an expression, "True" when no value needs a range check
    # (position in the values, its range test, counter slot) of each range-checked value
    checks: tuple[tuple[int, str, int], ...] = ()


Line = str | _Return | _BadMux


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
    # the signals that ``decode`` range-checks, and how many of its values of each were
    # out of range (counted by the generated code itself: no call per flagged frame)
    range_names: tuple[str, ...] = ()
    range_counts: list[int] = field(default_factory=list)


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
    hooks: Hooks | None = None,
) -> CompiledMessage | None:
    """Generate the decoders for the signals of ``message`` that ``wanted(msg, sig)``.

    Multiplexer signals are always read (to pick a branch) but only returned
    when wanted. ``change`` adds the change filter to ``decode``; ``hooks`` say where
    ``decode`` hands a frame of another length and an unknown multiplexer value, and
    count the frames that the change filter skips. A record holding a
    value outside its DBC range gets its flags from ``decode`` itself (OUT_OF_RANGE
    on those values), each such value counted in ``range_counts``. Returns None
    when no signal of the message is wanted.
    """
    length = message.length
    common: list[int | None] = [None]  # change filter: the bits of the last decoded frame
    last: dict[int, int] = {}  # ... and, per multiplexer value, its page bits
    range_slots: dict[str, int] = {}  # signal -> its slot in range_counts
    range_counts: list[int] = []
    namespace: dict[str, Any] = {
        "_from_bytes": int.from_bytes,
        "_common": common, "_last": last, "_name": message.name,
        "_counts": range_counts,
    }
    hooks = hooks or Hooks()
    namespace.update(_other_length=hooks.other_length, _bad_mux=hooks.bad_mux,
                     _unchanged=hooks.unchanged)
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
                    lines.append(f"{indent}{var} = {expression(signal, length, namespace)}")
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
        lines.append(_BadMux(indent, mux_var))
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
        positions: list[tuple[int, str, int]] = []
        labels = []
        names = []
        for position, (i, (sig, var)) in enumerate(zip(infos, taken, strict=True)):
            scaled = scaled_expression(sig, var, namespace)
            name = var if scaled == var else f"v{var}"
            if name != var:
                lines.append(f"{indent}{name} = {scaled}")
            names.append(name)
            if (i.minimum is not None and i.maximum is not None
                    and not always_in_range(sig, i.minimum, i.maximum)):
                check = raw_check(sig, var, i.minimum, i.maximum, namespace)
                if check is None:
                    lo = literal(i.minimum, namespace, f"_min_{var}")
                    hi = literal(i.maximum, namespace, f"_max_{var}")
                    check = f"{lo} <= {name} <= {hi}"
                checks.append(check)
                slot = range_slots.setdefault(sig.name, len(range_slots))
                positions.append((position, checks[-1], slot))
            if i.choices and not (sig.is_signed or sig.is_float) and sig.length <= 8:
                # every raw value of a few unsigned bits: a tuple indexed by it
                namespace[f"_choices_{var}"] = tuple(
                    i.choices.get(raw) for raw in range(1 << sig.length))
                labels.append(f"_choices_{var}[{var}], ")
            elif i.choices:
                namespace[f"_choices_{var}"] = i.choices
                labels.append(f"_choices_{var}.get({var}), ")
            else:
                labels.append("None, ")
        values = "".join(f"{name}, " for name in names)
        label_expr = f"({''.join(labels)})" if any(i.choices for i in infos) else "None"
        in_range = " and ".join(checks) if checks else "True"
        lines.append(_Return(indent, const, values, label_expr, in_range, tuple(positions)))
        return lines

    top_level = [n for node in message.signal_tree for n in ([node] if isinstance(node, str)
                                                               else list(node))]
    unpack_lines, unpacked = struct_unpack(
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
        if isinstance(line, _Return):
            values_fn.append(f"{line.indent}return {line.const}, ({line.values}), "
                             f"{line.labels}, {line.in_range}")
        elif isinstance(line, _BadMux):
            values_fn.append(f"{line.indent}raise KeyError({line.var})")
        else:
            values_fn.append(line)
    decode_fn = ["def decode(frame):", "    data = frame[5]", f"    if len(data) != {length}:",
                 "        return _other_length(frame)"]
    # test the change and look up the memo on the word the body reads anyway
    # (little-endian if only Intel signals): one from_bytes, masks, dict look-ups
    word, order = ("L", "little") if uses_little and not uses_big else ("B", "big")

    def mask(big_mask: int) -> str:
        return f"{big_to_little(big_mask, length) if word == 'L' else big_mask:#x}"

    remember: list[str] = []
    if change is not None:  # the change test reads the word even when the body does not
        decode_fn.append(f"    {word} = _from_bytes(data, '{order}')")
        test, remember = _change_test(change, word, mask)
        decode_fn += test
        decode_fn += unpack(skip=word)
    else:
        decode_fn += unpack()
    for line in lines:
        if isinstance(line, _Return):
            decode_fn += _decode_return(line, remember)
        elif isinstance(line, _BadMux):
            decode_fn.append(f"{line.indent}return _bad_mux(frame, {line.var})")
        else:
            decode_fn.append(line)
    source = "\n".join(values_fn) + "\n\n" + "\n".join(decode_fn) + "\n"
    exec(compile(source, f"<bavard decoder {message.name}>", "exec"), namespace)

    def forget() -> None:
        common[0] = None
        last.clear()

    range_counts.extend(0 for _ in range_slots)

    return CompiledMessage(
        name=message.name,
        length=length,
        values=namespace["values"],
        decode=namespace["decode"],
        selector_bytes=selector_bytes,
        source=source,
        forget=forget,
        range_names=tuple(range_slots),
        range_counts=range_counts,
    )


def _change_test(change: ChangeFilter, word: str, mask: Callable[[int], str]
                 ) -> tuple[list[str], list[str]]:
    """Lines that return None when the frame's selected bits did not change, and the
    lines that remember the bits of a frame that gives a record (one with an unknown
    multiplexer value gives none, so it must not be remembered)."""
    if not change.page_mask:
        return [
            f"    b = {word} & {mask(change.common_mask)}",
            "    if _common[0] == b:",
            "        _unchanged[0] += 1",
            "        return None",
        ], ["_common[0] = b"]
    return [
        f"    k = {word} & {mask(change.selector_mask)}",
        f"    c = {word} & {mask(change.common_mask)}",
        f"    b = {word} & {mask(change.page_mask)}",
        "    if _common[0] == c and _last.get(k) == b:",
        "        _unchanged[0] += 1",
        "        return None",
    ], ["_common[0] = c", "_last[k] = b"]


def _decode_return(r: _Return, remember: list[str]) -> list[str]:
    """The record, with flags None when every value is in range; else a flag per value
    (OUT_OF_RANGE on those outside theirs), each counted in its slot of ``_counts``."""
    def record(flags: str) -> str:
        return f"(frame[0], frame[1], _name, {r.const}, ({r.values}), {r.labels}, {flags})"

    i = r.indent
    lines = [f"{i}{line}" for line in remember]
    if r.in_range == "True":
        return [*lines, f"{i}return {record('None')}"]
    lines += [f"{i}if {r.in_range}:", f"{i}    return {record('None')}"]
    flags = ["0"] * r.values.count(", ")  # values is "v0, v1, ... "
    for position, check, slot in r.checks:
        flags[position] = f"f{position}"
        lines += [f"{i}f{position} = 0", f"{i}if not {check}:",
                  f"{i}    f{position} = {OUT_OF_RANGE}", f"{i}    _counts[{slot}] += 1"]
    return [*lines, f"{i}return {record('(' + ''.join(f + ', ' for f in flags) + ')')}"]
