"""A fast, tolerant parser of candump text logs.

Two forms are read, line by line, mixed freely:

* the log form of ``candump -l`` / ``candump -L`` (what ``canplayer`` replays)::

      (1436509052.249713) vcan0 123#11223344           classic, 11-bit id
      (1436509052.249713) vcan0 12345678#1122          29-bit id (more than 3 digits)
      (1436509052.249713) vcan0 123##1112233           CAN FD: flags nibble, then data
      (1436509052.249713) vcan0 123#11223344 R         direction suffix ``T``/``R``

* the human form of ``candump -ta`` (``-x`` columns and the ASCII column accepted)::

      (1436509052.249713)  can0  123   [4]  11 22 33 44
      (1436509052.249713)  can0  123  [04]  11 22 33 44    CAN FD (two-digit length)

A line that is not a data frame is skipped, counted in ``stats[kind]`` and
logged as ``path:line: what`` (see :data:`SKIP_KINDS`); the rest of the log
still plays. Blank lines are ignored without being counted. Timestamps are never
invented: a frame without ``(seconds)`` is skipped as ``no_timestamp``.

Lines are cut from a text file by :func:`read_lines`, which never holds more than
:data:`MAX_LINE` characters of one line: a longer line (a corrupt or hostile
log, e.g. gigabytes without a newline) is skipped as ``long_line`` like any
other bad line, and the rest of the log still plays.

Speed: the good path is one ``str.split``, one ``str.partition``, one ``float``,
one ``bytes.fromhex`` and two dict look-ups per line, with no function call
besides those: 450k-560k lines/s here, 3-4.5x python-can 4.6's
``CanutilsLogReader`` in the same run (``scripts/bench_replay.py``). Everything
unusual (first sight of an id, CAN FD, remote and error frames, the human form,
bad lines) takes the slow path.
"""

from __future__ import annotations

import itertools
import logging
import math
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, SupportsIndex

from agent.errors import SourceError
from agent.frames import Frame

log = logging.getLogger(__name__)

#: kind -> what it means. Kinds in :data:`INFO_KINDS` are legitimate log content
#: (logged at DEBUG); every other kind is a damaged line (logged as a WARNING).
SKIP_KINDS: dict[str, str] = {
    "comment": "a comment line starting with '#'",
    "remote": "a remote frame (123#R, 123#R5, '[4]  remote request')",
    "error_frame": "a CAN error frame (id with CAN_ERR_FLAG 0x20000000)",
    "error": "an 'ERROR' line in place of a frame (e.g. 'vcan0 ERROR')",
    "no_timestamp": "a frame without '(seconds)' in front",
    "bad_timestamp": "a '(...)' timestamp that is not a finite number",
    "truncated": "a line that stops before its frame is complete",
    "bad_hex": "a non-hexadecimal character in the id, flags or data",
    "odd_length": "data with an odd number of hex digits",
    "too_long": "more than 8 data bytes in a classic frame, more than 64 in CAN FD",
    "bad_length": "a CAN FD length that no DLC encodes (9-11, 13-15, ...), or a wrong [n]",
    "bad_id": "an empty id, more than 8 digits, or beyond 0x7FF / 0x1FFFFFFF",
    "unsupported": "a CAN XL frame (id###...)",
    "bad_format": "anything else that is not a candump line",
    "long_line": "a line longer than MAX_LINE (4096) characters, read only that far",
}
INFO_KINDS = frozenset({"comment", "remote", "error_frame"})

#: warnings logged per kind before further lines of that kind are only counted
DEFAULT_WARN_LIMIT = 100

#: the longest line read from a text log, in characters without the newline. A
#: candump line of a 64-byte CAN FD frame on a 15-character interface name is
#: about 170; an ASC or TRC line about 250. Longer lines are skipped (``long_line``).
MAX_LINE = 4096
_BLOCK = 1 << 16  # characters read from the file at a time

