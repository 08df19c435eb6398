"""A pipeline in a process of its own, for the tier's tests: ``python -m
tests.vcan.pipeline_child CONFIG`` opens the pipeline of the configuration file,
prints ``ready`` once its sources are open, keeps what the rules keep, and when
its standard input closes, waits until no frame came for a second (at most 30 s),
stops, and prints one JSON document: the samples kept, the frames in, and each
channel's dropped chunks, error and source counters.

Several readers of one bus run side by side this way, each with its own GIL: in
one process under QEMU/TCG they would starve each other into overflows that
say nothing of the readers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from agent.config import load_config
from agent.frames import Sample
from agent.pipeline import Pipeline

QUIET = 1.0  # seconds without a frame: the queue is read
LIMIT = 30.0  # seconds after standard input closed, at most


def main() -> int:
    pipeline = Pipeline.from_config(load_config(Path(sys.argv[1])))
    samples: list[Sample] = []
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(samples.extend, stop), daemon=True)
    thread.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    deadline = time.monotonic() + LIMIT
    seen = -1
    while pipeline.frames_in != seen and time.monotonic() < deadline:
        seen = pipeline.frames_in
        time.sleep(QUIET)
    stop.set()
    thread.join(10)
    print(json.dumps({
        "samples": [list(s) for s in samples],
        "frames_in": pipeline.frames_in,
        "alive": thread.is_alive(),
        "channels": [{"dropped": ch.dropped, "error": ch.error,
                      "frames": ch.source.stats.frames,
                      "skipped": dict(ch.source.stats.skipped)} for ch in pipeline.channels],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
