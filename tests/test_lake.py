"""The Parquet lake: what DuckDB reads equals what the SQLite receiver stores, one copy per
batch however often it is delivered, nothing partial after a kill, and compaction.

The batches are the sample drive's, made by the real pipeline and store and encoded
as the uploader encodes them; the receivers are the real ones (in-process here; as
processes behind MQTT and HTTP in tests/test_receiver_scale.py).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.receiver_batches import VEHICLE, make_batch
from helpers.sample_buffer import DBC, encoded_batches, make_sample_buffer
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.batch import Batch, SignalMeta, decode, encode, read_envelope
from agent.cli.main import main
from agent.errors import LakeError
from agent.frames import Event, Frame, Sample
from agent.lake import Lake
from agent.lake.columns import batch_tables, raw_of
from agent.lake.compact import STALE_TEMPORARY, compact
from agent.lake.read import batch_ids, files
from agent.receiver.core import Receiver
from agent.receiver.database import ReceiverDb

duckdb = pytest.importorskip("duckdb")
ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-01-01"  # the sample drive's


@dataclass(frozen=True)
class Drive:
    payloads: list[bytes]
    db: Path  # the SQLite receiver's directory
    lake: Path  # the lake-only receiver's


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Drive:
    """The sample drive through the pipeline and the store, as the uploader's batches,
    received by a SQLite receiver and by a lake-only one."""
    base = tmp_path_factory.mktemp("drive")
    payloads = encoded_batches(make_sample_buffer(base), VEHICLE)
    assert len(payloads) > 20
    sqlite = Receiver(ReceiverDb(base / "received"))
    lake = Receiver(None, lake=Lake(base / "lake"))
    for payload in payloads:
        assert sqlite.accept(payload, None, "test").status == "stored"
        assert lake.accept(payload, None, "test").status == "stored"
    sqlite.close()
    return Drive(payloads, base / "received", base / "lake")


def query(sql: str) -> list[tuple[Any, ...]]:
    return duckdb.connect().execute(sql).fetchall()


def micros(ts: float) -> int:
    return round(ts * 1e6)


def lake_samples(lake: Path) -> Counter[tuple[Any, ...]]:
    rows = query(f"""
        SELECT vehicle, batch_id, epoch_us(timestamp), channel, message, signal, value, unit,
               label, flags, CAST(date AS VARCHAR)
        FROM read_parquet('{lake}/kind=samples/**/*.parquet', hive_partitioning=true)""")
    assert all(r[-1] == DAY for r in rows)
    return Counter(r[:-1] for r in rows)


def sqlite_samples(directory: Path) -> Counter[tuple[Any, ...]]:
    with ReceiverDb(directory, readonly=True) as db:
        rows = db.read("SELECT vehicle, batch_id, ts, channel, message, signal, value, unit, "
                       "label, flags FROM sample")
    return Counter((v, b, micros(ts), c, m, s, float(value), u, label, flags)
                   for v, b, ts, c, m, s, value, u, label, flags in rows)


def test_duckdb_reads_exactly_the_samples_the_sqlite_receiver_has(drive: Drive) -> None:
    from_lake, from_sqlite = lake_samples(drive.lake), sqlite_samples(drive.db)
    assert sum(from_sqlite.values()) > 60_000
    assert from_lake == from_sqlite
    events = query(f"""SELECT epoch_us(timestamp), channel, event, detail, priority FROM
        read_parquet('{drive.lake}/kind=events/**/*.parquet', hive_partitioning=true)""")
    frames = query(f"""SELECT epoch_us(timestamp), channel, id, is_extended, is_fd, data FROM
        read_parquet('{drive.lake}/kind=frames/**/*.parquet', hive_partitioning=true)""")
    with ReceiverDb(drive.db, readonly=True) as db:
        assert Counter(events) == Counter((micros(e.timestamp), e.channel, e.kind, e.detail,
                                           e.priority) for e in db.events())
        assert len(frames) == 84_240
        assert Counter(frames) == Counter((micros(f.timestamp), f.channel, f.arbitration_id,
                                           f.is_extended, f.is_fd, f.data) for f in db.frames())
    assert set(batch_ids(drive.lake).values()) == {1}
    assert len(batch_ids(drive.lake)) == len(drive.payloads)


def test_raw_is_the_dbc_raw_integer(drive: Drive) -> None:
    db = cantools.database.load_file(DBC)
    rows = query(f"""SELECT DISTINCT message, signal, value, raw FROM
        read_parquet('{drive.lake}/kind=samples/**/*.parquet') WHERE channel = 'can0'""")
    with_raw = [r for r in rows if r[3] is not None]
    assert len(with_raw) == len(rows) > 100  # the demo DBC's values are all raw * scale + offset
    for message, name, value, raw in with_raw:
        sig = db.get_message_by_name(message).get_signal_by_name(name)
        assert float(raw) * sig.scale + sig.offset == value


def test_the_same_batch_twice_is_one_copy_and_an_identical_file(tmp_path: Path) -> None:
    payload = encode(make_batch(3))
    batch, envelope = decode(payload), read_envelope(payload)
    receiver = Receiver(None, lake=Lake(tmp_path / "a"))
    assert receiver.accept(payload, None, "test").status == "stored"
    before = {p: p.read_bytes() for p in files(tmp_path / "a")}
    assert receiver.accept(payload, None, "test").status == "duplicate"
    assert Lake(tmp_path / "a").write(batch, envelope) is False  # another receiver
    assert {p: p.read_bytes() for p in files(tmp_path / "a")} == before
    assert receiver.stats()["total"] == {"received": 2, "stored": 1, "duplicates": 1,
                                         "invalid": 0}
    # a receiver elsewhere writes the very same bytes: a rename over it changes nothing
    assert Lake(tmp_path / "b").write(batch, envelope) is True
    assert {p.relative_to(tmp_path / "b"): p.read_bytes() for p in files(tmp_path / "b")} == \
        {p.relative_to(tmp_path / "a"): b for p, b in before.items()}


def test_odd_values_timestamps_and_a_batch_across_midnight(tmp_path: Path) -> None:
    midnight = 1767312000.0  # 2026-01-02T00:00:00Z
    samples = [Sample(midnight - 0.5, "can0", "M", "a", 1.5, "V"),
               Sample(midnight + 0.25, "can0", "M", "a", 2**70),
               Sample(math.nan, "can0", "M", "b", True, label="on"),
               Sample(1e300, "can0", "M", "b", -(2**1100), flags=3),
               Sample(midnight + 1, "can0", "M", "c", math.nan)]
    batch = Batch(VEHICLE, 0, 4, "", samples, [Event(midnight + 2, "x", "dtc", "P0001", 1)],
                  [Frame(midnight - 1, "can0", 0x18DAF110, True, True, bytes(range(12)))])
    payload = encode(batch)
    assert Lake(tmp_path).write(decode(payload), read_envelope(payload))
    assert sorted(str(p.parent.relative_to(tmp_path)) for p in files(tmp_path)) == [
        f"kind=events/vehicle={VEHICLE}/date=2026-01-02",
        f"kind=frames/vehicle={VEHICLE}/date=2026-01-01",
        f"kind=samples/vehicle={VEHICLE}/date=2026-01-01",
        f"kind=samples/vehicle={VEHICLE}/date=2026-01-02"]
    assert batch_ids(tmp_path) == {batch.batch_id: 1}  # two days, one copy
    rows = query(f"""SELECT CAST(date AS VARCHAR), epoch_us(timestamp), value, raw,
        label, flags FROM read_parquet('{tmp_path}/kind=samples/**/*.parquet',
        hive_partitioning=true) ORDER BY signal, date, timestamp NULLS LAST""")
    nan = rows[-1][2]
    assert math.isnan(nan)
    assert rows[:-1] == [
        ("2026-01-01", micros(midnight - 0.5), 1.5, None, None, 0),
        ("2026-01-02", micros(midnight + 0.25), float(2**70), None, None, 0),
        # no valid time: the batch's first day
        ("2026-01-01", None, 1.0, None, "on", 0),
        ("2026-01-01", None, -math.inf, None, None, 3)]
    frame = query(f"SELECT id, is_extended, is_fd, data FROM "
                  f"read_parquet('{tmp_path}/kind=frames/**/*.parquet')")
    assert frame == [(0x18DAF110, True, True, bytes(range(12)))]


def test_times_far_from_today_land_in_their_own_day(tmp_path: Path) -> None:
    samples = [Sample(t, "can0", "M", "a", 1.0) for t in (1e10, -3e10, -0.5, 253402300799.0)]
    payload = encode(Batch(VEHICLE, 0, 3, "", samples))
    receiver = Receiver(None, lake=Lake(tmp_path))
    assert receiver.accept(payload, None, "test").status == "stored"
    assert sorted(p.parent.name for p in files(tmp_path)) == [
        "date=1019-05-04", "date=1969-12-31", "date=2286-11-20", "date=9999-12-31"]


def test_raw_of() -> None:
    assert raw_of(800.25, 0.25, 0) == 3201
    assert raw_of(-40.0, 0.5, -40.0) == 0
    assert raw_of(12, 1, 0) == 12 and raw_of(True, 1, 0) == 1
    assert raw_of(13, 2, 1) == 6 and raw_of(12, 2, 1) is None
    assert raw_of(0.1, 0.3, 0) is None  # no integer gives it
    assert raw_of(math.nan, 1, 0) is None and raw_of(math.inf, 1, 0) is None
    assert raw_of(2**70, 1, 0) is None  # beyond int64
    assert raw_of(4.49423283715579e307, 0.25, 0) is None  # the quotient overflows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["a", "b", "c", "none"]),
    st.one_of(st.floats(), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(),
              st.sampled_from([0.0, -0.0, 0.25, -40.0, 800.25, 2.0**60, 3.0, 1e308, -1e308]))),
    min_size=1, max_size=40))
def test_the_raw_column_is_raw_of_for_every_sample(rows: list[tuple[str, Any]]) -> None:
    signals = {("can0", "M", "a"): SignalMeta("", 0.25, 0), ("can0", "M", "b"): SignalMeta(
        "", 0.5, -40.0), ("can0", "M", "c"): SignalMeta("", 1, 0)}
    batch = Batch(VEHICLE, 0, 0, "", [Sample(1767225600.0, "can0", "M", name, value)
                                      for name, value in rows], signals=signals)
    table = batch_tables(batch, batch.batch_id)[("samples", DAY)]
    expected = [None if name == "none" else raw_of(value, signals[("can0", "M", name)].scale,
                                                   signals[("can0", "M", name)].offset)
                for name, value in rows]
    # rows are sorted per signal (stable: a signal's rows keep their order)
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    assert table.column("raw").to_pylist() == [expected[i] for i in order]


def test_a_vehicle_id_that_cannot_name_a_partition_is_an_invalid_batch(tmp_path: Path) -> None:
    receiver = Receiver(None, lake=Lake(tmp_path))
    outcome = receiver.accept(encode(make_batch(0, vehicle="../../etc")), None, "test")
    assert outcome.status == "invalid" and "cannot name a lake partition" in outcome.reason
    assert files(tmp_path) == []


KILLED_AT_FSYNC = textwrap.dedent("""
    import os, signal, sys
    from agent.batch import decode, read_envelope
    from agent.lake import Lake
    payload = sys.stdin.buffer.read()
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # the process edge
    Lake(sys.argv[1]).write(decode(payload), read_envelope(payload))