CAN_ERR_FLAG = 0x20000000
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x7FF
FD_LENGTHS = frozenset((*range(9), 12, 16, 20, 24, 32, 48, 64))
_HEX = "0123456789abcdefABCDEF"
_DIRECTIONS = frozenset(("T", "R", "t", "r"))
_ID_CACHE_MAX = 8192  # distinct ids remembered on the fast path (a real bus has < 1000)


_Ids = dict[str, tuple[int, bool]]  # id text -> (id, extended), already validated


class OverlongLine(str):
    """The first characters of a line longer than :data:`MAX_LINE` (from :func:`read_lines`).

    Never a frame: :func:`parse_candump` skips it as ``long_line``. It splits into
    one word, so that it never takes the fast path whatever its text.
    """

    __slots__ = ()

    def split(self, sep: str | None = None, maxsplit: SupportsIndex = -1) -> list[str]:
        return [str(self)[:1] or "-"]


def read_lines(f: IO[str], limit: int = MAX_LINE, block: int = _BLOCK) -> Iterator[str]:
    """The lines of a text file without their newline, none longer than ``limit``.

    A line longer than ``limit`` characters comes as an :class:`OverlongLine`
    holding its first 100 characters; the rest of it is read and dropped in
    blocks, so memory stays bounded by ``block + limit`` characters whatever the
    file holds. The last line need not end with a newline.
    """
    return itertools.chain.from_iterable(_line_blocks(f, limit, block))


def _line_blocks(f: IO[str], limit: int, block: int) -> Iterator[list[str]]:
    carry = ""  # the start of a line whose end is not read yet
    dropping = False  # inside an over-long line already reported: drop up to its newline
    read = f.read
    while text := read(block):
        lines = text.split("\n")
        if dropping:
            if len(lines) == 1:
                continue
            del lines[0]
            dropping = False
        elif carry:
            lines[0] = carry + lines[0]
        carry = lines.pop()
        if len(carry) > limit:
            lines.append(OverlongLine(carry[:100]))
            carry, dropping = "", True
        if lines and max(map(len, lines)) > limit:
            lines = [OverlongLine(line[:100]) if len(line) > limit else line for line in lines]
        if lines:
            yield lines
    if carry:
        yield [carry]


def report_skipped(
    kind: str,
    what: str,
    stats: Counter[str],
    path: str,
    lineno: int,
    line: str,
    warn_limit: int | None = DEFAULT_WARN_LIMIT,
) -> None:
    """Count a skipped line of ``kind`` and log it as ``path:line: what (kind): text``."""
    _report(_Skip(kind, what), stats, warn_limit, path, lineno, line)


class _Skip(Exception):
    """Raised by the slow path for a line to skip (internal: never leaves this module)."""

    def __init__(self, kind: str, what: str) -> None:
        super().__init__(kind, what)
        self.kind = kind
        self.what = what


