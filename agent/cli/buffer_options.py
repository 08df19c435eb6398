"""Options shared by the commands that read the buffer's data (``export``, ``plot``):
where the buffer is, and which time range.

Where: ``--config FILE`` (its ``[store] state_dir``, its DBC files and VIN settings),
or ``--state-dir DIR``; with neither, the configuration /etc/bavard/bavard.toml when
it exists, else the state directory /var/lib/bavard.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.config import DEFAULT_PATH, Config
from agent.export.times import FORMS, When, parse_time
from agent.store import DEFAULT_STATE_DIR

# argparse takes "-2h" for an option; these look like negative numbers to it instead
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(\d+(\.\d+)?[smhdw])+$")


@dataclass(frozen=True)
class BufferSource:
    state_dir: Path
    config: Config | None
    config_path: str | None


def add_source_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE",
                       help=f"the agent's configuration: its state directory, DBC files and "
                            f"vehicle settings (default {DEFAULT_PATH} when it exists)")
    where.add_argument("--state-dir", metavar="DIR",
                       help=f"the agent's state directory, without a configuration (no DBC "
                            f"metadata then; default {DEFAULT_STATE_DIR})")


def add_time_options(parser: argparse.ArgumentParser, since_default: str | None,
                     until_default: str | None = "now") -> None:
    parser._negative_number_matcher = _NEGATIVE  # "--since -2h"
    start = " (default: everything the buffer holds)" if since_default == "0" else ""
    parser.add_argument("--since", metavar="T", default=since_default, required=(
        since_default is None), help=f"from this time, included{start}: {FORMS}")
    parser.add_argument("--until", metavar="T", default=until_default,
                        help=f"to this time, excluded (default {until_default})")


def resolve_source(args: argparse.Namespace) -> BufferSource:
    """The state directory (and configuration) the options name."""
    from agent.config import load_config

    if args.state_dir:
        return BufferSource(Path(args.state_dir), None, None)
    path = args.config
    if path is None and DEFAULT_PATH.is_file():
        path = str(DEFAULT_PATH)
    if path is None:
        return BufferSource(DEFAULT_STATE_DIR, None, None)
    config = load_config(path)
    return BufferSource(Path(config.store.state_dir), config, str(Path(path).resolve()))


def resolve_times(args: argparse.Namespace, now: float, command: str) -> tuple[When, When]:
    """``--since`` and ``--until`` read (BavardError naming the option when bad); a
    note on stderr for each that assumed UTC."""
    since = parse_time(args.since, now, "--since")
    until = parse_time(args.until, now, "--until")
    for when in (since, until):
        if when.note:
            print(f"bavard {command}: note: {when.note}", file=sys.stderr)
    return since, until
