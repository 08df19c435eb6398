#!/usr/bin/env python3
"""Receiving into the Parquet lake: batches/s and samples/s for 1, 2 and 4 receiver
processes on loopback, against plain pyarrow doing the same work in one process.

Input: a fleet's real batches (scripts/receive_fleet.py: the sample drive through
the demo's rules, cut as the agent cuts them, each vehicle under its own
pseudonym), encoded once before anything is timed.

Contenders, in interleaved rounds (the order reversed every other round), each
with a fresh output directory:

- ``pyarrow``: scripts/parquet_baseline.py, decode + ``pa.table`` +
  ``pq.write_table(zstd)``, one file per batch, one process, no HTTP;
- ``N receivers`` (scripts/receiver_processes.py): ``python -m agent receive
  --listen 127.0.0.1:0 --lake DIR`` processes sharing one lake (``--sink
  sqlite``: each its own ``--dir``, the SQLite receiver), fed by sender threads
  in this process (``--threads`` per receiver, each with the agent's own
  HttpTransport and one keep-alive connection, all taking from one queue; a
  receiver checks and stores at most 2 batches at once, agent.receiver.core).
  Each receiver gets one warm-up batch first (untimed: a long-running receiver
  has its imports done); the time runs from the first POST to the last 2xx
  answer.

Checked after every run (scripts/lake_check.py): each receiver's closing line
says it stored what it answered; the output holds every batch sent exactly once
(``agent.lake.read.batch_ids``), each with as many rows as it has samples, and
its rows equal the baseline's table of the same batches (timestamps in
microseconds, values bit for bit, names, labels, flags). A difference ends the
run with exit status 1. Sizes: bytes per sample of the encoded batches, of the
lake's samples files (as written, and once ``bavard lake compact`` merged them:
checked to hold the same rows) and of the baseline's files.

The figures are medians over the rounds (with the slowest and fastest round's
batches/s), and the CPU time per batch: this process's for the baseline, the
receivers' own (all of them, /proc, during the timed sends) for the receivers, so
that the work is compared apart from the wall clock of a shared machine. The
senders' CPU is shown as a share of one core. Nothing is asserted about speed.

Usage: scripts/bench_receive.py [--vehicles N] [--rounds N] [--receivers 1,2,4]
       [--threads N] [--sink lake|sqlite] [--scratch DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import benchlib
import lake_check
import pyarrow as pa
import pyarrow.compute as pc
from benchlib import Mismatch
from parquet_baseline import samples_table, write_batches
from receive_fleet import Upload, fleet, send, warm_up
from receiver_processes import BenchError, Receivers

from agent.batch import decode

BASELINE = "pyarrow"
WRONG_KINDS = ("value", "skip", "twice")


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu: float | None  # CPU seconds of the contender (the receivers, all of them)
    sender_cpu: float = 0.0


@dataclass
class Job:
    """What every run of a round works from."""

    uploads: list[Upload]
    warm: list[Upload]
    reference: pa.Table  # the timed batches' samples, normalized and sorted
    sink: str
    threads: int
    wrong: tuple[str, str] | None
    compacted: dict[str, tuple[int, int]] = field(default_factory=dict)  # measured once


def reference_table(uploads: list[Upload]) -> pa.Table:
    """The samples of the batches as the baseline builds them (untimed)."""
    tables = [lake_check.normalized(samples_table(u.batch_id, decode(u.payload).samples))
              for u in uploads]
    return pa.concat_tables(tables).sort_by(lake_check.SORT)


def spoil(job: Job, who: str, files: list[Path]) -> None:
    """The test-only ``--wrong WHO:skip|twice``, on the output's files."""
    if job.wrong is not None and job.wrong[0] == who and files:
        if job.wrong[1] == "skip":
            lake_check.drop_first(files)
        elif job.wrong[1] == "twice":
            lake_check.copy_first(files)


def check(job: Job, name: str, who: str, got: pa.Table, copies: Counter[str],
          sent: list[Upload]) -> None:
    lake_check.check_ids(name, copies, [u.batch_id for u in sent])
    lake_check.check_rows(name, got, {u.batch_id: u.samples for u in sent})
    timed = got.filter(pc.is_in(got.column("batch_id"),
                                pa.array([u.batch_id for u in job.uploads])))
    if job.wrong is not None and job.wrong == (who, "value"):
        timed = lake_check.corrupt_value(timed)
    lake_check.check_same(name, timed, job.reference, "the batches sent")


