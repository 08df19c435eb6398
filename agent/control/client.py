"""The commands' side of the control socket (``bavard status``, ``live``, ``record``...).

::

    with ControlClient.connect() as service:
        print(service.call("status"))
        for message in service.stream("samples", signals="Engine.*"):
            ...

Errors are :class:`~agent.errors.ControlError`: :class:`ServiceNotRunningError`
(nothing listens: the message says what to run), :class:`ControlRefusedError`
(the socket's permissions or the service refused our uid/gid), or the code and
message of an error answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.control import protocol
from agent.errors import ControlError, ControlRefusedError, ServiceNotRunningError

CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0  # seconds an answer may take (a purge of a large buffer is not instant)


class ControlClient:
    def __init__(self, sock: socket.socket, path: Path, timeout: float = CALL_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock = sock
        self._file = sock.makefile("rb")
        self._ids = itertools.count(1)
        sock.settimeout(timeout)
        hello = self._read()
        if "hello" not in hello:
            self._raise(hello)
            raise ControlError(f"{path}: not a bavard control socket (no greeting)")
        #: what the service said of itself: service, version, protocol, pid
        self.hello: dict[str, Any] = hello["hello"]

    @classmethod
    def connect(cls, path: Path | str | None = None, timeout: float = CALL_TIMEOUT
                ) -> ControlClient:
        where = Path(path) if path is not None else protocol.default_socket_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(str(where))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ServiceNotRunningError(
                f"no bavard service is listening on {where} ({exc.strerror}): start it "
                "with `systemctl start bavard` (or `bavard run --config FILE`), or name "
                "its socket with --socket PATH") from None
        except PermissionError:
            sock.close()
            raise ControlRefusedError(
                f"{where}: permission denied: the control socket is for root and the group "
                "bavard (sudo usermod -aG bavard $USER, then log in again)") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"{where}: cannot connect: {exc}") from None
        try:
            return cls(sock, where, timeout)
        except BaseException:
            sock.close()
            raise

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        """Wake a read blocked in :meth:`stream` (it ends with ControlError), closing
        nothing: unlike :meth:`close`, safe from a signal handler that interrupted that
        very read (its buffered file is busy then). close() afterwards."""
        with contextlib.suppress(OSError):  # not connected any more
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Safe from another thread while :meth:`stream` reads: the shutdown ends that
        read at once (closing the buffered file alone would wait for its lock)."""
        self.interrupt()
        try:
            self._file.close()
        finally:
            self._sock.close()

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send a request and return its result; ControlError for an error answer."""
        request_id = self._send(cmd, args)
        while True:
            message = self._read()
            if "stream" in message:
                continue  # a stream line of an earlier subscription
            if message.get("id") != request_id:
                if message.get("ok") is False and message.get("id") is None:
                    self._raise(message)  # about no request in particular: too-large
                continue
            if not message.get("ok"):
                self._raise(message)
            result: dict[str, Any] = message.get("result") or {}
            return result

    def stream(self, topic: str, **args: Any) -> Iterator[dict[str, Any]]:
        """Subscribe to ``topic`` (``frames``, ``samples``, ``events``) and yield each
        stream message (``items``, ``dropped``) until the caller stops iterating (which
        closes nothing: close the client) or the service ends the connection. The
        subscription's answer is in :attr:`subscribed` once the first message comes."""
        self.subscribed = self.call("subscribe", topic=topic, **args)
        self._sock.settimeout(None)
        while True:
            message = self._read()
            if "stream" in message:
                yield message
            elif not message.get("ok", True):
                self._raise(message)

    def _send(self, cmd: str, args: dict[str, Any]) -> int:
        request_id = next(self._ids)
        line = protocol.encode({"v": protocol.PROTOCOL, "id": request_id, "cmd": cmd,
                                "args": {k: v for k, v in args.items() if v is not None}})
        try:
            self._sock.sendall(line)
        except OSError as exc:
            raise ControlError(f"{self.path}: the service closed the connection ({exc})"
                               ) from None
        return request_id

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except TimeoutError:
            raise ControlError(f"{self.path}: no answer from the service within "
                               f"{self.timeout:.0f} s") from None
        except OSError as exc:
            raise ControlError(f"{self.path}: connection lost ({exc})") from None
        if not line:
            raise ControlError(f"{self.path}: the service closed the connection")
        try:
            message = json.loads(line)
        except ValueError:
            raise ControlError(f"{self.path}: not a protocol line: {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise ControlError(f"{self.path}: not a protocol line: {line[:80]!r}")
        return message

    def _raise(self, message: dict[str, Any]) -> None:
        err = message.get("error") or {}
        code, text = err.get("code", ""), err.get("message", "error")
        if code == protocol.REFUSED:
            raise ControlRefusedError(f"{self.path}: refused by the service: {text}", code)
        raise ControlError(text, code)
