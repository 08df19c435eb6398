"""The lake's files: the layout, writing a Parquet file whole or not at all, its metadata.

Layout (Hive-style partitions, which DuckDB, Spark, Trino and Athena read as columns)::

    DIR/kind=samples|events|frames/vehicle=<pseudonym>/date=YYYY-MM-DD/<batch id>.parquet
    DIR/kind=.../vehicle=.../date=.../part-<digest>[-<k>].parquet     (compacted)

A file is written to a hidden temporary name beside its final one (``.tmp-*.partial``,
which no ``*.parquet`` glob matches), fsynced, renamed, and the directory fsynced; new
directories are fsynced into their parents too. So a crash (or SIGKILL) at any moment
leaves the whole file or none of it, and a file that is there has survived a power
cut. Directories are 0700 and files 0600 (:mod:`agent.private_files`): vehicle data is
personal data; grant the query engine's user access explicitly.

Each file's Parquet key-value metadata says what it holds:

- ``bavard.lake``: the layout's version (``1``);
- ``bavard.batch_ids``: a JSON list of the batch ids whose rows it holds;
- ``bavard.batches``: a JSON list of ``{"id", "seq_first", "seq_last",
  "dbc_fingerprint", "rows"}``, one per batch;
- ``bavard.part``: ``k/n`` for a compacted file, the k-th of the n files of one
  compaction (a set with a file missing is an interrupted compaction's);
- ``bavard.signals`` (samples): the signals' unit, scale, offset, range and labels, as
  JSON ``[[channel, message, signal, {...}], ...]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agent.atomic_file import fsync_dir, write_atomically
from agent.errors import LakeError
from agent.lake.columns import DELTA_COLUMNS, DICTIONARY_COLUMNS, KINDS
from agent.private_files import make_private_dir

LAYOUT_VERSION = "1"
KEY_LAYOUT, KEY_IDS, KEY_BATCHES = b"bavard.lake", b"bavard.batch_ids", b"bavard.batches"
KEY_PART, KEY_SIGNALS = b"bavard.part", b"bavard.signals"
BATCH_FILE = re.compile(r"^[0-9a-f]{32}\.parquet$")
PART_FILE = re.compile(r"^part-([0-9a-f]{16})(?:-(\d+))?\.parquet$")
TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".partial"
COMPRESSION, COMPRESSION_LEVEL = "zstd", 3
# a partition value must stay one path component, readable back as the same string
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


def partition_dir(root: Path, kind: str, vehicle: str, date: str) -> Path:
    """Where the files of ``kind`` for ``vehicle`` on ``date`` go; LakeError when the
    vehicle id cannot be a partition value."""
    if kind not in KINDS:
        raise LakeError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if not _SAFE_VALUE.match(vehicle) or vehicle in (".", ".."):
        raise LakeError(f"vehicle id {vehicle!r} cannot name a lake partition (letters, "
                        f"digits and _.:@+- only, at most 128)")
    return root / f"kind={kind}" / f"vehicle={vehicle}" / f"date={date}"


def parquet_bytes(table: pa.Table, metadata: dict[bytes, bytes], row_group_rows: int) -> bytes:
    """``table`` as one Parquet file: zstd, names dictionary-encoded, times and raw
    integers delta-encoded, ``metadata`` in its footer. Deterministic: the same table
    and metadata give the same bytes."""
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                   use_dictionary=[c for c in DICTIONARY_COLUMNS if c in table.column_names],
                   column_encoding={c: "DELTA_BINARY_PACKED" for c in DELTA_COLUMNS
                                    if c in table.column_names},
                   row_group_size=row_group_rows, write_statistics=True)
    return bytes(sink.getvalue().to_pybytes())


def write_file(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all of it or nothing, durably (see the module docstring)."""
    created = _make_dirs(path.parent)
    write_atomically(path, [data], temp_prefix=TEMP_PREFIX, temp_suffix=TEMP_SUFFIX)
    for d in created:
        fsync_dir(d.parent)


def _make_dirs(path: Path) -> list[Path]:
    missing = []
    p = path
    while not p.is_dir() and p != p.parent:
        missing.append(p)
        p = p.parent
    make_private_dir(path)
    return list(reversed(missing))


def file_metadata(path: Path) -> dict[bytes, bytes]:
    """The key-value metadata of a lake file; LakeError when it is not readable Parquet."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise LakeError(f"{path}: not a readable Parquet file: {exc}") from None
    return dict(meta)


def ids_of(meta: dict[bytes, bytes], path: Path) -> list[str]:
    """The batch ids a file holds, from its metadata."""
    try:
        ids = json.loads(meta[KEY_IDS])
    except (KeyError, ValueError):
        raise LakeError(f"{path}: no bavard.batch_ids in its metadata (not a lake file?)") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise LakeError(f"{path}: bavard.batch_ids is not a list of ids")
    return ids


def batches_of(meta: dict[bytes, bytes], path: Path) -> list[dict[str, Any]]:
    try:
        batches = json.loads(meta[KEY_BATCHES])
    except (KeyError, ValueError):
        raise LakeError(f"{path}: no bavard.batches in its metadata") from None
    if not isinstance(batches, list):
        raise LakeError(f"{path}: bavard.batches is not a list")
    return batches


def json_bytes(x: Any) -> bytes:
    return json.dumps(x, separators=(",", ":"), sort_keys=True).encode()


def require_lake(root: Path) -> None:
    """LakeError unless ``root`` is a directory with a ``kind=...`` directory in it (so a
    mistyped path is not taken for an empty lake, nor written into)."""
    if not root.is_dir():
        raise LakeError(f"{root}: no such lake directory")
    if not any((root / f"kind={kind}").is_dir() for kind in KINDS):
        raise LakeError(f"{root}: not a lake (no kind={'|'.join(KINDS)} directory in it)")


def partitions(root: Path, date: str | None = None) -> list[tuple[str, str, str, Path]]:
    """Every (kind, vehicle, date, directory) of the lake, sorted; ``date`` only that day."""
    out = []
    for kind in KINDS:
        kdir = root / f"kind={kind}"
        if not kdir.is_dir():
            continue
        for vdir in sorted(kdir.glob("vehicle=*")):
            pattern = f"date={date}" if date else "date=*"
            for ddir in sorted(vdir.glob(pattern)):
                if ddir.is_dir():
                    out.append((kind, vdir.name[len("vehicle="):], ddir.name[len("date="):],
                                ddir))
    return out
