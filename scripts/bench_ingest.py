#!/usr/bin/env python3
"""End-to-end ingest: replay -> decode -> policy -> durable store, against cantools.

Both in the same run, on the demo sample drive and the corpus logs:
- cantools decoding alone: ``by_id.get(frame_id)`` (a dict built once from
  ``db.messages``), then ``msg.decode(data)`` for the frames the DBC knows,
  over the log's frames already parsed and in memory (it does less: no
  reading, no policy, no storage);
- bavard: the log replayed as fast as possible through the agent's pipeline
  (on-change for every signal, counters and checksums not selected) into the
  SQLite store in a temporary state directory, timed until the last sample is
  committed.

Checked, in the first round: the store holds, sample for sample, what an
on-change policy keeps from cantools' values of every frame (counters and
checksums aside); a difference ends the run with exit status 1.

Usage: scripts/bench_ingest.py [--rounds N] [--quick] [--log L --dbc D]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Case, Mismatch

from agent.config import parse_config
from agent.frames import Frame, Sample
from agent.pipeline import Pipeline
from agent.store import Store, StoreConfig


def cantools_seconds(db: Any, frames: list[Frame]) -> float:
    run = benchlib.cantools_plain(db, frames)()
    start = time.perf_counter()
    run(None)
    return time.perf_counter() - start


def bavard_seconds(case: Case, check: bool) -> tuple[int, list[Sample] | None, int, float]:
    """frames in, what the store holds (when ``check``), samples stored, seconds."""
    config = parse_config(benchlib.REPLAY_CONFIG.format(log=case.log, dbc=case.dbc),
                          base_dir=benchlib.ROOT)
    with tempfile.TemporaryDirectory() as state:
        store = Store(StoreConfig(state_dir=Path(state))).start()
        try:
            pipeline = Pipeline.from_config(config)
            kept = 0

            def sink(samples: list[Sample]) -> None:
                nonlocal kept
                kept += len(samples)
                store.put_samples(samples)

            start = time.perf_counter()
            pipeline.run(sink, threading.Event())
            store.flush()
            seconds = time.perf_counter() - start
            stored = store.stats().classes["samples"].items
            held = read_back(store) if check else None
        finally:
            store.close()
    if stored != kept:
        raise Mismatch(f"{case.title}: {kept:,} samples given to the store, it holds {stored:,}")
    return pipeline.frames_in, held, kept, seconds


def read_back(store: Store) -> list[Sample]:
    """Every sample the store holds, oldest first (untimed)."""
    out: list[Sample] = []
    while (batch := store.next_batch(max_items=50_000)) is not None:
        out.extend(batch.samples)
        store.ack(batch.seq_first, batch.seq_last)
    return out


def check_store(case: Case, db: Any, frames: list[Frame], held: list[Sample],
                wrong: str | None) -> int:
    ref = benchlib.reference(db, frames)
    short = benchlib.short_frames(db, frames)
    volatile = benchlib.volatility(db)
    expected = [(frames[i].timestamp, message, signal, value)
                for i, message, signal, value in benchlib.on_change(
                    ((i, m, v) for i, (m, v) in sorted(ref.items())), volatile, short)]
    if wrong is not None:
        held = benchlib.corrupt_samples(held, wrong, volatile)
    got = [(s.timestamp, s.message, s.signal, (s.value, s.label)) for s in held
           if not volatile(s.message, s.signal)]
    benchlib.check_samples(f"{case.title}, the store", expected, got)
    return len(expected)


def bench(case: Case, rounds: int, wrong: str | None) -> None:
    db = benchlib.load(case)
    frames = benchlib.read_frames(case.log)
    ratios, rates, plain_rates = [], [], []
    kept = checked = 0
    for n in range(rounds):
        plain = cantools_seconds(db, frames)
        frames_in, held, kept, ours = bavard_seconds(case, check=n == 0)
        if frames_in != len(frames):
            raise Mismatch(f"{case.title}: the pipeline read {frames_in:,} frames, "
                           f"the log holds {len(frames):,}")
        if held is not None:
            checked = check_store(case, db, frames, held, wrong)
        ratios.append(plain / ours)
        rates.append(len(frames) / ours)
        plain_rates.append(len(frames) / plain)
    print(f"{case.title}: {len(frames):,} frames, {kept:,} samples stored, {rounds} round"
          f"{'s' if rounds > 1 else ''}")
    print(f"  cantools decoding alone (by_id.get + Message.decode, frames in memory)"
          f"{max(plain_rates):12,.0f} frames/s")
    print(f"  bavard replay -> decode -> on-change -> store{max(rates):35,.0f} frames/s "
          f"(best), {statistics.median(ratios):.2f}x cantools alone (median)")
    print(f"  checked: the store holds the {checked:,} samples on-change keeps from "
          "cantools' values (counters and checksums left out)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round, sample drive only")
    benchlib.add_case_arguments(parser)
    benchlib.add_wrong_argument(parser, ("bavard",))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.no_corpus = 1, True
    wrong = benchlib.parse_wrong(args.wrong, ("bavard",))
    for case in benchlib.cases(args):
        bench(case, args.rounds, wrong[1] if wrong else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
