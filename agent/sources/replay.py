"""Replay a recorded CAN log through the pipeline, as fast as possible or paced.

Formats, chosen by suffix (after stripping ``.gz``; gzip is read transparently):

* ``.log``, ``.candump``, ``.txt``: candump text, read by :mod:`agent.sources.candump`;
* ``.asc``: Vector ASCII, python-can's ``ASCReader``;
* ``.blf``: Vector binary logging format, python-can's ``BLFReader``;
* ``.trc``: PEAK trace v1.0 to v2.1, python-can's ``TRCReader``.

Any other suffix is sniffed from the start of the file: ``(`` opens a candump
line, ``LOGG`` a BLF file, ``date``/``base`` an ASC header, ``;$FILEVERSION`` a
TRC header; anything else is a :class:`~agent.errors.LogFormatError`.

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
:meth:`ReplaySource.problems` and :meth:`ReplaySource.summary` report the counts.

python-can is imported only when an ASC, BLF or TRC file is replayed.
"""

from __future__ import annotations

import gzip
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from agent.errors import LogFormatError, SourceError
from agent.frames import Frame
from agent.sources.base import Source
from agent.sources.candump import parse_candump
from agent.sources.pacing import Pacer
from agent.sources.pycan import frame_from_message

log = logging.getLogger(__name__)

#: lower-case suffix (after stripping ".gz") -> format
SUFFIXES: dict[str, str] = {
    ".log": "candump",
    ".candump": "candump",
    ".txt": "candump",
    ".asc": "asc",
    ".blf": "blf",
    ".trc": "trc",
}
#: skipped kinds added by this module (the candump parser adds its own)
REPLAY_KINDS: dict[str, str] = {
    "reader_error": "the log reader gave up part-way through the file; the replay ended there",
    "truncated": "a BLF file shorter than its header says (python-can stops silently)",
    "error_frame": "a CAN error frame",
    "remote": "a remote frame",
}
_HEAD_BYTES = 4096
_CAN_SFF_MASK = 0x7FF


