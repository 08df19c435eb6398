"""``bavard config check FILE``: report every problem of a configuration file.

It runs the same check as ``bavard run`` before it starts
(:func:`agent.validation.load_usable_config`): every DBC is loaded, the upload
endpoint and its TLS files are checked. Problems go to standard output, one a
line, led by the file and the key path, and the exit status is 1; warnings
(globs that match no signal) go to standard error and do not fail the check.
"""

from __future__ import annotations

import argparse
import sys

from agent.config import DEFAULT_PATH
from agent.errors import ConfigError
from agent.validation import load_usable_config

HELP = "check a configuration file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="report every problem of FILE, one line each, as "
                                         "`bavard run` would refuse it")
    check.add_argument("file", nargs="?", default=str(DEFAULT_PATH),
                       help=f"configuration file (default {DEFAULT_PATH})")


def run(args: argparse.Namespace) -> int:
    try:
        usable = load_usable_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}")
        return 1
    config = usable.config
    for warning in usable.warnings:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    names = ", ".join(f"{c.name} ({c.kind})" for c in config.channels)
    print(f"{args.file}: ok: {len(config.channels)} channel(s): {names}; "
          f"{len(config.rules)} signal rule(s)", file=sys.stderr)
    return 0
