"""Reading what the lake holds, from its files' metadata (no rows read).

``batch_ids(root)`` answers "is every batch there exactly once?": the number of
copies of each batch id. A batch whose rows span two UTC days has a file in each
day's partition and is still one copy, and so is one whose rows a compaction split
over two files of one set; a per-batch file and a compacted set (or two sets) of one
partition (kind, vehicle, day) holding the same id are two copies.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent.errors import LakeError
from agent.lake.files import PART_FILE, file_metadata, ids_of, partitions


def batch_ids(root: str | Path, kind: str | None = None) -> Counter[str]:
    """How many copies of each batch id the lake (``kind`` only, when given) holds."""
    copies: Counter[str] = Counter()
    for k, _vehicle, _date, directory in partitions(Path(root)):
        if kind is not None and k != kind:
            continue
        merge_copies(copies, partition_ids(directory))
    return copies


def partition_ids(directory: Path, unreadable: list[str] | None = None) -> Counter[str]:
    """How many copies of each batch one partition holds: a per-batch file is one, and so
    is a set of compacted files (``part-<digest>-<k>``: a batch's rows may span two).
    With ``unreadable``, a file whose metadata cannot be read is named there and skipped
    (without: LakeError)."""
    units: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.parquet")):
        part = PART_FILE.match(path.name)
        try:
            ids = ids_of(file_metadata(path), path)
        except LakeError as exc:
            if unreadable is None:
                raise
            unreadable.append(str(exc))
            continue
        units.setdefault(part.group(1) if part else path.name, set()).update(ids)
    return Counter(bid for ids in units.values() for bid in ids)


def merge_copies(copies: Counter[str], here: Counter[str]) -> None:
    """Fold one partition's counts into a lake's: a batch's copies are its most in any
    one partition."""
    for bid, n in here.items():
        copies[bid] = max(copies[bid], n)


def files(root: str | Path, kind: str | None = None) -> list[Path]:
    """Every Parquet file of the lake (of ``kind``), sorted."""
    return sorted(p for k, _v, _d, directory in partitions(Path(root))
                  if kind is None or k == kind for p in directory.glob("*.parquet"))
