"""``bavard receive``: the reference receiver (HTTP(S) and MQTT), and what it received.

::

    bavard receive --listen 127.0.0.1:8080 [--dir DIR]                 plain HTTP, loopback only
    bavard receive --listen 0.0.0.0:8443 --cert F --key F --client-ca F        HTTPS, mTLS
    bavard receive --listen 0.0.0.0:8443 --cert F --key F --allow-anonymous    HTTPS, anyone
    bavard receive --mqtt mqtts://broker:8883 [--topic T] [--ca-file F --cert F --key F]
    bavard receive --mqtt URL --share GROUP --client-id ID --lake LAKE   one of N receivers
    bavard receive --mqtt URL --share GROUP --client-id ID --leave --lake LAKE   retire it
    bavard receive --listen 127.0.0.1:8080 --lake LAKE [--dir DIR]      Parquet (and SQLite)
    bavard receive --summary DIR [--json]

Where batches go: ``--dir DIR`` (SQLite, ``DIR/receiver.sqlite``; ``./received``
when neither ``--dir`` nor ``--lake`` is given), ``--lake LAKE`` (Parquet files,
docs/lake.md), or both. Any number of receivers may write one lake (several
``--listen`` behind a load balancer, several ``--mqtt ... --share GROUP``): each
batch is there once. One SQLite database is for one receiver process.

``--listen`` and ``--mqtt`` may be given together (one database, both
transports); ``--cert``/``--key`` are then the HTTPS server's certificate and
the MQTT client certificate alike. Serving runs until SIGTERM or SIGINT, then
stops accepting, finishes what is in flight, closes the database and exits 0.
The address served is printed on stdout (``receiving on http://127.0.0.1:PORT``,
useful with port 0), and a line once the MQTT subscription is granted (batches
published before that are not queued for the receiver's session unless it
existed already); the log goes to stderr.

A broker that cannot be reached (refused, a name that does not resolve, TLS,
no answer) or that refuses the connection is named with the reason on stderr,
and the receiver keeps trying (every 10 s at most) until it is stopped: it is a
service, and a broker that starts after it or restarts is not an error. The
same reason is repeated at most once a minute.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from agent.errors import ReceiverError
from agent.units import human_bytes

HELP = "receive uploaded batches over HTTP(S) or MQTT into SQLite, or summarise what arrived"
DEFAULT_DIR = "received"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", metavar="DIR",
                        help="where the database goes (DIR/receiver.sqlite; "
                             f"default ./{DEFAULT_DIR} unless --lake is given)")
    parser.add_argument("--lake", metavar="LAKE",
                        help="write every accepted batch as Parquet files under LAKE "
                             "(docs/lake.md; needs pyarrow: pip install 'bavard[lake]'); "
                             "alone, or with --dir for both")
    http = parser.add_argument_group("HTTP(S)")
    http.add_argument("--listen", metavar="HOST:PORT",
                      help="serve POSTs of batches here (plain HTTP on loopback only)")
    http.add_argument("--cert", metavar="FILE", type=Path,
                      help="certificate chain (PEM): HTTPS server / MQTT client certificate")
    http.add_argument("--key", metavar="FILE", type=Path, help="its private key (PEM)")
    http.add_argument("--client-ca", metavar="FILE", type=Path,
                      help="require HTTPS client certificates signed by this CA (mTLS); "
                           "needed on an address other than loopback")
    http.add_argument("--allow-anonymous", action="store_true",
                      help="serve HTTPS off loopback without --client-ca: anyone reaching "
                           "it can store batches and read /stats (logged as a warning)")
    http.add_argument("--max-bytes", metavar="N", type=int, default=16 * 1024 * 1024,
                      help="largest batch accepted, bytes (default 16 MiB; bigger: HTTP 413, "
                           "MQTT counted as invalid)")
    mqtt = parser.add_argument_group("MQTT")
    mqtt.add_argument("--mqtt", metavar="URL",
                      help="subscribe at this broker: mqtt://HOST[:PORT] or mqtts://...; "
                           "when it cannot be reached, says why and keeps trying")
    mqtt.add_argument("--topic", default="bavard/+/batch",
                      help="topic filter (default bavard/+/batch)")
    mqtt.add_argument("--ca-file", metavar="FILE", type=Path,
                      help="the broker's CA (mqtts; default: the system's)")
    mqtt.add_argument("--client-id", default=None,
                      help="MQTT client id of the persistent session (default "
                           "bavard-receiver; with --share bavard-receiver-GROUP-HOSTNAME: "
                           "give each instance on one host its own, stable across restarts)")
    mqtt.add_argument("--share", metavar="GROUP",
                      help="subscribe as one of a group of receivers that split the batches "
                           "(MQTT 5 shared subscription $share/GROUP/TOPIC); give each "
                           "receiver its own stable --client-id")
    mqtt.add_argument("--leave", action="store_true",
                      help="retire the --share member --client-id for good: store what its "
                           "session still holds, leave the group, end the session, exit")
    report = parser.add_argument_group("report")
    report.add_argument("--summary", metavar="DIR",
                        help="print what DIR's database holds, per vehicle and signal, and exit")
    report.add_argument("--json", action="store_true", help="--summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.summary:
        if args.listen or args.mqtt:
            raise ReceiverError("--summary reads a database; it does not go with "
                                "--listen or --mqtt")
        return _summary(Path(args.summary), args.json)
    if not (args.listen or args.mqtt):
        raise ReceiverError("nothing to do: give --listen HOST:PORT, --mqtt URL or --summary DIR")
    if (args.cert is None) != (args.key is None):
        raise ReceiverError("--cert and --key go together")
    if args.client_ca and not args.cert:
        raise ReceiverError("--client-ca needs --cert and --key (it is for HTTPS)")
    if args.allow_anonymous and (args.client_ca or not args.cert or not args.listen):
        raise ReceiverError("--allow-anonymous is for HTTPS (--cert and --key) without "
                            "--client-ca")
    if args.max_bytes <= 0:
        raise ReceiverError("--max-bytes must be positive")
    if args.share and not args.mqtt:
        raise ReceiverError("--share is for --mqtt (a shared MQTT subscription)")
    if args.share:
        from agent.receiver.mqtt_share import subscription_filter

        subscription_filter(args.topic, args.share)  # a bad group: said before anything opens
    if args.leave:
        if not args.share or args.listen:
            raise ReceiverError("--leave retires one member of a --share group: give --mqtt, "
                                "--share and its --client-id, without --listen")
        return _leave(args)
    return _serve(args)


def _mqtt_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"topic": args.topic, "ca_file": args.ca_file,
                               "cert_file": args.cert, "key_file": args.key,
                               "max_bytes": args.max_bytes}
    if args.share:
        options["share"] = args.share
    if args.client_id:
        options["client_id"] = args.client_id
    return options


def _leave(args: argparse.Namespace) -> int:
    from agent.receiver.mqtt_subscriber import MqttReceiver, MqttSettings

    receiver = open_receiver(args)
    try:
        member = MqttReceiver(receiver, MqttSettings(args.mqtt, **_mqtt_options(args)))
        handled = member.leave()
        print(f"left {member.filter} as {member.client_id}: {handled} batches handled; "
              f"{_counts(receiver.stats()['total'])}")
    finally:
        receiver.close()
    return 0


def open_receiver(args: argparse.Namespace) -> Any:
    """The Receiver of ``--dir`` and ``--lake`` (``./received`` when neither is given)."""
    from agent.receiver.core import Receiver
    from agent.receiver.database import ReceiverDb

    lake = None
    if args.lake:
        lake = _open_lake(args.lake)
    directory = args.dir or (None if lake is not None else DEFAULT_DIR)
    db = ReceiverDb(directory) if directory is not None else None
    return Receiver(db, lake=lake)


def _open_lake(root: str) -> Any:
    try:
        from agent.lake import Lake

        return Lake(root)
    except ImportError as exc:
        raise ReceiverError(f"--lake needs pyarrow, which is not installed ({exc}): "
                            f"pip install 'bavard[lake]'") from None


def _serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    receiver = open_receiver(args)  # first: when it fails, the handlers are untouched
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    running: list[Any] = []
    try:
        if args.listen:
            from agent.receiver.http_server import serve
            from agent.receiver.listen import TlsFiles, parse_listen

            host, port = parse_listen(args.listen)
            tls = TlsFiles(args.cert, args.key, args.client_ca) if args.cert else None
            server = serve(receiver, host, port, tls=tls, max_bytes=args.max_bytes,
                           allow_anonymous=args.allow_anonymous)
            running.append(server)
            print(f"receiving on {server.url}", flush=True)
        if args.mqtt:
            from agent.receiver.mqtt_subscriber import subscribe

            subscriber = subscribe(receiver, args.mqtt, **_mqtt_options(args))
            running.append(subscriber)
            while not stop.is_set() and not subscriber.wait_subscribed(0.5):
                pass  # it keeps trying; the log says why it cannot connect
            if subscriber.wait_subscribed(0):
                print(f"receiving from {subscriber.where}: subscribed to "
                      f"{subscriber.filter}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for service in reversed(running):
            service.close()
        totals = receiver.stats()["total"]
        receiver.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"bavard receive: stopped; {_counts(totals)}", file=sys.stderr)
    return 0


def _summary(directory: Path, as_json: bool) -> int:
    import json

    from agent.receiver.database import ReceiverDb
    from agent.receiver.summary import summarize

    with ReceiverDb(directory, readonly=True) as db:
        summary = summarize(db)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    else:
        print(render(summary))
    return 0


def render(summary: Any) -> str:
    """The summary as text (``summary``: an ``agent.receiver.summary.Summary``)."""
    lines = [f"receiver database {summary.path}", f"  {_counts(summary.counters)}"]
    if not summary.vehicles:
        lines.append("  nothing received yet")
    for v in summary.vehicles:
        name = v.vehicle or "(unreadable batches)"
        lines.append("")
        lines.append(f"vehicle {name}")
        lines.append(f"  {v.batches} batches ({human_bytes(v.bytes)}), {v.samples} samples, "
                     f"{v.events} events, {v.frames} frames; {_counts(v.counters)}")
        if v.first is not None:
            lines.append(f"  from {_time(v.first)} to {_time(v.last)}")
        if not v.signals:
            continue
        header = ("channel", "signal", "count", "first", "last", "min", "max", "unit")
        rows = [header] + [
            (s.channel, f"{s.message}.{s.signal}", str(s.count), _time(s.first), _time(s.last),
             _number(s.minimum), _number(s.maximum), s.unit) for s in v.signals]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        right = {2, 5, 6}
        for r in rows:
            lines.append("  " + "  ".join(
                cell.rjust(w) if i in right else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    return "\n".join(lines)


def _counts(c: dict[str, int]) -> str:
    return (f"{c.get('received', 0)} received: {c.get('stored', 0)} stored, "
            f"{c.get('duplicates', 0)} duplicates, {c.get('invalid', 0)} invalid")


def _time(t: float | None) -> str:
    if t is None:
        return "-"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        return repr(t)


def _number(x: int | float | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:.10g}"
    return str(x)
