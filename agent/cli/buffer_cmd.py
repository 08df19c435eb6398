"""``bavard buffer``: what the store-and-forward buffer holds, read without writing to it;
``bavard buffer purge --class C --yes`` and ``bavard buffer retry-dead-letters``.

``purge`` deletes a class (events, samples, frames) except a batch being
uploaded; ``retry-dead-letters`` moves the batches the receiver refused back
for upload (agent.store.maintenance). Both go through the running service's
control socket; with no service running they open the buffer file themselves
(the state directory from ``--state-dir`` or ``--config``) and say so on
standard error. The buffer is held by one process at a time: while a service
holds it, only its socket can change it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent.errors import StoreError
from agent.store import DB_NAME, DEFAULT_STATE_DIR, BufferStats, read_stats_file
from agent.units import human_bytes

HELP = "show the local buffer: depth per class, oldest item, quota, evictions, dead letters"
EPILOG = """actions: purge --class events|samples|frames --yes, retry-dead-letters (see ACTION -h)
exit status: 0 done; 1 an error (the message says what); 2 a bad command line, or
purge without --yes (it says what it would delete)"""
CLASSES = ("events", "samples", "frames")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.cli.service_access import add_files_arguments, add_socket_argument

    add_files_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    purge = sub.add_parser("purge", help="delete a class of what the buffer holds (--yes)",
                           description="Delete what the buffer holds of one class, except a "
                                       "batch being uploaded, and give the space back.")
    purge.add_argument("--class", dest="kind", choices=CLASSES, required=True,
                       help="what to delete")
    purge.add_argument("--yes", action="store_true",
                       help="really delete (without it: say what would be deleted)")
    retry = sub.add_parser("retry-dead-letters",
                           help="move the batches the receiver refused back for upload",
                           description="Move the dead letters (batches the receiver refused) "
                                       "back among the data waiting for upload.")
    for nested in (purge, retry):
        add_socket_argument(nested)
        add_files_arguments(nested, suppress=True)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None):
        from agent.cli.buffer_actions import run_action

        return run_action(args)
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR)
    if args.config:
        from agent.config import load_config

        state_dir = load_config(args.config).store.state_dir
    _check_there(state_dir)
    stats = read_stats_file(state_dir / DB_NAME, time.time())
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2, sort_keys=True))
    else:
        print(render(stats))
    return 0


def _check_there(state_dir: Path) -> None:
    """StoreError saying what is missing, and where the buffer may be instead."""
    if (state_dir / DB_NAME).exists():
        return
    if not state_dir.is_dir():
        raise StoreError(f"no buffer: {state_dir} is not a directory")
    nested = state_dir / "state" / DB_NAME
    hint = (f"; there is one in {nested.parent}: --state-dir {nested.parent}"
            if nested.is_file() else
            "; the agent's state directory is [store] state_dir of its configuration "
            "(--config FILE reads it from there)")
    raise StoreError(f"no buffer in {state_dir} (no {DB_NAME} there){hint}")


def render(stats: BufferStats) -> str:
    lines = [f"buffer {stats.path}"]
    used = f"used {human_bytes(stats.used_bytes)}"
    if stats.quota_bytes:
        used += (f" of {human_bytes(stats.quota_bytes)} quota "
                 f"({100 * stats.used_bytes / stats.quota_bytes:.1f}%)")
    lines.append(f"  {used}; data {human_bytes(stats.live_bytes)}; oldest item "
                 f"{_age(stats.oldest_age)} ago" if stats.oldest_age is not None
                 else f"  {used}; empty")
    header = ("class", "items", "bytes", "oldest", "in batch", "evicted", "expired",
              "dropped", "uploaded")
    rows = [header]
    for name, c in stats.classes.items():
        rows.append((name, str(c.items), human_bytes(c.bytes), _age(c.oldest_age),
                     str(c.in_batches), str(c.evicted), str(c.expired),
                     str(c.dropped_queue + c.dropped_full), str(c.acked)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    purged = {name: c.purged for name, c in stats.classes.items() if c.purged}
    if purged:
        lines.append("  purged by hand: " + ", ".join(f"{n} {name}"
                                                     for name, n in purged.items()))
    lines.append(f"  dead letters: {stats.dead_letter_batches} batches, "
                 f"{stats.dead_letter_items} items, {human_bytes(stats.dead_letter_bytes)}")
    full = stats.counters.get("disk_full", 0)
    if full:
        lines.append(f"  disk full: {full} failed commits")
    if stats.corrupt_files:
        lines.append(f"  corrupt databases moved aside: {', '.join(stats.corrupt_files)}")
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