""")


def test_a_writer_killed_mid_write_leaves_no_partial_file(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = encode(make_batch(0))
    Lake(lake).write(decode(first), read_envelope(first))
    payload = encode(make_batch(1, rows=20_000))
    done = subprocess.run([sys.executable, "-c", KILLED_AT_FSYNC, str(lake)], input=payload,
                          cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    temporaries = list(lake.rglob(".tmp-*.partial"))
    # killed with its first file (events) written, not yet renamed
    assert len(temporaries) == 1 and temporaries[0].stat().st_size > 1_000
    assert batch_ids(lake) == {decode(first).batch_id: 1}  # the killed one is not there
    count = query(f"SELECT count(*) FROM read_parquet('{lake}/**/*.parquet', "
                  f"hive_partitioning=true, union_by_name=true)")
    assert count == [(sum(pq.read_metadata(p).num_rows for p in files(lake)),)]
    # the sender sends it again: written whole; compaction clears the temporary later
    assert Lake(lake).write(decode(payload), read_envelope(payload)) is True
    assert set(batch_ids(lake).values()) == {1} and len(batch_ids(lake)) == 2
    compact(lake, "2026-01-01", clock=lambda: time.time() + STALE_TEMPORARY / 2)
    assert list(lake.rglob(".tmp-*.partial")) == temporaries  # young: maybe still writing
    compact(lake, "2026-01-01", clock=lambda: time.time() + STALE_TEMPORARY + 1)
    assert list(lake.rglob(".tmp-*.partial")) == []


def test_compaction_merges_is_idempotent_and_keeps_every_row(drive: Drive,
                                                            tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    receiver = Receiver(None, lake=Lake(lake))
    for payload in drive.payloads[:-3]:
        receiver.accept(payload, None, "test")
    report = compact(lake, DAY, max_rows=20_000, row_group_rows=8_000)
    assert sum(p.merged for p in report.partitions) == len(drive.payloads) - 3
    samples = report.partitions[[p.kind for p in report.partitions].index("samples")]
    assert len(samples.written) > 1 and all(n.startswith("part-") for n in samples.written)
    assert not any(p.name[0] != "p" for p in files(lake))  # no per-batch file left
    for path in files(lake, "samples"):
        meta = pq.read_metadata(path)
        assert meta.num_rows <= 20_000 and meta.row_group(0).num_rows <= 8_000
    snapshot = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files(lake)}
    again = compact(lake, DAY, max_rows=20_000, row_group_rows=8_000)
    assert again.changed == [] and {p: (p.stat().st_mtime_ns, p.read_bytes())
                                   for p in files(lake)} == snapshot
    # late batches and a late duplicate of a merged one
    for payload in drive.payloads[-3:] + drive.payloads[:2]:
        receiver.accept(payload, None, "test")
    assert receiver.stats()["total"]["duplicates"] == 2
    compact(lake, DAY)
    assert lake_samples(lake) == lake_samples(drive.lake)
    assert set(batch_ids(lake).values()) == {1} and len(batch_ids(lake)) == len(drive.payloads)
    for path in files(lake, "samples"):  # per signal, then in time
        rows = pq.read_table(path, columns=["channel", "message", "signal", "timestamp"])
        keys = list(zip(*(rows.column(i).cast(pa.int64()).to_pylist() if i == 3 else
                          rows.column(i).to_pylist() for i in range(4)), strict=True))
        assert keys == sorted(keys)


INTERRUPTED = textwrap.dedent("""
    import os, signal, sys
    from agent.lake.compact import compact
    where, after = sys.argv[2], int(sys.argv[3])
    calls = []
    real = getattr(os, where)
    def edge(*args, **kwargs):
        calls.append(args)
        if len(calls) > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(os, where, edge)  # the process edge: renames or unlinks
    compact(sys.argv[1], "2026-01-01", max_rows=3_000)
