"""``bavard obd``: the technician's OBD-II commands, through the service or directly.

Without ``--port`` or ``--can`` the command goes through the running service
(its control socket, ``--socket``): the service holds the adapter, and its OBD
channel (``--channel``, needed only when it has several) asks the vehicle
between two of its polls. With ``--port`` (an ELM327: a serial device or a
pyserial URL such as ``socket://192.168.0.10:35000``) or ``--can`` (native
OBD on a CAN interface, ``--interface``, default socketcan) it opens the
adapter itself; it refuses an adapter the running service holds (opening it
would reset the adapter under the service, and both would lose answers).

* ``scan``: the adapter, the protocol, the ECUs and the PIDs each supports;
* ``read PID...``: current values (``--watch`` repeats until Ctrl-C);
* ``dtc``: stored, pending and permanent trouble codes with their meaning;
  ``--clear --yes`` clears them (mode 04), never without ``--yes``;
* ``vin``: the VIN, whole, and whether it is well formed;
* ``readiness``: the MIL, the code count and the emission monitors.

``--json`` prints one JSON document (``read --watch``: one per line), the same
one either way (agent.obd.report builds both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.control.protocol import BAD_ARGS
from agent.errors import ControlError, ObdAdapterError, ServiceNotRunningError

HELP = "read OBD-II PIDs, trouble codes, VIN and readiness (through the service, or directly)"
EPILOG = """\
where: without --port or --can, through the running service (--socket, --channel);
with --port (ELM327) or --can (native CAN), directly on the adapter.

