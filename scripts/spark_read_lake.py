"""Does Spark read the lake as it is? Spark's rows checked equal to pyarrow's.

For each kind (samples, events, frames) Spark reads the lake the way its users write it::

    spark.read.option("basePath", LAKE).parquet(LAKE + "/kind=samples")

and the script prints the schema Spark infers (the timestamp's type, the partition
columns ``kind``, ``vehicle`` and ``date``), then checks, with no Spark setting changed:

- every row equals one pyarrow reads (``pyarrow.dataset``, Hive partitions read as
  strings), as a multiset: timestamps as UTC microseconds (``unix_micros``), floats bit
  for bit (NaN equal to NaN), ``vehicle`` and ``date`` as the partition directory's text;
- the row count equals the files' footers' and the rows per ``batch_id`` (counted by
  Spark's ``groupBy``) pyarrow's; Spark reads the same files as pyarrow;
- the same through SQL (``parquet.`LAKE/kind=samples` ``, no basePath), with partition
  pruning and a timestamp filter, and with the session in another time zone;
- what a vehicle id that looks like a number becomes (Spark infers partition types
  from the directory names), and that a schema naming ``vehicle STRING`` keeps it.

Figures: rows, files and the seconds Spark took. A failed check prints
``CHECK FAILED ...`` and exits 1.

Without LAKE, a lake is built in a temporary directory from the sample drive as
tests/test_lake.py builds it (the real pipeline and store, the uploader's batches, the
receiver's ``Lake.write``), one day compacted before the last batches arrive, so that
compacted and per-batch files sit side by side.

pyspark (with Java 17) is not a project dependency: run it from a venv of its own::

    python3 -m venv /tmp/sparkvenv && /tmp/sparkvenv/bin/pip install pyspark pyarrow
    /tmp/sparkvenv/bin/pip install -e .
    /tmp/sparkvenv/bin/python scripts/spark_read_lake.py [LAKE]
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from agent.lake.columns import KINDS, SCHEMAS  # noqa: E402

DAY = "2026-01-01"  # the sample drive's
ODD_VEHICLES = ["00123", "12345678901234567890123456789012", "1234e5", "1234d", "veh:1"]
SPARK_SETTINGS = ["spark.sql.session.timeZone", "spark.sql.parquet.inferTimestampNTZ.enabled",
                  "spark.sql.parquet.datetimeRebaseModeInRead",
                  "spark.sql.sources.partitionColumnTypeInference.enabled",
                  "spark.sql.parquet.enableVectorizedReader"]
Row = tuple[Any, ...]


class CheckFailed(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def build_sample_lake(base: Path) -> Path:
    """The sample drive's batches through the receiver into ``base/lake``: every other one,
    the day compacted, then the others (late, left as per-batch files)."""
    from agent.lake import Lake
    from agent.lake.compact import compact
    from agent.receiver.core import Receiver
    from tests.helpers.receiver_batches import VEHICLE
    from tests.helpers.sample_buffer import encoded_batches, make_sample_buffer

    payloads = encoded_batches(make_sample_buffer(base), VEHICLE)
    lake = base / "lake"
    receiver = Receiver(None, lake=Lake(lake))
    for i, payload in enumerate(payloads[0::2] + payloads[1::2]):
        if i == (len(payloads) + 1) // 2:
            compact(lake, DAY, max_rows=20_000, row_group_rows=8_000)
        check(receiver.accept(payload, None, "build").status == "stored", "batch not stored")
    print(f"{len(payloads)} batches; {DAY} compacted after every other one had arrived")
    return lake


def spark_session(scratch: Path) -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession  # type: ignore[import-not-found]

    spark = (SparkSession.builder.master("local[2]").appName("bavard-lake-check")
             .config("spark.driver.memory", "1g").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.warehouse.dir", str(scratch / "warehouse")).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def norm(v: Any) -> Any:
    """A value comparable across engines: floats by their bits (NaN as one), bytes."""
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else struct.pack(">d", v)
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    return v


def arrow_rows(lake: Path, kind: str) -> tuple[list[Row], list[str]]:
    """The kind's rows as pyarrow reads them (data columns, vehicle, date), its files."""
    parts = ds.partitioning(pa.schema([("vehicle", pa.string()), ("date", pa.string())]),
                            flavor="hive")
    dataset = ds.dataset(lake / f"kind={kind}", format="parquet", partitioning=parts)
    table = dataset.to_table()
    names = [*SCHEMAS[kind].names, "vehicle", "date"]
    columns = [table.column(n).cast(pa.int64()) if n == "timestamp" else table.column(n)
               for n in names]
    rows = [tuple(norm(v) for v in row) for row in zip(*(c.to_pylist() for c in columns),
                                                        strict=True)]
    return rows, sorted(os.path.realpath(f) for f in dataset.files)


