"""What the store is configured with, and the classes of what it keeps.

``StoreConfig`` is the ``[store]`` table of the agent's configuration (see
docs/store.md for every key); the store only reads its attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from agent.batch.limits import MAX_RECORDS
from agent.ranges import Range, TiB, show

DEFAULT_STATE_DIR = Path("/var/lib/bavard")
DB_NAME = "buffer.sqlite3"
BALLAST_NAME = "buffer.ballast"  # spare bytes given back to the filesystem when it is full

KiB = 1024
MiB = 1024 * KiB
DAY = 86_400.0


class Kind(IntEnum):
    """A class of stored items; the value is its priority (higher is kept longer)."""

    FRAME = 0  # raw frames of channels configured raw: bulky, lowest priority
    SAMPLE = 1  # decoded signal values
    EVENT = 2  # DTCs, faults, trip markers: small and rare, highest priority

    @property
    def label(self) -> str:
        """The plural name used in counters, stats and the CLI."""
        return ("frames", "samples", "events")[self.value]


KINDS_BY_PRIORITY = (Kind.EVENT, Kind.SAMPLE, Kind.FRAME)  # highest first


@dataclass(frozen=True)
class StoreConfig:
    """The durable buffer's settings; every size in bytes, every time in seconds."""

    state_dir: Path = DEFAULT_STATE_DIR
    quota_bytes: int = 256 * MiB  # database + WAL + ballast on disk
    commit_interval: float = 1.0  # commit at least this often while data is queued
    commit_items: int = 50_000  # ... or as soon as this many items are queued
    chunk_items: int = 20_000  # at most this many items per stored chunk
    queue_items: int = 200_000  # bound of the input queue, in items
    checkpoint_interval: float = 10.0  # WAL checkpoint at least this often (keeps it small)
    max_age_events: float | None = 90 * DAY  # None = no age limit
    max_age_samples: float | None = 30 * DAY
    max_age_frames: float | None = 7 * DAY
    max_age_dead_letters: float | None = 30 * DAY
    min_free_bytes: int = 8 * MiB  # never fill the filesystem beyond this headroom
    keep_corrupt: int = 2  # moved-aside corrupt databases kept (older ones deleted)
    check_on_open: str = "quick"  # "quick" | "full" | "none": integrity check at start-up

    def max_age(self, kind: Kind) -> float | None:
        return (self.max_age_frames, self.max_age_samples, self.max_age_events)[kind.value]

    @property
    def db_path(self) -> Path:
        return Path(self.state_dir) / DB_NAME

    @property
    def wal_reserve(self) -> int:
        """Bytes of the quota kept for the WAL, and as much for the ballast file:
        1/16 of the quota each, between 64 KiB and 8 MiB."""
        return min(max(self.quota_bytes // 16, 64 * KiB), 8 * MiB)

    @property
    def file_share(self) -> int:
        """The database file's share of the quota (the rest: WAL and ballast)."""
        return self.quota_bytes - 2 * self.wal_reserve

    def problems(self) -> list[str]:
        """What is wrong with these values, one line each (empty when fine)."""
        out = []
        for name, allowed in RANGES.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            extra = " (or false for no limit)" if name in OPTIONAL else ""
            problem = allowed.problem(value, extra)
            if problem is not None:
                out.append(f"{name}: {problem}")
        if (self.queue_items in RANGES["queue_items"]
                and self.commit_items in RANGES["commit_items"]
                and self.queue_items < self.commit_items):
            out.append(f"queue_items: must be at least commit_items ({show(self.commit_items)}), "
                       f"got {show(self.queue_items)}")
        if self.check_on_open not in ("quick", "full", "none"):
            out.append(f"check_on_open: must be quick, full or none, got {self.check_on_open!r}")
        return out


# The range of every number of [store] (docs/config.md lists them). The quota's
# floor, 256 KiB, is 4 * wal_reserve at its smallest (64 KiB): the WAL and the
# ballast take at most half of any quota in the range.
RANGES = {
    "quota_bytes": Range(256 * KiB, TiB),
    "commit_interval": Range(0, 3_600, open_low=True),
    "commit_items": Range(1, 1_000_000),
    "chunk_items": Range(1, MAX_RECORDS),
    "queue_items": Range(1, 10_000_000),
    "checkpoint_interval": Range(0, 3_600, open_low=True),
    "max_age_events": Range(0, 3_650 * DAY, open_low=True),
    "max_age_samples": Range(0, 3_650 * DAY, open_low=True),
    "max_age_frames": Range(0, 3_650 * DAY, open_low=True),
    "max_age_dead_letters": Range(0, 3_650 * DAY, open_low=True),
    "min_free_bytes": Range(0, TiB),
    "keep_corrupt": Range(0, 100),
}
OPTIONAL = frozenset({"max_age_events", "max_age_samples", "max_age_frames",
                      "max_age_dead_letters"})
