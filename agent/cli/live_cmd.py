"""``bavard live``: decoded signals as they come, full screen, from the running service
or straight from a bus or a log."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agent.cli.records import json_number
from agent.control.protocol import default_socket_path

if TYPE_CHECKING:
    from agent.console.live_feed import Feed
    from agent.console.live_model import LiveSample
    from agent.sources.base import Source

HELP = "a live table of the decoded signals: from the service, a bus or a log"
EPILOG = """\
sources:
  (default)                     the running service's pipeline, through its control
                                socket: every decoded signal, 'stored' says whether
                                its policy keeps it
  --interface I --channel C --dbc F...   a python-can bus, read directly
  --log FILE --dbc F...         a log (candump, ASC, BLF, TRC), in real time by default

keys:
  type          filter: a piece of Message.Signal, or a glob (*, ?, [..]): any case
  Backspace     remove the last character of the filter; Esc (or Ctrl-U) clears it
  Space         pause / resume (the table freezes; samples are still read)
  Up Down PgUp PgDn Home End   scroll
  q             quit (with an empty filter); Ctrl-C too

columns: channel, message.signal, value (the choice label if any), unit, rate
(samples/s over 5 s), age (since the last sample), stored (yes/no: the service's
policy keeps it; - without a service), history (a sparkline of recent values).
A value that changed in the last second is highlighted.

--json, or standard output not a terminal: one JSON line per sample instead of the
screen: timestamp, channel, message, signal, value, unit, label (if any), kept (from
the service), until the log's end, Ctrl-C or SIGTERM (exit status 0), or the
service's end or a log that looks unreadable (1, said on stderr).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signals", action="append", metavar="GLOB",
                        help="only these signals (Message.Signal or Signal globs; repeatable)")
    parser.add_argument("--channel", metavar="C",
                        help="only this channel of the service or the log; the bus "
                             "channel with --interface")
    parser.add_argument("--socket", type=Path, default=None, metavar="PATH",
                        help=f"the service's control socket (default {default_socket_path()})")
    direct = parser.add_mutually_exclusive_group()
    direct.add_argument("--interface", metavar="I",
                        help="read this python-can interface directly (socketcan, virtual, "
                             "pcan, ...); needs --channel and --dbc")
    direct.add_argument("--log", metavar="FILE", help="replay this log directly; needs --dbc")
    parser.add_argument("--dbc", action="append", type=Path, metavar="FILE",
                        help="DBC file for --interface or --log (repeatable; the first one "
                             "wins on duplicate ids)")
    parser.add_argument("--bitrate", type=int, default=None, help="bus bitrate (--interface)")
    parser.add_argument("--speed", type=float, default=None,
                        help="--log pace: 1 = real time (default), N = N times, 0 = as fast "
                             "as possible")
    parser.add_argument("--json", action="store_true",
                        help="one JSON line per sample instead of the screen")


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"bavard live: {problem}", file=sys.stderr)
        return 2
    # everything imported before the source opens: a bus queues frames from then on
    from agent.console.live_app import LiveScreen

    if args.json or not sys.stdout.isatty():
        why = stream_json(_open_feed(args), sys.stdout)
        if why not in ("stopped", "the log ended"):  # the service went, a bad log
            print(f"bavard live: {why}", file=sys.stderr)
            return 1
        return 0
    from rich.console import Console

    from agent.console.keys import RawKeys

    console = Console()
    return LiveScreen(_open_feed(args), console, RawKeys()).run()


def stream_json(feed: Feed, out: IO[str]) -> str:
    """One JSON line per sample on ``out`` until the feed ends (why) or SIGTERM/SIGHUP;
    Ctrl-C is the caller's. The line: ``timestamp channel message signal value unit``,
    ``label`` when there is one and ``kept`` when a policy says it (as ``bavard decode``
    writes, plus ``kept``)."""
    from agent.console.live_app import signals_end  # imported by run() already

    stop = threading.Event()
    dumps = json.dumps

    def sink(samples: list[LiveSample], dropped: int, unreadable: int) -> None:
        lines = []
        for s in samples:
            record: dict[str, Any] = {
                "timestamp": s.t, "channel": s.channel, "message": s.message,
                "signal": s.signal, "value": json_number(s.value), "unit": s.unit}
            if s.label is not None:
                record["label"] = s.label
            if s.kept is not None:
                record["kept"] = s.kept
            lines.append(dumps(record, ensure_ascii=False) + "\n")
        out.writelines(lines)
        out.flush()

    with signals_end(stop, feed.interrupt):
        try:
            return feed.run(sink, stop)
        finally:
            feed.close()


def _problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, or None."""
    if args.interface and not args.channel:
        return "--interface needs --channel"
    if (args.interface or args.log) and not args.dbc:
        return f"--{'interface' if args.interface else 'log'} needs --dbc FILE"
    if args.dbc and not (args.interface or args.log):
        return "--dbc is for --interface or --log (the service has its own DBCs)"
    if args.speed is not None and not args.log:
        return "--speed is for --log"
    if args.speed is not None and not args.speed >= 0:
        return f"--speed must be 0 or more, got {args.speed}"
    if args.bitrate is not None and not args.interface:
        return "--bitrate is for --interface"
    return None


def _open_feed(args: argparse.Namespace) -> Feed:
    from agent.console.live_feed import DirectFeed, ServiceFeed
    from agent.control.client import ControlClient
    from agent.errors import ServiceNotRunningError

    if not (args.interface or args.log):
        try:
            client = ControlClient.connect(args.socket)
        except ServiceNotRunningError as exc:
            raise ServiceNotRunningError(
                f"{exc}; or read a bus or a log directly: --interface I --channel C "
                "--dbc FILE, or --log FILE --dbc FILE") from None
        try:
            return ServiceFeed(client, args.signals or (), args.channel)
        except BaseException:
            client.close()
            raise
    from agent.decode.dbc_files import load_dbc
    from agent.decode.decoder import ChannelDecoder
    from agent.globs import unmatched_globs
    from agent.policy.selection import Selector

    databases = [load_dbc(p) for p in args.dbc]
    for glob in unmatched_globs(args.signals or (), databases):
        print(f"bavard live: warning: --signals {glob!r} matches no signal of the DBCs",
              file=sys.stderr)
    selector = Selector(args.signals or ("*",))
    known = sum(1 for db in databases for m in db.messages for s in m.signals
                if selector(m.name, s.name))
    source: Source
    if args.interface:
        from agent.sources.can_bus import CanBusSource

        name = str(args.channel)
        source = CanBusSource(name, interface=args.interface, channel=args.channel,
                              bitrate=args.bitrate)
        label, channel = f"bus {args.interface}:{args.channel}", None
    else:
        from agent.sources.replay import ReplaySource

        speed = 1.0 if args.speed is None else args.speed
        source = ReplaySource("log", args.log, speed=speed)
        label, channel = f"log {Path(args.log).name}", args.channel
        if speed != 1:
            label += f" x{speed:g}"
    print(f"bavard live: reading the {label} directly, not through the service",
          file=sys.stderr)
    decoder = ChannelDecoder(label, databases, selector)
    return DirectFeed(source, decoder, label, known, channel)