exit status: 0 done; 1 the adapter, the vehicle or the service did not answer (the
message says which); 2 a bad command line (an unknown PID, --clear without --yes,
a --channel the service does not have)"""

DIRECT_ONLY = ("interface", "extended", "baudrate", "protocol", "timeout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.control.protocol import default_socket_path

    adapter = argparse.ArgumentParser(add_help=False)
    where = adapter.add_mutually_exclusive_group()
    where.add_argument("--port", metavar="PORT",
                       help="directly on an ELM327: serial device or pyserial URL "
                            "(socket://HOST:PORT)")
    where.add_argument("--can", metavar="CHANNEL",
                       help="directly: native OBD on this CAN channel")
    adapter.add_argument("--socket", type=Path, default=None, metavar="PATH",
                         help="the service's control socket (default "
                              f"{default_socket_path()}; $BAVARD_SOCKET)")
    adapter.add_argument("--channel", metavar="NAME",
                         help="through the service: its OBD channel (when it has several)")
    adapter.add_argument("--interface", default=None,
                         help="python-can interface for --can (default socketcan)")
    adapter.add_argument("--extended", action="store_true", default=None,
                         help="--can: 29-bit identifiers (0x18DB33F1)")
    adapter.add_argument("--baudrate", type=int, default=None,
                         help="--port: baud rate (default: tried 38400, 9600, 115200, 500000)")
    adapter.add_argument("--protocol", default=None,
                         help="--port: the ELM327's protocol number, 6 = CAN 11-bit "
                              "500 kbit/s (default auto)")
    adapter.add_argument("--timeout", type=float, default=None,
                         help="--port/--can: seconds to wait for the replies of one request")
    adapter.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("scan", parents=[adapter], help="adapter, protocol, ECUs, supported PIDs")
    read = sub.add_parser("read", parents=[adapter], help="current values of PIDs")
    read.add_argument("pids", nargs="+", metavar="PID",
                      help="PID names (ENGINE_RPM) or numbers (0C, 0x0C)")
    read.add_argument("--watch", action="store_true", help="repeat until Ctrl-C")
    read.add_argument("--interval", type=float, default=1.0,
                      help="--watch: seconds between two reads (default 1)")
    read.add_argument("--count", type=int, default=0,
                      help="--watch: stop after this many reads (default 0: never)")
    dtc = sub.add_parser("dtc", parents=[adapter],
                         help="stored, pending and permanent trouble codes")
    dtc.add_argument("--clear", action="store_true",
                     help="clear the stored and pending codes and freeze frames (mode 04); "
                          "needs --yes")
    dtc.add_argument("--yes", action="store_true", help="confirm --clear")
    sub.add_parser("vin", parents=[adapter], help="the vehicle identification number")
    sub.add_parser("readiness", parents=[adapter], help="MIL, code count, emission monitors")


def run(args: argparse.Namespace) -> int:
    from agent.obd import report

    command = f"bavard obd {args.action}"
    direct = args.port is not None or args.can is not None
    if args.timeout is not None and not args.timeout > 0:
        return _usage(f"{command}: --timeout must be above 0")
    if not direct:
        given = [f"--{name}" for name in DIRECT_ONLY if getattr(args, name) is not None]
        if given:
            return _usage(f"{command}: {', '.join(given)} only with --port or --can (the "
                          "service talks to its adapter with its own settings)")
    elif args.channel is not None:
        return _usage(f"{command}: --channel names the service's channel: drop --port/--can "
                      "to go through the service")
    if args.action == "read":
        try:
            args.numbers = report.pid_numbers(args.pids)
        except ValueError as exc:
            return _usage(f"{command}: {exc}")
        if args.watch and args.interval < 0:
            return _usage(f"{command}: --interval must be >= 0")
    if args.action == "dtc" and args.clear and not args.yes:
        return _usage(f"{command}: --clear erases the stored codes, their freeze frames and "
                      "the readiness monitors' results; add --yes to do it")
    action = "clear" if args.action == "dtc" and args.clear else args.action
    if direct:
        _refuse_the_services_adapter(args)
        with _client(args) as client:  # an ObdError names the port or the interface itself
            return _run(args, action, _direct(client, action, args))
    with _service(args) as service:
        try:
            return _run(args, action, _through(service, action, args))
        except ControlError as exc:
            if exc.code != BAD_ARGS:
                raise
            return _usage(f"{command}: {exc}")  # --channel or a PID the service refused


def _usage(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


Ask = Callable[[], dict[str, Any]]


def _run(args: argparse.Namespace, action: str, ask: Ask) -> int:
    from agent.obd import report

    done = 0
    while True:
        doc = ask()
        if args.json:
            print(json.dumps(doc, ensure_ascii=False), flush=True)
        else:
            print("\n".join(report.LINES[action](doc)), flush=True)
            if action == "read" and args.watch:
                print(flush=True)
        done += 1
        if action != "read" or not args.watch or (args.count and done >= args.count):
            return 0 if report.succeeded(action, doc) else 1
        time.sleep(args.interval)


# -- directly on the adapter ---------------------------------------------------------------


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    from agent.obd.adapters import open_transport
    from agent.obd.client import ObdClient
    from agent.obd.settings import ObdSettings

    settings = ObdSettings(port=args.port, baudrate=args.baudrate,
                           protocol=args.protocol or "auto",
                           interface=(args.interface or "socketcan") if args.can else None,
                           channel=args.can, extended=bool(args.extended),
                           timeout=args.timeout)
    transport = open_transport(settings)
    try:
        yield ObdClient(transport)
    finally:
        transport.close()


def _direct(client: Any, action: str, args: argparse.Namespace) -> Ask:
    from agent.obd import report

    def note(text: str) -> None:
        print(text, file=sys.stderr)

    builders: dict[str, Ask] = {
        "scan": lambda: report.scan(client),
        "read": lambda: report.read(client, args.numbers, note),
        "dtc": lambda: report.dtc(client),
        "clear": lambda: report.clear(client),
        "vin": lambda: report.vin(client),
        "readiness": lambda: report.readiness(client),
    }
    return builders[action]


def _refuse_the_services_adapter(args: argparse.Namespace) -> None:
    """ObdAdapterError when the running service holds this adapter: opening it would
    reset the ELM327 under the service (ATZ), or take its ISO-TP replies on the bus."""
    from agent.control.client import ControlClient

    try:
        with ControlClient.connect(args.socket, timeout=5.0) as service:
            channels = service.call("obd.channels")["channels"]
    except ControlError:
        return  # no service, or one that cannot say: the adapter is ours to try
    for ch in channels:
        same = (_same_port(ch.get("port"), args.port) if args.port is not None
                else ch.get("can_channel") == args.can)
        if same:
            drop = "--port" if args.port is not None else "--can"
            raise ObdAdapterError(
                f"the running service holds {ch['where']} (its channel {ch['name']}): it is "
                f"busy; drop {drop} to go through the service, or stop it first "
                "(systemctl stop bavard)")


def _same_port(theirs: str | None, ours: str) -> bool:
    if theirs is None:
        return False
    if "://" in theirs or "://" in ours:
        return theirs == ours
    return os.path.realpath(theirs) == os.path.realpath(ours)


# -- through the service ---------------------------------------------------------------------


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[Any]:
    from agent.control.client import ControlClient

    try:
        service = ControlClient.connect(args.socket)
    except ServiceNotRunningError as exc:
        raise ServiceNotRunningError(
            f"{exc}; or talk to the adapter directly with --port PORT (ELM327) or "
            "--can CHANNEL (native CAN)") from None
    with service:
        yield service


def _through(service: Any, action: str, args: argparse.Namespace) -> Ask:
    command = "dtc" if action == "clear" else action
    extra: dict[str, Any] = {"clear": True} if action == "clear" else {}
    if action == "read":
        extra["pids"] = list(args.pids)

    def ask() -> dict[str, Any]:
        return service.call(f"obd.{command}", channel=args.channel, **extra)

    return ask
