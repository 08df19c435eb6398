"""Compaction: a day's per-batch files merged into a few large files per vehicle and kind.

Query engines pay per file (a footer read, a task); a receiver writes one small file
per batch. ``compact(root, date)`` turns each partition ``kind=K/vehicle=V/date=D``
into ``part-<digest>[-<k>].parquet`` files: rows in the kind's order (samples per
signal, then in time, so that the row groups' statistics let an engine skip to the
signals it wants; events and frames in time), at most ``max_rows`` rows per file in
row groups of ``row_group_rows``, the batch ids each file holds in its metadata, so a
late duplicate of a merged batch is still recognised by the writer. ``<digest>`` is
a hash of the batch ids the partition's files hold together.

Safe to run while receivers write, and at any moment killed:

- new files are written whole (hidden temporary, fsync, rename) *before* anything
  they replace is deleted, and the writer looks for a per-batch file before it
  looks in compacted ones, so a batch is never written again after it was merged;
- a re-run repairs what an interrupted one left: a set of compacted files with one
  missing (``bavard.part`` says ``k/n``) is deleted (its inputs are still there),
  compacted files whose batches another set holds in full are deleted, and so are
  per-batch files whose batch a compacted file holds;
- idempotent: a partition without per-batch files and with one complete set is left
  as it is, so a second run changes nothing;
- hidden temporaries an hour old are removed (a writer killed mid-write);
- a partition with an unreadable file is left as it is and reported; the others are
  compacted;
- one compaction at a time per lake (``DIR/.compact.lock``, flock): a second one
  fails at once with a LakeError.

Between the rename of the merged file and the deletion of the files it replaces
(milliseconds, or until the re-run after a crash) a query can count those rows
twice; the metadata's batch ids, or ``SELECT DISTINCT`` on ``batch_id`` and the row,
tell. Plain Parquet has no transactions; a table format (Iceberg, Delta) would.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agent.atomic_file import fsync_dir
from agent.errors import LakeError
from agent.lake.columns import SORT_KEYS, day_number
from agent.lake.files import (
    BATCH_FILE,
    KEY_BATCHES,
    KEY_IDS,
    KEY_LAYOUT,
    KEY_PART,
    KEY_SIGNALS,
    LAYOUT_VERSION,
    PART_FILE,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    batches_of,
    file_metadata,
    ids_of,
    json_bytes,
    parquet_bytes,
    partitions,
    require_lake,
    write_file,
)

ROW_GROUP_ROWS = 1 << 20  # about 10-60 MB of samples uncompressed: what Spark and DuckDB like
MAX_FILE_ROWS = 8 << 20
STALE_TEMPORARY = 3600.0  # seconds: older hidden temporaries are a killed writer's
LOCK_NAME = ".compact.lock"


@dataclass
class PartitionResult:
    kind: str
    vehicle: str
    date: str
    merged: int = 0  # per-batch files merged
    written: list[str] = field(default_factory=list)  # compacted files written
    removed: int = 0  # files deleted: merged inputs, replaced or broken compacted files
    bytes_before: int = 0
    bytes_after: int = 0
    error: str = ""  # why this partition was left as it was (an unreadable file)


@dataclass
class CompactReport:
    root: str
    date: str
    partitions: list[PartitionResult] = field(default_factory=list)
    stale_temporaries: int = 0

    @property
    def changed(self) -> list[PartitionResult]:
        return [p for p in self.partitions if p.written or p.removed]

    @property
    def failed(self) -> list[PartitionResult]:
        return [p for p in self.partitions if p.error]

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "date": self.date,
                "stale_temporaries": self.stale_temporaries,
                "partitions": [vars(p) for p in self.partitions]}


@dataclass
class _Part:
    path: Path
    ids: list[str]
    k: int
    n: int
    size: int


def compact(root: str | Path, date: str, *, max_rows: int = MAX_FILE_ROWS,
            row_group_rows: int = ROW_GROUP_ROWS,
            clock: Callable[[], float] = time.time) -> CompactReport:
    """Compact every partition of ``date`` (``YYYY-MM-DD``) under ``root``."""
    root = Path(root)
    try:
        day_number(date)
    except ValueError:
        raise LakeError(f"--date {date!r}: expected a day as YYYY-MM-DD") from None
    require_lake(root)
    if max_rows < 1 or row_group_rows < 1:
        raise ValueError("max_rows and row_group_rows must be positive")
    report = CompactReport(str(root), date)
    with _locked(root):
        for kind, vehicle, day, directory in partitions(root, date):
            report.stale_temporaries += _remove_stale(directory, clock())
            result = PartitionResult(kind, vehicle, day)
            try:
                _compact_partition(directory, result, max_rows, row_group_rows)
            except LakeError as exc:  # this partition stays as it was; the others go on
                result.error = str(exc)
            report.partitions.append(result)
    return report


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LakeError(f"{path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeError(f"{root}: another compaction is running ({path} is locked)") from None
        yield
    finally:
        os.close(fd)


def _remove_stale(directory: Path, now: float) -> int:
    removed = 0
    for path in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if now - path.stat().st_mtime > STALE_TEMPORARY:
                path.unlink()
                removed += 1
    return removed


def _compact_partition(directory: Path, result: PartitionResult, max_rows: int,
                       row_group_rows: int) -> None:
    batch_files = sorted(p for p in directory.iterdir() if BATCH_FILE.match(p.name))
    groups = _groups(directory)
    # an interrupted compaction's leftovers: an incomplete set, a set another one holds
    for digest, parts in list(groups.items()):
        if len(parts) != parts[0].n or sorted(p.k for p in parts) != list(range(parts[0].n)):
            _remove(result, *(p.path for p in parts))
            del groups[digest]
    held = {d: {i for p in parts for i in p.ids} for d, parts in groups.items()}
    for digest in sorted(groups):
        if any(o != digest and held[digest] <= held[o] for o in held if o in groups):
            _remove(result, *(p.path for p in groups.pop(digest)))
    merged_ids = {i for parts in groups.values() for p in parts for i in p.ids}
    fresh = []
    for path in batch_files:
        if path.name[:-len(".parquet")] in merged_ids:
            _remove(result, path)
        else:
            fresh.append(path)
    if not fresh:
        return
    old = [p.path for parts in groups.values() for p in parts]
    inputs = old + fresh
    result.bytes_before = sum(p.stat().st_size for p in inputs)
    table, batches, signals = _read_all(result.kind, inputs)
    ids = sorted({b["id"] for b in batches})
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    n = max(1, -(-table.num_rows // max_rows))
    for k in range(n):
        chunk = table.slice(k * max_rows, max_rows)
        name = f"part-{digest}.parquet" if n == 1 else f"part-{digest}-{k}.parquet"
        chunk_ids = set(pc.unique(chunk.column("batch_id")).to_pylist())
        meta = {KEY_LAYOUT: LAYOUT_VERSION.encode(), KEY_IDS: json_bytes(sorted(chunk_ids)),
                KEY_BATCHES: json_bytes([b for b in batches if b["id"] in chunk_ids]),
                KEY_PART: f"{k}/{n}".encode()}
        if signals:
            meta[KEY_SIGNALS] = json_bytes(signals)
        data = parquet_bytes(chunk, meta, row_group_rows)
        try:
            write_file(directory / name, data)
        except OSError as exc:
            raise LakeError(f"{directory / name}: cannot write: {exc.strerror or exc}") from None
        result.written.append(name)
        result.bytes_after += len(data)
    result.merged = len(fresh)
    _remove(result, *inputs)
    fsync_dir(directory)


def _groups(directory: Path) -> dict[str, list[_Part]]:
    groups: dict[str, list[_Part]] = {}
    for path in sorted(directory.iterdir()):
        m = PART_FILE.match(path.name)
        if not m:
            continue
        meta = file_metadata(path)
        k, _, n = meta.get(KEY_PART, b"0/1").decode().partition("/")
        try:
            part = _Part(path, ids_of(meta, path), int(k), int(n), path.stat().st_size)
        except ValueError:
            raise LakeError(f"{path}: bavard.part is not k/n") from None
        groups.setdefault(m.group(1), []).append(part)
    return groups


def _read_all(kind: str, paths: list[Path]
              ) -> tuple[pa.Table, list[dict[str, Any]], list[Any]]:
    """The rows of ``paths`` in the kind's order (stable: a batch's rows keep theirs), their
    batches, and their signals (a later batch's metadata wins)."""
    tables, batches, described = [], [], []
    for path in paths:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"{path}: not a readable Parquet file: {exc}") from None
        meta = dict(table.schema.metadata or {})
        tables.append(table.replace_schema_metadata(None))
        these = batches_of(meta, path)
        batches.extend(these)
        if KEY_SIGNALS in meta:
            first = min((b.get("seq_first", 0) for b in these), default=0)
            described.append((first, path.name, json.loads(meta[KEY_SIGNALS])))
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise LakeError(f"{paths[0].parent}: files of different columns: {exc}") from None
    table = table.sort_by([*SORT_KEYS[kind], ("batch_id", "ascending")])
    signals: dict[tuple[str, str, str], Any] = {}
    for _first, _name, entries in sorted(described, key=lambda d: (d[0], d[1])):
        for channel, message, signal, info in entries:
            signals[(channel, message, signal)] = info
    batches.sort(key=lambda b: (b.get("seq_first", 0), b["id"]))
    return table, batches, [[*key, info] for key, info in sorted(signals.items())]


def _remove(result: PartitionResult, *paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            result.removed += 1
