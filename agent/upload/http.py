"""HTTP(S) transport: one POST per batch over one persistent keep-alive connection.

Built on the standard library's ``http.client``: one request at a time from
one uploader thread needs no connection pool, and no dependency is cheaper to
keep on a Pi for years. The request is ``POST <url path>`` with the batch as
body, ``Content-Type: application/vnd.bavard.batch``, ``Idempotency-Key:
<batch id>`` (the receiver drops a repeat, so a retry after a lost response
is harmless), ``Content-Length`` and ``User-Agent: bavard/<version>``.

Connection: opened on the first send, kept alive and reused, dropped after
any failure and after a response that closes it, so the next send starts on
a fresh one. Before reusing an idle connection the socket is polled: a server
that closed it while idle (keep-alive timeouts are often 5 to 75 s, batches
come every minute) is noticed there and a new connection opened, instead of
failing that send. This is not a retry: nothing was sent on the dead
connection. A close that races the next request still fails that send
(transient). ``timeout`` bounds the connect and each socket read or write.

Classification of one attempt (the uploader retries, never the transport):

- 2xx: delivered. Interim answers (``102 Processing``, ``103 Early Hints``) before
  the final one are skipped; a ``101`` is unexpected (transient, connection dropped).
- 408, 429, 5xx: :class:`TransientUploadError`, with ``retry_after`` from
  ``Retry-After`` (delta-seconds, or an HTTP-date against ``clock``).
- 401, 403, 407, and 3xx: transient too, logged at ERROR. They refuse the
  *client* (credentials, a moved endpoint), not the batch; dead-lettering
  would throw away every batch until the operator fixes ``[upload]`` and
  reloads, while keeping them loses nothing.
- Any other 4xx (400, 404, 413, 415, 422...): :class:`RefusedUploadError`
  with the status and an excerpt of the body.
- A payload over ``max_batch_bytes``: refused without sending.
- Connection refused or reset, timeouts, DNS failures, TLS failures
  (certificate verification included, see :func:`network_error`), a peer
  that closes early, a broken status line or body: transient.

:meth:`HttpTransport.close` may be called from another thread: it shuts the
socket of a send in progress down, which wakes it at once (the send then
raises TransientUploadError); a send still inside ``connect()`` ends within
``timeout``.
"""

from __future__ import annotations

import contextlib
import email.message
import email.utils
import http.client
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC

from agent import __version__
from agent.batch.wire import CONTENT_TYPE, IDEMPOTENCY_HEADER
from agent.errors import ConfigError, RefusedUploadError, TransientUploadError
from agent.upload.tls import client_context
from agent.upload.transport import (
    TransportConfig,
    check_size,
    network_error,
    split_url,
)

log = logging.getLogger(__name__)

