"""What both ends of the control socket share: the version, limits, line framing.

One JSON object per line (UTF-8, ``\\n``-terminated), in both directions:

* the service greets each accepted peer: ``{"v": 1, "hello": {...}}``;
* a request: ``{"v": 1, "id": ID, "cmd": NAME, "args": {...}}``;
* its answer: ``{"v": 1, "id": ID, "ok": true, "result": {...}}`` or
  ``{"v": 1, "id": ID, "ok": false, "error": {"code": CODE, "message": TEXT}}``;
* after a ``subscribe`` answer, stream lines ``{"v": 1, "id": ID, "stream": TOPIC,
  "items": [...], "dropped": N}`` until ``unsubscribe`` or the end of the connection.

docs/control.md is the reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROTOCOL = 1
MAX_REQUEST = 64 * 1024  # bytes of one request line; a longer one is refused
DEFAULT_SOCKET = Path("/run/bavard/control")
ENV_SOCKET = "BAVARD_SOCKET"  # overrides the default path for the commands

# error codes of an answer with "ok": false
BAD_REQUEST = "bad-request"  # not JSON, not an object, no "cmd", wrong "v"
TOO_LARGE = "too-large"  # a request line longer than MAX_REQUEST (the peer is then closed)
UNKNOWN_COMMAND = "unknown-command"
BAD_ARGS = "bad-args"  # an argument missing, of the wrong type, or out of range
BUSY = "busy"  # too many peers already (the peer is then closed)
REFUSED = "refused"  # the peer's uid/gid may not use the socket (then closed)
FAILED = "failed"  # the command could not be done (the message says why)
INTERNAL = "internal"  # a bug in the service; it is logged there


def default_socket_path() -> Path:
    """``$BAVARD_SOCKET``, else ``/run/bavard/control`` (the unit's RuntimeDirectory)."""
    env = os.environ.get(ENV_SOCKET)
    return Path(env) if env else DEFAULT_SOCKET


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":"), default=_default).encode() + b"\n"


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON: {type(obj).__name__}")


def answer(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": request_id, "ok": True, "result": result}


def error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": request_id, "ok": False,
            "error": {"code": code, "message": message}}
