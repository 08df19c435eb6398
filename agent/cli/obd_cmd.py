"""``bavard obd``: the technician's OBD-II commands, without the service.

Each opens the adapter itself: ``--port`` for an ELM327 (a serial device or a
pyserial URL such as ``socket://192.168.0.10:35000``), ``--can`` for native OBD
on a CAN interface (``--interface``, default socketcan). Stop the service
first when it holds the same adapter: one adapter answers one client.

* ``scan``: the adapter, the protocol, the ECUs and the PIDs each supports;
* ``read PID...``: current values (``--watch`` repeats until Ctrl-C);
* ``dtc``: stored, pending and permanent trouble codes with their meaning;
  ``--clear --yes`` clears them (mode 04), never without ``--yes``;
* ``vin``: the VIN, whole, and whether it is well formed;
* ``readiness``: the MIL, the code count and the emission monitors.

``--json`` prints one JSON document (``read --watch``: one per line).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

HELP = "read OBD-II PIDs, trouble codes, VIN and readiness (ELM327 or native CAN)"
EPILOG = """\
exit status: 0 done; 1 the adapter or the vehicle did not answer (the message says which);
2 a bad command line (an unknown PID, --clear without --yes)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    adapter = argparse.ArgumentParser(add_help=False)
    where = adapter.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT",
                       help="an ELM327: serial device or pyserial URL (socket://HOST:PORT)")
    where.add_argument("--can", metavar="CHANNEL", help="native OBD on this CAN channel")
    adapter.add_argument("--interface", default="socketcan",
                         help="python-can interface for --can (default socketcan)")
    adapter.add_argument("--extended", action="store_true",
                         help="--can: 29-bit identifiers (0x18DB33F1)")
    adapter.add_argument("--baudrate", type=int, default=None,
                         help="--port: baud rate (default: tried 38400, 9600, 115200, 500000)")
    adapter.add_argument("--protocol", default="auto",
                         help="--port: the ELM327's protocol number, 6 = CAN 11-bit "
                              "500 kbit/s (default auto)")
    adapter.add_argument("--timeout", type=float, default=None,
                         help="seconds to wait for the replies of one request")
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
    from agent.obd import pids as pid_table

    if args.timeout is not None and not args.timeout > 0:
        print(f"bavard obd {args.action}: --timeout must be above 0", file=sys.stderr)
        return 2
    if args.action == "read":
        try:
            pids = [pid_table.lookup(p) for p in args.pids]
        except KeyError as exc:
            print(f"bavard obd read: {exc.args[0]}", file=sys.stderr)
            return 2
        bitmap = next((p for p in pids if not p.fields), None)
        if bitmap is not None:
            print(f"bavard obd read: PID {bitmap.number:02X} ({bitmap.name}) says which PIDs "
                  "exist: bavard obd scan shows them", file=sys.stderr)
            return 2
        args.numbers = list(dict.fromkeys(p.number for p in pids))
        if args.watch and args.interval < 0:
            print("bavard obd read: --interval must be >= 0", file=sys.stderr)
            return 2
    if args.action == "dtc" and args.clear and not args.yes:
        print("bavard obd dtc: --clear erases the stored codes, their freeze frames and the "
              "readiness monitors' results; add --yes to do it", file=sys.stderr)
        return 2
    actions: dict[str, Callable[[Any, argparse.Namespace], int]] = {
        "scan": _scan, "read": _read, "dtc": _dtc, "vin": _vin, "readiness": _readiness,
    }
    with _client(args) as client:  # an ObdError names the port or the interface itself
        return actions[args.action](client, args)


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    from agent.obd.adapters import open_transport
    from agent.obd.client import ObdClient
    from agent.obd.settings import ObdSettings

    settings = ObdSettings(port=args.port, baudrate=args.baudrate, protocol=args.protocol,
                           interface=args.interface if args.can else None, channel=args.can,
                           extended=args.extended, timeout=args.timeout)
    transport = open_transport(settings)
    try:
        yield ObdClient(transport)
    finally:
        transport.close()


