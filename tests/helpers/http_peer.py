"""A scriptable HTTP(S) receiver on 127.0.0.1 for upload tests: it records, then answers.

::

    with HttpPeer() as peer:                      # HttpPeer(ssl_context=ctx) for HTTPS
        peer.script(Reply(503, retry_after="7"), Reply(action=HANG))
        ...                                       # POST to peer.url
        peer.requests[0].body, peer.requests[0].headers["Idempotency-Key"]

Each request takes the next scripted :class:`Reply` (``200`` once the script
is empty, or, with an ``upstream``, the upstream's answer: a real receiver behind
a front that misbehaves on cue). Actions: answer (the default); ``HANG`` (read the request, then
answer nothing for ``hang`` seconds or until the peer stops); ``CLOSE_MID_BODY``
(read about half the body, then reset the connection); ``CLOSE_BEFORE_RESPONSE``
(read the whole request, then close without a word); ``CLOSE_AFTER_RESPONSE``
(answer normally, as if keeping the connection alive, then close it at once,
which is what a server's idle timeout does); ``LOSE_ANSWER`` (hand the request
to the upstream, then reset the connection: delivered, but never acknowledged).

Connections are HTTP/1.1 keep-alive; ``Request.connection`` numbers them, so a
test can tell a reused connection from a new one. TLS is handshaken in the
connection's own thread; failed handshakes are recorded in ``tls_errors``.
:meth:`stop` and :meth:`start` keep the port, so a test can take the receiver
away and bring it back.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "answer"
HANG = "hang"
CLOSE_MID_BODY = "close mid-body"
CLOSE_BEFORE_RESPONSE = "close before response"
CLOSE_AFTER_RESPONSE = "close after response"
LOSE_ANSWER = "lose the answer"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str = ANSWER
    hang: float = 10.0  # seconds, for HANG; the peer's stop() ends it early
    forward: bool = False  # answer with the upstream's answer (when the peer has one)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # as sent (first value of each name)
    body: bytes  # what was read: part of it only for CLOSE_MID_BODY
    connection: int  # 1, 2, ... in order of accepted connections
    complete: bool = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    peer: HttpPeer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's thread: the TLS handshake must not stall accept().
        if self.peer.ssl_context is not None:
            try:
                request.settimeout(10.0)
                request = self.peer.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.peer.tls_errors.append(exc)
                request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-exchange is what these tests are about


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection_number = next(self.server.peer._connections)
        with self.server.peer._lock:
            self.server.peer._open.add(self.connection)

    def finish(self) -> None:
        with self.server.peer._lock:
            self.server.peer._open.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        peer = self.server.peer
        reply = peer._next_reply()
        length = int(self.headers.get("Content-Length", "0"))
        if reply.action == CLOSE_MID_BODY:
            body = self.rfile.read(length // 2)
            peer._record(self, body, complete=False)
            self._abort()
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the sender went away mid-body (stopped, reset): a server
            self._abort()       # never saw a request; the sender sends it again
            return
        request = peer._record(self, body, complete=True)
        if peer.upstream is not None and (reply.action == LOSE_ANSWER or reply.forward):
            status, answer = peer.upstream(request)
            if reply.action == LOSE_ANSWER:  # delivered, but the sender never hears of it
                self._abort()
                return
            reply = Reply(status, answer)
        if reply.action == HANG:
            peer._stopping.wait(reply.hang)
            self._abort()
            return
        if reply.action == CLOSE_BEFORE_RESPONSE:
            self._abort()
            return
        self.send_response(reply.status)
        headers = {"Content-Type": "text/plain", **reply.headers}
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()
        if reply.action == CLOSE_AFTER_RESPONSE:
            self._abort()

    def _abort(self) -> None:
        """Close the connection now (a reset when unread data is left)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass


class HttpPeer:
    """An HTTP(S) receiver on 127.0.0.1 that answers from a script and records requests."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, port: int = 0,
                 upstream: Callable[[Request], tuple[int, bytes]] | None = None) -> None:
        self.ssl_context = ssl_context
        self.upstream = upstream
        self.port = port
        self.requests: list[Request] = []
        self.tls_errors: list[BaseException] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._connections = itertools.count(1)
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()  # connections being served
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/v1/batches"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> HttpPeer:
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.peer = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-peer-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, drop open connections, end hanging answers.

        The port stays this peer's for :meth:`start`."""
        self._stopping.set()
        with self._lock:
            connections, self._open = list(self._open), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} requests, expected {count}")
            time.sleep(0.01)
        return list(self.requests)

    def __enter__(self) -> HttpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply(forward=True)

    def _record(self, handler: _Handler, body: bytes, complete: bool) -> Request:
        headers = {name: handler.headers[name] for name in handler.headers}
        request = Request(handler.command, handler.path, headers, body,
                          handler.connection_number, complete)
        with self._lock:
            self.requests.append(request)
        return request
