"""What scripts/bench_receive.py checks: each contender's output read back holds exactly
the samples of the batches sent, each batch once, equal to the baseline's files.

Read back with pyarrow (``pq.ParquetFile(...).read()``, file by file, so the Hive
partition columns are not mixed in), or from the receivers' SQLite databases. The
compared columns are the baseline's (agent/lake adds ``raw`` and ``text``): rows are
sorted, timestamps compared as integer microseconds, values bit for bit (NaN equal to
the same NaN, ``-0.0`` apart from ``0.0``), dictionary-encoded names as their strings.

A failed check raises :class:`benchlib.Mismatch`, naming the contender, the batch
and the row.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from benchlib import Mismatch
from parquet_baseline import samples_table

COLUMNS = ("batch_id", "timestamp", "channel", "message", "signal", "value", "unit", "label",
           "flags")
SORT = [(c, "ascending") for c in ("batch_id", "timestamp", "channel", "message", "signal")]


def lake_files(root: Path) -> list[Path]:
    """The samples' Parquet files of a lake (``kind=samples/vehicle=*/date=*/``)."""
    return sorted(root.glob("kind=samples/vehicle=*/date=*/*.parquet"))


def read_files(paths: Iterable[Path]) -> pa.Table:
    """The compared columns of these files, as one table, sorted."""
    tables = []
    for path in paths:
        table = pq.ParquetFile(path).read()
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise Mismatch(f"{path}: no column {', '.join(missing)}")
        tables.append(normalized(table))
    if not tables:
        return normalized(samples_table("", []))
    return pa.concat_tables(tables).sort_by(SORT)


def ids_in_files(paths: Iterable[Path]) -> Counter[str]:
    """In how many of these files each batch id has rows."""
    copies: Counter[str] = Counter()
    for path in paths:
        column = pq.ParquetFile(path).read(columns=["batch_id"]).column("batch_id")
        copies.update(pc.unique(column).to_pylist())
    return copies


def read_databases(directories: Iterable[Path]) -> tuple[pa.Table, Counter[str]]:
    """(the samples, each batch id's count) of the receivers' SQLite databases."""
    from agent.receiver.database import ReceiverDb

    tables, ids = [], Counter[str]()
    for directory in directories:
        with ReceiverDb(directory, readonly=True) as db:
            for record in db.batches():
                ids[record.batch_id] += 1
                tables.append(normalized(samples_table(
                    record.batch_id, db.samples(batch_id=record.batch_id))))
    if not tables:
        return normalized(samples_table("", [])), ids
    return pa.concat_tables(tables).sort_by(SORT), ids


def normalized(table: pa.Table) -> pa.Table:
    """The compared columns in comparable types: strings, int64 microseconds, int64 bits
    of the float64 values, int64 flags."""
    columns: dict[str, Any] = {}
    for name in COLUMNS:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if name == "timestamp":
            column = column.cast(pa.int64())
        elif name == "value":
            column = pa.chunked_array([c.view(pa.int64()) for c in column.chunks],
                                      pa.int64())
        elif name == "flags":
            column = column.cast(pa.int64())
        columns[name] = column
    return pa.table(columns)


def check_ids(name: str, copies: Mapping[str, int], sent: Iterable[str]) -> None:
    """Every batch id sent is there exactly once, and nothing else."""
    want = set(sent)
    for bid, n in sorted(copies.items()):
        if bid not in want:
            raise Mismatch(f"{name}: holds batch {bid}, which was not sent")
        if n != 1:
            raise Mismatch(f"{name}: holds batch {bid} {n} times")
    missing = sorted(want - set(copies))
    if missing:
        raise Mismatch(f"{name}: {len(missing)} batches missing, the first {missing[0]}")


def check_rows(name: str, got: pa.Table, samples: Mapping[str, int]) -> None:
    """Each batch has as many rows as it has samples."""
    counts = {row["values"]: row["counts"]
              for row in pc.value_counts(got.column("batch_id")).to_pylist()}
    for bid, n in sorted(samples.items()):
        if counts.get(bid, 0) != n:
            raise Mismatch(f"{name}: batch {bid} has {counts.get(bid, 0):,} sample rows, "
                           f"it was sent with {n:,}")
    extra = sorted(set(counts) - set(samples))
    if extra:
        raise Mismatch(f"{name}: rows of batch {extra[0]}, which was not sent")


def check_same(name: str, got: pa.Table, want: pa.Table, against: str) -> None:
    """``got`` and ``want`` (both :func:`normalized` and sorted) are equal, row for row."""
    if got.num_rows != want.num_rows:
        raise Mismatch(f"{name}: {got.num_rows:,} sample rows, {against}: {want.num_rows:,}")
    for column in COLUMNS:
        a, b = got.column(column), want.column(column)
        if a.equals(b):
            continue
        row = _first_difference(a, b)
        raise Mismatch(f"{name}: batch {want.column('batch_id')[row].as_py()} "
                       f"({want.column('timestamp')[row].as_py()} us "
                       f"{want.column('message')[row].as_py()}."
                       f"{want.column('signal')[row].as_py()}): {column} "
                       f"{_show(column, a[row].as_py())}, {against}: "
                       f"{_show(column, b[row].as_py())}")


def _first_difference(a: pa.ChunkedArray, b: pa.ChunkedArray, step: int = 65_536) -> int:
    for start in range(0, len(a), step):
        x, y = a.slice(start, step).to_pylist(), b.slice(start, step).to_pylist()
        for i, (p, q) in enumerate(zip(x, y, strict=True)):
            if p != q:
                return start + i
    raise AssertionError("the columns differ, but no row does")


def _show(column: str, x: Any) -> str:
    if column == "value" and x is not None:
        return repr(pa.array([x], pa.int64()).view(pa.float64())[0].as_py())
    return repr(x)


def corrupt_value(table: pa.Table) -> pa.Table:
    """``table`` with the first row's value changed (the test-only ``--wrong X:value``)."""
    values = table.column("value").to_pylist()
    values[0] ^= 1  # the float's last mantissa bit
    return table.set_column(COLUMNS.index("value"), "value", pa.array(values, pa.int64()))


def drop_first(files: list[Path]) -> None:
    """The first file removed (``--wrong X:skip``)."""
    files[0].unlink()


def copy_first(files: list[Path]) -> None:
    """The first file copied beside itself as a compacted file would be
    (``--wrong X:twice``): the batch is then there twice."""
    shutil.copyfile(files[0], files[0].with_name("part-0000000000000000.parquet"))


def bytes_of(files: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in files)
