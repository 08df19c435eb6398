"""``bavard record -o F.log``: the live bus into a candump ``-l`` log, through the
service's tap or straight from a python-can bus."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.control.protocol import default_socket_path

if TYPE_CHECKING:
    from agent.console.recorder import Recording
    from agent.control.client import ControlClient

HELP = "record the live bus into a candump -l log (through the service, or directly)"
EPILOG = """\
The log is what `candump -l` writes: '(1690000000.123456) can0 123#DEADBEEF', 29-bit
ids in 8 hex digits, CAN FD as '123##<flags><data>'. canplayer replays it and
`bavard decode` reads it. Through the service (the default) nothing opens a second
socket on the bus: its frames tap is used, and the channel names are the
service's; a frame the service had to drop because the disk was too slow is
counted (dropped). --interface reads a bus directly: socketcan through a raw socket
as candump opens it (the same lines as candump -l, remote frames included, the
kernel's drop count), any other python-can interface through python-can.

The file is written under a temporary name beside F.log (.F.log.XXXX.part) and
renamed at the end, so a crash never leaves half a file under the final name.
Ctrl-C, SIGTERM or --duration end the recording with the file complete.

exit status: 0 recorded (to the end of --duration, or until interrupted); 1 an
error, or the source ended early (the file then holds what came)
"""
PROGRESS_TTY = 0.5  # seconds between progress lines on a terminal (rewritten in place)
PROGRESS_FILE = 10.0  # seconds between progress lines when stderr is a file or a pipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                        help="the candump log to write (replaced if it exists)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--channel", metavar="C",
                        help="only this channel of the service; the bus channel with "
                             "--interface")
    parser.add_argument("--socket", type=Path, default=None, metavar="PATH",
                        help=f"the service's control socket (default {default_socket_path()})")
    parser.add_argument("--interface", metavar="I",
                        help="read this interface directly (socketcan, or any python-can "
                             "one: virtual, pcan, ...) instead of the service; needs "
                             "--channel")
    parser.add_argument("--bitrate", type=int, default=None,
                        help="bus bitrate (python-can interfaces; socketcan's is the link's: "
                             "ip link)")
    parser.add_argument("--fd", action="store_true",
                        help="receive CAN FD frames too (python-can interfaces; socketcan always "
                             "does)")
    parser.add_argument("--json", action="store_true",
                        help="a JSON summary on standard output at the end")


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"bavard record: {problem}", file=sys.stderr)
        return 2
    from agent.console.candump_writer import CandumpWriter
    from agent.console.recorder import Recording, open_bus, record_bus, record_service

    stop = threading.Event()
    progress = _ProgressLine(sys.stderr, args.output)
    with contextlib.ExitStack() as stack:
        if args.interface:
            bus = open_bus(args.interface, args.channel, args.bitrate, args.fd)
            stack.callback(bus.close)
            source = f"bus {bus.where}"
            print(f"bavard record: reading {source} directly, not through the service",
                  file=sys.stderr)
        else:
            client = _connect(args.socket)
            stack.callback(client.close)
            source = f"service {client.path}"
        recording = Recording(source, time.monotonic())
        writer = stack.enter_context(CandumpWriter(args.output))
        stack.callback(progress.close)  # first thing on the way out, error or not
        with _signals_stop(stop):
            if args.interface:
                record_bus(bus, writer, recording, stop,
                           duration=args.duration, progress=progress.update)
            else:
                record_service(client, writer, recording, stop, channel=args.channel,
                               duration=args.duration, progress=progress.update)
        if recording.error and not recording.frames:
            from agent.errors import BavardError

            raise BavardError(f"{recording.error}; nothing recorded, no file written")
        writer.commit()
    _summary(args, recording, writer.bytes)
    if recording.error:
        print(f"bavard record: {recording.error}; {args.output} holds what came before",
              file=sys.stderr)
        return 1
    return 0


def _problem(args: argparse.Namespace) -> str | None:
    if args.duration is not None and not args.duration > 0:
        return f"--duration must be more than 0 seconds, got {args.duration}"
    if args.interface and not args.channel:
        return "--interface needs --channel"
    if args.bitrate is not None and not args.interface:
        return "--bitrate is for --interface"
    if args.fd and not args.interface:
        return "--fd is for --interface (the service's tap gives CAN FD frames as they come)"
    if args.output.is_dir():
        return f"--output {args.output}: is a directory"
    return None


def _connect(path: Path | None) -> ControlClient:
    from agent.control.client import ControlClient
    from agent.errors import ServiceNotRunningError

    try:
        return ControlClient.connect(path)
    except ServiceNotRunningError as exc:
        raise ServiceNotRunningError(
            f"{exc}; or record a bus directly: --interface I --channel C") from None


@contextlib.contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the recording cleanly (the file complete)."""
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _ProgressLine:
    """``recording to F.log: 1,234 frames  617 frames/s  2.0 s  dropped 0`` on stderr:
    rewritten in place on a terminal, a new line every PROGRESS_FILE s otherwise."""

    def __init__(self, stream: TextIO, output: Path) -> None:
        self.stream = stream
        self.output = output
        self.tty = stream.isatty()
        self._next = 0.0
        self._width = 0

    def update(self, recording: Recording) -> None:
        now = time.monotonic()
        rate = recording.recent_rate(now)
        if not self.tty and now < self._next:
            return
        self._next = now + PROGRESS_FILE
        line = (f"recording to {self.output}: {recording.frames:,} frames  {rate:,.0f} "
                f"frames/s  {recording.elapsed:.1f} s  dropped {recording.dropped:,}")
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def _summary(args: argparse.Namespace, recording: Recording, size: int) -> None:
    seconds = recording.elapsed
    rate = recording.frames / seconds if seconds > 0 else 0.0
    if args.json:
        print(json.dumps({
            "output": str(args.output), "source": recording.source, "frames": recording.frames,
            "bytes": size, "seconds": round(seconds, 3), "frames_per_s": round(rate, 1),
            "dropped": recording.dropped, "unreadable": recording.unreadable,
            "ended": recording.ended, "error": recording.error}, indent=2))
    dropped = f", dropped {recording.dropped:,}" if recording.dropped else ""
    print(f"bavard record: {recording.frames:,} frames in {seconds:.1f} s ({rate:,.0f} "
          f"frames/s{dropped}) -> {args.output} ({recording.ended})", file=sys.stderr)