def spark_select(kind: str) -> list[str]:
    return [*("unix_micros(timestamp)" if n == "timestamp" else f"`{n}`"
              for n in SCHEMAS[kind].names), "CAST(vehicle AS STRING)", "CAST(date AS STRING)"]


def ddl(kind: str) -> str:
    """The kind's schema as Spark DDL, the partition columns' types given."""
    return ", ".join([f"`{f.name}` {spark_type(f.type)}" for f in SCHEMAS[kind]]
                     + ["kind STRING", "vehicle STRING", "date DATE"])


def spark_type(t: pa.DataType) -> str:
    return {pa.string(): "STRING", pa.float64(): "DOUBLE", pa.int64(): "BIGINT",
            pa.int32(): "INT", pa.bool_(): "BOOLEAN", pa.binary(): "BINARY"}.get(t, "TIMESTAMP")


def read_kind(spark: Any, lake: Path, kind: str, schema: str = "") -> tuple[int, int]:
    """Spark's read of one kind (inferred schema, or ``schema``) checked against pyarrow's;
    (rows, files)."""
    path = f"{lake}/kind={kind}"
    reader = spark.read.schema(schema) if schema else spark.read
    df = reader.option("basePath", str(lake)).parquet(path)
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    print(f"kind={kind}: Spark's schema{' (given)' if schema else ''}: "
          + ", ".join(f"{n} {t}" for n, t in types.items()))
    check([n for n in types if n not in ("kind", "vehicle", "date")] == SCHEMAS[kind].names,
          f"{kind}: Spark's columns {list(types)}")
    check(types["timestamp"] == "timestamp" and types["date"] == "date"
          and types["kind"] == "string",
          f"{kind}: timestamp {types['timestamp']}, date {types['date']}, kind {types['kind']}")
    if types["vehicle"] != "string":
        print(f"  vehicle inferred as {types['vehicle']}, not string")
    files = sorted(os.path.realpath(f.removeprefix("file://")) for f in df.inputFiles())
    expected, arrow_files = arrow_rows(lake, kind)
    check(files == arrow_files, f"{kind}: Spark reads {len(files)} files, pyarrow "
                                f"{len(arrow_files)}")
    footers = sum(pq.read_metadata(f).num_rows for f in files)
    start = time.perf_counter()
    got = [tuple(norm(v) for v in r) for r in df.selectExpr(*spark_select(kind)).collect()]
    per_batch = {r[0]: r[1] for r in df.groupBy("batch_id").count().collect()}
    seconds = time.perf_counter() - start
    print(f"  {len(got)} rows from {len(files)} files ({sum(1 for f in files if '/part-' in f)} "
          f"compacted), {len(per_batch)} batch ids; Spark {seconds:.2f} s")
    check(len(got) == len(expected) == footers,
          f"{kind}: Spark {len(got)} rows, pyarrow {len(expected)}, footers {footers}")
    only_spark, only_arrow = Counter(got) - Counter(expected), Counter(expected) - Counter(got)
    check(not only_spark and not only_arrow,
          f"{kind}: {sum(only_spark.values())} rows only in Spark (e.g. "
          f"{next(iter(only_spark), None)}), {sum(only_arrow.values())} only in pyarrow (e.g. "
          f"{next(iter(only_arrow), None)})")
    check(per_batch == dict(Counter(r[0] for r in expected)),
          f"{kind}: rows per batch_id differ (Spark's groupBy and pyarrow's)")
    print("  equal to pyarrow's rows (timestamps as UTC microseconds), per batch_id too")
    return len(got), len(files)