USER_AGENT = f"bavard/{__version__}"
#: Status codes that refuse the client rather than the batch (see the module docstring).
CLIENT_REFUSED = frozenset({401, 403, 407})
EXCERPT_BYTES = 200


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which int() refuses
        return float(min(int(value[:12]), 10**11))  # 400 digits must not overflow a float
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _idle_connection_dropped(sock: socket.socket) -> bool:
    """True when an idle keep-alive socket is readable: the server closed it (or misbehaves)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _drain(response: http.client.HTTPResponse) -> str:
    """Read the whole body (so the connection can be reused); an excerpt of its start."""
    head = response.read(EXCERPT_BYTES)
    while response.read(64 * 1024):
        pass
    return " ".join(head.decode("utf-8", "replace").split())


class _Response(http.client.HTTPResponse):
    """Skips every interim (1xx) answer, not only ``100 Continue`` as http.client does.

    http.client returns a ``102 Processing`` or ``103 Early Hints`` as *the* answer and
    leaves the final one unread on the connection, where the next send would take it
    for its own: a 2xx meant for one batch would delete another from the buffer.
    """

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:  # 101: final, and dropped below
                return version, status, reason
            http.client.parse_headers(self.fp)  # an interim answer's headers: skipped


class HttpTransport:
    """POST batches to ``config.url`` (``https://`` or ``http://``)."""

    def __init__(self, config: TransportConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        parts, host, port = split_url(config.url, ("http", "https"))
        self.config = config
        self._clock = clock
        self._host = host
        self._tls = parts.scheme == "https"
        self._port = port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not self._path.isascii() or any(c <= " " or c == "\x7f" for c in self._path):
            # http.client refuses it at every send (UnicodeEncodeError, InvalidURL)
            raise ConfigError(f"upload.url: the path {self._path!r} must be ASCII without "
                              f"spaces or control characters (percent-encode them)")
        self._endpoint = f"{parts.scheme}://{parts.hostname}:{self._port}{parts.path or '/'}"
        self._context = client_context(config) if self._tls else None
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None  # the idle or busy connection
        self._sending: http.client.HTTPConnection | None = None  # owned by a send in progress
        self._generation = 0  # bumped by close(): a send that sees it change was closed

    def __repr__(self) -> str:
        return f"HttpTransport({self._endpoint!r})"

    def send(self, batch_id: str, vehicle_id: str, payload: bytes) -> None:
        """POST ``payload``; return on 2xx, else raise (see the module docstring)."""
        check_size(self.config, self._endpoint, batch_id, payload)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Content-Length": str(len(payload)),
            IDEMPOTENCY_HEADER: batch_id,
            "User-Agent": USER_AGENT,
        }
        generation, conn = self._connection()
        start = time.monotonic()
        try:
            if conn.sock is None:
                conn.connect()
            with self._lock:
                if generation != self._generation:
                    raise ConnectionAbortedError("the transport was closed")
            conn.request("POST", self._path, body=payload, headers=headers)
            response = conn.getresponse()
            excerpt = _drain(response)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            closed = generation != self._generation
            if closed:
                raise TransientUploadError(
                    f"{self._endpoint}: transport closed during the upload of batch "
                    f"{batch_id}") from exc
            if isinstance(exc, OSError):  # RemoteDisconnected is one too
                raise network_error(exc, self._endpoint, self.config.timeout) from exc
            message = f"{self._endpoint}: broken HTTP response: {type(exc).__name__}: {exc}"
            log.debug("%s", message)
            raise TransientUploadError(message) from exc
        finally:
            with self._lock:
                self._sending = None
                stale = self._conn is not conn
        if stale or response.will_close or response.status < 200:
            conn.close()
        log.debug("batch %s: HTTP %d from %s in %.0f ms", batch_id, response.status,
                  self._endpoint, (time.monotonic() - start) * 1e3)
        self._classify(batch_id, response.status, response.reason, response.headers, excerpt)

    def close(self) -> None:
        """Drop the connection; wakes a send blocked on it (from another thread)."""
        with self._lock:
            self._generation += 1
            conn, self._conn = self._conn, None
            sending = self._sending
        if sending is not None:
            # The sending thread owns that connection and closes it itself
            # (http.client is not thread-safe): only shut its socket down, which
            # wakes a blocked read or write. Before the socket exists, the send
            # sees the new generation once connected and gives up.
            sock = sending.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        elif conn is not None:
            conn.close()

    def _connection(self) -> tuple[int, http.client.HTTPConnection]:
        with self._lock:
            conn = self._conn
            if conn is not None and conn.sock is not None and \
                    _idle_connection_dropped(conn.sock):
                log.debug("%s: the server closed the idle connection; opening a new one",
                          self._endpoint)
                conn.close()
            if conn is None:
                if self._context is not None:
                    conn = http.client.HTTPSConnection(self._host, self._port,
                                                       timeout=self.config.timeout,
                                                       context=self._context)
                else:
                    conn = http.client.HTTPConnection(self._host, self._port,
                                                      timeout=self.config.timeout)
                conn.response_class = _Response
                self._conn = conn
            self._sending = conn
            return self._generation, conn

    def _classify(self, batch_id: str, status: int, reason: str,
                  headers: email.message.Message, excerpt: str) -> None:
        if 200 <= status < 300:
            return
        what = f"{self._endpoint}: HTTP {status} {reason}".rstrip()
        if status in (408, 429) or 500 <= status < 600:
            wait = parse_retry_after(headers.get("Retry-After"), self._clock())
            raise TransientUploadError(f"{what} for batch {batch_id}", retry_after=wait)
        if status in CLIENT_REFUSED:
            message = (f"{what}: the receiver refuses this client; check the credentials "
                       f"(upload.cert_file/upload.key_file) and the receiver's access rules")
            log.error("%s", message)
            raise TransientUploadError(message)
        if 300 <= status < 400:
            message = (f"{what}: redirects to {headers.get('Location', '?')}; "
                       f"set upload.url to the new address")
            log.error("%s", message)
            raise TransientUploadError(message)
        if 400 <= status < 500:
            raise RefusedUploadError(f"{what}: batch {batch_id} refused"
                                     + (f": {excerpt}" if excerpt else ""))
        raise TransientUploadError(f"{what}: unexpected status for batch {batch_id}")
