"""Logging for the entry point: syslog priorities for journald, or a human format.

When systemd connects a service's stderr to the journal it sets
``JOURNAL_STREAM=<device>:<inode>`` of that stream. journald then reads a
``<N>`` prefix on each line as the line's syslog priority (sd-daemon(3)):
``<2>`` critical, ``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>``
debug. :func:`configure_logging` uses that prefix, and no time stamp (journald
has its own), only when the stream it logs to *is* the journal stream (the
variable is inherited by children whose stderr may be a terminal or a pipe);
otherwise it writes ``time level logger: message``. Each line of a multi-line
record (a traceback) gets the prefix, so that journald keeps them all at the
record's priority.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = [
    "HUMAN_FORMAT",
    "JournalFormatter",
    "configure_logging",
    "is_journal_stream",
    "syslog_priority",
]

HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, the ``<N>`` repeated on every line of the record."""

    def __init__(self, fmt: str = "%(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def is_journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream that ``JOURNAL_STREAM`` names."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        # no file descriptor (StringIO, pytest's capture), or a closed stream
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


_HANDLER_MARK = "_bavard_handler"


def configure_logging(
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    journal: bool | None = None,
) -> logging.Handler:
    """Configure the root logger once, for the entry point; returns the handler.

    ``stream`` defaults to ``sys.stderr`` as it is at call time. ``journal``:
    True or False forces the format, None detects the journal from
    ``JOURNAL_STREAM`` (``environ`` defaults to ``os.environ``). Calling it
    again replaces the handler installed by the previous call.
    """
    out: TextIO = sys.stderr if stream is None else stream
    if journal is None:
        journal = is_journal_stream(out, environ)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(HUMAN_FORMAT))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
