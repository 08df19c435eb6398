"""How big a batch may be, and what its msgpack may cost once unpacked, checked before
anything is built.

The compressed size of a batch says little: zstd turns 1 KB into megabytes of
``0x90`` bytes, and msgpack turns each such byte into an empty Python list of 56
bytes plus the pointer to it. So, before unpacking, :func:`check_structure` walks
the msgpack bytes without building anything and adds up what the objects would
cost (CPython, 64-bit; an upper estimate), and refuses a structure deeper than
``MAX_DEPTH`` or costlier than the budget. The budgets follow from the records
the envelope announces (samples + events + frames, at most ``MAX_RECORDS``):

- uncompressed body: ``BODY_ALLOWANCE + BODY_BYTES_PER_RECORD * records`` bytes;
- unpacked body: ``STRUCTURE_ALLOWANCE + STRUCTURE_BYTES_PER_RECORD * records``.

The agent's batches of bus data use 3-10 bytes and 40-90 estimated bytes per record
(events with long texts more; the allowances cover the per-group and per-signal
overhead of small batches). The encoder checks the record count and the body's
size, not the estimate (a walk in Python costs about a tenth of a decode).
``unpack_options`` caps the length of every msgpack array, map, string, binary
and extension as the format allows (documented in docs/batch-format.md §5.1).
"""

from __future__ import annotations

import re
from typing import Any

from agent.errors import BatchFormatError

MAX_RECORDS = 250_000  # samples + events + frames in one batch
MAX_DEPTH = 16  # nested arrays and maps (version 1 uses 7 at most)
MAX_MAP_LEN = 1024  # keys of one map
MAX_STR_LEN = 1 << 20  # bytes of one string
MAX_EXT_LEN = 1024  # bytes of one big integer (ext type 1)
MAX_BIN_LEN = 64 * MAX_RECORDS  # the frames' data, concatenated
MAX_ARRAY_LEN = MAX_RECORDS + 1  # a timestamp array holds rows + 1 entries
BODY_ALLOWANCE = 8 << 20
BODY_BYTES_PER_RECORD = 256
STRUCTURE_ALLOWANCE = 8 << 20
STRUCTURE_BYTES_PER_RECORD = 512
ENVELOPE_STRUCTURE = 1 << 20  # the envelope (at most 64 KiB) unpacked

# Estimated bytes of the objects msgpack builds (sys.getsizeof, CPython 3.11, 64-bit,
# rounded up); every item also costs the 8-byte pointer its container holds.
_LIST, _LIST_ITEM = 56, 8
_MAP, _MAP_EMPTY, _MAP_ITEM = 120, 64, 2 * 8 + 48
_STR, _BIN, _EXT = 80, 40, 40
_NUMBER = 32  # a float, or an int outside CPython's cache of -5..256
# above what a byte can cost by this estimate (maps of one-byte keys nested in each
# other approach 150)
_MOST_PER_BYTE = 256
# one-byte items: fixints, nil, false, true, the empty string (shared objects but for
# the ints -32..-6), and the empty array and map; walked through in C, a run at a time
_ONE_BYTE_RUN = re.compile(rb"[\x00-\x80\x90\xa0\xc0\xc2\xc3\xe0-\xff]+")
_NEW_INTS = bytes(range(0xe0, 0xfb))  # -32..-6: outside CPython's small int cache
_RUN_MAX = 1 << 20  # bytes looked at in one go

# per first byte: (size of the fixed part, cost) for scalars of a fixed size
_FIXED: dict[int, tuple[int, int]] = {
    0xca: (5, _NUMBER), 0xcb: (9, _NUMBER),  # float 32, 64
    0xcc: (2, 0), 0xcd: (3, _NUMBER), 0xce: (5, _NUMBER), 0xcf: (9, _NUMBER),  # uint
    0xd0: (2, _NUMBER), 0xd1: (3, _NUMBER), 0xd2: (5, _NUMBER), 0xd3: (9, _NUMBER),  # int
    0xd4: (3, _EXT + 1), 0xd5: (4, _EXT + 2), 0xd6: (6, _EXT + 4), 0xd7: (10, _EXT + 8),
    0xd8: (18, _EXT + 16),  # fixext 1, 2, 4, 8, 16
}
# per first byte: (bytes of the length that follows, cost of the object without its data)
_SIZED: dict[int, tuple[int, int]] = {
    0xd9: (1, _STR), 0xda: (2, _STR), 0xdb: (4, _STR),
    0xc4: (1, _BIN), 0xc5: (2, _BIN), 0xc6: (4, _BIN),
}
_EXT_SIZED = {0xc7: 1, 0xc8: 2, 0xc9: 4}  # length, then a type byte, then the data
_ARRAY_LEN = {0xdc: 2, 0xdd: 4}
_MAP_LEN = {0xde: 2, 0xdf: 4}


def records_of(samples: int, events: int, frames: int) -> int:
    """The records of a batch; BatchFormatError beyond ``MAX_RECORDS``."""
    records = samples + events + frames
    if records > MAX_RECORDS:
        raise BatchFormatError(f"{samples} samples, {events} events and {frames} frames: "
                               f"{records} records, more than the {MAX_RECORDS} a batch may "
                               f"hold")
    return records


