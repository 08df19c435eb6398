"""What ``bavard obd`` answers, as JSON documents and as lines for people.

One builder per action takes an open :class:`~agent.obd.client.ObdClient` and
returns the document ``bavard obd ACTION --json`` prints; the same builders
run in the service's OBD source when the command goes through the control
socket (``obd.*`` commands, agent.control.obd_commands), so both ways give the
same document. ``*_lines`` turn a document into the text the command prints
without ``--json``, and :func:`succeeded` says whether it found what it asked
for (the command's exit status 0 or 1).

A reply whose bytes make no sense is left out and handed to ``note`` (the
command prints it on standard error, the service logs it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.obd import dtc as dtcs
from agent.obd import pids as pid_table
from agent.obd.client import ObdClient, decode_mode01, ecu_name, refused
from agent.obd.vin import vin_problems

Doc = dict[str, Any]
Note = Callable[[str], None]

ACTIONS = ("scan", "read", "dtc", "clear", "vin", "readiness")


def _ignore(_: str) -> None:
    pass


# -- scan --------------------------------------------------------------------------------


def scan(client: ObdClient) -> Doc:
    """The adapter, the protocol, the battery voltage, each ECU's supported PIDs."""
    transport = client.transport
    volts = transport.battery_voltage()
    supported = client.supported(None)
    return {"adapter": transport.description, "protocol": transport.protocol,
            "battery_voltage": volts,
            "ecus": {ecu_name(e): sorted(f"{p:02X}" for p in s)
                     for e, s in sorted(supported.items())}}


def scan_lines(doc: Doc) -> list[str]:
    lines = [f"adapter   {doc['adapter']}", f"protocol  {doc['protocol']}"]
    if doc.get("battery_voltage") is not None:
        lines.append(f"battery   {doc['battery_voltage']:.1f} V")
    if not doc["ecus"]:
        lines.append("no ECU answered 01 00 (ignition off?)")
    for ecu, have in doc["ecus"].items():
        numbers = [int(p, 16) for p in have]
        known = [pid_table.PIDS[p].name for p in numbers
                 if p in pid_table.PIDS and pid_table.PIDS[p].fields]
        lines.append(f"ECU {ecu}   {len(have)} PIDs supported: " + " ".join(have))
        if known:
            lines.append("          " + ", ".join(known))
    return lines


# -- read --------------------------------------------------------------------------------


def read(client: ObdClient, numbers: list[int], note: Note = _ignore,
         wall: Callable[[], float] = time.time) -> Doc:
    """The current values of the mode 01 PIDs ``numbers`` (the engine ECU's first), and
    the fields nobody gave (``no_data``)."""
    per_request = 6 if client.transport.is_can else 1
    values: dict[str, dict[str, Any]] = {}
    for reply in client.read_all(numbers, per_request=per_request):
        if refused(reply):
            continue
        try:
            decoded = decode_mode01(reply)
        except ValueError as exc:
            note(f"ECU {ecu_name(reply.ecu)}: {exc}")
            continue
        for name, value in decoded.items():
            values.setdefault(name, {"value": value, "ecu": ecu_name(reply.ecu)})
    units = {f.name: f.unit for n in numbers for f in pid_table.PIDS[n].fields}
    missing = [f.name for n in numbers for f in pid_table.PIDS[n].fields
               if f.name not in values]
    doc = {name: {**v, "unit": units.get(name, "")} for name, v in values.items()}
    return {"time": wall(), "values": doc, "no_data": missing}


def read_lines(doc: Doc) -> list[str]:
    lines = []
    for name, v in doc["values"].items():
        value = v["value"]
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"{name:28s} {shown:>10s} {v['unit']:6s} (ECU {v['ecu']})")
    lines.extend(f"{name:28s} {'NO DATA':>10s}" for name in doc["no_data"])
    return lines


def pid_numbers(specs: list[str]) -> list[int]:
    """The PID numbers of names or numbers (``ENGINE_RPM``, ``0C``), each once.
    ValueError naming the one that is unknown, or a bitmap PID (read on its own)."""
    numbers: list[int] = []
    for spec in specs:
        try:
            pid = pid_table.lookup(spec)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        if not pid.fields:
            raise ValueError(f"PID {pid.number:02X} ({pid.name}) says which PIDs exist: "
                             "bavard obd scan shows them")
        if pid.number not in numbers:
            numbers.append(pid.number)
    return numbers


# -- trouble codes -------------------------------------------------------------------------


def dtc(client: ObdClient) -> Doc:
    """Stored, pending and permanent codes, each with its ECU and meaning."""
    doc: dict[str, list[dict[str, Any]]] = {}
    for kind, by_ecu in client.all_dtcs().items():
        doc[kind] = [{"code": code, "ecu": ecu_name(ecu), "description": dtcs.describe(code),
                      "category": dtcs.category(code)}
                     for ecu, codes in sorted(by_ecu.items()) for code in codes]
    return doc


def dtc_lines(doc: Doc) -> list[str]:
    lines = [f"{kind:9s} {d['code']}  ECU {d['ecu']}  {d['description'] or d['category']}"
             for kind, found in doc.items() for d in found]
    return lines or ["no trouble codes"]


def clear(client: ObdClient) -> Doc:
    """Mode 04: the ECUs that confirmed the clear."""
    return {"cleared": [ecu_name(e) for e in client.clear()]}


def clear_lines(doc: Doc) -> list[str]:
    if doc["cleared"]:
        return [f"cleared by ECU {', '.join(doc['cleared'])}"]
    return ["no ECU confirmed the clear (ignition on, engine off?)"]


# -- vehicle -------------------------------------------------------------------------------


def vin(client: ObdClient) -> Doc:
    found = client.vin()
    return {"vin": found, "problems": vin_problems(found) if found else []}


def vin_lines(doc: Doc) -> list[str]:
    return [doc["vin"] or "no ECU gave a VIN"] + [f"note: {p}" for p in doc["problems"]]


def readiness(client: ObdClient) -> Doc:
    """Each ECU's MIL, code count, ignition type and emission monitors (01 01)."""
    return {ecu_name(ecu): {
        "mil": state.mil, "dtc_count": state.dtc_count,
        "ignition": "compression" if state.compression else "spark",
        "monitors": {m.name: {"supported": m.supported, "complete": m.complete}
                     for m in state.monitors},
    } for ecu, state in sorted(client.readiness(None).items())}


def readiness_lines(doc: Doc) -> list[str]:
    lines = []
    for ecu, state in doc.items():
        lines.append(f"ECU {ecu}: MIL {'ON' if state['mil'] else 'off'}, "
                     f"{state['dtc_count']} codes, {state['ignition']} ignition")
        lines.extend(f"  {name:32s} {'complete' if m['complete'] else 'NOT complete'}"
                     for name, m in state["monitors"].items() if m["supported"])
    return lines or ["no ECU answered 01 01"]


# -- all of them -----------------------------------------------------------------------------

LINES: dict[str, Callable[[Doc], list[str]]] = {
    "scan": scan_lines, "read": read_lines, "dtc": dtc_lines, "clear": clear_lines,
    "vin": vin_lines, "readiness": readiness_lines,
}


def succeeded(action: str, doc: Doc) -> bool:
    """Whether the vehicle gave what ``action`` asks for (``dtc``: always, none is an
    answer too); the command's exit status is 0 when it did, 1 otherwise."""
    if action == "scan":
        return bool(doc["ecus"])
    if action == "read":
        return bool(doc["values"])
    if action == "clear":
        return bool(doc["cleared"])
    if action == "vin":
        return doc["vin"] is not None
    if action == "readiness":
        return bool(doc)
    return True