""")


@pytest.mark.parametrize(("where", "after"), [
    ("replace", 1),  # killed with one file of the merged set renamed, one not
    ("replace", 3),
    ("unlink", 0),  # killed with the merged set complete, before any deletion
    ("unlink", 5),  # and halfway through the deletions
])
def test_an_interrupted_compaction_is_repaired_by_the_next(drive: Drive, tmp_path: Path,
                                                           where: str, after: int) -> None:
    lake = tmp_path / "lake"
    receiver = Receiver(None, lake=Lake(lake))
    for payload in drive.payloads[:8]:
        receiver.accept(payload, None, "test")
    compact(lake, DAY, max_rows=3_000)  # a first merged set: the next one replaces it
    for payload in drive.payloads[8:16]:
        receiver.accept(payload, None, "test")
    expected = lake_samples(lake)
    done = subprocess.run([sys.executable, "-c", INTERRUPTED, str(lake), where, str(after)],
                          cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    compact(lake, DAY, max_rows=3_000)
    assert lake_samples(lake) == expected
    assert set(batch_ids(lake).values()) == {1} and len(batch_ids(lake)) == 16
    assert compact(lake, DAY, max_rows=3_000).changed == []


def test_one_compaction_at_a_time(tmp_path: Path) -> None:
    import fcntl

    payload = encode(make_batch(0))
    Lake(tmp_path).write(decode(payload), read_envelope(payload))
    fd = os.open(tmp_path / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LakeError, match="another compaction is running"):
            compact(tmp_path, DAY)
    finally:
        os.close(fd)
    assert compact(tmp_path, DAY).changed


def test_lake_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = tmp_path / "lake"
    for i in range(3):
        payload = encode(make_batch(i))
        Lake(lake).write(decode(payload), read_envelope(payload))
    assert main(["lake", "check", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "samples: 6 files" in out and "3 batches, 1 vehicles, 2 days" in out
    assert main(["lake", "compact", str(lake), "--date", DAY]) == 0
    out = capsys.readouterr().out
    assert "3 partitions, 3 changed" in out and "3 batch files merged into part-" in out
    assert main(["lake", "compact", str(lake), "--date", DAY]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["lake", "check", str(lake)]) == 0
    capsys.readouterr()
    # a per-batch file beside the merged one that holds it (a crash between the rename and
    # the deletions): check says so; the next compaction repairs it
    payload = encode(make_batch(1))
    Lake(tmp_path / "other").write(decode(payload), read_envelope(payload))
    copy = files(tmp_path / "other", "events")[0]
    (lake / copy.relative_to(tmp_path / "other")).write_bytes(copy.read_bytes())
    assert main(["lake", "check", str(lake)]) == 1
    assert f"duplicated: events of batch {decode(payload).batch_id}: 2 copies" in \
        capsys.readouterr().out
    assert main(["lake", "compact", str(lake), "--date", DAY]) == 0
    assert main(["lake", "check", str(lake)]) == 0
    capsys.readouterr()
    assert main(["lake", "compact", str(lake), "--date", "2026-02-30"]) == 1
    assert "expected a day as YYYY-MM-DD" in capsys.readouterr().err
    assert main(["lake", "check", str(tmp_path / "nowhere")]) == 1
    assert "no such lake directory" in capsys.readouterr().err


def doc_queries() -> list[str]:
    text = (ROOT / "docs" / "lake.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```sql\n")[1:]]


def test_the_queries_of_docs_lake_md_run_on_the_sample_drive(drive: Drive) -> None:
    compacted = drive.lake.parent / "compacted"
    receiver = Receiver(None, lake=Lake(compacted))
    for payload in drive.payloads:
        receiver.accept(payload, None, "test")
    compact(compacted, DAY)
    queries = doc_queries()
    assert len(queries) >= 6
    answers = []
    for lake in (drive.lake, compacted):  # per-batch files, then compacted ones
        results = [query(q.replace("LAKE", str(lake))) for q in queries]
        assert all(results), [q for q, r in zip(queries, results, strict=True) if not r]
        speed = results[0]
        assert len(speed) == 5 and all(unit == "rpm" for _t, _v, unit in speed)
        assert [r[0] for r in speed] == sorted(r[0] for r in speed)
        per_signal = {(r[2], r[3]): r[4] for r in results[1]}
        assert sum(per_signal.values()) == sum(lake_samples(drive.lake).values())
        assert {r[0]: r[1] for r in results[-1]} == {
            "events": 3, "frames": 84_240, "samples": sum(per_signal.values())}
        answers.append(results)
    # the same answers from compacted files (a mean may differ in its last digit: DuckDB's
    # threads add in any order)
    for i, (a, b) in enumerate(zip(*answers, strict=True)):
        if i == 1:
            a = [(*r[:7], pytest.approx(r[7], abs=1e-3), *r[8:]) for r in a]
        assert a == b, [(x, y) for x, y in zip(a, b, strict=True) if x != y][:3]


NO_PYARROW = "import sys; sys.modules['pyarrow'] = None; from agent.cli.main import main; " \
             "sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("args", [["receive", "--listen", "127.0.0.1:0", "--lake", "L"],
                                  ["lake", "check", "L"]])
def test_without_pyarrow_the_lake_commands_say_what_to_install(args: list[str],
                                                               tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_PYARROW, *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "needs pyarrow" in done.stderr and "pip install 'bavard[lake]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_file_is_named_and_stops_nothing_else(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    lake = tmp_path / "lake"
    receiver = Receiver(None, lake=Lake(lake))
    for i in range(3):
        receiver.accept(encode(make_batch(i)), None, "test")
    assert main(["lake", "compact", str(lake), "--date", DAY]) == 0
    damaged = files(lake, "events")[0]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a disk fault, a careless copy
    assert main(["lake", "check", str(lake)]) == 1
    assert f"unreadable: {damaged}: not a readable Parquet file" in capsys.readouterr().out
    # receiving goes on, into that partition too
    assert receiver.accept(encode(make_batch(3)), None, "test").status == "stored"
    assert "taken as holding no batch" in caplog.text
    assert main(["lake", "compact", str(lake), "--date", DAY]) == 1
    out = capsys.readouterr().out
    assert "kind=events" in out and "left as it was" in out and str(damaged) in out
    assert "kind=samples" in out and "1 batch files merged" in out  # the others compacted
    assert damaged.exists()


def test_a_directory_that_is_not_a_lake_is_left_alone(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    for action in (["compact", str(tmp_path), "--date", DAY], ["check", str(tmp_path)]):
        assert main(["lake", *action]) == 1
        assert "not a lake (no kind=samples|events|frames directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no lock file left in it


def test_a_lake_path_that_is_a_file_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lake").write_text("")
    assert main(["receive", "--listen", "127.0.0.1:0", "--lake", str(tmp_path / "lake")]) == 1
    assert f"--lake {tmp_path / 'lake'}: not a directory" in capsys.readouterr().err
