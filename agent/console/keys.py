"""Keys from the terminal as they are pressed, without echo, restored on exit.

:class:`RawKeys` puts the terminal in cbreak mode (no line buffering, no echo;
Ctrl-C still interrupts) for the length of a ``with`` block and gives the keys
pressed since the last read: a printable character as itself, the others by name
(:data:`UP`, :data:`ESC`...). :func:`parse_keys` turns what the terminal sent into
those names: xterm's and the VT100's escape sequences, which tmux and the Linux
console send too; a sequence it does not know is dropped whole, not typed.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from types import TracebackType
from typing import IO, Any

UP, DOWN, LEFT, RIGHT = "up", "down", "left", "right"
PAGE_UP, PAGE_DOWN, HOME, END = "pgup", "pgdn", "home", "end"
ESC, BACKSPACE, ENTER, CLEAR_LINE = "esc", "backspace", "enter", "ctrl-u"

_FINAL = {"A": UP, "B": DOWN, "C": RIGHT, "D": LEFT, "H": HOME, "F": END}
_TILDE = {"1": HOME, "7": HOME, "4": END, "8": END, "5": PAGE_UP, "6": PAGE_DOWN}
_CONTROL = {"\x7f": BACKSPACE, "\x08": BACKSPACE, "\r": ENTER, "\n": ENTER,
            "\x15": CLEAR_LINE}
_SEQUENCE_WAIT = 0.03  # seconds to wait for the rest of an escape sequence cut in two


def parse_keys(data: str) -> list[str]:
    """The keys in ``data``, in order (see the module docstring)."""
    keys: list[str] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        i += 1
        if c == "\x1b":
            if i >= n or data[i] not in "[O":
                keys.append(ESC)  # alone, or Alt+key: Esc, then the key
                continue
            lead = data[i]
            j = i + 1
            # CSI: parameters and intermediates (0x20-0x3F), then one final byte (0x40-0x7E)
            while j < n and "\x20" <= data[j] <= "\x3f":
                j += 1
            if j >= n:  # cut short: not a key
                break
            params, final = data[i + 1:j], data[j]
            i = j + 1
            if final == "~" and lead == "[":
                name = _TILDE.get(params.split(";")[0])
            else:
                name = _FINAL.get(final)
            if name is not None:
                keys.append(name)
        elif c in _CONTROL:
            keys.append(_CONTROL[c])
        elif c.isprintable():
            keys.append(c)
    return keys


class RawKeys:
    """``stream``'s keys (standard input by default). When it is not a terminal,
    nothing is changed and no key ever comes."""

    def __init__(self, stream: IO[Any] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        self.terminal = self.fd is not None and os.isatty(self.fd)
        self._saved: list[Any] | None = None

    def __enter__(self) -> RawKeys:
        if self.terminal:
            import termios
            import tty

            assert self.fd is not None
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the terminal back as it was (safe to call again)."""
        saved, self._saved = self._saved, None
        if saved is not None and self.fd is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def read(self, timeout: float) -> list[str]:
        """The keys pressed, waiting at most ``timeout`` seconds for the first."""
        if not self.terminal or self.fd is None:
            return []
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data = os.read(self.fd, 1024)
        # an escape sequence may come in two reads: wait a moment for the rest
        while (data.endswith(b"\x1b") or data[-2:] in (b"\x1b[", b"\x1bO")) and \
                select.select([self.fd], [], [], _SEQUENCE_WAIT)[0]:
            more = os.read(self.fd, 1024)
            if not more:
                break
            data += more
        return parse_keys(data.decode("utf-8", "replace"))
