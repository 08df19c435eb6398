"""A scripted ELM327 on a pseudo-terminal: the clone behaviours, one switch each.

``ElmPeer`` opens a pty pair; a thread reads the master side line by line
(CR-terminated) and answers as an ELM327 would: AT commands change its state
(echo, linefeeds, spaces, headers, header, protocol), OBD requests are looked
up in ``answers`` and rendered in the current format (headers on or off,
spaces or not; CAN multi-frame answers as ``0:``/``1:`` lines when headers
are off). The client opens ``peer.path`` (or ``peer.link``, a symlink that
follows ``replug``) with pyserial like any serial device.

Switches (set them before the client acts):

* ``echo_forced``: echo every line whatever ATE0 said;
* ``refuse``: AT command prefixes answered ``?`` ("ATST", "ATAT", "ATCP", "ATH1");
  ``refuse_count_suffix``: a request with the reply count digit is answered ``?``;
  ``count_frames``: the reply count counts frames (a multi-frame answer is cut);
* ``garbage``: bytes sent instead of the next OBD answer (then the prompt);
* ``silent``: answer nothing, no prompt;
* ``stopped_once``: requests answered ``STOPPED`` the first time;
  ``stopped_always``: every OBD request answered ``STOPPED``;
* ``obd_override``: lines every OBD request is answered with ("NO DATA",
  "UNABLE TO CONNECT", "CAN ERROR", "LV RESET"...);
* ``voltage``: the ``AT RV`` answer ("11.8V");
* ``baudrate``: answer only when the pty is set to that speed (noise otherwise),
  like a real adapter fixed at one baud rate; ``bauds`` records each line's speed;
* ``unplug()`` closes both ends (the client's next read or write fails);
  ``replug()`` opens a new pty: a new ``path``, and ``link`` follows it.

Every wait is bounded: the thread polls with a 50 ms select and stops on
``stop()``; ``unplug`` and ``stop`` join it with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import threading
import tty
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

# (header hex: "7E8", "18DAF110", "486B10"; data hex, PCI or checksum included)
Frame = tuple[str, str]
Item = Frame | str  # a frame, or a raw line ("NO DATA", "SEARCHING...")
Answer = Sequence[Item] | Callable[["ElmPeer", str], Sequence[Item]]

SPEEDS = {getattr(termios, f"B{b}"): b for b in (9600, 38400, 115200, 500000)
          if hasattr(termios, f"B{b}")}
PROTOCOL_NAMES = {"6": "ISO 15765-4 (CAN 11/500)", "7": "ISO 15765-4 (CAN 29/500)",
                  "3": "ISO 9141-2", "1": "SAE J1850 PWM"}


def can_frames(header: str, payload: bytes, *, pad: bool = False) -> list[Frame]:
    """An ISO-TP payload as the CAN frames an ECU sends (PCI first); ``pad``: to 8 bytes."""
    def frame(data: bytes) -> Frame:
        if pad:
            data = data + b"\x00" * (8 - len(data))
        return header, data.hex().upper()
    if len(payload) <= 7:
        return [frame(bytes([len(payload)]) + payload)]
    frames = [frame(bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6])]
    rest = payload[6:]
    for seq, start in enumerate(range(0, len(rest), 7), 1):
        frames.append(frame(bytes([0x20 | (seq & 0x0F)]) + rest[start:start + 7]))
    return frames


def legacy_frame(source: int, data: bytes, *, target: int = 0x6B, priority: int = 0x48) -> Frame:
    """A J1850/ISO 9141 frame: 3 header bytes, the data, a (sum) checksum byte."""
    header = bytes([priority, target, source])
    checksum = sum(header + data) & 0xFF
    return header.hex().upper(), (data + bytes([checksum])).hex().upper()


class ElmPeer:
    """A scripted ELM327 on a pty; see the module docstring for its switches."""

    def __init__(self, *, version: str = "ELM327 v1.5", protocol: str = "6",
                 answers: Mapping[str, Answer] | None = None, baudrate: int | None = None,
                 link: Path | None = None) -> None:
        self.version = version
        self.vehicle_protocol = protocol  # what the "vehicle" speaks (ATDPN)
        self.answers: dict[str, Answer] = dict(answers or {})
        self.baudrate = baudrate
        self.link = link
        self.echo_forced = False
        self.refuse: set[str] = set()
        self.refuse_count_suffix = False
        self.count_frames = False
        self.garbage: bytes | None = None
        self.silent = False
        self.stopped_once: set[str] = set()
        self.stopped_always = False
        self.obd_override: list[str] | None = None
        self.voltage = "12.6V"
        self.received: list[str] = []
        self.bauds: list[int] = []
        self.path = ""
        self._master = -1
        self._slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    # -- life --------------------------------------------------------------------------------

    def start(self) -> str:
        """Open a pty and answer on it; returns the path a client opens."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            tmp.replace(self.link)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="elm-peer", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        """Stop answering and close both ends of the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def unplug(self) -> None:
        """The adapter is pulled out: the pty goes away under the client."""
        self.stop()

    def replug(self) -> str:
        """Plugged in again: a fresh adapter (settings reset) on a new pty path."""
        self.stop()
        self._reset()
        return self.start()

    def __enter__(self) -> ElmPeer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the adapter -------------------------------------------------------------------------

    def _reset(self) -> None:
        """Power-on defaults of a real ELM327."""
        self.echo = True
        self.linefeeds = True
        self.spaces = True
        self.headers = False
        self.header = "7DF"
        self.protocol = "0"
        self.searched = False

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except OSError:
                return
            buf += data
            while b"\r" in buf:
                raw, buf = buf.split(b"\r", 1)
                self._line(raw)

    def _speed(self) -> int | None:
        try:
            return SPEEDS.get(termios.tcgetattr(self._slave)[5])
        except termios.error:
            return None

    def _line(self, raw: bytes) -> None:
        speed = self._speed()
        if speed is not None:
            self.bauds.append(speed)
        if self.baudrate is not None and speed != self.baudrate:
            self._write(b"\xf8\x80\x00\xfe")  # what a wrong baud rate looks like
            return
        line = raw.decode("ascii", errors="replace").strip()
        self.received.append(line)
        if self.silent:
            return
        eol = "\r\n" if self.linefeeds else "\r"
        echo = (line + eol) if (self.echo or self.echo_forced) else ""
        command = "".join(line.split()).upper()
        if not command:
            self._write(echo.encode())
            return
        if command.startswith("AT"):
            answer = self._at(command)
        elif self.garbage is not None:
            garbage, self.garbage = self.garbage, None
            self._write(echo.encode() + garbage + b"\r\r>")
            return
        else:
            answer = self._obd(command)
        body = "".join(a + eol for a in answer)
        self._write((echo + body + eol + ">").encode())

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def _at(self, command: str) -> list[str]:
        if any(command.startswith(r) for r in self.refuse):
            return ["?"]
        arg = command[2:]
        if arg in ("Z", "WS"):
            self._reset()
            return ["", self.version]
        if arg == "I":
            return [self.version]
        if arg == "RV":
            return [self.voltage]
        if arg == "DPN":
            return [("A" if self.protocol == "0" else "") + self.vehicle_protocol]
        if arg == "DP":
            return [PROTOCOL_NAMES.get(self.vehicle_protocol, "?")]
        switches = {"E": "echo", "L": "linefeeds", "S": "spaces", "H": "headers"}
        if len(arg) == 2 and arg[0] in switches and arg[1] in "01":
            setattr(self, switches[arg[0]], arg[1] == "1")
            return ["OK"]
        if arg.startswith("SP") and len(arg) == 3:
            self.protocol, self.searched = arg[2], False
            return ["OK"]
        if arg.startswith("SH") and len(arg) in (5, 8):
            self.header = arg[2:]
            return ["OK"]
        if arg.startswith(("AT", "ST", "CP", "M0", "D0", "CAF")):
            return ["OK"]
        return ["?"]

    def _obd(self, command: str) -> list[str]:
        if self.stopped_always:
            return ["STOPPED"]
        count: int | None = None
        request = command
        if len(command) % 2:
            if self.refuse_count_suffix:
                return ["?"]
            request, count = command[:-1], int(command[-1], 16)
        if request in self.stopped_once:
            self.stopped_once.discard(request)
            return ["STOPPED"]
        searching = [] if self.searched or self.protocol != "0" else ["SEARCHING..."]
        if self.obd_override is not None:
            return searching + list(self.obd_override)
        self.searched = True
        answer = self.answers.get(request)
        if answer is None:
            return [*searching, "NO DATA"]
        items = answer(self, request) if callable(answer) else list(answer)
        items = [i for i in items if isinstance(i, str) or self._addressed(i[0])]
        if count is not None:
            items = self._cut(items, count)
        if not items:
            return [*searching, "NO DATA"]
        return searching + self._render(items)

    def _addressed(self, reply_header: str) -> bool:
        """Does the frame's sender answer the current header (functional: everyone)?"""
        if self.header in ("7DF", "DB33F1") or len(reply_header) == 6:
            return True
        if len(self.header) == 3:
            return int(reply_header, 16) == int(self.header, 16) + 8
        return reply_header == f"18DAF1{self.header[2:4]}"

    def _cut(self, items: list[Item], count: int) -> list[Item]:
        """Stop after ``count`` answers (or frames, with ``count_frames``)."""
        kept: list[Item] = []
        seen = 0
        for item in items:
            starts = isinstance(item, str) or self.count_frames or not (
                len(item[0]) in (3, 8) and item[1][0] == "2")
            if starts:
                if seen == count:
                    break
                seen += 1
            kept.append(item)
        return kept

    def _render(self, items: list[Item]) -> list[str]:
        out: list[str] = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
                continue
            header, data = item
            is_can = len(header) in (3, 8)
            if self.headers:
                out.append(self._spaced(header, data))
            elif not is_can:
                out.append(self._spaced("", data[:-2]))  # no header, no checksum
            elif data[0] == "0":
                length = int(data[1], 16)
                out.append(self._spaced("", data[2:2 + 2 * length]))
            elif data[0] == "1":
                out.append(f"{int(data[1:4], 16):03X}")
                out.append("0: " + self._spaced("", data[4:]))
            elif data[0] == "2":
                out.append(f"{data[1]}: " + self._spaced("", data[2:]))
        return out

    def _spaced(self, header: str, data: str) -> str:
        if not self.spaces:
            return header + data
        pairs = [data[i:i + 2] for i in range(0, len(data), 2)]
        head = [header] if len(header) == 3 else [header[i:i + 2]
                                                  for i in range(0, len(header), 2)]
        return " ".join(head + pairs)
