"""``bavard upload --now``: have the running service send what its buffer holds, now.

It ends what makes the uploader wait: a linger (small batches wait to fill), a
backoff pause after failed attempts, a wait for a link (the links are looked at
again). It does not override what the configuration forbids: a metered link
still carries only ``metered_classes`` within its budget, and paused uploads
stay paused (``bavard resume``). It makes sense only with a service running.
"""

from __future__ import annotations

import argparse

from agent.cli.service_access import (
    NO_SERVICE_EPILOG,
    add_files_arguments,
    add_socket_argument,
    connect,
    print_json,
)

HELP = "have the running service upload what its buffer holds now"
EPILOG = NO_SERVICE_EPILOG


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", action="store_true", required=True,
                        help="upload now (end a linger, a backoff pause, a wait for a link)")
    add_socket_argument(parser)
    add_files_arguments(parser, state=False)


def run(args: argparse.Namespace) -> int:
    from agent.cli.service_access import NO_SERVICE, note
    from agent.errors import ServiceNotRunningError

    try:
        with connect(args) as service:
            result = service.call("upload.now")
    except ServiceNotRunningError as exc:
        note("upload", f"{exc}; uploads happen only in the service")
        return NO_SERVICE
    if args.json:
        print_json(result)
    else:
        print(result["message"])
    return 0
