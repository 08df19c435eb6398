"""HttpTransport and the TLS context against a real loopback HTTP(S) receiver (tests/helpers)."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from helpers.certs import Certs, make_certs
from helpers.http_peer import (
    CLOSE_AFTER_RESPONSE,
    CLOSE_BEFORE_RESPONSE,
    CLOSE_MID_BODY,
    HANG,
    HttpPeer,
    Reply,
)

from agent import __version__
from agent.errors import ConfigError, RefusedUploadError, TransientUploadError
from agent.upload.http import HttpTransport, parse_retry_after
from agent.upload.tls import check_key_permissions, client_context
from agent.upload.transport import TransportConfig, network_error, open_transport

PAYLOAD = bytes(range(256)) * 200  # 51 200 bytes, every byte value


@pytest.fixture
def peer() -> Iterator[HttpPeer]:
    with HttpPeer() as p:
        yield p


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


def transport(url: str, **kw: object) -> HttpTransport:
    kw.setdefault("timeout", 2.0)
    return HttpTransport(TransportConfig(url, **kw))  # type: ignore[arg-type]


def test_post_carries_the_batch_and_its_headers(peer: HttpPeer) -> None:
    t = open_transport(TransportConfig(peer.url, timeout=2.0))
    assert isinstance(t, HttpTransport)
    t.send("01J9Z3BATCH", "veh1", PAYLOAD)
    t.close()
    [req] = peer.requests
    assert (req.method, req.path, req.body) == ("POST", "/v1/batches", PAYLOAD)
    assert req.headers["Content-Type"] == "application/vnd.bavard.batch"
    assert req.headers["Idempotency-Key"] == "01J9Z3BATCH"
    assert req.headers["Content-Length"] == str(len(PAYLOAD))
    assert req.headers["User-Agent"] == f"bavard/{__version__}"


def test_one_keep_alive_connection_for_many_sends(peer: HttpPeer) -> None:
    t = transport(peer.url)
    for i in range(5):
        t.send(f"b{i}", "veh1", PAYLOAD)
    t.close()
    t.send("b5", "veh1", PAYLOAD)
    t.close()
    assert [r.connection for r in peer.requests] == [1, 1, 1, 1, 1, 2]
    assert [r.headers["Idempotency-Key"] for r in peer.requests] == [f"b{i}" for i in range(6)]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(peer: HttpPeer, status: int) -> None:
    peer.script(Reply(status))
    transport(peer.url).send("b", "v", PAYLOAD)
    assert len(peer.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 401, 403, 301, 308])
def test_transient_statuses(peer: HttpPeer, status: int) -> None:
    peer.script(Reply(status, headers={"Location": "http://elsewhere/"}))
    t = transport(peer.url)
    with pytest.raises(TransientUploadError, match=rf"HTTP {status}") as info:
        t.send("b", "v", PAYLOAD)
    assert info.value.retry_after is None
    t.send("b", "v", PAYLOAD)  # the connection is still good
    assert [r.connection for r in peer.requests] == [1, 1]


@pytest.mark.parametrize("status", [400, 404, 405, 409, 410, 413, 415, 422])
def test_refused_statuses(peer: HttpPeer, status: int) -> None:
    peer.script(Reply(status, body=b"  no  such\n thing  " + b"x" * 500))
    with pytest.raises(RefusedUploadError, match=rf"HTTP {status}") as info:
        transport(peer.url).send("b7", "v", PAYLOAD)
    message = str(info.value)
    assert "batch b7 refused: no such thing xxx" in message
    assert message.endswith("x" * (200 - len("  no  such\n thing  ")))  # a 200-byte excerpt


def test_retry_after_seconds_and_date(peer: HttpPeer) -> None:
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    peer.script(Reply(503, retry_after="120"), Reply(429, retry_after=date),
                Reply(503, retry_after="soon"))
    t = HttpTransport(TransportConfig(peer.url, timeout=2.0), clock=lambda: now)
    waits = []
    for _ in range(3):
        with pytest.raises(TransientUploadError) as info:
            t.send("b", "v", PAYLOAD)
        waits.append(info.value.retry_after)
    assert waits == [120.0, 90.0, None]


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after(" 7 ", 0) == 7.0
    assert parse_retry_after("-3", 0) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 500.0) == 0.0  # in the past
    assert parse_retry_after("Thursday", 0) is None


def test_oversize_batch_is_refused_without_sending(peer: HttpPeer) -> None:
    t = transport(peer.url, max_batch_bytes=len(PAYLOAD) - 1)
    with pytest.raises(RefusedUploadError, match=r"max_batch_bytes"):
        t.send("b", "v", PAYLOAD)
    t.send("b", "v", PAYLOAD[:-1])
    assert [len(r.body) for r in peer.requests] == [len(PAYLOAD) - 1]


def test_hang_is_transient_within_the_timeout_then_a_new_connection(peer: HttpPeer) -> None:
    peer.script(Reply(action=HANG, hang=5.0))
    t = transport(peer.url, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(TransientUploadError, match=r"no answer within 0.5 s"):
        t.send("b", "v", PAYLOAD)
    assert 0.4 < time.monotonic() - start < 2.0
    t.send("b", "v", PAYLOAD)
    assert [r.connection for r in peer.requests] == [1, 2]


@pytest.mark.parametrize("action", [CLOSE_MID_BODY, CLOSE_BEFORE_RESPONSE])
def test_peer_closing_early_is_transient(peer: HttpPeer, action: str) -> None:
    peer.script(Reply(action=action))
    t = transport(peer.url)
    big = PAYLOAD * 40  # 2 MB: more than the socket buffers hold
    with pytest.raises(TransientUploadError, match=r"connection lost|Broken pipe|reset"):
        t.send("b", "v", big)
    t.send("b", "v", big)
    assert [(r.connection, r.complete) for r in peer.requests] == \
        [(1, action != CLOSE_MID_BODY), (2, True)]
    assert peer.requests[1].body == big


def test_idle_connection_closed_by_the_server_is_replaced(peer: HttpPeer) -> None:
    peer.script(Reply(action=CLOSE_AFTER_RESPONSE))
    t = transport(peer.url)
    t.send("b1", "v", PAYLOAD)
    time.sleep(0.2)  # the server's close reaches the client's socket
    t.send("b2", "v", PAYLOAD)  # no failure: the dead idle connection is noticed first
    assert [r.connection for r in peer.requests] == [1, 2]


def test_receiver_gone_then_back(peer: HttpPeer) -> None:
    t = transport(peer.url)
    t.send("b1", "v", PAYLOAD)
    peer.stop()
    with pytest.raises(TransientUploadError, match=r"connection refused|connection lost"):
        t.send("b2", "v", PAYLOAD)
    with pytest.raises(TransientUploadError, match=r"connection refused"):
        t.send("b2", "v", PAYLOAD)
    peer.start()
    t.send("b2", "v", PAYLOAD)
    assert [r.headers["Idempotency-Key"] for r in peer.requests] == ["b1", "b2"]


def test_close_from_another_thread_unblocks_a_hanging_send(peer: HttpPeer) -> None:
    t = transport(peer.url, timeout=10.0)
    t.send("b0", "v", PAYLOAD)
    peer.script(Reply(action=HANG, hang=10.0))
    timer = threading.Timer(0.3, t.close)
    timer.start()
    start = time.monotonic()
    with pytest.raises(TransientUploadError, match=r"transport closed"):
        t.send("b1", "v", PAYLOAD)
    assert time.monotonic() - start < 1.5
    timer.join()
    t.send("b2", "v", PAYLOAD)  # usable again after close
    t.close()
    t.close()  # idempotent
    assert [r.connection for r in peer.requests] == [1, 1, 2]


def test_bad_urls_are_config_errors() -> None:
    for url in ("ftp://host/x", "http:///x", "http://host:99999/x"):
        with pytest.raises(ConfigError, match=r"upload.url"):
            HttpTransport(TransportConfig(url))
    with pytest.raises(ConfigError, match=r"upload.url: scheme 'ftp'"):
        open_transport(TransportConfig("ftp://host/x"))


def test_network_error_wording() -> None:
    dns = network_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                        "https://x:443/", 3.0)
    assert str(dns) == "https://x:443/: cannot resolve the host name: Name or service not known"
    assert str(network_error(TimeoutError(), "e", 3.0)) == "e: no answer within 3 s"
    assert str(network_error(ConnectionRefusedError(), "e", 3.0)) == "e: connection refused"


# -- HTTPS -------------------------------------------------------------------------------


def test_https_with_a_custom_ca(certs: Certs) -> None:
    with HttpPeer(certs.server_context()) as peer:
        for host in ("127.0.0.1", "localhost"):
            t = transport(peer.url.replace("127.0.0.1", host), ca_file=certs.ca_file)
            t.send(f"b-{host}", "v", PAYLOAD)
            t.close()
        assert [r.body for r in peer.requests] == [PAYLOAD, PAYLOAD]


def test_https_keeps_one_connection(certs: Certs) -> None:
    with HttpPeer(certs.server_context()) as peer:
        t = transport(peer.url, ca_file=certs.ca_file)
        for i in range(4):
            t.send(f"b{i}", "v", PAYLOAD)
            time.sleep(0.05)  # TLS 1.3 session tickets arrive: not a dropped connection
        t.close()
        assert [r.connection for r in peer.requests] == [1, 1, 1, 1]


@pytest.mark.parametrize("trust", ["other CA", "system CAs"])
def test_https_unknown_ca_is_transient_and_logged(
        certs: Certs, trust: str, caplog: pytest.LogCaptureFixture) -> None:
    ca_file = certs.other_ca_file if trust == "other CA" else None
    with HttpPeer(certs.server_context()) as peer:
        t = transport(peer.url, ca_file=ca_file)
        with caplog.at_level(logging.ERROR, "agent.upload"), \
                pytest.raises(TransientUploadError, match=r"certificate verification failed"):
            t.send("b", "v", PAYLOAD)
        assert peer.requests == []
    [record] = caplog.records
    assert "local clock" in record.getMessage() and "upload.ca_file" in record.getMessage()


def test_https_mutual_tls(certs: Certs) -> None:
    with HttpPeer(certs.server_context(require_client_cert=True)) as peer:
        with_cert = transport(peer.url, ca_file=certs.ca_file, cert_file=certs.client_cert,
                              key_file=certs.client_key)
        with_cert.send("b1", "v", PAYLOAD)
        without = transport(peer.url, ca_file=certs.ca_file)
        with pytest.raises(TransientUploadError, match=r"TLS|connection lost|closed"):
            without.send("b2", "v", PAYLOAD)
        assert [r.headers["Idempotency-Key"] for r in peer.requests] == ["b1"]
        deadline = time.monotonic() + 5.0  # the peer's thread records it after the client quit
        while not peer.tls_errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(peer.tls_errors) == 1


def test_plain_http_client_against_https_peer_is_transient(certs: Certs) -> None:
    with HttpPeer(certs.server_context()) as peer, pytest.raises(TransientUploadError):
        transport(peer.url.replace("https", "http")).send("b", "v", PAYLOAD)


# -- TLS configuration -----------------------------------------------------------------


def test_key_permissions(certs: Certs) -> None:
    os.chmod(certs.client_key, 0o640)
    with pytest.raises(ConfigError) as info:
        check_key_permissions(certs.client_key)
    assert str(info.value) == (
        f"upload.key_file: private key {certs.client_key} has mode 0640, readable by group "
        f"or others; restrict it with: chmod 600 {certs.client_key}")
    config = TransportConfig("https://127.0.0.1:1/", cert_file=certs.client_cert,
                             key_file=certs.client_key)
    with pytest.raises(ConfigError, match=r"upload.key_file: private key .* mode 0640"):
        HttpTransport(config)
    os.chmod(certs.client_key, 0o604)
    with pytest.raises(ConfigError, match=r"mode 0604"):
        client_context(config)
    os.chmod(certs.client_key, 0o600)
    check_key_permissions(certs.client_key)
    assert client_context(config).verify_mode == ssl.CERT_REQUIRED
    os.chmod(certs.client_key, 0o400)
    HttpTransport(config)


def test_tls_config_errors_name_the_key(certs: Certs, tmp_path: Path) -> None:
    url = "https://127.0.0.1:1/"
    with pytest.raises(ConfigError, match=r"^upload.key_file: required .* upload.cert_file"):
        client_context(TransportConfig(url, cert_file=certs.client_cert))
    with pytest.raises(ConfigError, match=r"^upload.cert_file: required .* upload.key_file"):
        client_context(TransportConfig(url, key_file=certs.client_key))
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=rf"^upload.key_file: cannot read {missing}"):
        client_context(TransportConfig(url, cert_file=certs.client_cert, key_file=missing))
    with pytest.raises(ConfigError, match=rf"^upload.cert_file: cannot read {missing}"):
        client_context(TransportConfig(url, cert_file=missing, key_file=certs.client_key))
    with pytest.raises(ConfigError, match=rf"^upload.ca_file: cannot read {missing}"):
        client_context(TransportConfig(url, ca_file=missing))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^upload.ca_file: .* no usable PEM"):
        client_context(TransportConfig(url, ca_file=junk))
    ctx = client_context(TransportConfig(url))
    assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_a_path_http_client_cannot_send_is_a_config_error() -> None:
    # http.client refused these at every send: a UnicodeEncodeError escaping send(),
    # or InvalidURL retried for ever as a "broken HTTP response".
    for url in ("https://127.0.0.1:1/bätches", "https://127.0.0.1:1/v1/my batches",
                "https://127.0.0.1:1/v1?q=a\x7fb"):
        with pytest.raises(ConfigError, match=r"^upload.url: the path .* must be ASCII"):
            transport(url)
    transport("https://127.0.0.1:1/v1/my%20batches?fleet=7")


class RawPeer:
    """One keep-alive connection on 127.0.0.1, answering each request with scripted
    bytes, sent in parts with a pause between them: what HttpPeer cannot say."""

    def __init__(self, *answers: tuple[bytes, ...]) -> None:
        self.answers = list(answers)
        self.keys: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/batches"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as rfile:
            for parts in self.answers:
                headers = {}
                while (line := rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                if not headers:
                    return
                rfile.read(int(headers["content-length"]))
                self.keys.append(headers["idempotency-key"])
                for i, part in enumerate(parts):
                    if i:
                        time.sleep(0.3)
                    conn.sendall(part)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5.0)


def test_interim_1xx_answers_are_skipped_not_taken_for_the_answer() -> None:
    # http.client returned the 103 as the answer to b1 and left b1's real answer on the
    # connection; b2, sent at once, read it as its own: a 201 for b1 deleted b2, which
    # the receiver had answered 503.
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
    processing = b"HTTP/1.1 102 Processing\r\n\r\n"
    created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    busy = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
    peer = RawPeer((early, processing + created), (early, busy), (created,))
    try:
        t = transport(peer.url)
        t.send("b1", "v", PAYLOAD)
        with pytest.raises(TransientUploadError, match=r"HTTP 503"):
            t.send("b2", "v", PAYLOAD)
        t.send("b2", "v", PAYLOAD)  # the same connection, still in step
        t.close()
        assert peer.keys == ["b1", "b2", "b2"]
    finally:
        peer.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_key_owned_by_another_user_is_refused(certs: Certs, tmp_path: Path) -> None:
    # Mode 0600 said nothing when the key was another (unprivileged) user's: a service
    # run as root read it, and so could its owner, who may chmod it at will.
    os.chown(certs.client_key, 65534, 65534)
    link = tmp_path / "via-link.key"
    link.symlink_to(certs.client_key)
    for path in (certs.client_key, link):
        with pytest.raises(ConfigError, match=r"^upload.key_file: private key .* belongs to "
                                              r"user id 65534"):
            check_key_permissions(path)
        with pytest.raises(ConfigError, match=r"belongs to user id 65534"):
            transport("https://127.0.0.1:1/", cert_file=certs.client_cert, key_file=path)
    os.chown(certs.client_key, os.geteuid(), os.getegid())
    check_key_permissions(link)  # a link to a good key is that key
    os.chmod(certs.client_key, 0o644)
    with pytest.raises(ConfigError, match=r"mode 0644"):
        check_key_permissions(link)


def test_parse_retry_after_never_raises_on_odd_values() -> None:
    """Unicode digits and absurdly long numbers used to escape send() as ValueError
    and OverflowError, outside the two-class contract."""
    assert parse_retry_after("²", 0) is None
    assert parse_retry_after("9" * 400, 0) == 1e11
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT", 0) is None
