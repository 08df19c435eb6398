"""Where simulated frames go: a log file in the format its name says, or a python-can bus.

Log formats, chosen by the file name's ending (lower-cased), each read back by
``bavard decode`` / the replay source:

==================================  =============================================
``.log``, ``.candump``, ``.txt``    candump ``-l`` text (this module)
the same with ``.gz``               the same, gzip-compressed (reproducible: no
                                    time in the gzip header)
``.asc``, ``.asc.gz``               Vector ASCII, python-can's ``ASCWriter``
``.blf``                            Vector BLF, python-can's ``BLFWriter`` (already
                                    compressed; it rewrites its header at the end,
                                    so no ``.blf.gz``)
``.trc``, ``.trc.gz``               PEAK trace 2.1, python-can's ``TRCWriter`` (no
                                    CAN FD: python-can cannot write it there)
==================================  =============================================

Any other name is refused (:func:`output_format` raises ``ValueError``) rather
than written as text that would not read back. Timestamps read back to the
microsecond in every format (ASC stores local time: read it back in the same
time zone). Channels: candump keeps the name; ASC, BLF and TRC hold a number
(``can0`` is written as channel 1, which python-can reads back as ``0`` from ASC
and BLF, ``1`` from TRC).
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from agent.errors import BavardError, SourceError
from agent.frames import Frame
from agent.sources.log_formats import LOG_SUFFIXES

#: formats that may be gzip-compressed on the way out
GZIP_FORMATS = frozenset({"candump", "asc", "trc"})


def output_format(path: str | Path) -> tuple[str, bool]:
    """``(format, gzip)`` for a log file name; ValueError naming the known endings."""
    name = Path(path).name.lower()
    compressed = name.endswith(".gz")
    inner = name[:-3] if compressed else name
    fmt = LOG_SUFFIXES.get(Path(inner).suffix)
    known = ", ".join(sorted(LOG_SUFFIXES)) + "; .gz after .log, .candump, .txt, .asc, .trc"
    if fmt is None:
        raise ValueError(f"{path}: unknown log format (known endings: {known})")
    if compressed and fmt not in GZIP_FORMATS:
        raise ValueError(f"{path}: a BLF file is compressed already: write {Path(inner).name}")
    return fmt, compressed


def candump_line(frame: Frame) -> str:
    """One ``candump -l`` line (without the newline) for ``frame``."""
    ident = f"{frame.arbitration_id:08X}" if frame.is_extended else f"{frame.arbitration_id:03X}"
    sep = "##0" if frame.is_fd else "#"
    return f"({frame.timestamp:.6f}) {frame.channel} {ident}{sep}{frame.data.hex().upper()}"


def write_candump(frames: Iterable[Frame], out: Path | str | IO[str]) -> int:
    """Write ``frames`` as a ``candump -l`` log to a path or an open text file; the count."""
    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="ascii", newline="\n") as handle:
            return write_candump(frames, handle)
    count = 0
    lines: list[str] = []
    for frame in frames:
        lines.append(candump_line(frame) + "\n")
        if len(lines) >= 4096:
            out.writelines(lines)
            count += len(lines)
            lines.clear()
    out.writelines(lines)
    return count + len(lines)


def write_log(frames: Iterable[Frame], path: Path | str) -> int:
    """Write ``frames`` to ``path`` in the format its name says (see the module); the count.

    ValueError for a name of no known format (nothing is written then);
    :class:`~agent.errors.BavardError` when the file cannot be written, or for a
    CAN FD frame bound for a TRC file.
    """
    fmt, compressed = output_format(path)
    try:
        if fmt == "blf":
            return _write_python_can(frames, fmt, str(path))
        with _open_text(path, compressed, fmt) as out:
            if fmt == "candump":
                return write_candump(frames, out)
            return _write_python_can(frames, fmt, out)
    except OSError as exc:
        raise BavardError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _open_text(path: Path | str, compressed: bool, fmt: str) -> IO[str]:
    newline = "\r\n" if fmt == "trc" else "\n"  # PEAK's own files end lines with CRLF
    if not compressed:
        return open(path, "w", encoding="utf-8", newline=newline)
    raw = gzip.GzipFile(path, "wb", mtime=0)  # no time in the header: reproducible output
    return io.TextIOWrapper(raw, encoding="utf-8", newline=newline)


def _message(frame: Frame, **extra: Any) -> Any:
    import can

    return can.Message(timestamp=frame.timestamp, arbitration_id=frame.arbitration_id,
                       is_extended_id=frame.is_extended, is_fd=frame.is_fd, data=frame.data,
                       **extra)


def _write_python_can(frames: Iterable[Frame], fmt: str, out: str | IO[str]) -> int:
    import can

    writer_cls = {"asc": can.ASCWriter, "blf": can.BLFWriter, "trc": can.TRCWriter}[fmt]
    stream = iter(frames)
    first = next(stream, None)
    count = 0
    writer = writer_cls(out)
    try:
        if first is None:
            return 0
        if fmt == "asc":
            # python-can starts the trigger block at the first event and writes its time
            # to the millisecond, unpadded (5 ms as ".5", read back as 500 ms): start it
            # on the whole second before the first frame, so that every timestamp reads
            # back to the microsecond.
            writer.log_event("Start of simulation", float(math.floor(first.timestamp)))
        for frame in _chain(first, stream):
            if frame.is_fd and fmt == "trc":
                raise BavardError(f"{getattr(out, 'name', out)}: python-can cannot write CAN FD "
                                  f"frames to a TRC file (frame 0x{frame.arbitration_id:X}): "
                                  "choose .log, .asc or .blf")
            writer.on_message_received(_message(frame, channel=frame.channel, is_rx=True))
            count += 1
    finally:
        writer.stop()
    return count


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def send_to_bus(frames: Iterable[Frame], bus: Any) -> int:
    """Send ``frames`` to a python-can bus, in order, without pacing; the count sent.

    ``can.CanError`` and ``OSError`` become :class:`~agent.errors.SourceError`.
    """
    import can

    count = 0
    for frame in frames:
        message = _message(frame)
        try:
            bus.send(message)
        except (can.CanError, OSError) as exc:
            raise SourceError(f"sending to {bus.channel_info}: {exc}") from exc
        count += 1
    return count
