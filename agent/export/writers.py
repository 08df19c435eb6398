"""The data files of an export bundle: one per class of item, CSV, JSONL or Parquet.

The columns (docs/export.md, and the bundle's README.txt, say the same):

- samples: time, timestamp, channel, message, signal, value, unit, label, flags
  (Parquet adds value_int);
- events: time, timestamp, channel, kind, detail, priority;
- frames: time, timestamp, channel, id, extended, fd, data.

``time`` is ISO 8601 in UTC with microseconds (``2026-01-01T00:00:00.000064Z``;
a Parquet timestamp[us, UTC]); ``timestamp`` the same instant as seconds since
the epoch, exactly as the box stored it (float64). Frame ids and data are
upper-case hex, as candump writes them (3 digits for a standard id, 8 for an
extended one). Values are written exactly: in CSV the shortest text that
reads back as the same float (``repr``), integers in full. NaN and infinities
are ``NaN``, ``Infinity``, ``-Infinity`` in CSV and JSONL (JSON has no such
numbers; ``json_number`` in agent.cli.records does the same for ``bavard
decode``). Parquet's ``value`` is float64, so an integer value is also in
``value_int`` (int64, null for a float or an integer beyond 64 bits).

CSV follows RFC 4180: a header line, CRLF line ends, fields quoted only when
they hold a comma, a quote or a line end; UTF-8 without a byte-order mark.
Booleans are ``true``/``false``; an absent label or flag is an empty field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agent.errors import BavardError
from agent.export.times import iso_utc
from agent.frames import OUT_OF_RANGE, TRUNCATED
from agent.store import Kind

COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.SAMPLE: ("time", "timestamp", "channel", "message", "signal", "value", "unit", "label",
                  "flags"),
    Kind.EVENT: ("time", "timestamp", "channel", "kind", "detail", "priority"),
    Kind.FRAME: ("time", "timestamp", "channel", "id", "extended", "fd", "data"),
}
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
PARQUET_HINT = "pip install 'bavard[parquet]'"
ROW_GROUP = 65_536  # Parquet rows buffered before a row group is written
INT64 = (-(1 << 63), (1 << 63) - 1)


def frame_id(arbitration_id: int, extended: bool) -> str:
    return f"{arbitration_id:08X}" if extended else f"{arbitration_id:03X}"


def flags_text(flags: int) -> list[str]:
    return [name for bit, name in ((OUT_OF_RANGE, "out_of_range"), (TRUNCATED, "truncated"))
            if flags & bit]


def number(value: Any) -> Any:
    """``value`` for JSON: NaN and infinities as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def _text(value: Any) -> str:
    value = number(value)
    return value if isinstance(value, str) else repr(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _time(ts: float) -> str | None:
    try:
        return iso_utc(ts)
    except (ValueError, OverflowError, OSError):  # NaN never gets here; a year > 9999 may
        return None


class ClassWriter:
    """Writes the items of one class to one file; ``rows`` counts them."""

    def __init__(self, path: Path, kind: Kind) -> None:
        self.path = path
        self.kind = kind
        self.rows = 0

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.kind]

    def write(self, items: list[Any]) -> None:
        self._write(items)
        self.rows += len(items)

    def _write(self, items: list[Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CsvWriter(ClassWriter):
    def __init__(self, path: Path, kind: Kind) -> None:
        super().__init__(path, kind)
        self._file: IO[str] = path.open("x", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)  # excel dialect: RFC 4180, CRLF
        self._csv.writerow(self.columns)
        self._row: Callable[[Any], tuple[Any, ...]] = {
            Kind.SAMPLE: lambda s: (_time(s[0]), repr(s[0]), s[1], s[2], s[3], _text(s[4]),
                                    s[5], s[6] or "", "|".join(flags_text(s[7]))),
            Kind.EVENT: lambda e: (_time(e[0]), repr(e[0]), e[1], e[2], e[3], e[4]),
            Kind.FRAME: lambda f: (_time(f[0]), repr(f[0]), f[1], frame_id(f[2], f[3]),
                                   _bool(f[3]), _bool(f[4]), f[5].hex().upper()),
        }[kind]

    def _write(self, items: list[Any]) -> None:
        self._csv.writerows(map(self._row, items))

    def close(self) -> None:
        self._file.close()


class JsonlWriter(ClassWriter):
    def __init__(self, path: Path, kind: Kind) -> None:
        super().__init__(path, kind)
        self._file: IO[str] = path.open("x", encoding="utf-8", newline="\n")
        self._record: Callable[[Any], dict[str, Any]] = {
            Kind.SAMPLE: lambda s: {"time": _time(s[0]), "timestamp": s[0], "channel": s[1],
                                    "message": s[2], "signal": s[3], "value": number(s[4]),
                                    "unit": s[5], "label": s[6], "flags": flags_text(s[7])},
            Kind.EVENT: lambda e: {"time": _time(e[0]), "timestamp": e[0], "channel": e[1],
                                   "kind": e[2], "detail": e[3], "priority": e[4]},
            Kind.FRAME: lambda f: {"time": _time(f[0]), "timestamp": f[0], "channel": f[1],
                                   "id": frame_id(f[2], f[3]), "extended": f[3], "fd": f[4],
                                   "data": f[5].hex().upper()},
        }[kind]

    def _write(self, items: list[Any]) -> None:
        dumps = json.dumps
        self._file.writelines(dumps(self._record(it), ensure_ascii=False, separators=(",", ":"))
                              + "\n" for it in items)

    def close(self) -> None:
        self._file.close()


class ParquetWriter(ClassWriter):
    def __init__(self, path: Path, kind: Kind) -> None:
        super().__init__(path, kind)
        pa, pq = import_pyarrow()
        self._pa = pa
        ts_type = pa.timestamp("us", tz="UTC")
        fields = {
            Kind.SAMPLE: [("time", ts_type), ("timestamp", pa.float64()),
                          ("channel", pa.string()), ("message", pa.string()),
                          ("signal", pa.string()), ("value", pa.float64()),
                          ("value_int", pa.int64()), ("unit", pa.string()),
                          ("label", pa.string()), ("flags", pa.string())],
            Kind.EVENT: [("time", ts_type), ("timestamp", pa.float64()),
                         ("channel", pa.string()), ("kind", pa.string()),
                         ("detail", pa.string()), ("priority", pa.int64())],
            Kind.FRAME: [("time", ts_type), ("timestamp", pa.float64()),
                         ("channel", pa.string()), ("id", pa.string()),
                         ("extended", pa.bool_()), ("fd", pa.bool_()), ("data", pa.string())],
        }[kind]
        self._schema = pa.schema(fields)
        self._names = [name for name, _ in fields]
        self._pending: list[Any] = []
        self._writer = pq.ParquetWriter(str(path), self._schema)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._names)

    def _write(self, items: list[Any]) -> None:
        self._pending.extend(items)
        if len(self._pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        items, self._pending = self._pending, []
        if not items:
            return
        cols: dict[str, list[Any]] = {
            "time": [_micros(it[0]) for it in items],
            "timestamp": [it[0] for it in items],
            "channel": [it[1] for it in items],
        }
        if self.kind == Kind.SAMPLE:
            cols |= {"message": [s[2] for s in items], "signal": [s[3] for s in items],
                     "value": [_float(s[4]) for s in items],
                     "value_int": [s[4] if _is_int64(s[4]) else None for s in items],
                     "unit": [s[5] for s in items], "label": [s[6] for s in items],
                     "flags": ["|".join(flags_text(s[7])) for s in items]}
        elif self.kind == Kind.EVENT:
            cols |= {"kind": [e[2] for e in items], "detail": [e[3] for e in items],
                     "priority": [e[4] for e in items]}
        else:
            cols |= {"id": [frame_id(f[2], f[3]) for f in items],
                     "extended": [f[3] for f in items], "fd": [f[4] for f in items],
                     "data": [f[5].hex().upper() for f in items]}
        table = self._pa.Table.from_pydict({n: cols[n] for n in self._names}, schema=self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()


def _micros(ts: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float's range
        return math.inf if value > 0 else -math.inf


def _is_int64(value: Any) -> bool:
    return type(value) is int and INT64[0] <= value <= INT64[1]


def import_pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet; BavardError naming the extra when absent."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise BavardError(f"--format parquet needs pyarrow, which is not installed "
                          f"({exc}): {PARQUET_HINT}") from None
    return pyarrow, pyarrow.parquet


WRITERS: dict[str, type[ClassWriter]] = {"csv": CsvWriter, "jsonl": JsonlWriter,
                                         "parquet": ParquetWriter}


def open_writer(fmt: str, kind: Kind, directory: Path) -> ClassWriter:
    """A writer of ``kind`` items to ``directory/<class>.<format>``."""
    return WRITERS[fmt](directory / f"{kind.label}.{EXTENSIONS[fmt]}", kind)
