"""Running the service's commands: one at a time, in their own thread.

The server's thread never runs a service command itself: an ``obd.scan`` that
waits ten seconds for a slow adapter must not stop the stream lines of a
``bavard record`` running meanwhile, nor the greeting of a new peer. The
commands still run one at a time, in the order they came (a handler may
assume nobody else runs one), each peer waiting for its answer before its
next request is read, so answers keep the order of the requests.

A handler's outcome becomes the answer line here: its result, or an error
answer for what it raised (ControlError: its code, another BavardError:
``failed``, anything else: ``internal``, logged with its traceback).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.control import protocol
from agent.errors import BavardError, ControlError

log = logging.getLogger(__name__)

Command = Callable[[dict[str, Any]], dict[str, Any]]


def answer_line(request_id: Any, cmd: str, call: Callable[[], dict[str, Any]]) -> bytes:
    """The answer line to a request: ``call()``'s result, or what it raised."""
    try:
        result = call()
        if not isinstance(result, dict):
            raise TypeError(f"the handler returned {type(result).__name__}, not a dict")
        return protocol.encode(protocol.answer(request_id, result))
    except ControlError as exc:
        return protocol.encode(protocol.error(request_id, exc.code or protocol.FAILED, str(exc)))
    except BavardError as exc:
        return protocol.encode(protocol.error(request_id, protocol.FAILED, str(exc)))
    except Exception as exc:
        log.exception("control command %s failed", cmd)
        return protocol.encode(protocol.error(
            request_id, protocol.INTERNAL, f"{cmd}: internal error in the service "
            f"({type(exc).__name__}: {exc}); its log has the details"))


class Worker:
    """The thread that runs the commands. ``submit`` queues one; its answer line is
    collected by ``answers()`` after ``wake`` was called (the server's thread)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._jobs: queue.SimpleQueue[tuple[Any, Any, str, Command, dict[str, Any]] | None] = (
            queue.SimpleQueue())
        self._done: deque[tuple[Any, bytes]] = deque()
        self._thread = threading.Thread(target=self._run, name="control-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ends the thread after the command it runs; False when it did not end in time."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, owner: Any, request_id: Any, cmd: str, handler: Command,
               args: dict[str, Any]) -> None:
        self._jobs.put((owner, request_id, cmd, handler, args))

    def answers(self) -> list[tuple[Any, bytes]]:
        """(owner, answer line) of the commands done since the last call."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            owner, request_id, cmd, handler, args = job
            line = answer_line(request_id, cmd, lambda: handler(args))  # noqa: B023
            self._done.append((owner, line))
            self._wake()
