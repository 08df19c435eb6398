"""The state directory's disk, and the buffer's age: is there room, is data leaving?

Disk: the free share of the state directory's filesystem (warn below 10 %,
fail below 2 %), and whether the buffer can still grow to its quota with the
store's ``min_free_bytes`` headroom kept (fail when not: the store would hit
a full disk and evict early; the fix says what quota fits).

Buffer: its oldest item. With ``[upload]`` an item older than a day means
uploads are not happening (warn); without, the buffer is all there is and
only its age limits bound it. Dead letters (batches the receiver refused for
good) are a warning: someone should look at why.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agent.doctor.result import Result, age, failed, passed, skipped, warned
from agent.errors import StoreError
from agent.store.settings import DB_NAME, StoreConfig

WARN_FREE = 0.10  # share of the filesystem free
FAIL_FREE = 0.02
OLD_ITEM = 86_400.0  # seconds: an item older than a day has not been uploaded for a day
MiB = 1024 * 1024


def disk_checks(store: StoreConfig, buffer: dict[str, Any] | None, upload: bool,
                wall: float | None = None) -> list[Result]:
    """``buffer``: the running service's ``status.buffer``; None reads the buffer file
    (read-only). ``upload``: an ``[upload]`` is configured."""
    if buffer is None:
        buffer = read_buffer(Path(store.state_dir), time.time() if wall is None else wall)
    return [space(store, buffer), *buffer_age(buffer, upload)]


def read_buffer(state_dir: Path, now: float) -> dict[str, Any] | None:
    from agent.store.stats import read_stats_file

    try:
        return read_stats_file(state_dir / DB_NAME, now).to_dict()
    except StoreError:
        return None


def _existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (the service creates the rest)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def space(store: StoreConfig, buffer: dict[str, Any] | None,
          statvfs: Any = os.statvfs) -> Result:
    state_dir = Path(store.state_dir)
    where = _existing(state_dir)
    name = "disk"
    try:
        st = statvfs(where)
    except OSError as exc:
        return failed(name, f"cannot read the filesystem of {where}: {exc.strerror}",
                      f"check that {state_dir} is on a mounted, readable filesystem")
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    share = free / total if total else 0.0
    used = int((buffer or {}).get("used_bytes") or 0)
    needs = max(0, store.quota_bytes - used) + store.min_free_bytes
    detail = (f"{where}: {free / MiB:,.0f} MiB free of {total / MiB:,.0f} MiB ({share:.1%}); "
              f"the buffer uses {used / MiB:,.1f} MiB of its {store.quota_bytes / MiB:,.0f} "
              "MiB quota")
    if where != state_dir:
        detail += f" ({state_dir} does not exist yet: the service creates it)"
    fits = max(0, free + used - store.min_free_bytes)
    if share < FAIL_FREE:
        return failed(name, detail + f"; below {FAIL_FREE:.0%} free",
                      f"free space on {where} (journal: journalctl --vacuum-size=100M)")
    if free < needs:
        return failed(name, detail + f"; the buffer cannot grow to its quota (needs "
                                     f"{needs / MiB:,.0f} MiB free)",
                      f"free space on {where}, or lower [store] quota_bytes to "
                      f"{fits // MiB:,} MiB or less")
    if share < WARN_FREE:
        return warned(name, detail + f"; below {WARN_FREE:.0%} free",
                      f"free space on {where} before it fills")
    return passed(name, detail)


def _items(n: int) -> str:
    return f"{n:,} item" + ("" if n == 1 else "s")


def buffer_age(buffer: dict[str, Any] | None, upload: bool) -> list[Result]:
    if buffer is None:
        return [skipped("buffer", "no buffer yet (the service creates it when it starts)")]
    oldest = buffer.get("oldest_age")
    items = sum(int(c.get("items") or 0) for c in (buffer.get("classes") or {}).values())
    out: list[Result]
    if oldest is None:
        out = [passed("buffer", "empty: everything was uploaded (or nothing came yet)")]
    elif not upload:
        out = [passed("buffer", f"{_items(items)}, the oldest {age(oldest)} old; no "
                                "[upload]: kept until the age limits of [store]")]
    elif oldest > OLD_ITEM:
        out = [warned("buffer", f"{_items(items)} waiting, the oldest {age(oldest)} old: "
                                "uploads are not happening",
                      "see the upload checks below; bavard status shows the last upload "
                      "error")]
    else:
        out = [passed("buffer", f"{_items(items)} waiting, the oldest {age(oldest)} old")]
    dead = int(buffer.get("dead_letter_batches") or 0)
    if dead:
        items = int(buffer.get("dead_letter_items") or 0)
        out.append(warned("dead letters", f"{dead} batch(es) ({_items(items)}) the receiver "
                                          "refused for good",
                          "fix what the receiver refuses (its log says), then bavard buffer "
                          "retry-dead-letters"))
    return out
