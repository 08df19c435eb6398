#!/usr/bin/env python3
"""Decode speed: plain cantools ``decode_message`` against bavard's decode path.

Both decode the same frames, held in memory, in the same run:
- cantools: ``db.decode_message(id, data)`` for every frame (unknown ids skipped);
- bavard compiled: generated per-message decoders, every frame decoded;
- bavard path: the same, with the change filter (frames whose selected bits,
  counters and checksums masked out, did not change are skipped), which is
  what the agent runs for on-change signals.

Usage: scripts/bench_decode.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import DEFAULT_VOLATILE  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.decode.decoder import ChannelDecoder  # noqa: E402
from agent.frames import Frame  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def best_rate(fn: Callable[[], object], frames: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return frames / best


def cantools_all(db: object, frames: list[Frame]) -> Callable[[], None]:
    decode = db.decode_message  # type: ignore[attr-defined]

    def run() -> None:
        for f in frames:
            # unknown id, wrong length: cantools says so with an exception
            with contextlib.suppress(Exception):
                decode(f.arbitration_id, f.data)

    return run


def bavard_path(db: object, frames: list[Frame], on_change: bool) -> Callable[[], None]:
    def run() -> None:
        rule = (lambda m, s: (True, 0.0, None)) if on_change else None
        decoder = ChannelDecoder("bench", [db], change_rule=rule, volatile=DEFAULT_VOLATILE)
        decode = decoder.decode
        for f in frames:
            decode(f)
        run.stats = decoder.stats  # type: ignore[attr-defined]

    return run


def bench(title: str, dbc: Path, log: Path, repeat: int) -> None:
    db = load_dbc(dbc)
    with ReplaySource("bench", log, speed=0) as source:
        frames = list(source.frames())
    known = {m.frame_id for m in db.messages}
    in_dbc = sum(1 for f in frames if f.arbitration_id in known)
    plain = best_rate(cantools_all(db, frames), len(frames), repeat)
    compiled = best_rate(bavard_path(db, frames, on_change=False), len(frames), repeat)
    path_run = bavard_path(db, frames, on_change=True)
    path = best_rate(path_run, len(frames), repeat)
    stats = path_run.stats  # type: ignore[attr-defined]
    skipped = stats.unchanged / max(stats.unchanged + stats.decoded, 1)
    print(f"{title}: {len(frames):,} frames, {in_dbc:,} in the DBC ({in_dbc / len(frames):.0%})")
    print(f"  cantools decode_message      {plain:12,.0f} frames/s   1.00x")
    print(f"  bavard compiled decoders     {compiled:12,.0f} frames/s   {compiled / plain:.2f}x")
    print(f"  bavard path (change filter)  {path:12,.0f} frames/s   {path / plain:.2f}x"
          f"   ({skipped:.0%} of DBC frames skipped unchanged)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
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
