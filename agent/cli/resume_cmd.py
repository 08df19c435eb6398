"""``bavard resume``: restart uploads that ``bavard pause`` stopped.

Through the running service (which then looks at its buffer at once), or, with
no service running, on the state directory's pause file (said on standard
error): the service then uploads from its next start.
"""

from __future__ import annotations

import argparse

from agent.cli.pause_cmd import switch
from agent.cli.service_access import add_files_arguments, add_socket_argument, print_json

HELP = "resume uploads paused by `bavard pause`"
EPILOG = """\
exit status: 0 resumed (or not paused); 1 an error (the message says what); 2 a bad
command line. With no service running, the pause file in the state directory is
removed directly (said on standard error)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    add_files_arguments(parser)


def run(args: argparse.Namespace) -> int:
    result = switch(args, "resume", "upload.resume")
    if args.json:
        print_json(result)
    else:
        print(result["message"])
    return 0
