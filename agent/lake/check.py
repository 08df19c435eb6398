"""What a lake holds, per kind, from its files' footers (``bavard lake check``)."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agent.lake.files import partitions, require_lake
from agent.lake.read import merge_copies, partition_ids


def check(root: Path) -> dict[str, Any]:
    """``{"kinds": {kind: {files, bytes, rows, batches, vehicles, days}},
    "duplicated": [[kind, batch id, copies], ...], "unreadable": [why, ...]}``."""
    require_lake(root)
    kinds: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    copies: dict[str, Counter[str]] = {}
    places: dict[str, tuple[set[str], set[str]]] = {}
    for kind, vehicle, day, directory in partitions(root):
        k = kinds.setdefault(kind, {"files": 0, "bytes": 0, "rows": 0})
        vehicles, days = places.setdefault(kind, (set(), set()))
        vehicles.add(vehicle)
        days.add(day)
        for path in sorted(directory.glob("*.parquet")):
            k["files"] += 1
            k["bytes"] += path.stat().st_size
            with contextlib.suppress(OSError, ValueError):  # partition_ids names it
                k["rows"] += pq.read_metadata(path).num_rows
        merge_copies(copies.setdefault(kind, Counter()), partition_ids(directory, unreadable))
    duplicated: list[list[Any]] = []
    for kind, k in kinds.items():
        k["batches"] = len(copies[kind])
        k["vehicles"], k["days"] = (len(s) for s in places[kind])
        duplicated += [[kind, bid, n] for bid, n in sorted(copies[kind].items()) if n > 1]
    return {"kinds": kinds, "duplicated": duplicated, "unreadable": unreadable}