def body_limit(records: int) -> int:
    """Bytes the uncompressed body of a batch of ``records`` may take."""
    return BODY_ALLOWANCE + BODY_BYTES_PER_RECORD * records


def structure_limit(records: int) -> int:
    """Estimated bytes the unpacked body of a batch of ``records`` may take."""
    return STRUCTURE_ALLOWANCE + STRUCTURE_BYTES_PER_RECORD * records


def unpack_options() -> dict[str, Any]:
    """``msgpack.unpackb`` limits for one array, map, string, binary or extension."""
    return {"max_array_len": MAX_ARRAY_LEN, "max_map_len": MAX_MAP_LEN,
            "max_str_len": MAX_STR_LEN, "max_bin_len": MAX_BIN_LEN,
            "max_ext_len": MAX_EXT_LEN}


def check_structure(data: bytes, budget: int, what: str) -> int:
    """The estimated bytes of what ``msgpack.unpackb(data)`` would build (one object, no
    trailing bytes); BatchFormatError, before anything is built, when it would cost
    more than ``budget``, nest deeper than ``MAX_DEPTH`` or is cut short."""
    size = len(data)
    if size * _MOST_PER_BYTE <= budget:  # whatever it holds: no need to look
        return size * _MOST_PER_BYTE
    cost = 0
    pos = 0
    left = [1]  # items still to read in each open container; the root is one item
    while left:
        todo = left[-1]
        if todo == 0:
            left.pop()
            continue
        run = _ONE_BYTE_RUN.match(data, pos, min(size, pos + todo, pos + _RUN_MAX))
        if run is not None:
            chunk = run.group()
            n = len(chunk)
            cost += (8 * n + _NUMBER * (n - len(chunk.translate(None, _NEW_INTS)))
                     + _LIST * chunk.count(0x90) + _MAP_EMPTY * chunk.count(0x80))
            left[-1] = todo - n
            pos += n
        else:
            if pos >= size:
                raise BatchFormatError(f"{what}: msgpack cut short at byte {pos}")
            left[-1] = todo - 1
            pos, item_cost, children = _item(data, pos, size, what)
            cost += 8 + item_cost
            if children:
                if len(left) >= MAX_DEPTH:
                    raise BatchFormatError(f"{what}: msgpack nested deeper than {MAX_DEPTH} "
                                           f"levels")
                if children > size - pos:  # every item takes a byte at least
                    raise BatchFormatError(f"{what}: a container of {children} items in "
                                           f"{size - pos} bytes")
                left.append(children)
        if cost > budget:
            raise BatchFormatError(f"{what}: would take more than {budget} bytes unpacked "
                                   f"(at byte {pos} of {size}; docs/batch-format.md §5.1)")
    if pos != size:
        raise BatchFormatError(f"{what}: {size - pos} bytes after the msgpack object")
    return cost


def _item(data: bytes, pos: int, size: int, what: str) -> tuple[int, int, int]:
    """(position after the item's own bytes, its cost, the items it contains) of the
    item at ``pos`` that is not a one-byte scalar."""
    b = data[pos]
    if 0x90 <= b <= 0x9f:
        n = b & 0x0f
        return pos + 1, _LIST + _LIST_ITEM * n, n
    if 0x80 <= b <= 0x8f:
        n = b & 0x0f
        return pos + 1, (_MAP + _MAP_ITEM * n) if n else _MAP_EMPTY, 2 * n
    if 0xa0 <= b <= 0xbf:
        end = pos + 1 + (b & 0x1f)
        return _within(end, size, what), _STR + (b & 0x1f), 0
    fixed = _FIXED.get(b)
    if fixed is not None:
        return _within(pos + fixed[0], size, what), fixed[1], 0
    sized = _SIZED.get(b)
    if sized is not None:
        width, base = sized
        n = _length(data, pos + 1, width, size, what)
        return _within(pos + 1 + width + n, size, what), base + n, 0
    width = _EXT_SIZED.get(b, 0)
    if width:
        n = _length(data, pos + 1, width, size, what)
        return _within(pos + 2 + width + n, size, what), _EXT + n, 0
    width = _ARRAY_LEN.get(b, 0)
    if width:
        n = _length(data, pos + 1, width, size, what)
        return pos + 1 + width, _LIST + _LIST_ITEM * n, n
    width = _MAP_LEN.get(b, 0)
    if width:
        n = _length(data, pos + 1, width, size, what)
        return pos + 1 + width, (_MAP + _MAP_ITEM * n) if n else _MAP_EMPTY, 2 * n
    raise BatchFormatError(f"{what}: byte 0x{b:02x} at {pos} starts no msgpack item")


def _length(data: bytes, pos: int, width: int, size: int, what: str) -> int:
    _within(pos + width, size, what)
    return int.from_bytes(data[pos:pos + width], "big")


def _within(end: int, size: int, what: str) -> int:
    if end > size:
        raise BatchFormatError(f"{what}: msgpack cut short ({end} of {size} bytes)")
    return end