def parse_candump(
    lines: Iterable[str],
    path: str = "<candump>",
    channel: str | None = None,
    stats: Counter[str] | None = None,
    *,
    warn_limit: int | None = DEFAULT_WARN_LIMIT,
) -> Iterator[Frame]:
    """Yield the data frames of a candump log, skipping (and counting) the rest.

    ``path`` names the log in messages; ``channel``, when given, replaces the
    interface name of every frame; ``stats`` receives ``kind -> count`` of the
    skipped lines (see :data:`SKIP_KINDS`). At most ``warn_limit`` lines per
    kind are logged (``None``: all); later ones are only counted.

    An error reading ``lines`` itself (I/O, a truncated gzip stream) is raised as
    :class:`~agent.errors.SourceError` naming the last line read.
    """
    if stats is None:
        stats = Counter()
    new = tuple.__new__
    fromhex = bytes.fromhex
    ids: _Ids = {}
    lineno = 0
    try:
        for line in lines:
            lineno += 1
            parts = line.split()
            n = len(parts)
            # fast path: "(ts) chan iii#dddd" [T|R], a classic data frame with an id seen before
            if n == 3 or (n == 4 and parts[3] in _DIRECTIONS):
                ts_s = parts[0]
                id_s, hash_, data_s = parts[2].partition("#")
                known = ids.get(id_s)
                if known is not None and hash_ and ts_s[0] == "(" and ts_s[-1] == ")":
                    try:
                        ts = float(ts_s[1:-1])
                        data = fromhex(data_s)  # FD "#..." and remote "R" raise: slow path
                    except ValueError:
                        pass
                    else:
                        # ts - ts is nan for inf and nan, whose lines the slow path skips
                        if len(data) <= 8 and ts - ts == 0.0:
                            chan = channel or parts[1]
                            yield new(Frame, (ts, chan, known[0], known[1], False, data))
                            continue
            if n == 0:
                continue
            try:
                frame = _parse_slow(parts, line, channel, ids)
            except _Skip as skip:
                _report(skip, stats, warn_limit, path, lineno, line)
                continue
            except ValueError as exc:  # defensive: a line the slow path did not foresee
                odd = _Skip("bad_format", f"unreadable line ({exc})")
                _report(odd, stats, warn_limit, path, lineno, line)
                continue
            yield frame
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # from reading `lines` itself
        raise SourceError(f"{path}: cannot read past line {lineno}: {exc}") from exc


def _report(
    skip: _Skip, stats: Counter[str], warn_limit: int | None, path: str, lineno: int, line: str
) -> None:
    kind = skip.kind
    count = stats[kind] = stats[kind] + 1
    if warn_limit is None or count <= warn_limit:
        level = logging.DEBUG if kind in INFO_KINDS else logging.WARNING
        log.log(level, "%s:%d: %s (%s): %s", path, lineno, skip.what, kind, _excerpt(line))
        if count == warn_limit:
            log.log(level, "%s:%d: further %r lines are counted, not logged", path, lineno, kind)


def _excerpt(line: str, limit: int = 80) -> str:
    text = line.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_slow(parts: list[str], line: str, channel: str | None, ids: _Ids) -> Frame:
    """Parse what the fast path declined: return the frame or raise :class:`_Skip`."""
    if type(line) is OverlongLine:
        raise _Skip("long_line", f"line longer than {MAX_LINE} characters")
    first = parts[0]
    if first[0] == "#":
        raise _Skip("comment", "comment line")
    if first[0] != "(":
        if "#" in line or "[" in line:
            raise _Skip("no_timestamp", "frame without a '(seconds)' timestamp")
        raise _Skip("bad_format", "not a candump line")
    if first[-1] != ")":
        if len(parts) == 1:
            raise _Skip("truncated", "line ends inside the timestamp")
        raise _Skip("bad_timestamp", f"timestamp {first!r} is not '(seconds)'")
    try:
        ts = float(first[1:-1])
    except ValueError:
        raise _Skip("bad_timestamp", f"timestamp {first!r} is not a number") from None
    if not math.isfinite(ts):  # 'inf', 'nan', '1e999': no time to pace or store by
        raise _Skip("bad_timestamp", f"timestamp {first!r} is not a finite number")
    n = len(parts)
    if n < 3:
        raise _Skip("truncated", "line ends before the frame")
    chan = channel or parts[1]
    frame_s = parts[2]
    if frame_s.upper() == "ERROR":
        raise _Skip("error", "ERROR line")
    if "#" not in frame_s:
        return _parse_human(parts, ts, chan, ids)
    if n > 4 or (n == 4 and parts[3] not in _DIRECTIONS):
        raise _Skip("bad_format", f"unexpected {parts[3]!r} after the frame")
    id_s, _, data_s = frame_s.partition("#")
    can_id, extended = _parse_id(id_s, ids)
    fd = data_s[:1] == "#"
    if fd:
        flags = data_s[1:2]
        if flags == "#":
            raise _Skip("unsupported", "CAN XL frame")
        if not flags:
            raise _Skip("truncated", "CAN FD frame ends before its flags")
        if flags not in _HEX:
            raise _Skip("bad_hex", f"bad hex in CAN FD flags {flags!r}")
        data_s = data_s[2:]
    elif data_s[:1] in ("R", "r"):
        raise _Skip("remote", "remote frame")
    elif "_" in data_s:  # classic frame with a raw DLC 9..F: "1122334455667788_E"
        data_s, _, dlc = data_s.partition("_")
        if len(dlc) != 1 or dlc not in _HEX:
            raise _Skip("bad_hex", f"bad raw DLC {dlc!r}")
    return Frame(ts, chan, can_id, extended, fd, _parse_data(data_s, fd))