def other_reads(spark: Any, lake: Path, rows: int) -> None:
    """SQL on the path, partition pruning and a time filter, another session time zone."""
    path = f"{lake}/kind=samples"
    rows_read, _ = arrow_rows(lake, "samples")
    vehicle, date = rows_read[0][-2:]
    here = [r[1] for r in rows_read if r[-2:] == (vehicle, date) and r[1] is not None]
    cut = sorted(here)[len(here) // 2]
    sql = (f"SELECT count(*) FROM parquet.`{path}` WHERE vehicle = '{vehicle}' "
           f"AND date = DATE'{date}' AND timestamp >= timestamp_micros({cut})")
    got = spark.sql(sql).collect()[0][0]
    want = sum(1 for m in here if m >= cut)
    print(f"SQL, no basePath, pruned to one vehicle and day, timestamp >= the median: "
          f"{got} rows (pyarrow {want})")
    check(got == want, f"SQL filter: Spark {got}, pyarrow {want}")
    first = min(r[1] for r in rows_read if r[1] is not None)
    query = (f"SELECT CAST(min(timestamp) AS STRING), unix_micros(min(timestamp)) "
             f"FROM parquet.`{path}`")
    shown = {}
    for zone in ("UTC", "Asia/Kolkata"):
        spark.conf.set("spark.sql.session.timeZone", zone)
        shown[zone] = tuple(spark.sql(query).collect()[0])
    spark.conf.unset("spark.sql.session.timeZone")
    print(f"first sample, session time zone UTC: {shown['UTC'][0]}, Asia/Kolkata: "
          f"{shown['Asia/Kolkata'][0]}; unix_micros {shown['UTC'][1]} in both")
    check(shown["UTC"][1] == shown["Asia/Kolkata"][1] == first, f"time zones: {shown}")
    whole = spark.read.parquet(str(lake))
    print(f"spark.read.parquet(LAKE), every kind at once: {whole.count()} rows, the columns of "
          f"one file: {', '.join(f.name for f in whole.schema.fields)}")
    merged = spark.read.option("mergeSchema", "true").parquet(str(lake))
    print(f"  with mergeSchema: {merged.count()} rows, {len(merged.schema.fields)} columns")
    check(merged.count() == rows, f"mergeSchema: {merged.count()} rows, not {rows}")


def odd_vehicle_ids(spark: Any, base: Path) -> None:
    """What Spark infers for vehicle ids that look like numbers, and with a schema."""
    from agent.batch import Batch, decode, encode, read_envelope
    from agent.frames import Sample
    from agent.lake import Lake

    for i, vehicle in enumerate(ODD_VEHICLES):
        lake = base / f"odd{i}"
        payload = encode(Batch(vehicle, 0, 0, "", [Sample(1767225600.5, "c", "M", "s", 1.0)],
                               [], []))
        Lake(lake).write(decode(payload), read_envelope(payload))
        path = f"{lake}/kind=samples"
        inferred = spark.read.option("basePath", str(lake)).parquet(path)
        given = spark.read.schema(ddl("samples")).option("basePath", str(lake)).parquet(path)
        value = inferred.select("vehicle").collect()[0][0]
        kept = given.select("vehicle").collect()[0][0]
        print(f"vehicle={vehicle}: inferred {inferred.schema['vehicle'].dataType.simpleString()}"
              f" -> {value!r}; with .schema(... vehicle STRING ...) -> {kept!r}")
        check(kept == vehicle, f"vehicle {vehicle!r} read as {kept!r} with a schema")


def run(lake: Path | None, scratch: Path) -> None:
    started = time.perf_counter()
    if lake is None:
        lake = build_sample_lake(scratch)
        print(f"built {lake} from the sample drive in {time.perf_counter() - started:.1f} s")
    sample = next((lake / "kind=samples").rglob("*.parquet"))
    print(f"Parquet type of timestamp: {pq.ParquetFile(sample).schema.column(1).logical_type}")
    started = time.perf_counter()
    spark = spark_session(scratch)
    print(f"Spark {spark.version} (local[2], 1g), started in {time.perf_counter() - started:.1f}"
          f" s; settings as they are: " + "; ".join(f"{k}={spark.conf.get(k)}"
                                                  for k in SPARK_SETTINGS))
    try:
        started = time.perf_counter()
        totals = [read_kind(spark, lake, kind) for kind in KINDS
                  if (lake / f"kind={kind}").is_dir()]
        print("with the schema given as DDL (what docs/lake.md shows):")
        read_kind(spark, lake, "samples", ddl("samples"))
        other_reads(spark, lake, sum(r for r, _ in totals))
        odd_vehicle_ids(spark, scratch)
        print(f"total: {sum(r for r, _ in totals)} rows, {sum(f for _, f in totals)} files, "
              f"Spark {time.perf_counter() - started:.1f} s for every read and check")
    finally:
        spark.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", type=Path,
                        help="a lake directory (default: build one from the sample drive)")
    args = parser.parse_args()
    if args.lake is not None and not (args.lake / "kind=samples").is_dir():
        print(f"{args.lake}: no kind=samples directory (not a lake?)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="spark-lake-") as scratch:
        try:
            run(args.lake, Path(scratch))
        except CheckFailed as exc:
            print(f"CHECK FAILED: {exc}")
            return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
