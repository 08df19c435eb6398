"""The process that tests/test_store_crash.py kills with SIGKILL at random moments.

    python tests/helpers/ingest_child.py STATE_DIR START SEED

Puts numbered items into a Store, one counter over the three classes starting
at START (a sample's value, an event's detail, a frame's data hold the
number), in small lists with short pauses, so that commits (every 20 ms or
300 items) happen all the time. Now and then it asks for a batch (never
acked), so that tagging batches also runs under the kill. After each commit
it prints, flushed, one line: ``committed N``, N being one past the highest
number committed so far (every number below it is in the database).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.frames import Event, Frame, Sample
from agent.store import CommitInfo, Store, StoreConfig


def config(state_dir: Path) -> StoreConfig:
    return StoreConfig(state_dir=state_dir, commit_interval=0.02, commit_items=300,
                       chunk_items=100, queue_items=2000, quota_bytes=64 << 20, min_free_bytes=0)


def item(n: int) -> Sample | Event | Frame:
    kind = n % 7
    if kind == 0:
        return Event(float(n), "can0", "count", str(n), 1)
    if kind == 1:
        return Frame(float(n), "can0", 0x123, False, False, n.to_bytes(8, "big"))
    return Sample(float(n), "can0", "Counter", "N", n, "", None, 0)


def main() -> int:
    state_dir, start, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    lock = threading.Lock()
    committed = start

    def on_commit(info: CommitInfo) -> None:
        nonlocal committed
        with lock:
            committed += info.items
            sys.stdout.write(f"committed {committed}\n")
            sys.stdout.flush()

    store = Store(config(state_dir), on_commit=on_commit).start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    n = start
    while True:
        size = rng.randrange(1, 40)
        items = [item(i) for i in range(n, n + size)]
        # one list per class, in order: the counter's order is the order of commit
        run: list[Sample | Event | Frame] = []
        for it in items:
            if run and type(run[-1]) is not type(it):
                put(store, run)
                run = []
            run.append(it)
        put(store, run)
        n += size
        if rng.random() < 0.05:
            store.next_batch(max_items=rng.randrange(50, 500))
        time.sleep(rng.random() * 0.002)


def put(store: Store, items: list[Sample | Event | Frame]) -> None:
    first = items[0]
    if isinstance(first, Event):
        store.put_events(items)  # type: ignore[arg-type]
    elif isinstance(first, Frame):
        store.put_frames(items)  # type: ignore[arg-type]
    else:
        store.put_samples(items)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
