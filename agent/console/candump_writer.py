"""Write a candump ``-l`` log the way ``candump -l`` itself does, safely.

The line, exactly as can-utils prints it (``lib.c``, ``candump -l``)::

    (1690000000.123456) can0 123#DEADBEEF      classic, 11-bit id: 3 hex digits
    (1690000000.123456) can0 12345678#11       29-bit id: 8 hex digits
    (1690000000.123456) can0 123##5AABB        CAN FD: '##', the flags nibble, the data
    (1690000000.123456) can0 123#R4            a remote frame asking for 4 bytes
    (1690000000.123456) can0 123#1122334455667788_C   8 bytes sent with a raw DLC of 12

Seconds are zero-padded to 10 digits and microseconds to 6, hex is upper case.
The flags nibble is the kernel's ``canfd_frame.flags``: 0x4 (``CANFD_FDF``, set on
every CAN FD frame by Linux 6.x, which candump writes as it gets it), plus 0x1 for a
bit rate switch (BRS) and 0x2 for an error state indicator (ESI) when they are
known. ``canplayer`` replays such a file, and ``bavard decode`` reads it back.

Safety: the log is written under a temporary name beside the target
(``.NAME.XXXX.part``, 0600 like every file of vehicle data here) and renamed to
it by :meth:`CandumpWriter.commit` after an fsync: a crash or a kill leaves no
half file under the final name, at most the ``.part`` file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

from agent.atomic_file import fsync_dir
from agent.errors import BavardError

FDF = 0x4  # CANFD_FDF: the frame is a CAN FD frame
BRS = 0x1  # CANFD_BRS: bit rate switch
ESI = 0x2  # CANFD_ESI: error state indicator of the transmitter
_FLUSH_LINES = 512  # lines kept in memory before they are handed to the file


Stamp = float | tuple[int, int]  # seconds, or the kernel's (seconds, microseconds)


def candump_line(timestamp: Stamp, channel: str, can_id: int, extended: bool, data: bytes,
                 fd: bool = False, flags: int = FDF, tail: str = "") -> str:
    """One ``candump -l`` line, newline included. ``timestamp``: seconds, or exactly
    the kernel's ``(seconds, microseconds)``; ``flags``: the CAN FD flags nibble (only
    for ``fd`` frames; FDF by default, see the module docstring); ``tail``: what
    candump writes after a classic frame's data (:func:`classic_tail`)."""
    if isinstance(timestamp, tuple):
        stamp = f"{timestamp[0]:010d}.{timestamp[1]:06d}"
    else:
        stamp = f"{timestamp:017.6f}"
    ident = f"{can_id:08X}" if extended else f"{can_id:03X}"
    sep = f"##{flags & 0xF:X}" if fd else "#"
    return f"({stamp}) {channel} {ident}{sep}{data.hex().upper()}{tail}\n"


def classic_tail(remote: bool, length: int, len8_dlc: int = 0) -> str:
    """What candump writes after a classic frame's data: ``R`` and the DLC asked for by
    a remote frame (none when 0), and ``_`` with the raw DLC (9 to F) of a frame of 8
    bytes that was sent with one."""
    raw = f"_{len8_dlc:X}" if len8_dlc > 8 else ""
    if remote:
        return f"R{length:X}{raw}" if 0 < length <= 8 else "R"
    return raw if length == 8 else ""


class CandumpWriter:
    """A candump ``-l`` log written to a temporary name, renamed to ``path`` at
    :meth:`commit`; :meth:`discard` (or leaving the ``with`` block on an exception)
    removes it. Write errors are :class:`~agent.errors.BavardError` naming the file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.frames = 0  # lines written (or waiting to be)
        self.bytes = 0
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                        dir=self.path.parent)
        except OSError as exc:
            raise BavardError(f"{self.path}: cannot create the recording: "
                              f"{exc.strerror or exc}") from None
        self.temp = Path(temp)
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="ascii", newline="\n")
        self._pending: list[str] = []

    def __enter__(self) -> CandumpWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._file is not None:
            self.discard()

    def write(self, timestamp: Stamp, channel: str, can_id: int, extended: bool, data: bytes,
              fd: bool = False, flags: int = FDF, tail: str = "") -> None:
        """One frame (see :func:`candump_line`)."""
        line = candump_line(timestamp, channel, can_id, extended, data, fd, flags, tail)
        self._pending.append(line)
        self.frames += 1
        self.bytes += len(line)
        if len(self._pending) >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        """Hand what is kept in memory to the file (not yet to the disk)."""
        if self._file is None or not self._pending:
            return
        try:
            self._file.writelines(self._pending)
        except OSError as exc:
            raise BavardError(f"{self.temp}: cannot write the recording: "
                              f"{exc.strerror or exc}") from None
        self._pending.clear()

    def commit(self) -> Path:
        """Write everything to the disk and rename the file to its final name."""
        file = self._file
        if file is None:
            raise BavardError(f"{self.path}: the recording is closed already")
        try:
            self.flush()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self._file = None
            os.replace(self.temp, self.path)
        except OSError as exc:
            self.discard()
            raise BavardError(f"{self.path}: cannot finish the recording: "
                              f"{exc.strerror or exc}") from None
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Close and remove the temporary file (nothing under the final name)."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


