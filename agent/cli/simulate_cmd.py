"""``bavard simulate``: the simulated demo vehicle onto a CAN bus or into a log file."""

from __future__ import annotations

import argparse
import sys
import threading
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
from agent.sources.simulator.obd_ecu import DEFAULT_VIN, VIN_ALPHABET, SimulatedEcus

HELP = "drive the simulated vehicle onto a CAN bus (python-can) or into a log file"
EPILOG = """\
log formats (--output), by the file name's ending:
  .log .candump .txt   candump -l text ('-' = standard output)
  .log.gz ...          the same, gzip-compressed
  .asc  .asc.gz        Vector ASCII (python-can's ASCWriter)
  .blf                 Vector BLF (python-can's BLFWriter)
  .trc  .trc.gz        PEAK trace 2.1 (python-can's TRCWriter; no CAN FD)
any other ending is refused. Every format reads back with `bavard decode`.

OBD-II (--obd, on a bus): an engine ECU (request 7E0, reply 7E8) and a
transmission ECU (7E1 / 7E9) also answer OBD requests (functional: 7DF) for the
same vehicle: modes 01 02 03 04 07 09 0A. P0500 turns pending in the harsh
brake and is stored when it ends. --obd-only: the ECUs without the DBC frames.
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
    obd = parser.add_argument_group("OBD-II (with --interface)")
    obd.add_argument("--obd", action="store_true",
                     help="also answer OBD-II requests as the vehicle's engine and "
                          "transmission ECUs (ISO 15765-4, 11-bit ids)")
    obd.add_argument("--obd-only", action="store_true",
                     help="answer OBD-II requests and send no DBC frames (implies --obd)")
    obd.add_argument("--vin", default=None,
                     help=f"the VIN the engine ECU answers (default {DEFAULT_VIN})")


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
    obd = args.obd or args.obd_only
    problem = _obd_problem(args, obd, speed)
    if problem:
        print(f"bavard simulate: {problem}", file=sys.stderr)
        return 2
    try:
        source = SimulatorSource(channel, args.dbc, seed=args.seed, speed=speed,
                                 duration=args.duration, channel=channel,
                                 cycle_length=args.cycle_length)
    except ValueError as exc:
        print(f"bavard simulate: {exc}", file=sys.stderr)
        return 2
    tracker = _Tracker(source.start_time)
    status = 0
    ecus = _start_ecus(args, speed) if obd else None  # raises SourceError itself
    with source:
        try:
            if args.output:
                target = _to_file(tracker.follow(source.frames()), args.output)
            elif args.obd_only:
                target = _obd_only(tracker, source.duration, speed, args)
            else:
                target = _to_bus(tracker.follow(source.frames()), args)
        except KeyboardInterrupt:
            target, status = "interrupted", 130
        finally:
            if ecus is not None:
                ecus.stop()
    summary = sys.stderr if args.output == "-" else sys.stdout
    obd_note = f"; OBD: {ecus.answered:,} replies to {ecus.requests:,} requests" if ecus else ""
    print(f"simulated {tracker.seconds:.1f} s of driving (seed {args.seed}): "
          f"{tracker.frames:,} frames -> {target}{obd_note}", file=summary)
    return status


def _obd_problem(args: argparse.Namespace, obd: bool, speed: float) -> str | None:
    """Why the OBD options cannot be had as given, or None."""
    if not obd:
        return "--vin needs --obd" if args.vin is not None else None
    if args.output:
        return ("--obd answers OBD-II requests on a bus: it needs --interface and "
                "--channel, not --output")
    if speed <= 0:
        return "--obd needs a --speed above 0 (the ECUs answer in the vehicle's time)"
    if args.vin is not None:
        vin = args.vin.upper()
        if len(vin) != 17 or not set(vin) <= VIN_ALPHABET:
            return f"--vin: not a VIN (17 characters, no I, O, Q): {args.vin}"
        args.vin = vin
    return None


def _start_ecus(args: argparse.Namespace, speed: float) -> SimulatedEcus:
    ecus = SimulatedEcus.open(args.interface, args.channel, bitrate=args.bitrate,
                              seed=args.seed, speed=speed, cycle_length=args.cycle_length,
                              vin=args.vin or DEFAULT_VIN)
    return ecus.start()


def _obd_only(tracker: _Tracker, duration: float, speed: float,
              args: argparse.Namespace) -> str:
    """Answer OBD requests (the ECUs' thread) for ``duration`` s of vehicle time."""
    threading.Event().wait(duration / speed)
    tracker.seconds = duration
    return f"{args.interface} channel {args.channel} (OBD-II only)"


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
