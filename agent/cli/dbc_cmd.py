"""``bavard dbc list|show``: what a DBC file says, read through the agent's own loader.

``list FILE...``: its messages (id, name, length, cycle time, senders, signals);
``show FILE [MESSAGE]``: every signal of every message (or of one, named or by
id) with its bit layout, scaling, range, unit, value labels, multiplexing,
receivers and comment. The file is loaded as the service loads it (strictly,
then with ``strict=False`` and a warning), so an error names ``file:line``
exactly as ``bavard run`` would.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from typing import Any

from agent.errors import DbcError

HELP = "list the messages of DBC files, or show their signals"
EPILOG = """\
MESSAGE is a message name (any case) or its id: 0x-prefixed hex (0x0C0, 0x18FEF521),
decimal (192), or hex without a prefix as candump writes it (0C0). A number that
names one message in decimal and another in hex is refused as ambiguous.
"""
EXTENDED_FLAG = 0x80000000  # how a DBC writes a 29-bit id


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the messages: id, name, length, cycle time, "
                                          "senders, number of signals")
    listing.add_argument("files", nargs="+", metavar="FILE", help="DBC file(s)")
    listing.add_argument("--json", action="store_true", help="one JSON object")
    show = sub.add_parser("show", help="the signals of every message, or of one: layout, "
                                       "scaling, range, unit, value labels, multiplexing",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("file", metavar="FILE", help="DBC file")
    show.add_argument("message", nargs="?", metavar="MESSAGE",
                      help="only this message (name or id)")
    show.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    from agent.decode.dbc_files import load_dbc

    if args.action == "list":
        files = [{"path": path, "messages": [message_info(m) for m in load_dbc(path).messages]}
                 for path in args.files]
        if args.json:
            print(json.dumps({"files": files}, indent=2, ensure_ascii=False))
        else:
            print("\n\n".join(render_list(f["path"], f["messages"]) for f in files))
        return 0
    db = load_dbc(args.file)
    messages = db.messages if args.message is None else [find_message(db, args.message,
                                                                       args.file)]
    shown = [{**message_info(m), "comment": m.comment,
              "signals": [signal_info(s) for s in m.signals]} for m in messages]
    if args.json:
        print(json.dumps({"path": args.file, "messages": shown}, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(render_message(m) for m in shown) or f"{args.file}: no messages")
    return 0


def cycle_time(message: Any) -> int | None:
    """Milliseconds between frames: cantools' ``cycle_time``, else the message's
    ``GenMsgCycleTime`` attribute; None when neither says (or says 0: not cyclic)."""
    cycle = message.cycle_time
    if not cycle:
        attribute = (message.dbc.attributes.get("GenMsgCycleTime")
                     if message.dbc is not None else None)
        cycle = attribute.value if attribute is not None else None
    return int(cycle) if cycle else None


def id_text(frame_id: int, extended: bool) -> str:
    return f"0x{frame_id:08X}" if extended else f"0x{frame_id:03X}"


def message_info(m: Any) -> dict[str, Any]:
    return {"id": m.frame_id, "id_hex": id_text(m.frame_id, m.is_extended_frame),
            "extended": m.is_extended_frame, "fd": bool(getattr(m, "is_fd", False)),
            "name": m.name, "length": m.length, "cycle_time_ms": cycle_time(m),
            "senders": list(m.senders), "signals": len(m.signals)}


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def signal_info(s: Any) -> dict[str, Any]:
    mux: dict[str, Any] | None = None
    if s.is_multiplexer:
        mux = {"role": "multiplexer"}
    elif s.multiplexer_ids:
        mux = {"role": "multiplexed", "by": s.multiplexer_signal,
               "values": list(s.multiplexer_ids)}
    return {
        "name": s.name, "start": s.start, "length": s.length,
        "byte_order": "big_endian" if s.byte_order == "big_endian" else "little_endian",
        "signed": s.is_signed, "float": s.is_float, "scale": s.scale, "offset": s.offset,
        "minimum": s.minimum, "maximum": s.maximum, "unit": s.unit or "",
        "choices": ({str(int(raw)): str(label) for raw, label in s.choices.items()}
                    if s.choices else None),
        "multiplexing": mux, "receivers": list(s.receivers), "comment": s.comment,
    }


def find_message(db: Any, wanted: str, path: str) -> Any:
    """The message ``wanted`` names (see EPILOG); DbcError with close names else."""
    by_name = {m.name.lower(): m for m in db.messages}
    hit = by_name.get(wanted.strip().lower())
    if hit is not None:
        return hit
    by_id = {m.frame_id: m for m in db.messages}
    text = wanted.strip().lower()
    readings: list[int] = []
    try:
        if text.startswith("0x"):
            readings = [int(text, 16)]
        elif text.isdigit():
            readings = [int(text, 10), int(text, 16)]
        else:
            readings = [int(text, 16)]
    except ValueError:
        pass
    found = {n & ~EXTENDED_FLAG: by_id[n & ~EXTENDED_FLAG]
             for n in readings if n & ~EXTENDED_FLAG in by_id}
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        names = " or ".join(f"{m.name} ({id_text(m.frame_id, m.is_extended_frame)})"
                            for m in found.values())
        raise DbcError(f"{path}: message {wanted!r} is ambiguous: {names}; write the id "
                       f"with 0x, or the name")
    close = difflib.get_close_matches(wanted.lower(), list(by_name), n=3, cutoff=0.5)
    hint = ("; did you mean " + ", ".join(by_name[c].name for c in close) + "?") if close else (
        f"; it has {len(db.messages)} messages: bavard dbc list {path}")
    raise DbcError(f"{path}: no message {wanted!r}{hint}")


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
            for r in rows]


def render_list(path: str, messages: list[dict[str, Any]]) -> str:
    rows = [("id", "name", "bytes", "cycle", "senders", "signals")]
    for m in messages:
        cycle = f"{m['cycle_time_ms']} ms" if m["cycle_time_ms"] else "-"
        rows.append((m["id_hex"] + (" x" if m["extended"] else ""), m["name"], str(m["length"]),
                     cycle, ",".join(m["senders"]) or "-", str(m["signals"])))
    head = f"{path}: {len(messages)} messages (x: extended 29-bit id)"
    return "\n".join([head, *_table(rows)]) if messages else f"{path}: no messages"


def render_message(m: dict[str, Any]) -> str:
    cycle = f", every {m['cycle_time_ms']} ms" if m["cycle_time_ms"] else ""
    kind = "extended" if m["extended"] else "standard"
    senders = f", from {','.join(m['senders'])}" if m["senders"] else ""
    lines = [f"{m['name']} {m['id_hex']} ({kind}{', FD' if m['fd'] else ''}), "
             f"{m['length']} bytes{cycle}{senders}"]
    if m["comment"]:
        lines.append(f"  {m['comment']}")
    rows = [("signal", "start", "len", "order", "type", "scale", "offset", "min", "max", "unit")]
    for s in m["signals"]:
        kind = "float" if s["float"] else ("signed" if s["signed"] else "unsigned")
        rows.append((s["name"], str(s["start"]), str(s["length"]),
                     "motorola" if s["byte_order"] == "big_endian" else "intel", kind,
                     str(_plain(s["scale"])), str(_plain(s["offset"])),
                     _num(s["minimum"]), _num(s["maximum"]), s["unit"] or "-"))
    table = _table(rows)
    lines.append(table[0])
    for s, row in zip(m["signals"], table[1:], strict=True):
        lines.append(row)
        lines += [f"      {line}" for line in _details(s)]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else str(_plain(value))


def _details(s: dict[str, Any]) -> list[str]:
    out = []
    mux = s["multiplexing"]
    if mux is not None and mux["role"] == "multiplexer":
        out.append("multiplexer: selects the signals present in each frame")
    elif mux is not None:
        out.append(f"multiplexed: present when {mux['by']} = "
                   + " or ".join(str(v) for v in mux["values"]))
    if s["choices"]:
        out.append("values: " + ", ".join(f"{k}={v}" for k, v in s["choices"].items()))
    if s["receivers"]:
        out.append("receivers: " + ", ".join(s["receivers"]))
    if s["comment"]:
        out.append(f"comment: {s['comment']}")
    return out
