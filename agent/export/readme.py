"""README.txt of an export bundle: how to read each file without bavard, in plain words."""

from __future__ import annotations

import textwrap
from typing import Any

from agent.store import Kind

COLUMN_WORDS = {
    "time": "the moment, ISO 8601 in UTC (2026-01-01T08:00:00.000064Z)",
    "timestamp": "the same moment in seconds since 1970-01-01 UTC, exactly as the box "
                 "stored it (the most precise of the two)",
    "channel": "the bus or adapter it came from (see \"channels\" in manifest.json)",
    "message": "the CAN message (DBC name) the value was decoded from",
    "signal": "the signal's name in that message",
    "value": "the physical value, already scaled (raw * scale + offset); NaN, Infinity "
             "and -Infinity are written as those words",
    "value_int": "(Parquet only) the same value when it is an integer, exactly; empty "
                 "for a decimal value",
    "unit": "the value's unit as the DBC gives it (km/h, degC, V, ...), empty when none",
    "label": "the DBC's name for this value (\"Pressed\", \"D\"), empty when it has none",
    "flags": "out_of_range: outside the DBC's minimum..maximum; truncated: the frame was "
             "shorter than the DBC says; several are separated by |",
    "kind": "what happened: dtc (a trouble code), a service event, ...",
    "detail": "the event's text (the trouble code, what changed)",
    "priority": "the event's priority (higher is more important)",
    "id": "the CAN identifier in hex, as candump writes it: 3 digits for a standard "
          "11-bit id, 8 for an extended 29-bit one",
    "extended": "true for a 29-bit identifier",
    "fd": "true for a CAN FD frame",
    "data": "the frame's bytes in hex (0 to 64 bytes)",
}
CLASS_WORDS = {
    Kind.SAMPLE: "decoded signal values, one row per value",
    Kind.EVENT: "things that happened (trouble codes, the service starting or stopping, ...)",
    Kind.FRAME: "raw CAN frames, stored as they were on the bus (channels configured "
                "raw); decode them with the DBC files listed in manifest.json",
}
HOW = {
    "csv": "CSV files (RFC 4180: comma-separated, a header line, CRLF line ends, "
           "UTF-8): any spreadsheet opens them; in Python: csv.DictReader(open(NAME, "
           "newline='')) or pandas.read_csv(NAME); in a shell: duckdb -c \"SELECT * FROM "
           "'NAME'\".",
    "jsonl": "JSON Lines files: one JSON object per line, the columns as keys (label is "
             "null when absent, flags a list). In a shell: jq -c . NAME; in Python: "
             "[json.loads(line) for line in open(NAME)] or pandas.read_json(NAME, lines=True).",
    "parquet": "Apache Parquet files (columnar, typed; time is a timestamp in UTC with "
               "microseconds): pandas.read_parquet(NAME), pyarrow.parquet.read_table(NAME), "
               "duckdb -c \"SELECT * FROM 'NAME'\", or any tool that reads Parquet.",
}


def _wrap(text: str, indent: str = "", hang: str = "") -> str:
    """A paragraph (``hang``: the extra indent of its following lines, for list items)."""
    return textwrap.fill(text, 78, initial_indent=indent, subsequent_indent=indent + hang,
                         break_on_hyphens=False)


def render(manifest: dict[str, Any], columns: dict[Kind, tuple[str, ...]]) -> str:
    fmt = manifest["data_format"]
    asked = manifest["time_range"]["asked"]
    pseudonym = manifest["vehicle"]["pseudonym"]
    vehicle = (f"the vehicle with the pseudonym {pseudonym} (not its VIN)" if pseudonym else
               "a vehicle whose pseudonym is not known (see manifest.json)")
    lines = [
        "bavard export bundle",
        "====================",
        "",
        _wrap(f"Data of {vehicle} as its bavard box held it, from {asked['since']['iso']} "
              f"(included) to {asked['until']['iso']} (excluded), exported "
              f"{manifest['created_at']} by bavard {manifest['bavard_version']}. You do not "
              f"need bavard to read it."),
        "",
        _wrap("manifest.json says where the data comes from (the DBC files and their "
              "SHA-256 fingerprints), every signal with its unit, range and value labels, "
              "the counts, and the size and SHA-256 of each data file. To check that the "
              "data files are whole and unchanged:"),
        "",
        "    sha256sum -c SHA256SUMS",
        "",
        _wrap(HOW[fmt]),
        "",
        _wrap("Rows are in the order the box stored them: in time order for each channel. "
              "Sort by timestamp for one timeline across channels. What the box had "
              "already uploaded, and what it deleted for room or age, is not here."),
        "",
    ]
    by_name = {f["name"]: f for f in manifest["files"] if f["class"] is not None}
    if not by_name:
        lines += [_wrap("No data file: the buffer held nothing in that time range (and "
                        "filters)."), ""]
    for kind in (Kind.SAMPLE, Kind.EVENT, Kind.FRAME):
        entry = next((f for f in by_name.values() if f["class"] == kind.label), None)
        if entry is None:
            continue
        lines += [_wrap(f"{entry['name']}: {CLASS_WORDS[kind]}. Rows: {entry['rows']}.",
                        hang="  "), "  columns:"]
        for name in entry["columns"] or columns[kind]:
            lines.append(_wrap(f"{name}: {COLUMN_WORDS.get(name, '')}", "    ", "  "))
        lines.append("")
    signals = manifest["signals"]
    if signals:
        lines += ["Signals (channel message.signal [unit] samples; ranges and value labels "
                  "are in manifest.json):"]
        for s in signals:
            unit = f" [{s['unit']}]" if s["unit"] else ""
            labels = ""
            if s["choices"]:
                labels = " values: " + ", ".join(f"{k}={v}" for k, v in s["choices"].items())
            lines.append(_wrap(f"{s['channel']} {s['message']}.{s['signal']}{unit} "
                               f"{s['samples']}{labels}", "  ", "  "))
        lines.append("")
    return "\n".join(lines)
