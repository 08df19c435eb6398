"""The HTTP(S) receiver: one batch per POST, answered once it is committed.

Python API::

    from agent.receiver.core import Receiver
    from agent.receiver.http_server import serve
    from agent.receiver.listen import TlsFiles

    receiver = Receiver.open("received")
    server = serve(receiver, "127.0.0.1", 0)            # plain HTTP: loopback only
    server = serve(receiver, "0.0.0.0", 8443,           # HTTPS: off loopback with a client
                   tls=TlsFiles(cert, key, client_ca=ca))  # CA, or allow_anonymous=True
    server.port, server.url                             # the bound port, "https://host:port"
    server.close()                                      # stop, finish requests in flight
    receiver.close()                                    # the server does not own it

Protocol (what ``agent.upload.http`` sends; the constants come from
``agent.batch.wire``):

=====================================================  =====================================
request                                                answer
=====================================================  =====================================
``POST`` any path (``/batches`` by convention),        201 ``{"status": "stored", ...}``
``Content-Type: application/vnd.bavard.batch``,        200 ``{"status": "duplicate", ...}``
``Content-Length``, ``Idempotency-Key: <batch id>``
(optional)
invalid batch (CRC, format, ids) or a key that is      400 ``{"status": "invalid",
not the batch's id                                     "reason": ...}`` (counted)
another content type                                   415
no ``Content-Length`` (chunked bodies included)        411
longer than ``max_bytes`` (default 16 MiB)             413, before reading the body
the database could not be written                      503 with ``Retry-After``
``GET /stats``                                         200, the counters as JSON
anything else                                          404 (GET), 501 (other methods)
=====================================================  =====================================

The sender retries on 408/429/5xx and dead-letters on other 4xx, so only a
fault of ours is a 5xx; a bad batch will be bad again and is a 400.

Decisions:

- ``ThreadingHTTPServer`` (stdlib, one thread per connection), HTTP/1.1 with
  keep-alive: an agent on a cellular link uploads many batches over one TLS
  session.
- The TLS handshake runs in the connection's thread, not in the accept loop,
  so a slow or silent client cannot stall other clients.
- No thread is pinned forever: every socket operation has a ``timeout``
  (default 30 s), and a watchdog shuts a connection down when the request
  line and headers are not in ``timeout`` seconds after the connection opened
  or the previous answer went out, or the body not in ``request_timeout``
  (default 300 s) after the headers: a client trickling a byte at a time is
  cut off too. A request under way (decoding, committing) is never cut.
- :meth:`HttpReceiver.close` stops accepting, closes idle keep-alive
  connections at once, lets requests in flight finish and answer (their
  connection is then closed), and joins every thread. A request whose first
  bytes arrive in that very instant may be cut without an answer: the sender
  sees a reset connection and sends it again (it is idempotent).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.batch.wire import CONTENT_TYPE, IDEMPOTENCY_HEADER
from agent.errors import ReceiverError
from agent.receiver.core import Receiver
from agent.receiver.listen import TlsFiles, bind_address, server_context

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0  # seconds: each socket operation, and the request line + headers
DEFAULT_REQUEST_TIMEOUT = 300.0  # seconds: a whole body (16 MiB at ~56 kB/s)
RETRY_AFTER = 5  # seconds, with a 503
WATCHDOG_INTERVAL = 0.25


class HttpReceiver:
    """A running HTTP(S) receiver (see :func:`serve`)."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._server.ssl_context else 'http'}://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving; requests in flight finish and are answered. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.closing.set()
        self._server.shutdown()  # the accept loop has stopped when this returns
        self._server.kick_idle()
        self._server.server_close()  # joins the connection threads
        self._server.stop_watchdog()
        self._thread.join()

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(receiver: Receiver, host: str = "127.0.0.1", port: int = 0, *,
          tls: TlsFiles | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
          timeout: float = DEFAULT_TIMEOUT,
          request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
          allow_anonymous: bool = False) -> HttpReceiver:
    """Listen on ``host:port`` (0: any free port) and serve in a background thread.

    ReceiverError for plain HTTP on a non-loopback address, HTTPS there without a
    client CA (unless ``allow_anonymous``: then a warning), a bad certificate or key,
    or an address that cannot be bound.
    """
    family, address = bind_address(host, port, tls, allow_anonymous)
    context = server_context(tls) if tls is not None else None
    try:
        server = _Server((address, port), family, receiver, context, max_bytes, timeout,
                         request_timeout)
    except OSError as exc:
        raise ReceiverError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"receiver-http-{server.server_address[1]}", daemon=True)
    thread.start()
    result = HttpReceiver(server, thread)
    log.info("receiving batches on %s (max %d bytes per batch%s)", result.url, max_bytes,
             ", client certificates required" if tls and tls.client_ca else "")
    return result


