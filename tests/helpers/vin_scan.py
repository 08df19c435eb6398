"""Look for a raw VIN in what receivers stored: ASCII, UTF-16, hex, base64.

The VIN never leaves the box (agent.service.identity: only an HMAC of it, keyed
per destination). Every receiver database a test session leaves under its base
temporary directory is scanned at the session's end (tests/conftest.py) for
every VIN the tests and the simulators use, in every encoding a careless
sender could use; one found fails the session.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

VIN_LITERAL = re.compile(rb"[\"']([A-HJ-NPR-Z0-9]{17})[\"']")


def encodings(vin: str) -> dict[str, bytes]:
    """Every form of ``vin`` the scan looks for."""
    raw = vin.encode("ascii")
    out = {"ascii": raw, "ascii-lower": raw.lower(), "utf-16-le": vin.encode("utf-16-le"),
           "utf-16-be": vin.encode("utf-16-be"), "hex": raw.hex().encode(),
           "HEX": raw.hex().upper().encode()}
    # base64 inside a longer text: the VIN starts at any of three offsets of a group;
    # the characters that depend only on the VIN's bytes are those of whole groups
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = 4 if shift else 0  # the first group mixes the padding in
        whole = (len(encoded) // 4 - 1) * 4  # the last group may mix what follows
        out[f"base64+{shift}"] = encoded[start:whole]
    return out


def known_vins(*roots: Path) -> set[str]:
    """The VIN literals written in the Python files under ``roots`` (the tests', the
    simulators'): the VINs any test's vehicle may have."""
    found: set[str] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            for match in VIN_LITERAL.finditer(path.read_bytes()):
                text = match.group(1).decode()
                if any(c.isalpha() for c in text) and any(c.isdigit() for c in text):
                    found.add(text)
    return found


def columns(database: Path) -> Iterator[tuple[str, bytes]]:
    """("table.column", its distinct text and blob values joined by newlines) for every
    column of a SQLite file: one search per needle and column, not per cell (no needle
    holds a newline, so none is found across two values)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            names = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            for name in names:
                parts = []
                for (value,) in db.execute(f'SELECT DISTINCT "{name}" FROM "{table}"'):
                    if isinstance(value, str):
                        parts.append(value.encode("utf-8", "surrogatepass"))
                    elif isinstance(value, bytes):
                        parts.append(value)
                if parts:
                    yield f"{table}.{name}", b"\n".join(parts)
    finally:
        db.close()


def scan(databases: Iterable[Path], vins: Iterable[str]) -> list[str]:
    """Where a VIN was found: ``file: table.column: VIN as encoding`` lines (empty: none)."""
    needles = [(vin, name, needle) for vin in sorted(vins)
               for name, needle in encodings(vin).items()]
    found = []
    for database in databases:
        try:
            for where, blob in columns(database):
                for vin, name, needle in needles:
                    if needle in blob:
                        found.append(f"{database}: {where}: {vin} as {name}")
        except sqlite3.Error as exc:  # a database a test corrupted on purpose
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                found.append(f"{database}: cannot be read: {exc}")
    return found