def _parse_id(id_s: str, ids: _Ids) -> tuple[int, bool]:
    if not id_s:
        raise _Skip("bad_id", "empty id")
    if id_s.strip(_HEX):
        raise _Skip("bad_hex", f"bad hex in id {id_s!r}")
    if len(id_s) > 8:
        raise _Skip("bad_id", f"id {id_s!r} has more than 8 digits")
    can_id = int(id_s, 16)
    if can_id & CAN_ERR_FLAG:
        raise _Skip("error_frame", "error frame")
    extended = len(id_s) > 3
    if can_id > (CAN_EFF_MASK if extended else CAN_SFF_MASK):
        raise _Skip("bad_id", f"id {id_s!r} out of range")
    if len(ids) < _ID_CACHE_MAX:
        ids[id_s] = (can_id, extended)
    return can_id, extended


def _parse_data(data_s: str, fd: bool) -> bytes:
    if data_s.strip(_HEX):
        raise _Skip("bad_hex", f"bad hex in data {data_s!r}")
    if len(data_s) % 2:
        raise _Skip("odd_length", f"odd number of hex digits ({len(data_s)}) in data")
    size = len(data_s) // 2
    if size > (64 if fd else 8):
        kind = "CAN FD" if fd else "classic"
        raise _Skip("too_long", f"{size} data bytes in a {kind} frame")
    if fd and size not in FD_LENGTHS:
        raise _Skip("bad_length", f"{size} data bytes is not a CAN FD length")
    return bytes.fromhex(data_s)


def _parse_human(parts: list[str], ts: float, chan: str, ids: _Ids) -> Frame:
    """``(ts) can0 [RX - -] 123 [4] 11 22 33 44 ['....'|ERRORFRAME]``."""
    n = len(parts)
    k = 3  # index of "[len]"; "-x" puts "RX - -" (or "TX B E") before the id
    while k < n and not (parts[k][:1] == "[" and parts[k][-1:] == "]"):
        k += 1
    if k >= n or k > 6:
        if n <= 4:
            raise _Skip("truncated", "line ends inside the frame")
        raise _Skip("bad_format", "neither 'id#data' nor 'id [len] data'")
    size_s = parts[k][1:-1]
    if not (size_s.isascii() and size_s.isdigit()):
        raise _Skip("bad_length", f"length {parts[k]!r} is not a number")
    size = int(size_s)
    fd = len(size_s) == 2  # candump prints "[%02d]" for CAN FD, "[%d]" for classic
    can_id, extended = _parse_id(parts[k - 1], ids)
    if parts[k + 1 : k + 2] == ["remote"]:
        raise _Skip("remote", "remote frame")
    data_tokens = parts[k + 1 : k + 1 + size]
    if len(data_tokens) < size:
        raise _Skip("truncated", f"{len(data_tokens)} of {size} data bytes")
    for token in data_tokens:
        if len(token) != 2:
            kind = "odd_length" if not token.strip(_HEX) else "bad_hex"
            raise _Skip(kind, f"data byte {token!r} is not two hex digits")
    return Frame(ts, chan, can_id, extended, fd, _parse_data("".join(data_tokens), fd))
