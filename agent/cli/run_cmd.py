"""``bavard run``: the vehicle service (see agent.service.daemon)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.config import DEFAULT_PATH

HELP = "run the agent as a service: sources, decode, store and upload, until SIGTERM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH,
                        help=f"configuration file (default {DEFAULT_PATH})")


def run(args: argparse.Namespace) -> int:
    from agent.service.daemon import Daemon

    daemon = Daemon(args.config)
    daemon.install_signal_handlers()
    return daemon.run()
