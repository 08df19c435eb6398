"""Who may use the control socket: the peer's uid/gid by SO_PEERCRED, checked at accept.

The socket file's mode (0660, group ``bavard``) already keeps others out; this
check is the second layer, for a socket whose mode was loosened by hand or a
directory that lets anyone in. Allowed: root, the service's own user, and the
group: the peer's gid, a member in the group database (``gr_mem``), or a
supplementary group of the peer process (``Groups:`` of ``/proc/PID/status``,
where a membership given by ``sg``, ``newgrp`` or ``setgroups`` shows).
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Credentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> Credentials:
    """The uid and gid the peer had when it connected, and its pid (SO_PEERCRED)."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    return Credentials(pid, uid, gid)


def process_groups(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The supplementary groups of process ``pid`` (empty when it is gone or unreadable)."""
    try:
        text = (proc / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:] if g.isdigit()}
    return set()


def group_gid(group: str | None) -> int | None:
    """The gid of ``group``; None without a group or when the system has no such group."""
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


class Access:
    """The check made at each accept (the group database is read each time: a user
    added to the group is let in without restarting the service)."""

    def __init__(self, group: str | None, euid: int | None = None,
                 proc: Path = Path("/proc")) -> None:
        self.group = group
        self.euid = os.geteuid() if euid is None else euid
        self.proc = proc

    def refusal(self, peer: Credentials) -> str | None:
        """Why ``peer`` may not use the socket, or None when it may."""
        if peer.uid in (0, self.euid):
            return None
        group = self.group
        try:
            entry = grp.getgrnam(group) if group is not None else None
        except KeyError:
            entry = None
        if entry is not None:
            if peer.gid == entry.gr_gid or entry.gr_gid in process_groups(peer.pid, self.proc):
                return None
            if _user_name(peer.uid) in entry.gr_mem:
                return None
        who = f"uid {peer.uid} gid {peer.gid} (pid {peer.pid})"
        if group is None:
            return f"{who} is not root nor the service's user (uid {self.euid})"
        if entry is None:
            return (f"{who} is not root nor the service's user (uid {self.euid}); "
                    f"the group {group} that may use it does not exist on this system")
        return (f"{who} is not root nor in the group {group} (gid {entry.gr_gid}): "
                f"sudo usermod -aG {group} USER, then log in again")


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