def _print(args: argparse.Namespace, doc: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print("\n".join(lines))


def _scan(client: Any, args: argparse.Namespace) -> int:
    from agent.obd import pids as pid_table
    from agent.obd.client import ecu_name

    transport = client.transport
    volts = transport.battery_voltage()
    supported = client.supported(None)
    doc = {"adapter": transport.description, "protocol": transport.protocol,
           "battery_voltage": volts,
           "ecus": {ecu_name(e): sorted(f"{p:02X}" for p in s) for e, s in
                    sorted(supported.items())}}
    lines = [f"adapter   {transport.description}", f"protocol  {transport.protocol}"]
    if volts is not None:
        lines.append(f"battery   {volts:.1f} V")
    if not supported:
        lines.append("no ECU answered 01 00 (ignition off?)")
    for ecu, have in sorted(supported.items()):
        known = [pid_table.PIDS[p].name for p in sorted(have)
                 if p in pid_table.PIDS and pid_table.PIDS[p].fields]
        lines.append(f"ECU {ecu_name(ecu)}   {len(have)} PIDs supported: "
                     + " ".join(f"{p:02X}" for p in sorted(have)))
        if known:
            lines.append("          " + ", ".join(known))
    _print(args, doc, lines)
    return 0 if supported else 1


def _read(client: Any, args: argparse.Namespace) -> int:
    from agent.obd import pids as pid_table
    from agent.obd.client import decode_mode01, ecu_name, refused

    numbers = args.numbers
    per_request = 6 if client.transport.is_can else 1
    done = 0
    while True:
        values: dict[str, dict[str, Any]] = {}
        for reply in client.read_all(numbers, per_request=per_request):
            if refused(reply):
                continue
            try:
                decoded = decode_mode01(reply)
            except ValueError as exc:
                print(f"ECU {ecu_name(reply.ecu)}: {exc}", file=sys.stderr)
                continue
            for name, value in decoded.items():
                values.setdefault(name, {"value": value, "ecu": ecu_name(reply.ecu)})
        units = {f.name: f.unit for n in numbers for f in pid_table.PIDS[n].fields}
        missing = [f.name for n in numbers for f in pid_table.PIDS[n].fields
                   if f.name not in values]
        if args.json:
            doc = {name: {**v, "unit": units.get(name, "")} for name, v in values.items()}
            print(json.dumps({"time": time.time(), "values": doc, "no_data": missing}),
                  flush=True)
        else:
            for name, v in values.items():
                value = v["value"]
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                print(f"{name:28s} {shown:>10s} {units.get(name, ''):6s} (ECU {v['ecu']})")
            for name in missing:
                print(f"{name:28s} {'NO DATA':>10s}")
            if args.watch:
                print(flush=True)
        done += 1
        if not args.watch or (args.count and done >= args.count):
            return 0 if values else 1
        time.sleep(args.interval)


def _dtc(client: Any, args: argparse.Namespace) -> int:
    from agent.obd import dtc as dtcs
    from agent.obd.client import ecu_name

    if args.clear:
        cleared = [ecu_name(e) for e in client.clear()]
        line = (f"cleared by ECU {', '.join(cleared)}" if cleared
                else "no ECU confirmed the clear (ignition on, engine off?)")
        _print(args, {"cleared": cleared}, [line])
        return 0 if cleared else 1
    found = client.all_dtcs()
    doc: dict[str, list[dict[str, Any]]] = {}
    lines = []
    for kind, by_ecu in found.items():
        doc[kind] = []
        for ecu, codes in sorted(by_ecu.items()):
            for code in codes:
                about = dtcs.describe(code)
                doc[kind].append({"code": code, "ecu": ecu_name(ecu), "description": about,
                                  "category": dtcs.category(code)})
                lines.append(f"{kind:9s} {code}  ECU {ecu_name(ecu)}  "
                             f"{about or dtcs.category(code)}")
    if not lines:
        lines.append("no trouble codes")
    _print(args, doc, lines)
    return 0


def _vin(client: Any, args: argparse.Namespace) -> int:
    from agent.obd.vin import vin_problems

    vin = client.vin()
    problems = vin_problems(vin) if vin else []
    _print(args, {"vin": vin, "problems": problems},
           [vin or "no ECU gave a VIN"] + [f"note: {p}" for p in problems])
    return 0 if vin else 1


def _readiness(client: Any, args: argparse.Namespace) -> int:
    from agent.obd.client import ecu_name

    found = client.readiness(None)
    doc = {}
    lines = []
    for ecu, state in sorted(found.items()):
        doc[ecu_name(ecu)] = {
            "mil": state.mil, "dtc_count": state.dtc_count,
            "ignition": "compression" if state.compression else "spark",
            "monitors": {m.name: {"supported": m.supported, "complete": m.complete}
                         for m in state.monitors},
        }
        lines.append(f"ECU {ecu_name(ecu)}: MIL {'ON' if state.mil else 'off'}, "
                     f"{state.dtc_count} codes, "
                     f"{'compression' if state.compression else 'spark'} ignition")
        for m in state.monitors:
            if m.supported:
                lines.append(f"  {m.name:32s} {'complete' if m.complete else 'NOT complete'}")
    if not lines:
        lines.append("no ECU answered 01 01")
    _print(args, doc, lines)
    return 0 if found else 1
