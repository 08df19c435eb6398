#!/usr/bin/env python3
"""What the owner's controls cost the ingest path: consent, purposes and insights.

The same log, replayed as fast as possible through the agent's pipeline into the
SQLite store, three ways in the same run (best of ``--rounds``):

1. pipeline -> store (what ``bench_ingest`` measures: no router);
2. pipeline -> router -> store: one destination (``fleet``, granted), its purpose's
   signal globs and the consent looked up per chunk, positions set apart;
3. as (2), with the box's own insights (agent.insights: driving events, trips,
   maintenance) fed every kept chunk, as ``bavard run`` does.

Checked: (2) and (3) store, sample for sample, what (1) stores (the fleet may
receive every signal); (3) also the events the insights gave. A difference ends
the run with exit status 1. Left out: the upload side (the same in all three).

Usage: scripts/bench_owner.py [--rounds N] [--quick] [--log L --dbc D]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Case, Mismatch

from agent.config import parse_config
from agent.frames import Event, Sample
from agent.insights.engine import Insights
from agent.insights.settings import InsightsConfig
from agent.pipeline import Pipeline
from agent.privacy.purposes import BUILTIN
from agent.privacy.router import Outlet, Router
from agent.store import Store, StoreConfig

CONTENDERS = ("router", "insights")  # the paths checked against (1)


class Granted:
    def granted(self, purpose: str) -> bool:
        return True


def run(case: Case, how: str, check: bool) -> tuple[float, list[Sample], list[Event], int]:
    """Seconds, what the store holds (when ``check``), events, frames in."""
    config = parse_config(benchlib.REPLAY_CONFIG.format(log=case.log, dbc=case.dbc),
                          base_dir=benchlib.ROOT)
    with tempfile.TemporaryDirectory() as state:
        store = Store(StoreConfig(state_dir=Path(state))).start()
        try:
            pipeline = Pipeline.from_config(config)
            sink: Any = store.put_samples
            if how != "store":
                insights = (Insights(InsightsConfig(), Path(state))
                            if how == "insights" else None)
                router = Router([Outlet("main", BUILTIN["fleet"], store)], Granted(),
                                config.rules, insights)
                sink = router.put_samples
            start = time.perf_counter()
            pipeline.run(sink, threading.Event())
            store.flush()
            seconds = time.perf_counter() - start
            samples: list[Sample] = []
            events: list[Event] = []
            if check:
                while (batch := store.next_batch(max_items=50_000)) is not None:
                    samples.extend(batch.samples)
                    events.extend(batch.events)
                    store.ack(batch.seq_first, batch.seq_last)
        finally:
            store.close()
    return seconds, samples, events, pipeline.frames_in


def bench(case: Case, rounds: int, wrong: tuple[str, str] | None = None) -> None:
    best: dict[str, float] = {}
    held: dict[str, list[Sample]] = {}
    events: list[Event] = []
    frames = 0
    for n in range(rounds):
        for how in ("store", "router", "insights"):
            seconds, samples, got, frames = run(case, how, check=n == 0)
            best[how] = min(best.get(how, seconds), seconds)
            if n == 0:
                held[how] = samples
                if how == "insights":
                    events = got
    if wrong is not None:
        held[wrong[0]] = benchlib.corrupt_samples(held[wrong[0]], wrong[1],
                                                  lambda message, signal: False)
    for how in ("router", "insights"):
        if held[how] != held["store"]:
            first = next((i for i, (a, b) in enumerate(zip(held[how], held["store"],
                                                             strict=False)) if a != b),
                         min(len(held[how]), len(held["store"])))
            raise Mismatch(f"{case.title}: the store holds other samples through the {how} "
                           f"path ({len(held[how]):,}) than without it "
                           f"({len(held['store']):,}); the first difference is sample {first}")
    base = frames / best["store"]
    print(f"{case.title}: {frames:,} frames, {len(held['store']):,} samples stored, "
          f"{rounds} round{'s' if rounds > 1 else ''} (best)")
    for how, label in (("store", "(1) pipeline -> store"),
                       ("router", "(2) pipeline -> router (consent, purposes) -> store"),
                       ("insights", "(3) as (2), with the insights")):
        rate = frames / best[how]
        print(f"  {label:<55}{rate:12,.0f} frames/s  {rate / base:.2f}x (1)")
    kinds = sorted({e.kind for e in events})
    print(f"  checked: (2) and (3) store the same samples as (1); the insights gave "
          f"{len(events)} events ({', '.join(kinds) or 'none'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round, sample drive only")
    benchlib.add_case_arguments(parser)
    benchlib.add_wrong_argument(parser, CONTENDERS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.no_corpus = 1, True
    wrong = benchlib.parse_wrong(args.wrong, CONTENDERS)
    for case in benchlib.cases(args):
        bench(case, args.rounds, wrong)
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
