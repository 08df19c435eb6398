#!/usr/bin/env python3
"""Decode speed: plain cantools ``decode_message`` against bavard's decode path.

Both decode the same frames, held in memory, in the same run:
- cantools: ``db.decode_message(id, data)`` for every frame (unknown ids skipped);
- bavard compiled: generated per-message decoders, every frame decoded;
- bavard path: the same, with the change filter (frames whose selected bits,
  counters and checksums masked out, did not change are skipped), which is
  what the agent runs for on-change signals without a heartbeat;
- bavard path, agent selection: as the demo configures it, counters and
  checksums are not selected at all (they protect the bus, they are not data).

The frames are frozen out of the garbage collector's reach (gc.freeze) for
every contender alike, so a collection does not walk 80k frames mid-run.

Each row: the best run's frames/s, and the median over rounds of the ratio
to cantools in the same round (the machine is shared and noisy: the ratio is
the figure to quote).

Usage: scripts/bench_decode.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import DEFAULT_VOLATILE  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.decode.decoder import ChannelDecoder  # noqa: E402
from agent.frames import Frame  # noqa: E402
from agent.policy.selection import Selector  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def timed(prepare: Callable[[], Callable[[], object]]) -> float:
    """Seconds of one run; ``prepare()`` (untimed) returns the run."""
    run = prepare()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def cantools_all(db: object, frames: list[Frame]) -> Callable[[], Callable[[], None]]:
    decode = db.decode_message  # type: ignore[attr-defined]

    def run() -> None:
        for f in frames:
            # unknown id, wrong length: cantools says so with an exception
            with contextlib.suppress(Exception):
                decode(f.arbitration_id, f.data)

    return lambda: run


class BavardPath:
    """prepare() compiles a fresh decoder (untimed); the run it returns decodes."""

    def __init__(self, db: object, frames: list[Frame], on_change: bool,
                 exclude: tuple[str, ...] = ()) -> None:
        self.db, self.frames, self.on_change, self.exclude = db, frames, on_change, exclude
        self.stats: object = None

    def __call__(self) -> Callable[[], None]:
        rule = (lambda m, s: (True, 0.0, None)) if self.on_change else None
        decoder = ChannelDecoder("bench", [self.db], Selector(exclude=self.exclude),
                                 change_rule=rule, volatile=DEFAULT_VOLATILE)
        self.stats = decoder.stats
        decode, frames = decoder.decode, self.frames

        def run() -> None:
            for f in frames:
                decode(f)

        return run


def bench(title: str, dbc: Path, log: Path, repeat: int) -> None:
    db = load_dbc(dbc)
    with ReplaySource("bench", log, speed=0) as source:
        frames = list(source.frames())
    gc.collect()
    gc.freeze()
    known = {m.frame_id for m in db.messages}
    in_dbc = sum(1 for f in frames if f.arbitration_id in known)
    path = BavardPath(db, frames, on_change=True)
    contenders: dict[str, Callable[[], Callable[[], object]]] = {
        "cantools decode_message": cantools_all(db, frames),
        "bavard compiled decoders": BavardPath(db, frames, on_change=False),
        "bavard path (change filter)": path,
        "bavard path, agent selection": BavardPath(
            db, frames, True, exclude=("*Counter*", "*Checksum*", "*CRC*")),
    }
    # round robin, so that each round's contenders share the machine's mood; the
    # ratio is the median over rounds of (cantools time / contender time)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, prepare in contenders.items():
            times[name].append(timed(prepare))
    stats: Any = path.stats
    skipped = stats.unchanged / max(stats.unchanged + stats.decoded, 1)
    print(f"{title}: {len(frames):,} frames, {in_dbc:,} in the DBC ({in_dbc / len(frames):.0%})")
    baseline = times["cantools decode_message"]
    for name, runs in times.items():
        ratio = statistics.median(b / t for b, t in zip(baseline, runs, strict=True))
        note = (f"   ({skipped:.0%} of DBC frames skipped unchanged)"
                if name == "bavard path (change filter)" else "")
        print(f"  {name:<29}{len(frames) / min(runs):12,.0f} frames/s   {ratio:.2f}x{note}")
    gc.unfreeze()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    args = parser.parse_args()
    bench("demo vehicle, sample drive", ROOT / "dbc" / "demo_vehicle.dbc",
          ROOT / "tests" / "data" / "sample_drive.log", args.repeat)
    motec = CORPUS / "motec"
    if motec.is_dir():
        bench("motec, can_sample.log", motec / "sample_can_spec.dbc", motec / "can_sample.log",
              args.repeat)
    else:
        print(f"motec corpus not found at {motec}: skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
