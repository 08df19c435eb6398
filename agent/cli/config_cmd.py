"""``bavard config check FILE``: report every problem of a configuration file."""

from __future__ import annotations

import argparse
import sys

from agent.config import DEFAULT_PATH, load_config
from agent.errors import ConfigError

HELP = "check a configuration file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="report every problem of FILE, one line each")
    check.add_argument("file", nargs="?", default=str(DEFAULT_PATH),
                       help=f"configuration file (default {DEFAULT_PATH})")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}")
        return 1
    names = ", ".join(f"{c.name} ({c.kind})" for c in config.channels)
    print(f"{args.file}: ok: {len(config.channels)} channel(s): {names}; "
          f"{len(config.rules)} signal rule(s)", file=sys.stderr)
    return 0
