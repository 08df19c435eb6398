"""Where simulated frames go: a ``candump -l`` log or a python-can bus."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from agent.errors import SourceError
from agent.frames import Frame


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


def send_to_bus(frames: Iterable[Frame], bus: Any) -> int:
    """Send ``frames`` to a python-can bus, in order, without pacing; the count sent.

    ``can.CanError`` and ``OSError`` become :class:`~agent.errors.SourceError`.
    """
    import can

    count = 0
    for frame in frames:
        message = can.Message(
            timestamp=frame.timestamp,
            arbitration_id=frame.arbitration_id,
            is_extended_id=frame.is_extended,
            is_fd=frame.is_fd,
            data=frame.data,
        )
        try:
            bus.send(message)
        except (can.CanError, OSError) as exc:
            raise SourceError(f"sending to {bus.channel_info}: {exc}") from exc
        count += 1
    return count