class _Connection:
    """What the watchdog knows of one connection."""

    __slots__ = ("deadline", "phase", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.phase = "waiting"  # waiting (for a request) | reading (its body) | busy
        self.deadline: float | None = deadline


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # joined by server_close all the same (block_on_close)

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 receiver: Receiver, ssl_context: ssl.SSLContext | None, max_bytes: int,
                 timeout: float, request_timeout: float) -> None:
        self.address_family = family
        self.receiver = receiver
        self.ssl_context = ssl_context
        self.max_bytes = max_bytes
        self.conn_timeout = timeout
        self.request_timeout = request_timeout
        self.closing = threading.Event()
        self._conns: dict[int, _Connection] = {}
        self._conns_lock = threading.Lock()
        self._watchdog_stop = threading.Event()
        super().__init__(address, _Handler)  # type: ignore[arg-type]  # see finish_request
        self._watchdog = threading.Thread(target=self._watch, name="receiver-http-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def server_bind(self) -> None:
        # HTTPServer.server_bind also does a reverse DNS lookup (getfqdn): not needed
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the TLS handshake, then the HTTP exchange."""
        sock: socket.socket = request
        sock.settimeout(self.conn_timeout)
        conn = _Connection(sock, time.monotonic() + self.conn_timeout)
        with self._conns_lock:
            self._conns[id(conn)] = conn
        try:
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.info("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
                with self._conns_lock:
                    conn.sock = sock
            _Handler(sock, client_address, self, conn)
        finally:
            with self._conns_lock:
                self._conns.pop(id(conn), None)
            if sock is not request:
                sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)

    def phase(self, conn: _Connection, phase: str, seconds: float | None) -> None:
        with self._conns_lock:
            conn.phase = phase
            conn.deadline = None if seconds is None else time.monotonic() + seconds

    def kick_idle(self) -> None:
        """Close the connections waiting for a request (at shutdown)."""
        with self._conns_lock:
            idle = [c.sock for c in self._conns.values() if c.phase == "waiting"]
        for sock in idle:
            _cut(sock)

    def stop_watchdog(self) -> None:
        self._watchdog_stop.set()
        self._watchdog.join()

    def _watch(self) -> None:
        while not self._watchdog_stop.wait(WATCHDOG_INTERVAL):
            now = time.monotonic()
            with self._conns_lock:
                late = [c for c in self._conns.values()
                        if c.deadline is not None and c.deadline < now]
                for c in late:
                    c.deadline = None
            for c in late:
                log.info("closing a connection that was too slow (%s)", c.phase)
                _cut(c.sock)


def _cut(sock: socket.socket) -> None:
    """Shut the socket down under its reader's feet (the reader then sees EOF or an error)."""
    # the plain socket's method: SSLSocket.shutdown would also drop its TLS object
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bavard-receiver"
    server: _Server

    def __init__(self, request: socket.socket, client_address: Any, server: _Server,
                 conn: _Connection) -> None:
        self.conn = conn
        super().__init__(request, client_address, server)

    def handle_one_request(self) -> None:
        # waiting first, then the check: close() sets closing before it kicks the waiting
        self.server.phase(self.conn, "waiting", self.server.conn_timeout)
        if self.server.closing.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.phase(self.conn, "reading", self.server.request_timeout)
        return ok

    def handle_expect_100(self) -> bool:
        """Refuse a body we would refuse anyway before the client sends it."""
        problem = self._precheck() if self.command == "POST" else None
        if problem is not None:
            self._reply(*problem, close=True)
            return False
        return super().handle_expect_100()

    # -- methods ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") == "/stats":
            self._reply(200, self.server.receiver.stats())
        else:
            self._reply(404, {"error": f"no such resource: {self.path}"})

    def do_POST(self) -> None:
        problem = self._precheck()
        if problem is not None:
            self._reply(*problem, close=True)
            return
        length = int(self.headers["Content-Length"])
        body = self._read_body(length)
        if body is None:
            return
        self.server.phase(self.conn, "busy", None)
        transport = "https" if self.server.ssl_context else "http"
        try:
            outcome = self.server.receiver.accept(body, self.headers.get(IDEMPOTENCY_HEADER),
                                                  transport)
        except ReceiverError as exc:
            log.error("could not store a batch: %s", exc)
            self._reply(503, {"status": "error", "reason": "storage unavailable"},
                        extra={"Retry-After": str(RETRY_AFTER)})
            return
        except Exception:  # a bug: answer (the sender retries a 5xx), do not drop the line
            log.exception("could not store a batch")
            self._reply(500, {"status": "error", "reason": "internal error"})
            return
        code = {"stored": 201, "duplicate": 200}.get(outcome.status, 400)
        self._reply(code, outcome.to_dict())

    # -- helpers ---------------------------------------------------------------------------

    def _precheck(self) -> tuple[int, dict[str, Any]] | None:
        """(status, body) of a refusal decided by the headers alone, or None."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return 411, {"error": "Content-Length required (chunked bodies are not accepted)"}
        text = self.headers.get("Content-Length")
        if text is None:
            return 411, {"error": "Content-Length required"}
        if not (text.strip().isascii() and text.strip().isdigit()):  # "\xb2".isdigit()
            return 400, {"error": f"bad Content-Length {text!r}"}
        length = int(text)
        if length > self.server.max_bytes:
            return 413, {"error": f"batch of {length} bytes is over the limit of "
                                  f"{self.server.max_bytes} bytes"}
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != CONTENT_TYPE:
            return 415, {"error": f"content type {ctype or 'none'!r}, expected {CONTENT_TYPE}"}
        return None

    def _read_body(self, length: int) -> bytes | None:
        try:
            body = self.rfile.read(length)
        except OSError as exc:  # timeouts, and the watchdog's cut
            log.info("gave up reading a batch from %s: %s", self.client_address[0], exc)
            self.close_connection = True
            return None
        if len(body) < length:
            log.info("%s sent %d of %d bytes and stopped", self.client_address[0], len(body),
                     length)
            self.close_connection = True
            return None
        return body

    def _reply(self, code: int, obj: Any, close: bool = False,
               extra: dict[str, str] | None = None) -> None:
        data = (json.dumps(obj, sort_keys=True) + "\n").encode()
        if close or self.server.closing.is_set():
            self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)
