"""Replay a recorded CAN log through the pipeline, as fast as possible or paced.

Formats, chosen by suffix (after stripping ``.gz``; gzip is read transparently):

* ``.log``, ``.candump``, ``.txt``: candump text, read by :mod:`agent.sources.candump`;
* ``.asc``: Vector ASCII, python-can's ``ASCReader``;
* ``.blf``: Vector binary logging format, python-can's ``BLFReader``;
* ``.trc``: PEAK trace v1.0 to v2.1, python-can's ``TRCReader``.

Any other suffix is sniffed from the start of the file: ``(`` opens a candump
line, ``LOGG`` a BLF file, ``date``/``base`` an ASC header, ``;$FILEVERSION`` a
TRC header; anything else is a :class:`~agent.errors.LogFormatError`. A file
that starts with gzip's signature is decompressed whatever its name.

The path ``-`` is standard input. A log is opened and read exactly once, as a
stream: the format is sniffed from its first bytes, which are then handed to the
reader again from memory, so a pipe (``cat drive.log | bavard decode -``), a
named pipe or ``/dev/stdin`` replays exactly like the file itself.

Text is read in lines of at most :data:`~agent.sources.candump.MAX_LINE`
characters, never holding a longer one whole: a longer line is skipped and
counted as ``long_line``, in candump, ASC and TRC files alike. A BLF object
larger than :data:`BLF_MAX_OBJECT` ends the replay there (``reader_error``).

Timestamps are kept exactly as the log gives them, whatever ``speed``:

* candump: seconds since the epoch, as written;
* ASC: absolute (the header's ``date`` plus the offset) when the file has a start
  date; without one, or with a date python-can cannot parse, they are relative
  to the start of the recording (a warning says so);
* TRC v1.0 has no start time: timestamps are relative to the start of the
  recording; v1.1 and later are absolute;
* BLF: absolute.

Nothing in a log stops a replay: candump lines are skipped and counted per kind
(see :data:`agent.sources.candump.SKIP_KINDS`); from python-can readers, error
frames and remote frames are counted as ``error_frame`` / ``remote``, and when a
reader raises part-way (python-can stops at the first line or block it cannot
read), the replay ends there cleanly, counting ``reader_error`` and logging the
file and position (line, or byte for BLF). A BLF file shorter than its header
declares, which python-can reads without complaint, is counted ``truncated``.
:meth:`ReplaySource.problems` and :meth:`ReplaySource.summary` report the counts;
:meth:`ReplaySource.unreadable` says when a log that played to its end gave no
frame at all, or mostly lines it could not read.

python-can is imported only when an ASC, BLF or TRC file is replayed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, cast

from agent.errors import LogFormatError, SourceError
from agent.frames import Frame
from agent.sources.base import Source
from agent.sources.candump import (
    INFO_KINDS,
    MAX_LINE,
    OverlongLine,
    parse_candump,
    read_lines,
    report_skipped,
)
from agent.sources.log_formats import LOG_SUFFIXES
from agent.sources.pacing import Pacer
from agent.sources.pycan import frame_from_message

log = logging.getLogger(__name__)

#: skipped kinds added by this module (the candump parser adds its own)
REPLAY_KINDS: dict[str, str] = {
    "reader_error": "the log reader gave up part-way through the file; the replay ended there",
    "truncated": "a BLF file shorter than its header says (python-can stops silently)",
    "error_frame": "a CAN error frame",
    "remote": "a remote frame",
}
_HEAD_BYTES = 4096
_GZIP_MAGIC = b"\x1f\x8b"
#: a log is called unreadable when its bad lines outnumber its frames and are at least this many
MIN_BAD_LINES = 10
#: the largest object read from a BLF file (python-can's own containers hold 128 KiB)
BLF_MAX_OBJECT = 1 << 22
#: the most lines of an ASC header kept to read them again (see ReplaySource._read_asc)
_KEEP_LINES = 1000


class ReplaySource(Source):
    """Frames from a candump / ASC / BLF / TRC log, optionally gzip-compressed.

    ``speed``: 0 = as fast as possible, 1 = real time, N = N times real time;
    waiting is interruptible by the stop event. ``channel`` replaces the log's
    channel on every frame (default: the log's interface name or channel
    number, else the source name). ``clock`` and ``wait`` are handed to the
    :class:`~agent.sources.pacing.Pacer` (``wait=None``: the stop event's wait).

    ``path`` ``-`` is standard input. The file is opened here (to sniff its
    format) and read once by :meth:`frames`; :meth:`close` closes it.

    Raises :class:`~agent.errors.SourceError` when the file cannot be opened and
    :class:`~agent.errors.LogFormatError` when its format is unknown.
    """

    def __init__(
        self,
        name: str,
        path: Path | str,
        *,
        speed: float = 0.0,
        channel: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(name)
        if not (speed >= 0 and math.isfinite(speed)):
            raise SourceError(f"{name}: replay speed must be a number >= 0, got {speed!r}")
        self.path = Path(path)
        self.stdin = str(path) == "-"
        #: how messages name the log
        self.where = "<stdin>" if self.stdin else str(self.path)
        self.speed = speed
        self.channel = channel
        self._clock = clock
        self._wait = wait
        self._files = contextlib.ExitStack()  # closed by close()
        self._played = False  # frames() ran to the end of the log
        self.compressed = False  # gzip, by name or by signature
        try:
            self._stream, head = self._open()
            self._files.callback(self._stream.close)
            #: the open log (None once closed)
            self._file: IO[bytes] | None = self._stream
            self.encoding = _text_encoding(head)
            self.format = _detect_format(self.where, self.path, head)
        except BaseException:
            self._files.close()
            raise

    # -- public -------------------------------------------------------------

    def problems(self) -> dict[str, int]:
        """Skipped lines or messages per kind, sorted by kind (empty when clean)."""
        return dict(sorted(self.stats.skipped.items()))

    def summary(self) -> str:
        """One line for a CLI: ``x.log: 5 frames; skipped 2 (error 1, too_long 1)``."""
        problems = self.problems()
        text = f"{self.where}: {self.stats.frames} frames"
        if problems:
            detail = ", ".join(f"{kind} {count}" for kind, count in problems.items())
            text += f"; skipped {sum(problems.values())} ({detail})"
        return text

    def unreadable(self) -> str | None:
        """Why this log looks unreadable, or None: only once it played to its end.

        Unreadable: no frame at all, or more bad lines (skipped kinds other than
        comments, remote and error frames) than frames, and at least
        :data:`MIN_BAD_LINES` of them.
        """
        if not self._played:
            return None
        frames = self.stats.frames
        bad = {k: n for k, n in self.problems().items() if k not in INFO_KINDS}
        detail = ", ".join(f"{kind} {count}" for kind, count in bad.items())
        if not frames:
            what = f"no CAN frame could be read from it ({self.format} log"
            what += f"; skipped {detail})" if bad else ")"
            return f"{self.where}: {what}"
        total = sum(bad.values())
        if total > frames and total >= MIN_BAD_LINES:
            return (f"{self.where}: mostly unreadable: {total} bad lines or messages for "
                    f"{frames} frames ({detail})")
        return None

    # -- Source hooks -------------------------------------------------------

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        frames = self._candump() if self.format == "candump" else self._python_can()
        if not self.speed:
            for frame in frames:
                if self._closed:  # the reader may hold lines already read: drop them
                    return
                yield frame
        else:
            pacer = Pacer(self.speed, stop, self._clock, self._wait)
            for frame in frames:
                pacer.pace(frame.timestamp)
                if stop.is_set() or self._closed:
                    return
                yield frame
        self._played = not self._closed

    def _close(self) -> None:
        self._files.close()
        self._file = None

    # -- reading ------------------------------------------------------------

    def _open(self) -> tuple[io.BufferedReader, bytes]:
        """The log as one binary stream (decompressed if need be), and its first bytes.

        The first bytes are read once and handed out again by the stream.
        """
        files = self._files
        try:
            if self.stdin:  # a BufferedReader, which typeshed calls a BinaryIO; left open
                raw = cast(io.BufferedReader, sys.stdin.buffer)
            else:
                raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()
                files.callback(raw.close)
        except OSError as exc:
            raise SourceError(f"{self.where}: cannot open log: {exc.strerror or exc}") from exc
        try:
            head = _read_head(raw, _GZIP_MAGIC)
            named_gz = self.path.name.lower().endswith(".gz")
            self.compressed = named_gz or head.startswith(_GZIP_MAGIC)
            if not self.compressed:
                return _replayed(head, raw), head
            if not head.startswith(_GZIP_MAGIC):
                raise LogFormatError(f"{self.where}: not a readable gzip file "
                                     f"(no gzip signature)")
            gz = gzip.GzipFile(fileobj=_replayed(head, raw), mode="rb")
            files.callback(gz.close)
            try:
                head = _read_head(gz)
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise LogFormatError(f"{self.where}: not a readable gzip file: {exc}") from exc
            return _replayed(head, gz), head
        except OSError as exc:
            raise SourceError(f"{self.where}: cannot read log: {exc.strerror or exc}") from exc

    def _text(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(self._stream, encoding=self.encoding, errors="replace")

    def _candump(self) -> Iterator[Frame]:
        lines = read_lines(self._text())
        try:
            yield from parse_candump(lines, self.where, self.channel, self.stats.skipped)
        except SourceError as exc:  # the file itself failed (truncated gzip, I/O error)
            if not self._closed:  # not closed under our feet by close()
                self.stats.skipped["reader_error"] += 1
                log.warning("%s", exc)

    def _python_can(self) -> Iterator[Frame]:
        asc = self.format == "asc"
        messages = self._read_asc() if asc else self._read_with(self.format, {})
        skipped = self.stats.skipped
        override = self.channel
        name = self.name
        for msg in messages:
            chan = override or (name if msg.channel is None else str(msg.channel))
            frame = frame_from_message(msg, chan, skipped)
            if frame is not None:
                yield frame

    def _read_asc(self) -> Iterator[Any]:
        """ASC with absolute timestamps; relative when python-can cannot use the start date.

        The lines python-can read before it failed are handed to it again (the
        log is read only once: it may be a pipe).
        """
        feed = self._feed()
        failed: list[Exception] = []
        yield from self._read_with("asc", {"relative_timestamp": False}, feed, failed)
        if failed:  # failed before the first message: typically "Incompatible datetime string"
            log.warning(
                "%s: ASC reader failed before the first message with absolute timestamps "
                "(%s: %s); retrying with timestamps relative to the start of the recording",
                self.where,
                type(failed[0]).__name__,
                failed[0],
            )
            feed.rewind()
            yield from self._read_with("asc", {"relative_timestamp": True}, feed)

    def _feed(self) -> _LineFeed:
        return _LineFeed(read_lines(self._text()), self.where, self.stats.skipped)

    def _read_with(
        self,
        fmt: str,
        options: dict[str, Any],
        feed: _LineFeed | None = None,
        failed: list[Exception] | None = None,
    ) -> Iterator[Any]:
        """python-can's messages from a ``fmt`` log; a reader exception ends them, counted.

        ``feed``: the lines of a text log (default: a new feed of the log). With
        ``failed`` given, an exception before the first message is only
        appended there (the caller retries) instead of being counted and logged.
        """
        try:
            import can
        except ImportError as exc:  # pragma: no cover - python-can is a dependency
            raise SourceError(f"{self.where}: python-can is needed to read {fmt} logs") from exc
        binary = fmt == "blf"
        reader_cls = {"asc": can.ASCReader, "blf": can.BLFReader, "trc": can.TRCReader}[fmt]
        count = 0
        # python-can's stop() closes what it is given: the feeds' close() is a no-op
        f: _LineFeed | _Bytes = _Bytes(self._stream) if binary else (feed or self._feed())
        try:
            reader = reader_cls(f, **options)
            messages = iter(reader)
            while True:
                try:
                    msg = next(messages)
                except StopIteration:
                    break
                count += 1
                if count == 1:
                    if isinstance(f, _LineFeed):
                        f.keep = False
                    if _without_start_time(fmt, reader):
                        log.warning(
                            "%s: no start time in the %s file: timestamps are relative "
                            "to the start of the recording",
                            self.where,
                            fmt.upper(),
                        )
                yield msg
        except Exception as exc:  # a foreign reader: whatever it raises ends the file
            if self._closed:  # closed under our feet by close(): not the log's fault
                return
            if failed is not None and count == 0 and isinstance(f, _LineFeed) and f.can_rewind:
                failed.append(exc)
                return
            self.stats.skipped["reader_error"] += 1
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if binary:
                where = f"{self.where}: {fmt.upper()} reader stopped at byte {f.position}"
            else:
                where = f"{self.where}:{f.position}: {fmt.upper()} reader stopped"
            log.warning("%s: %s; replay ends there", where, what)
        else:
            declared = getattr(reader, "file_size", 0) if binary else 0
            if isinstance(declared, int) and 0 < f.position < declared:
                self.stats.skipped["truncated"] += 1
                log.warning(
                    "%s: BLF file ends at byte %d of the %d its header declares "
                    "(truncated); replay ends there",
                    self.where,
                    f.position,
                    declared,
                )


class _Binary(Protocol):
    """What is read from: an open file, standard input, a gzip stream."""

    def read1(self, size: int = ..., /) -> bytes: ...

    def readinto1(self, buffer: Any, /) -> int: ...


class _Replayed(io.RawIOBase):
    """``head`` (bytes already read from ``rest``), then the rest of ``rest``.

    Closing it leaves ``rest`` open: the replay closes what it opened itself.
    """

    def __init__(self, head: bytes, rest: _Binary) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto1(buffer)


def _replayed(head: bytes, rest: _Binary) -> io.BufferedReader:
    return io.BufferedReader(_Replayed(head, rest), buffer_size=1 << 16)


def _read_head(f: _Binary, enough: bytes | None = None) -> bytes:
    """The first bytes of ``f``: up to :data:`_HEAD_BYTES`, fewer from a slow pipe.

    Stops once a non-blank line is complete (all a format is sniffed from), or
    once the head starts with ``enough``, so that a live pipe is not waited on.
    """
    head = b""
    while len(head) < _HEAD_BYTES:
        chunk = f.read1(_HEAD_BYTES - len(head))
        if not chunk:
            break
        head += chunk
        if (enough is not None and head.startswith(enough)) or b"\n" in head.lstrip():
            break
    return head


class _LineFeed:
    """The lines of a text log for python-can's readers, none over MAX_LINE characters.

    An over-long line is counted and logged as ``long_line`` here and never
    reaches the reader. While ``keep`` is set, the lines handed out are kept
    (at most :data:`_KEEP_LINES`) so that :meth:`rewind` can hand them out again.
    ``position`` is the line number of the last line handed out.
    """

    def __init__(self, lines: Iterator[str], where: str, skipped: Any) -> None:
        self._lines = lines
        self._where = where
        self._skipped = skipped
        self.position = 0
        self._read = 0  # lines read from the file
        self.keep = True
        self._kept: list[tuple[int, str]] = []
        self._again: deque[tuple[int, str]] = deque()

    @property
    def can_rewind(self) -> bool:
        return self.keep

    def rewind(self) -> None:
        self._again.extend(self._kept)
        self._kept = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self._again:
            self.position, line = self._again.popleft()
        else:
            while True:
                line = next(self._lines)
                self._read += 1
                if type(line) is not OverlongLine:
                    break
                report_skipped("long_line", f"line longer than {MAX_LINE} characters",
                               self._skipped, self._where, self._read, line)
            self.position = self._read
        if self.keep:
            self._kept.append((self.position, line))
            if len(self._kept) > _KEEP_LINES:
                self.keep = False
                self._kept = []
        return line

    def close(self) -> None:
        pass


class _Bytes:
    """A binary log for python-can's BLF reader: counts bytes, refuses huge reads.

    ``close`` is a no-op: the replay owns the file and closes it itself.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.position = 0  # bytes read

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > BLF_MAX_OBJECT:
            raise LogFormatError(f"an object of {size} bytes, more than the "
                                 f"{BLF_MAX_OBJECT} bytes allowed")
        data = self._f.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        pass


def _without_start_time(fmt: str, reader: Any) -> bool:
    """True when python-can gives timestamps relative to the start of the recording."""
    if fmt == "asc":
        return getattr(reader, "date", "") is None  # no "date ..." header line
    if fmt == "trc":
        return getattr(reader, "start_time", "") is None  # v1.0, or no $STARTTIME
    return False


def _text_encoding(head: bytes) -> str:
    """UTF-8 unless the head of the file is not valid UTF-8 (then cp1252, Vector's habit)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the head
            return "cp1252"
    return "utf-8"


def _detect_format(where: str, path: Path, head: bytes) -> str:
    name = path.name.lower()
    inner = name[:-3] if name.endswith(".gz") else name
    suffix = Path(inner).suffix
    fmt = LOG_SUFFIXES.get(suffix)
    if fmt == "blf" and not head.startswith(b"LOGG"):
        raise LogFormatError(f"{where}: not a BLF file (no 'LOGG' signature)")
    if fmt is not None:
        return fmt
    if head.startswith(b"LOGG"):
        return "blf"
    text = head.decode("utf-8", errors="replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    lower = first.lower()
    if first.startswith("("):
        return "candump"
    if lower.startswith(("date ", "base ")):
        return "asc"
    if lower.startswith(";$fileversion"):
        return "trc"
    shown = repr(first[:60]) if first else "an empty file"
    raise LogFormatError(
        f"{where}: unknown log format (suffix {suffix or 'none'!r}; starts with {shown}); "
        f"known suffixes: {', '.join(sorted(LOG_SUFFIXES))}, optionally .gz"
    )
