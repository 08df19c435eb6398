"""The ``[control]`` settings: the service's control socket (parsed by agent.config).

The socket's path defaults to ``control`` in the service's runtime directory
(``$RUNTIME_DIRECTORY``, which systemd sets from ``RuntimeDirectory=bavard``),
else ``/run/bavard/control``: where the commands look for it by default
(:func:`agent.control.protocol.default_socket_path`). It is resolved when the
service starts, not when the file is checked, since only the service's
environment has ``$RUNTIME_DIRECTORY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.control.protocol import DEFAULT_SOCKET
from agent.ranges import Range

SOCKET_NAME = "control"
MAX_PATH = 107  # bytes of a Unix socket's path (sun_path is 108 with its NUL)


@dataclass(frozen=True)
class ControlConfig:
    enabled: bool = True  # false: no control socket (the commands find no service)
    socket: Path | None = None  # None: $RUNTIME_DIRECTORY/control, else /run/bavard/control
    group: str = "bavard"  # besides root, members of this group may connect ("": none)
    max_clients: int = 8  # peers at once; one more is refused (busy)

    def socket_path(self, environ: Mapping[str, str] | None = None) -> Path:
        """The socket's path in the service's environment (see the module's docstring)."""
        if self.socket is not None:
            return self.socket
        env = os.environ if environ is None else environ
        runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return Path(runtime) / SOCKET_NAME if runtime else DEFAULT_SOCKET

    def problems(self) -> list[str]:
        out = []
        for name, allowed in RANGES.items():
            problem = allowed.problem(getattr(self, name))
            if problem is not None:
                out.append(f"{name}: {problem}")
        if self.socket is not None and len(os.fsencode(self.socket)) > MAX_PATH:
            out.append(f"socket: a Unix socket's path is at most {MAX_PATH} bytes, got "
                       f"{len(os.fsencode(self.socket))}: {self.socket}")
        return out


# the range of every number of [control] (docs/config.md lists them)
RANGES = {"max_clients": Range(1, 64)}