class ReplaySource(Source):
    """Frames from a candump / ASC / BLF / TRC log, optionally gzip-compressed.

    ``speed``: 0 = as fast as possible, 1 = real time, N = N times real time;
    waiting is interruptible by the stop event. ``channel`` replaces the log's
    channel on every frame (default: the log's interface name or channel
    number, else the source name). ``clock`` and ``wait`` are handed to the
    :class:`~agent.sources.pacing.Pacer` (``wait=None``: the stop event's wait).

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
        self.speed = speed
        self.channel = channel
        self._clock = clock
        self._wait = wait
        self._file: IO[Any] | None = None
        self.compressed = self.path.name.lower().endswith(".gz")
        head = self._read_head()
        self.encoding = _text_encoding(head)
        self.format = _detect_format(self.path, self.compressed, head)

    # -- public -------------------------------------------------------------

    def problems(self) -> dict[str, int]:
        """Skipped lines or messages per kind, sorted by kind (empty when clean)."""
        return dict(sorted(self.stats.skipped.items()))

    def summary(self) -> str:
        """One line for a CLI: ``x.log: 5 frames; skipped 2 (error 1, too_long 1)``."""
        problems = self.problems()
        text = f"{self.path}: {self.stats.frames} frames"
        if problems:
            detail = ", ".join(f"{kind} {count}" for kind, count in problems.items())
            text += f"; skipped {sum(problems.values())} ({detail})"
        return text

    # -- Source hooks -------------------------------------------------------

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        frames = self._candump() if self.format == "candump" else self._python_can()
        if not self.speed:
            yield from frames
            return
        pacer = Pacer(self.speed, stop, self._clock, self._wait)
        for frame in frames:
            pacer.pace(frame.timestamp)
            if stop.is_set():
                return
            yield frame

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- reading ------------------------------------------------------------

    def _open(self, binary: bool) -> IO[Any]:
        """The log file, decompressed if need be; text is decoded leniently."""
        opener: Callable[..., IO[Any]] = gzip.open if self.compressed else open
        try:
            if binary:
                return opener(self.path, "rb")
            return opener(self.path, "rt", encoding=self.encoding, errors="replace")
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open log: {exc.strerror or exc}") from exc

    def _read_head(self) -> bytes:
        f = self._open(binary=True)
        try:
            with f:
                head: bytes = f.read(_HEAD_BYTES)
                return head
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise LogFormatError(f"{self.path}: not a readable gzip file: {exc}") from exc
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read log: {exc.strerror or exc}") from exc

    def _candump(self) -> Iterator[Frame]:
        with self._open(binary=False) as f:
            self._file = f
            try:
                yield from parse_candump(f, str(self.path), self.channel, self.stats.skipped)
            except SourceError as exc:  # the file itself failed (truncated gzip, I/O error)
                if self._file is not None:  # not closed under our feet by close()
                    self.stats.skipped["reader_error"] += 1
                    log.warning("%s", exc)
            finally:
                self._file = None

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
        """ASC with absolute timestamps; relative when python-can cannot use the start date."""
        failed: list[Exception] = []
        yield from self._read_with("asc", {"relative_timestamp": False}, failed)
        if failed:  # failed before the first message: typically "Incompatible datetime string"
            log.warning(
                "%s: ASC reader failed before the first message with absolute timestamps "
                "(%s: %s); retrying with timestamps relative to the start of the recording",
                self.path,
                type(failed[0]).__name__,
                failed[0],
            )
            yield from self._read_with("asc", {"relative_timestamp": True})

    def _read_with(
        self, fmt: str, options: dict[str, Any], failed: list[Exception] | None = None
    ) -> Iterator[Any]:
        """python-can's messages from a ``fmt`` log; a reader exception ends them, counted.

        With ``failed`` given, an exception before the first message is only
        appended there (the caller retries) instead of being counted and logged.
        """
        try:
            import can
        except ImportError as exc:  # pragma: no cover - python-can is a dependency
            raise SourceError(f"{self.path}: python-can is needed to read {fmt} logs") from exc
        binary = fmt == "blf"
        reader_cls = {"asc": can.ASCReader, "blf": can.BLFReader, "trc": can.TRCReader}[fmt]
        count = 0
        with self._open(binary) as raw:
            self._file = raw
            f = _Tracked(raw)  # counts lines / bytes; python-can's stop() must not close it
            try:
                reader = reader_cls(f, **options)
                messages = iter(reader)
                while True:
                    try:
                        msg = next(messages)
                    except StopIteration:
                        break
                    count += 1
                    if count == 1 and _without_start_time(fmt, reader):
                        log.warning(
                            "%s: no start time in the %s file: timestamps are relative "
                            "to the start of the recording",
                            self.path,
                            fmt.upper(),
                        )
                    yield msg
            except Exception as exc:  # a foreign reader: whatever it raises ends the file
                if self._file is None:  # closed under our feet by close(): not the log's fault
                    return
                if failed is not None and count == 0:
                    failed.append(exc)
                    return
                self.stats.skipped["reader_error"] += 1
                what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if binary:
                    where = f"{self.path}: {fmt.upper()} reader stopped at byte {f.position}"
                else:
                    where = f"{self.path}:{f.position}: {fmt.upper()} reader stopped"
                log.warning("%s: %s; replay ends there", where, what)
            else:
                declared = getattr(reader, "file_size", 0) if binary else 0
                if isinstance(declared, int) and 0 < f.position < declared:
                    self.stats.skipped["truncated"] += 1
                    log.warning(
                        "%s: BLF file ends at byte %d of the %d its header declares "
                        "(truncated); replay ends there",
                        self.path,
                        f.position,
                        declared,
                    )
            finally:
                self._file = None


class _Tracked:
    """A file wrapper counting the lines (text) or bytes (binary) handed to a reader.

    ``close`` is a no-op: the replay owns the file and closes it itself.
    """

    def __init__(self, f: IO[Any]) -> None:
        self._f = f
        self.position = 0  # lines handed out, or bytes read

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> Any:
        line = next(self._f)
        self.position += 1
        return line

    def read(self, size: int = -1) -> Any:
        data = self._f.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


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


def _detect_format(path: Path, compressed: bool, head: bytes) -> str:
    name = path.name.lower()
    inner = name[:-3] if compressed else name
    suffix = Path(inner).suffix
    fmt = SUFFIXES.get(suffix)
    if fmt == "blf" and not head.startswith(b"LOGG"):
        raise LogFormatError(f"{path}: not a BLF file (no 'LOGG' signature)")
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
        f"{path}: unknown log format (suffix {suffix or 'none'!r}; starts with {shown}); "
        f"known suffixes: {', '.join(sorted(SUFFIXES))}, optionally .gz"
    )
