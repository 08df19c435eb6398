"""``bavard pause``: stop uploads until ``bavard resume``, across restarts.

The running service takes no new batch (one being sent finishes its attempt)
and keeps filling its buffer; ``bavard status`` shows the uploads paused, since
when and why. The pause is kept in the state directory (``upload-paused.json``),
so a restart or a reboot keeps it. With no service running the command writes
that file itself (the state directory from ``--state-dir`` or ``--config``) and
says so on standard error: the service honours it at its next start.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.service_access import (
    add_files_arguments,
    add_socket_argument,
    connect,
    note,
    print_json,
    socket_path,
    state_dir,
)
from agent.errors import BavardError, ServiceNotRunningError

HELP = "pause uploads (kept across restarts) until `bavard resume`"
EPILOG = """\
exit status: 0 paused (or already paused); 1 an error (the message says what);
2 a bad command line. With no service running, the pause is written to the state
directory directly (said on standard error)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", metavar="TEXT",
                        help="why, shown by `bavard status` (at most 500 characters)")
    add_socket_argument(parser)
    add_files_arguments(parser)


def run(args: argparse.Namespace) -> int:
    result = switch(args, "pause", "upload.pause", reason=args.reason or None)
    if args.json:
        print_json(result)
    else:
        print(result["message"])
    return 0


def switch(args: argparse.Namespace, command: str, cmd: str, **kwargs: Any) -> dict[str, Any]:
    """Through the service when one runs; else on the state directory's pause file."""
    try:
        with connect(args) as service:
            return service.call(cmd, **kwargs)
    except ServiceNotRunningError as exc:
        why = str(exc)
    from agent.upload.pause import PauseSwitch

    directory = state_dir(args)
    if not directory.is_dir():
        raise BavardError(f"{why}; and {directory} is not a state directory: --state-dir DIR "
                          "or --config FILE")
    from agent.store.maintenance import held_by_a_process

    if held_by_a_process(directory):  # a service that would not see the file until it restarts
        raise BavardError(f"{why}; yet a process holds the buffer in {directory} (a service "
                          "with its control socket elsewhere?): name its socket with --socket")
    pauses = PauseSwitch(directory)
    note(command, f"no service answers on {socket_path(args)}: {pauses.path} "
                  f"{'written' if cmd == 'upload.pause' else 'removed'} directly; the service "
                  "follows it at its next start")
    if cmd == "upload.pause":
        paused, new = pauses.pause(kwargs.get("reason") or "")
        return {"paused": True, "already": not new, "since": paused.since,
                "reason": paused.reason, "uploads": None, "service": False,
                "message": "uploads paused" if new else "uploads were already paused"}
    ended = pauses.resume()
    return {"paused": False, "was_paused": ended is not None, "uploads": None,
            "service": False,
            "message": "uploads resumed" if ended is not None else "uploads were not paused"}
