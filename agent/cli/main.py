"""Entry point of the ``bavard`` command.

Each subcommand lives in its own module, imported only when chosen, and
exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``,
and optionally ``EPILOG`` (text shown after its options, e.g. exit statuses).
Logging is configured here and nowhere else; ``-v``/``-q`` are accepted before
the subcommand and after it.
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
    "lake": "agent.cli.lake_cmd",
    "obd": "agent.cli.obd_cmd",
    "run": "agent.cli.run_cmd",
    # the technician's console: through the running service's control socket
    "status": "agent.cli.status_cmd",
    "live": "agent.cli.live_cmd",
    "record": "agent.cli.record_cmd",
    "doctor": "agent.cli.doctor_cmd",
    "upload": "agent.cli.upload_cmd",
    "pause": "agent.cli.pause_cmd",
    "resume": "agent.cli.resume_cmd",
    "consent": "agent.cli.consent_cmd",
    "privacy": "agent.cli.privacy_cmd",
    "dbc": "agent.cli.dbc_cmd",
    "export": "agent.cli.export_cmd",
    "plot": "agent.cli.plot_cmd",
    "completion": "agent.cli.completion_cmd",
    "man": "agent.cli.man_cmd",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


VERBOSE_HELP = "more log output (-vv for debug, -vvv with python-can's own)"
QUIET_HELP = "only errors in the log"


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on a subcommand's parser, counted with those given before it.

    They land in their own attributes (a subcommand's parser starts from a fresh
    namespace, which would otherwise hide a ``-v`` given before the subcommand),
    and are absent unless given, so that a nested parser adds to its parent's.
    """
    parser.add_argument("-v", "--verbose", action="count", dest="sub_verbose",
                        default=argparse.SUPPRESS, help=VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", dest="sub_quiet",
                        default=argparse.SUPPRESS, help=QUIET_HELP)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bavard", description="Open on-board edge agent for connected vehicles."
    )
    parser.add_argument("--version", action="version", version=f"bavard {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            # keep --help listing every command without importing them all
            sub.add_parser(name)
            continue
        module = _module(name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP,
                                    epilog=getattr(module, "EPILOG", None),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub_parser)
        _with_log_options(sub_parser)
    return parser


def _with_log_options(parser: argparse.ArgumentParser) -> None:
    """:func:`add_log_options` on ``parser`` and on its own subcommands (``batch inspect``)."""
    add_log_options(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _with_log_options(nested)


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr; with systemd priority prefixes when stderr is the journal."""
    from agent.service.journal import configure_logging as to_stderr

    levels = (logging.WARNING, logging.INFO, logging.DEBUG)
    to_stderr(logging.ERROR if quiet else levels[min(verbose, 2)])
    # python-can says "Created a socket" at INFO on every reopen of a bus, and an ERROR
    # each time the interface is absent, which the CAN source already reports once per
    # outage (bus.down), with its backoff: both only from -vvv on
    socketcan = logging.getLogger("can.interfaces.socketcan")
    if verbose < 3:
        logging.getLogger("can").setLevel(logging.WARNING)
        socketcan.addFilter(_not_bus_absent)
    else:
        logging.getLogger("can").setLevel(logging.NOTSET)
        socketcan.removeFilter(_not_bus_absent)


def _not_bus_absent(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Could not access SocketCAN device")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    verbose = args.verbose + getattr(args, "sub_verbose", 0)
    quiet = args.quiet or getattr(args, "sub_quiet", False)
    # a service says what it does (start, stop, reload) by default; commands say less
    configure_logging(verbose + (args.command == "run"), quiet)
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
