"""``bavard demo``: the simulated vehicle, live, through the pipeline, summarised."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TextIO

from agent.config import parse_config
from agent.frames import Sample

HELP = "drive the simulated vehicle through decode, selection and rate limits, live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of wall time to run (default 20; 0 = the whole drive)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulation speed: 1 = real time, 10 = ten times, 0 = flat out")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")


class Summary:
    """What the demo shows: rates, counts and the last value of each signal."""

    def __init__(self) -> None:
        self.kept = 0
        self.last: dict[str, Sample] = {}

    def __call__(self, samples: list[Sample]) -> None:
        self.kept += len(samples)
        for s in samples:
            self.last[f"{s.message}.{s.signal}"] = s

    def render(self, pipeline: object, elapsed: float, out: TextIO) -> None:
        from agent.pipeline import Pipeline

        assert isinstance(pipeline, Pipeline)
        frames = pipeline.frames_in
        rules = pipeline.rules.stats
        lines = [
            f"bavard demo: {elapsed:6.1f} s, {frames:,} frames ({frames / max(elapsed, 1e-9):,.0f}"
            f" frames/s), {self.kept:,} samples kept "
            f"({rules.unchanged:,} unchanged, {rules.rate_limited:,} rate-limited dropped)",
        ]
        for ch in pipeline.channels:
            st = ch.decoder.stats
            unknown = ", ".join(f"0x{i:X}" for i in sorted(st.unknown)) or "none"
            lines.append(f"  channel {ch.config.name}: {st.decoded:,} frames decoded, "
                         f"{st.unchanged:,} skipped unchanged, unknown ids: {unknown}, "
                         f"out of range: {sum(st.out_of_range.values())}")
        last = dict(self.last)  # a snapshot: the pipeline thread keeps writing
        width = max((len(k) for k in last), default=0)
        for key in sorted(last):
            s = last[key]
            value = f"{s.value:.6g}" if isinstance(s.value, float) else str(s.value)
            label = f" ({s.label})" if s.label else ""
            lines.append(f"  {key:<{width}}  {value:>12} {s.unit}{label}")
        out.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from agent.pipeline import Pipeline

    text = resources.files("agent").joinpath("defaults/demo.toml").read_text(encoding="utf-8")
    config = parse_config(text, base_dir=Path.cwd(), source="<embedded demo.toml>")
    config = replace(config, channels=tuple(
        replace(c, seed=args.seed, speed=max(args.speed, 0.0)) for c in config.channels))
    pipeline = Pipeline.from_config(config)
    summary = Summary()
    stop = threading.Event()
    worker = threading.Thread(target=pipeline.run, args=(summary, stop), name="pipeline",
                              daemon=True)
    started = time.monotonic()
    worker.start()
    tty = sys.stdout.isatty()
    try:
        while worker.is_alive():
            worker.join(timeout=1.0)
            elapsed = time.monotonic() - started
            if args.duration and elapsed >= args.duration:
                break
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
                summary.render(pipeline, elapsed, sys.stdout)
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        worker.join(timeout=5)
    summary.render(pipeline, time.monotonic() - started, sys.stdout)
    return 0
