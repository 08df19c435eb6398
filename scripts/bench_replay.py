"""Lines per second of agent.sources.candump vs python-can's CanutilsLogReader.

Generates a candump -l log (200k lines by default: 11-bit and 29-bit ids, 0-8
bytes, a few CAN FD frames) in a temporary directory and reads it with both
parsers in the same run, best of ``--repeat`` runs each (plus the whole
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def ours(path: Path) -> int:
    with path.open() as f:
        return sum(1 for _ in parse_candump(f, str(path), None, Counter()))


def replay_source(path: Path) -> int:
    from agent.sources.replay import ReplaySource

    with ReplaySource("bench", path) as source:
        return sum(1 for _ in source.frames())


def python_can(path: Path) -> int:
    import can

    return sum(1 for _ in can.CanutilsLogReader(path))


Row = tuple[float, str, int, bool, bool, bytes]


def frames_ours(path: Path) -> list[Row]:
    with path.open() as f:
        return [tuple(frame) for frame in parse_candump(f, str(path), None, Counter())]


def frames_replay_source(path: Path) -> list[Row]:
    from agent.sources.replay import ReplaySource

    with ReplaySource("bench", path) as source:
        return [tuple(frame) for frame in source.frames()]


def frames_python_can(path: Path) -> list[Row]:
    import can

    return [(m.timestamp, str(m.channel), m.arbitration_id, m.is_extended_id, m.is_fd,
             bytes(m.data)) for m in can.CanutilsLogReader(path)]


def check_equal(path: Path, lines: int) -> None:
    """The three readers give the same frames, every one of them."""
    reference = frames_python_can(path)
    for name, read in (("agent.sources.candump", frames_ours),
                       ("ReplaySource", frames_replay_source)):
        got = read(path)
        bad = next((i for i, (a, b) in enumerate(zip(got, reference, strict=False))
                    if a != b), None)
        if bad is not None or len(got) != len(reference) or len(got) != lines:
            where = (f"frame {bad}: {got[bad]} != {reference[bad]}" if bad is not None
                     else f"{len(got)} frames, python-can {len(reference)}, lines {lines}")
            print(f"CHECK FAILED: {name} against python-can: {where}", file=sys.stderr)
            raise SystemExit(1)
    print(f"checked: the three give the same {lines:,} frames (timestamp, channel, id, "
          "flags, data)")


def best(fn: Callable[[Path], int], path: Path, repeat: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn(path)
        times.append(time.perf_counter() - t0)
    return min(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import can  # noqa: F401 - import cost kept out of the timing

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.log"
        generate(path, args.lines)
        t_ours, n_ours = best(ours, path, args.repeat)
        t_src, n_src = best(replay_source, path, args.repeat)
        t_pc, n_pc = best(python_can, path, args.repeat)
        rate_ours = args.lines / t_ours
        rate_pc = args.lines / t_pc
        print(f"lines:                       {args.lines}")
        print(f"agent.sources.candump:       {rate_ours:>10,.0f} lines/s ({n_ours} frames)")
        print(f"ReplaySource (whole source): {args.lines / t_src:>10,.0f} lines/s "
              f"({n_src} frames)")
        print(f"python-can CanutilsLogReader:{rate_pc:>10,.0f} lines/s ({n_pc} frames)")
        print(f"ratio:                       {rate_ours / rate_pc:>10.1f}x")
        check_equal(path, args.lines)


if __name__ == "__main__":
    main()
