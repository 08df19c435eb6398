"""What ``bavard status``, ``upload``, ``pause``, ``resume`` and ``buffer purge`` share:
where the service's control socket is, where its state directory is, and the exit
status of a command that needs a service and found none.

The socket: ``--socket PATH``, else ``[control] socket`` of ``--config FILE``,
else :func:`agent.control.protocol.default_socket_path` (``$BAVARD_SOCKET``,
``/run/bavard/control``). The state directory (when the command works on the
files because no service runs): ``--state-dir DIR``, else ``[store] state_dir``
of ``--config FILE``, else ``/var/lib/bavard``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.control.client import ControlClient
from agent.control.protocol import default_socket_path
from agent.store import DB_NAME, DEFAULT_STATE_DIR

NO_SERVICE = 3  # exit status: the command needs the service and none answers

NO_SERVICE_EPILOG = f"""\
exit status: 0 done; 1 an error (the message says what); 2 a bad command line;
{NO_SERVICE} no service answers on the control socket (the message says what to run)"""


def add_socket_argument(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        default=argparse.SUPPRESS if suppress else None,
                        help="the service's control socket (default: [control] socket of "
                             f"--config, else $BAVARD_SOCKET, else {default_socket_path()})")


def add_files_arguments(parser: argparse.ArgumentParser, suppress: bool = False,
                        state: bool = True) -> None:
    """``--state-dir`` (unless not ``state``) or ``--config``, and ``--json``.
    ``suppress``: for a subcommand's parser, whose defaults must not hide what was
    given before the subcommand."""
    default = argparse.SUPPRESS if suppress else None
    where = parser.add_mutually_exclusive_group()
    if state:
        where.add_argument("--state-dir", metavar="DIR", default=default,
                           help=f"the agent's state directory (default {DEFAULT_STATE_DIR})")
    where.add_argument("--config", metavar="FILE", default=default,
                       help="the service's configuration: its [store] state_dir and its "
                            "[control] socket")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="one JSON document on standard output")


def socket_path(args: argparse.Namespace) -> Path:
    given = getattr(args, "socket", None)
    if given is not None:
        return Path(given)
    config = _config(args)
    if config is not None and config.control.socket is not None:
        return config.control.socket
    return default_socket_path()


def state_dir(args: argparse.Namespace) -> Path:
    given = getattr(args, "state_dir", None)
    if given:
        return Path(given)
    config = _config(args)
    return Path(config.store.state_dir) if config is not None else DEFAULT_STATE_DIR


def connect(args: argparse.Namespace) -> ControlClient:
    """The service on the socket; ServiceNotRunningError (it says what to run) or another
    ControlError."""
    return ControlClient.connect(socket_path(args))


def has_buffer(directory: Path) -> bool:
    return (directory / DB_NAME).is_file()


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def note(command: str, text: str) -> None:
    """A line on standard error: what the command did instead (no service runs)."""
    print(f"bavard {command}: {text}", file=sys.stderr)


def _config(args: argparse.Namespace) -> Any:
    path = getattr(args, "config", None)
    if not path:
        return None
    cached = getattr(args, "_loaded_config", None)
    if cached is None:
        from agent.config import load_config

        cached = load_config(path)
        args._loaded_config = cached
    return cached