def run_baseline(job: Job, scratch: Path) -> tuple[Run, int]:
    """(time, bytes of its files)."""
    out, warm = scratch / "parquet", scratch / "warm"
    out.mkdir()
    warm.mkdir()
    write_batches([job.warm[0].payload], warm)  # first calls, untimed
    start, cpu = time.perf_counter(), time.process_time()
    write_batches([u.payload for u in job.uploads], out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    files = sorted(out.glob("*.parquet"))
    spoil(job, BASELINE, files)
    files = sorted(out.glob("*.parquet"))
    copies = lake_check.ids_in_files(files)
    check(job, BASELINE, BASELINE, lake_check.read_files(files), copies, job.uploads)
    return Run(seconds, cpu), lake_check.bytes_of(files)


def run_receivers(job: Job, count: int, scratch: Path) -> tuple[Run, int]:
    """(time, bytes of the timed batches' files)."""
    name = f"{count} receiver{'s' if count > 1 else ''}"
    lake = scratch / "lake" if job.sink == "lake" else None
    with Receivers(count, scratch, lake, scratch / "db") as receivers:
        warm = job.warm[:count]
        warm_up(receivers.urls, warm)
        before = receivers.cpu_seconds()
        sent = send(receivers.urls, job.uploads, job.threads)
        after = receivers.cpu_seconds()
        stored = receivers.stop()
    cpu = after - before if after is not None and before is not None else None
    answered = [n + 1 for n in sent.per_receiver]  # + its warm-up batch
    if stored != answered:
        raise Mismatch(f"{name}: the receivers say they stored {stored} batches, "
                       f"they answered 2xx to {answered}")
    if lake is not None:
        from agent.lake.read import batch_ids

        spoil(job, "receivers", lake_check.lake_files(lake))
        files = lake_check.lake_files(lake)
        got, copies = lake_check.read_files(files), batch_ids(lake, kind="samples")
        timed = {u.batch_id for u in job.uploads}
        size = lake_check.bytes_of(p for p in files if p.name.split(".")[0] in timed)
    else:
        dbs = sorted((scratch / "db").iterdir())
        got, copies = lake_check.read_databases(dbs)
        size = lake_check.bytes_of(p for d in dbs for p in d.glob("receiver.sqlite*"))
    check(job, name, "receivers", got, copies, job.uploads + warm)
    if lake is not None and "compacted" not in job.compacted:  # once, after the check
        job.compacted["compacted"] = compacted_bytes(job, name, lake, warm)
    return Run(sent.seconds, cpu, sent.cpu), size


def compacted_bytes(job: Job, name: str, lake: Path, warm: list[Upload]) -> tuple[int, int]:
    """(bytes, samples) of the lake's samples files once ``bavard lake compact`` merged
    every day, checked to hold the same rows."""
    from agent.lake.compact import compact
    from agent.lake.read import batch_ids

    days = sorted({p.parent.name.removeprefix("date=") for p in lake_check.lake_files(lake)})
    for day in days:
        compact(lake, day)
    files = lake_check.lake_files(lake)
    check(job, f"{name}, compacted", "receivers", lake_check.read_files(files),
          batch_ids(lake, kind="samples"), job.uploads + warm)
    return lake_check.bytes_of(files), sum(u.samples for u in job.uploads + warm)


def rounds(job: Job, counts: list[int], n: int,
           where: Path | None) -> tuple[dict[str, list[Run]], dict[str, int]]:
    names = [BASELINE, *map(str, counts)]
    runs: dict[str, list[Run]] = {name: [] for name in names}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-receive-", dir=where) as tmp:
        for r in range(n):
            for name in names if r % 2 == 0 else names[::-1]:
                scratch = Path(tmp) / f"round-{r}-{name}"
                scratch.mkdir()
                if name == BASELINE:
                    run, size = run_baseline(job, scratch)
                else:
                    run, size = run_receivers(job, int(name), scratch)
                runs[name].append(run)
                sizes[name] = size  # the same batches every round: the same bytes
                shutil.rmtree(scratch)
    return runs, sizes


def report(job: Job, counts: list[int], runs: dict[str, list[Run]],
           sizes: dict[str, int]) -> None:
    batches, samples = len(job.uploads), sum(u.samples for u in job.uploads)
    sink = "lake" if job.sink == "lake" else "SQLite"
    print(f"{'':<58}{'batches/s':>10}{'samples/s':>12}{'min-max':>12}{'CPU ms/batch':>14}"
          f"{'vs pyarrow':>12}{'vs 1 receiver':>15}{'sender CPU':>12}")
    median = {name: statistics.median(r.seconds for r in rs) for name, rs in runs.items()}
    one = median.get("1")
    for name, seconds in median.items():
        label = ("pyarrow: decode + pa.table + pq.write_table (1 process)" if name == BASELINE
                 else f"{name} receiver{'s' if name != '1' else ''} -> {sink}")
        rates = [batches / r.seconds for r in runs[name]]
        spread = f"{min(rates):.1f}-{max(rates):.1f}"
        speedup = f"{one / seconds:14.2f}x" if one is not None and name != BASELINE else " " * 15
        cpu = statistics.median(r.sender_cpu / r.seconds for r in runs[name])
        sender = f"{cpu:11.0%}" if name != BASELINE else ""
        cpus = [r.cpu for r in runs[name] if r.cpu is not None]
        cost = f"{statistics.median(cpus) / batches * 1e3:14.0f}" if cpus else f"{'-':>14}"
        print(f"  {label:<56}{batches / seconds:10.1f}{samples / seconds:12,.0f}{spread:>12}"
              f"{cost}{median[BASELINE] / seconds:11.2f}x{speedup}{sender}".rstrip())
    encoded = sum(len(u.payload) for u in job.uploads)
    print("bytes per sample")
    print(f"  {'encoded batches (zstd 3)':<56}{encoded / samples:10.2f}  ({encoded:,} bytes)")
    lake = ("the lake's samples files (raw column included)" if job.sink == "lake" else
            f"{counts[0]} receiver(s)' SQLite files (indexes, warm-ups too)")
    for name, what in ((str(counts[0]), lake), (BASELINE, "the pyarrow baseline's files")):
        print(f"  {what:<56}{sizes[name] / samples:10.2f}  ({sizes[name]:,} bytes)")
    if "compacted" in job.compacted:
        size, held = job.compacted["compacted"]
        what = "the lake's samples files after bavard lake compact"
        print(f"  {what:<56}{size / held:10.2f}  ({size:,} bytes, warm-ups too)")
    print(f"checked, every run: each receiver stored what it answered 2xx; every batch "
          f"exactly once, {batches} batches with their {samples:,} samples, equal to the "
          "baseline's (timestamps, values bit for bit, names, labels, flags)")


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=16, help="fleet size (default 16)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--receivers", default="1,2,4", help="receiver counts (default 1,2,4)")
    parser.add_argument("--threads", type=int, default=3,
                        help="sender threads per receiver (default 3)")
    parser.add_argument("--sink", choices=("lake", "sqlite"), default="lake",
                        help="what the receivers write: one shared --lake (default), or "
                             "each its own SQLite --dir")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="write the lakes and files under this directory (on the file "
                             "system to measure; default: the system's temporary directory)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 vehicles, the drive's first 20,000 frames in "
                             "20 s batches, 1 round")
    benchlib.add_wrong_argument(parser, ("pyarrow", "receivers"))
    args = parser.parse_args()
    frames = seconds = None
    if args.quick:
        args.vehicles, args.rounds, frames, seconds = 2, 1, 20_000, 20.0
    try:
        counts = sorted({int(c) for c in args.receivers.split(",")})
    except ValueError:
        parser.error(f"--receivers {args.receivers}: comma-separated counts, as 1,2,4")
    if not counts or counts[0] < 1 or args.vehicles < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--receivers, --vehicles, --rounds and --threads must be at least 1")
    wrong = None
    if args.wrong is not None:
        who, _, kind = args.wrong.partition(":")
        if who not in (BASELINE, "receivers") or kind not in WRONG_KINDS:
            parser.error(f"--wrong {args.wrong}: pyarrow or receivers, then "
                         f":{'|'.join(WRONG_KINDS)}")
        wrong = (who, kind)

    start = time.perf_counter()
    uploads, warm = fleet(args.vehicles, max(counts), frames, seconds)
    job = Job(uploads, warm, reference_table(uploads), args.sink, args.threads, wrong)
    samples, encoded = sum(u.samples for u in uploads), sum(len(u.payload) for u in uploads)
    per = len(uploads) // args.vehicles
    print(f"fleet: {args.vehicles} vehicles x {per} batches = {len(uploads)} batches, "
          f"{samples:,} samples, {encoded:,} bytes (the sample drive through the demo's "
          f"rules, {seconds or 60:g} s batches, zstd 3; built in "
          f"{time.perf_counter() - start:.1f} s)")
    cpus = os.cpu_count() or 1
    most = max(counts)
    print(f"this machine: os.cpu_count() = {cpus} (shared), so no receiver count can be more "
          f"than {cpus}x here" + (f": {most} receivers cannot be {most}x" if most > cpus else ""))
    print(f"load average at the start: {load()}")
    print(f"senders: {args.threads} threads per receiver in this process (HttpTransport, "
          "one keep-alive connection each, one queue); 1 warm-up batch per receiver, "
          f"untimed; {args.rounds} interleaved rounds, medians; timed from the first POST "
          "to the last 2xx answer")
    print(f"written under {args.scratch or tempfile.gettempdir()} (files fsynced by the "
          "lake, not by the baseline)")
    try:
        runs, sizes = rounds(job, counts, args.rounds, args.scratch)
    except BenchError as exc:
        raise SystemExit(f"bench_receive: {exc}") from None
    report(job, counts, runs, sizes)
    print(f"load average at the end: {load()} (other work on this machine slows every "
          "contender, unevenly)")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
