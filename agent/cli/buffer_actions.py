"""``bavard buffer purge`` and ``bavard buffer retry-dead-letters``: through the running
service's control socket, or on the buffer file when no service runs.

Either way the same code does the work (agent.store.maintenance, run by the
Store's writer thread): the service's Store, or one this command opens on the
state directory. Opening it takes the state directory's lock, so a service
that holds the buffer but does not answer on the socket given (another path,
or ``[control] enabled = false``) makes the command fail, saying both.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agent.cli.service_access import (
    connect,
    has_buffer,
    note,
    print_json,
    socket_path,
    state_dir,
)
from agent.errors import BavardError, ServiceNotRunningError, StoreError
from agent.store import DB_NAME, Kind, Store, read_stats_file
from agent.units import human_bytes

KINDS = {kind.label: kind for kind in Kind}
REFUSED = 2  # purge without --yes


def run_action(args: argparse.Namespace) -> int:
    command = f"buffer {args.action}"
    try:
        with connect(args) as service:
            if args.action == "purge" and not args.yes:
                return _refuse(args, service.call("status").get("buffer"), command)
            if args.action == "purge":
                result = service.call("buffer.purge", **{"class": args.kind})
            else:
                result = service.call("buffer.retry-dead-letters")
            result["service"] = True
    except ServiceNotRunningError as exc:
        offline = _on_the_file(args, command, str(exc))
        if offline is None:
            return REFUSED
        result = offline
    if args.json:
        print_json(result)
    elif args.action == "purge":
        print(f"purged {result['items']:,} {result['class']} ({human_bytes(result['bytes'])})"
              + (f"; {result['in_flight']:,} left, being uploaded" if result["in_flight"]
                 else ""))
    else:
        print(f"moved {result['batches']:,} dead-letter batches ({result['items']:,} items, "
              f"{human_bytes(result['bytes'])}) back for upload")
    return 0


def _on_the_file(args: argparse.Namespace, command: str, why: str) -> dict[str, Any] | None:
    directory = state_dir(args)
    if not has_buffer(directory):
        raise StoreError(f"{why}; and there is no buffer in {directory} (no {DB_NAME}): "
                         "--state-dir DIR or --config FILE")
    if args.action == "purge" and not args.yes:
        note(command, f"no service answers on {socket_path(args)}: the buffer file in "
                      f"{directory}")
        stats = read_stats_file(directory / DB_NAME, time.time())
        _refuse(args, stats.to_dict(), command)
        return None
    from agent.store.maintenance import offline_config

    if args.config:
        from agent.config import load_config

        config = load_config(args.config).store
    else:
        config = offline_config(directory)
    store = Store(config)
    try:
        store.start()
    except StoreError as exc:
        raise StoreError(f"{why}; and the buffer file cannot be opened: {exc} (if the "
                         "service runs, name its control socket with --socket PATH)") from None
    note(command, f"no service answers on {socket_path(args)}: working on the buffer file "
                  f"in {directory}")
    try:
        if args.action == "purge":
            out = store.purge(KINDS[args.kind]).to_dict()
        else:
            out = store.retry_dead_letters().to_dict()
    finally:
        store.close()
    out["service"] = False
    return out


def _refuse(args: argparse.Namespace, buffer: dict[str, Any] | None, command: str) -> int:
    """Say what a purge would delete, and that --yes is needed."""
    if buffer is None:
        raise BavardError("the service's buffer did not answer: cannot say what a purge "
                          "would delete")
    c = buffer["classes"][args.kind]
    flying = buffer.get("inflight_batches") or 0
    if args.json:
        print_json({"done": False, "class": args.kind, "items": c["items"],
                    "bytes": c["bytes"], "inflight_batches": flying})
    note(command, f"would delete {c['items']:,} {args.kind} ({human_bytes(c['bytes'])}) of "
                  f"{buffer['path']}" + (", less the batch being uploaded" if flying else "")
         + f": add --yes to delete them (bavard buffer purge --class {args.kind} --yes)")
    return REFUSED
