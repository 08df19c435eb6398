"""Lines per second of agent.sources.candump vs python-can's CanutilsLogReader.

Generates a candump -l log (200k lines by default: 11-bit and 29-bit ids, 0-8
bytes, a few CAN FD frames) in a temporary directory and reads it with both
parsers in the same run, best of ``--repeat`` interleaved rounds each (plus the whole
ReplaySource, which adds the Source bookkeeping per frame). Outside the
timing, every frame of the three is checked equal (timestamp, channel, id,
29-bit flag, FD flag, data); a difference fails the run (status 1).

    .venv/bin/python scripts/bench_replay.py [--lines 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib
import can

from agent.frames import Frame
from agent.sources.candump import parse_candump


def generate(path: Path, lines: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    ids = [f"{rng.randrange(0x800):03X}" for _ in range(60)]
    ids += [f"{rng.randrange(0x20000000):08X}" for _ in range(10)]
    ts = 1_700_000_000.0
    with path.open("w") as f:
        for i in range(lines):
            ts += rng.random() * 0.0005
            can_id = rng.choice(ids)
            if i % 100 == 99:
                data = rng.randbytes(rng.choice((12, 16, 32, 64))).hex().upper()
                f.write(f"({ts:.6f}) can0 {can_id}##1{data}\n")
            else:
                data = rng.randbytes(rng.choice((8, 8, 8, 8, 4, 2, 0))).hex().upper()
                f.write(f"({ts:.6f}) can0 {can_id}#{data}\n")


# the three readers, each as a user of it writes it; timed by counting what they yield


def read_candump(path: Path) -> Iterator[Frame]:
    with path.open() as f:
        yield from parse_candump(f, str(path), None, Counter())


def read_replay_source(path: Path) -> Iterator[Frame]:
    from agent.sources.replay import ReplaySource

    with ReplaySource("bench", path) as source:
        yield from source.frames()


def read_python_can(path: Path) -> Iterator[can.Message]:
    yield from can.CanutilsLogReader(path)


Row = tuple[float, str, int, bool, bool, bytes]
Reader = Callable[[Path], Iterator[Any]]


def rows(path: Path, read: Reader) -> list[Row]:
    """What a reader gives, as (timestamp, channel, id, 29-bit, FD, data)."""
    if read is read_python_can:
        return [(m.timestamp, str(m.channel), m.arbitration_id, m.is_extended_id, m.is_fd,
                 bytes(m.data)) for m in read(path)]
    return [tuple(frame) for frame in read(path)]


def check_equal(path: Path, lines: int, wrong: str | None) -> None:
    """Both of ours give python-can's frames, every one of them (``wrong``: the test-only
    ``--wrong candump:KIND`` corrupts the candump parser's frames first)."""
    reference = rows(path, read_python_can)
    for name, read in (("agent.sources.candump", read_candump),
                       ("ReplaySource", read_replay_source)):
        got = rows(path, read)
        if wrong == "skip" and read is read_candump:
            got = got[::2]
        elif wrong == "value" and read is read_candump:
            got[0] = (*got[0][:5], bytes(b ^ 1 for b in got[0][5]) or b"\x01")
        bad = next((i for i, (a, b) in enumerate(zip(got, reference, strict=False))
                    if a != b), None)
        if bad is not None or len(got) != len(reference) or len(got) != lines:
            where = (f"frame {bad}: {got[bad]} != {reference[bad]}" if bad is not None
                     else f"{len(got)} frames, python-can {len(reference)}, lines {lines}")
            print(f"CHECK FAILED: {name} against python-can: {where}", file=sys.stderr)
            raise SystemExit(1)
    print(f"checked: the three give the same {lines:,} frames (timestamp, channel, id, "
          "flags, data)")


def best(readers: list[Reader], path: Path, repeat: int) -> list[tuple[float, int]]:
    """Per reader: (best seconds, frames counted), over ``repeat`` interleaved rounds."""
    times: list[list[float]] = [[] for _ in readers]
    counts = [0] * len(readers)
    for _ in range(repeat):
        for k, read in enumerate(readers):
            t0 = time.perf_counter()
            counts[k] = sum(1 for _ in read(path))
            times[k].append(time.perf_counter() - t0)
    return [(min(t), n) for t, n in zip(times, counts, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    benchlib.add_wrong_argument(parser, ("candump",))
    args = parser.parse_args()
    wrong = benchlib.parse_wrong(args.wrong, ("candump",))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.log"
        generate(path, args.lines)
        (t_ours, n_ours), (t_src, n_src), (t_pc, n_pc) = best(
            [read_candump, read_replay_source, read_python_can], path, args.repeat)
        rate_ours = args.lines / t_ours
        rate_pc = args.lines / t_pc
        print(f"lines:                       {args.lines}")
        print(f"agent.sources.candump:       {rate_ours:>10,.0f} lines/s ({n_ours} frames)")
        print(f"ReplaySource (whole source): {args.lines / t_src:>10,.0f} lines/s "
              f"({n_src} frames)")
        print(f"python-can CanutilsLogReader:{rate_pc:>10,.0f} lines/s ({n_pc} frames)")
        print(f"ratio:                       {rate_ours / rate_pc:>10.1f}x")
        check_equal(path, args.lines, wrong[1] if wrong else None)


if __name__ == "__main__":
    main()
