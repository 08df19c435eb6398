"""``bavard simulate``: the simulated demo vehicle onto a CAN bus or into a log file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources.simulator import (
    DEFAULT_CHANNEL,
    DEFAULT_CYCLE_LENGTH,
    SimulatorSource,
    output_format,
    send_to_bus,
    write_candump,
    write_log,
)

HELP = "drive the simulated vehicle onto a CAN bus (python-can) or into a log file"
EPILOG = """\
log formats (--output), by the file name's ending:
  .log .candump .txt   candump -l text ('-' = standard output)
  .log.gz ...          the same, gzip-compressed
  .asc  .asc.gz        Vector ASCII (python-can's ASCWriter)
  .blf                 Vector BLF (python-can's BLFWriter)
  .trc  .trc.gz        PEAK trace 2.1 (python-can's TRCWriter; no CAN FD)
any other ending is refused. Every format reads back with `bavard decode`.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dbc", type=Path, default=None,
                        help="DBC of the simulated vehicle (default: the demo vehicle's)")
    parser.add_argument("--seed", type=int, default=1, help="noise seed (default 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of vehicle time (default: one drive cycle)")
    parser.add_argument("--cycle-length", type=float, default=DEFAULT_CYCLE_LENGTH,
                        help=f"seconds in one drive cycle (default {DEFAULT_CYCLE_LENGTH:g})")
    parser.add_argument("--speed", type=float, default=None,
                        help="0 = as fast as possible, 1 = real time, N = N times "
                             "(default: 0 into a file, 1 onto a bus)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", "-o", metavar="FILE",
                        help="write a log, in the format its name ends with: .log (candump), "
                             ".log.gz, .asc, .blf, .trc (see below; '-' = candump to "
                             "standard output)")
    target.add_argument("--interface", metavar="NAME",
                        help="python-can interface: socketcan, virtual, pcan, ...")
    parser.add_argument("--channel", metavar="CH",
                        help="bus channel (needed with --interface); with --output, the "
                             f"channel name written in the log (default {DEFAULT_CHANNEL})")
    parser.add_argument("--bitrate", type=int, default=None, help="bus bitrate, bit/s")


def run(args: argparse.Namespace) -> int:
    if args.interface and not args.channel:
        print("bavard simulate: --interface needs --channel", file=sys.stderr)
        return 2
    if args.output and args.output != "-":
        try:
            output_format(args.output)
        except ValueError as exc:
            print(f"bavard simulate: {exc}", file=sys.stderr)
            return 2
    speed = args.speed if args.speed is not None else (0.0 if args.output else 1.0)
    channel = args.channel or DEFAULT_CHANNEL
    try:
        source = SimulatorSource(channel, args.dbc, seed=args.seed, speed=speed,
                                 duration=args.duration, channel=channel,
                                 cycle_length=args.cycle_length)
    except ValueError as exc:
        print(f"bavard simulate: {exc}", file=sys.stderr)
        return 2
    tracker = _Tracker(source.start_time)
    status = 0
    with source:
        try:
            if args.output:
                target = _to_file(tracker.follow(source.frames()), args.output)
            else:
                target = _to_bus(tracker.follow(source.frames()), args)
        except KeyboardInterrupt:
            target, status = "interrupted", 130
    summary = sys.stderr if args.output == "-" else sys.stdout
    print(f"simulated {tracker.seconds:.1f} s of driving (seed {args.seed}): "
          f"{tracker.frames:,} frames -> {target}", file=summary)
    return status


class _Tracker:
    """Counts the frames that went through and the vehicle time they cover."""

    def __init__(self, start_time: float) -> None:
        self.start_time = start_time
        self.frames = 0
        self.seconds = 0.0

    def follow(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        for frame in frames:
            self.frames += 1
            self.seconds = frame.timestamp - self.start_time
            yield frame


def _to_file(frames: Iterator[Frame], output: str) -> str:
    if output == "-":
        out: TextIO = sys.stdout
        write_candump(frames, out)
        return "standard output"
    write_log(frames, output)  # raises BavardError itself
    return output


def _to_bus(frames: Iterator[Frame], args: argparse.Namespace) -> str:
    import can

    where = f"{args.interface} channel {args.channel}"
    options = {"bitrate": args.bitrate} if args.bitrate else {}
    try:
        bus = can.Bus(interface=args.interface, channel=args.channel, **options)
    except (can.CanError, OSError, ValueError) as exc:
        raise SourceError(f"cannot open {where}: {exc}") from exc
    try:
        send_to_bus(frames, bus)  # raises SourceError itself
    finally:
        bus.shutdown()
    return where
