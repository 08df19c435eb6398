"""The control socket's file: made with its mode and group before anyone can use it.

The socket is bound under a temporary name next to its own, given mode 0660
and the group, then renamed into place: a peer can never connect to it while
its permissions are not yet right, and a socket file left by a service that
died is replaced at once. A live service on the path is never taken over,
and a path that is not a socket is never removed.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

from agent.control.peers import group_gid
from agent.errors import ControlError

log = logging.getLogger(__name__)

MAX_PATH = 107  # bytes of a Unix socket's path (sun_path is 108 with its NUL)
MODE = 0o660


def listen(path: Path, group: str | None, backlog: int) -> tuple[socket.socket, int]:
    """A listening, non-blocking socket on ``path``, and its file's inode (for
    :func:`remove`). ControlError when a live service answers there, when the path
    is something else than a socket, or when it cannot be made."""
    refuse_live_service(path)
    temporary = path.with_name(f".{path.name}.new")
    if len(os.fsencode(temporary)) > MAX_PATH:
        temporary = path  # the only way left: bound in place, then given its mode
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        temporary.unlink(missing_ok=True)
        listener.bind(str(temporary))
        os.chmod(temporary, MODE)
        set_group(temporary, path, group)
        listener.listen(backlog)
        if temporary != path:
            os.replace(temporary, path)
        inode = os.stat(path).st_ino
    except OSError as exc:
        listener.close()
        temporary.unlink(missing_ok=True)
        raise ControlError(f"{path}: cannot listen there: {exc.strerror or exc}") from None
    listener.setblocking(False)
    return listener, inode


def remove(path: Path, inode: int) -> None:
    """Removes the socket file, unless it is another's by now (replaced, or gone)."""
    try:
        if os.stat(path).st_ino == inode:
            path.unlink()
    except OSError:
        pass


def refuse_live_service(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path}: exists and is not a socket: remove it or choose another "
                           "path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return  # nobody answers there: a stale socket file, to be replaced
    finally:
        probe.close()
    raise ControlError(f"{path}: another service is listening there: stop it first (or "
                       "give this one another control socket)")


def set_group(made: Path, path: Path, group: str | None) -> None:
    """Gives ``made`` the group, when it exists and the file has not got it already
    (under systemd the service runs with that group, and its system call filter
    forbids chown); a warning says why not otherwise."""
    gid = group_gid(group)
    if gid is None:
        if group is not None:
            log.warning("control socket %s: there is no group %s on this system: only root "
                        "and the service's user may use it", path, group)
        return
    if os.stat(made).st_gid == gid:
        return
    try:
        os.chown(made, -1, gid)
    except OSError as exc:
        log.warning("control socket %s: cannot give it to the group %s (%s): only root and "
                    "the service's user may use it", path, group, exc.strerror)
