#!/usr/bin/env python3
"""End-to-end ingest: replay -> decode -> policy -> durable store, against plain cantools.

Both in the same run, on the motec corpus log (a real car) and on the demo
sample drive:
- cantools alone: ``db.decode_message`` over the log's frames, already parsed
  and in memory (it does less: no reading, no policy, no storage);
- bavard: the log replayed as fast as possible through the agent's pipeline
  (on-change for every signal, counters and checksums not selected) into the
  SQLite store in a temporary state directory, timed until the last sample is
  committed.

Usage: scripts/bench_ingest.py [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import parse_config  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402
from agent.store import Store, StoreConfig  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"

CONFIG = """
[[channels]]
name = "can0"
log = "{log}"
dbc = "{dbc}"
speed = 0

[selection]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*"
on_change = true
"""


def cantools_seconds(dbc: Path, log: Path) -> tuple[int, float]:
    db = load_dbc(dbc)
    with ReplaySource("bench", log) as source:
        frames = list(source.frames())
    decode = db.decode_message
    start = time.perf_counter()
    for f in frames:
        with contextlib.suppress(Exception):  # unknown id: cantools raises
            decode(f.arbitration_id, f.data)
    return len(frames), time.perf_counter() - start


def bavard_seconds(dbc: Path, log: Path) -> tuple[int, int, float]:
    config = parse_config(CONFIG.format(log=log, dbc=dbc), base_dir=ROOT)
    with tempfile.TemporaryDirectory() as state:
        store = Store(StoreConfig(state_dir=Path(state))).start()
        try:
            pipeline = Pipeline.from_config(config)
            kept = 0

            def sink(samples: list) -> None:  # type: ignore[type-arg]
                nonlocal kept
                kept += len(samples)
                store.put_samples(samples)

            start = time.perf_counter()
            pipeline.run(sink, threading.Event())
            store.flush()
            seconds = time.perf_counter() - start
            stored = store.stats()
        finally:
            store.close()
    assert stored.classes["samples"].items == kept, (stored, kept)
    return pipeline.frames_in, kept, seconds


def bench(title: str, dbc: Path, log: Path, rounds: int) -> None:
    ratios, rates = [], []
    for _ in range(rounds):
        frames, plain = cantools_seconds(dbc, log)
        frames_in, kept, ours = bavard_seconds(dbc, log)
        assert frames_in == frames
        ratios.append(plain / ours)
        rates.append(frames / ours)
    print(f"{title}: {frames:,} frames, {kept:,} samples stored")
    print(f"  cantools decode alone (frames in memory)  {frames / plain:12,.0f} frames/s")
    print(f"  bavard replay -> decode -> store          {max(rates):12,.0f} frames/s "
          f"(best of {rounds}), {statistics.median(ratios):.2f}x cantools alone (median)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    motec = CORPUS / "motec"
    if motec.is_dir():
        bench("motec, can_sample.log", motec / "sample_can_spec.dbc", motec / "can_sample.log",
              args.rounds)
    else:
        print(f"motec corpus not found at {motec}: skipped")
    bench("demo vehicle, sample drive", ROOT / "dbc" / "demo_vehicle.dbc",
          ROOT / "tests" / "data" / "sample_drive.log", args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
