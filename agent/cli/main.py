"""Entry point of the ``bavard`` command.

Each subcommand lives in its own module, imported only when chosen, and
exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Logging is configured here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from agent import __version__
from agent.errors import BavardError

# subcommand -> module
COMMANDS: dict[str, str] = {
    "config": "agent.cli.config_cmd",
    "decode": "agent.cli.decode_cmd",
    "simulate": "agent.cli.simulate_cmd",
    "demo": "agent.cli.demo_cmd",
    "batch": "agent.cli.batch_cmd",
    "buffer": "agent.cli.buffer_cmd",
    "receive": "agent.cli.receive_cmd",
    "run": "agent.cli.run_cmd",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bavard", description="Open on-board edge agent for connected vehicles."
    )
    parser.add_argument("--version", action="version", version=f"bavard {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="more log output (-vv for debug, -vvv with python-can's own)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors in the log")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            # keep --help listing every command without importing them all
            sub.add_parser(name)
            continue
        module = _module(name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr; with systemd priority prefixes when stderr is the journal."""
    from agent.service.journal import configure_logging as to_stderr

    levels = (logging.WARNING, logging.INFO, logging.DEBUG)
    to_stderr(logging.ERROR if quiet else levels[min(verbose, 2)])
    if verbose < 3:  # python-can says "Created a socket" at INFO on every reopen of a bus
        logging.getLogger("can").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # a service says what it does (start, stop, reload) by default; commands say less
    configure_logging(args.verbose + (args.command == "run"), args.quiet)
    try:
        result: int = _module(args.command).run(args)
    except BavardError as exc:
        print(f"bavard {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return result
