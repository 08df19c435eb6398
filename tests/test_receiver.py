"""The reference receiver: storage, checks, HTTP(S) with mTLS, MQTT through a real
Mosquitto (restarts included), the summary, and the command as a process.

Real peers only, on loopback, every wait bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trustme
from helpers.broker import Broker
from helpers.receiver_batches import (
    NAN_WITH_PAYLOAD,
    OTHER_VEHICLE,
    VEHICLE,
    Publisher,
    encoded,
    get_json,
    https_connection,
    make_batch,
    post,
    start_cli,
    wait_for,
)

from agent.batch import batch_id, decode, encode
from agent.batch.wire import CONTENT_TYPE
from agent.cli import receive_cmd
from agent.cli.main import main
from agent.errors import ReceiverError
from agent.receiver.core import Receiver
from agent.receiver.database import ReceiverDb
from agent.receiver.http_server import HttpReceiver, serve
from agent.receiver.listen import TlsFiles, bind_address, parse_listen
from agent.receiver.mqtt_subscriber import subscribe
from agent.receiver.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0  # seconds: the bound of every wait for something to arrive


def value_types(samples: list[Any]) -> list[tuple[type, type, type]]:
    return [(type(s.timestamp), type(s.value), type(s.flags)) for s in samples]


def bits(x: float) -> bytes:
    return struct.pack(">d", x)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver.open(tmp_path / "received")
    yield r
    r.close()


@pytest.fixture
def http_server(receiver: Receiver) -> Iterator[HttpReceiver]:
    server = serve(receiver, "127.0.0.1", 0, max_bytes=64 * 1024)
    yield server
    server.close()


@pytest.fixture
def conn(http_server: HttpReceiver) -> Iterator[http.client.HTTPConnection]:
    c = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)
    yield c
    c.close()


def reforge_envelope(payload: bytes, **changes: Any) -> bytes:
    """``payload`` with envelope fields changed and a valid CRC again (a well-formed lie)."""
    (env_len,) = struct.unpack_from(">I", payload, 6)
    envelope = msgpack.unpackb(payload[10:10 + env_len])
    envelope.update(changes)
    packed = msgpack.packb(envelope)
    body = payload[10 + env_len:-4]
    data = payload[:6] + struct.pack(">I", len(packed)) + packed + body
    return data + struct.pack(">I", zlib.crc32(data))


# -- storage and the core -----------------------------------------------------------------


def test_stored_batch_reads_back_exactly(receiver: Receiver) -> None:
    batch, payload = encoded(0)
    outcome = receiver.accept(payload, batch.batch_id, "http")
    assert (outcome.status, outcome.batch_id, outcome.vehicle) == ("stored", batch.batch_id,
                                                                  VEHICLE)
    back = receiver.db.samples(batch_id=batch.batch_id)
    assert len(back) == len(batch.samples)  # NaN != NaN: compare bits and types instead
    assert value_types(back) == value_types(batch.samples)
    for got, sent in zip(back, batch.samples, strict=True):
        if isinstance(sent.value, float):
            assert bits(got.value) == bits(sent.value)
        else:
            assert got.value == sent.value
        assert bits(got.timestamp) == bits(sent.timestamp)
        assert got[1:4] + got[5:] == sent[1:4] + sent[5:]
    odd = {s.signal: s.value for s in back if s.message == "Odd"}
    assert bits(odd["Nan"]) == bits(NAN_WITH_PAYLOAD)
    assert bits(odd["NegZero"]) == bits(-0.0)
    assert odd["Big"] == 2**70 and type(odd["Big"]) is int
    assert odd["Flag"] is True and type(odd["Whole"]) is float
    assert receiver.db.batch(batch.batch_id) == batch  # the model's bit-exact equality
    assert receiver.db.batch(batch.batch_id) == decode(payload)
    assert receiver.db.events() == batch.events and receiver.db.frames() == batch.frames
    rec = receiver.db.batches()[0]
    assert (rec.seq_first, rec.seq_last, rec.samples, rec.events, rec.frames, rec.bytes,
            rec.transport) == (0, 9, len(batch.samples), 2, 3, len(payload), "http")
    assert rec.ts_first == -0.0 and rec.ts_last == batch.time_range[1]  # type: ignore[index]


def test_duplicates_are_counted_not_stored(receiver: Receiver) -> None:
    batch, payload = encoded(1)
    # the same batch compressed differently is still the same batch
    again = encode(batch, level=19) if "level" in encode.__code__.co_varnames else payload
    assert receiver.accept(payload, batch.batch_id, "http").status == "stored"
    assert receiver.accept(again, batch.batch_id, "mqtt").status == "duplicate"
    assert receiver.accept(payload, None, "http").status == "duplicate"
    assert len(receiver.db.samples()) == len(batch.samples)
    assert len(receiver.db.batches()) == 1
    assert receiver.stats()["total"] == {"received": 3, "stored": 1, "duplicates": 2,
                                         "invalid": 0}


def test_invalid_batches_are_counted_and_nothing_is_stored(receiver: Receiver) -> None:
    batch, payload = encoded(2)
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0x40
    other = make_batch(3).batch_id
    cases = {
        "truncated": (payload[:-10], None),
        "corrupt": (bytes(corrupt), None),
        "empty": (b"", None),
        "not a batch": (b"hello, world" * 10, None),
        "claimed id differs": (payload, other),
        "forged envelope id": (reforge_envelope(payload, batch_id=other), None),
        "forged envelope vehicle": (reforge_envelope(payload, vehicle_id=OTHER_VEHICLE), None),
    }
    for name, (data, claimed) in cases.items():
        outcome = receiver.accept(data, claimed, "http")
        assert outcome.status == "invalid", name
        assert outcome.reason, name
    assert "claimed batch id" in receiver.accept(payload, other, "http").reason
    assert receiver.db.batches() == [] and receiver.db.samples() == []
    assert receiver.db.events() == [] and receiver.db.frames() == []
    total = receiver.stats()["total"]
    assert total == {"received": 8, "stored": 0, "duplicates": 0, "invalid": 8}
    # a wrong claimed id is counted for the vehicle; a batch that does not read is not
    per_vehicle = receiver.stats()["vehicles"]
    assert (per_vehicle[""]["invalid"], per_vehicle[VEHICLE]["invalid"]) == (6, 2)
    # and the good batch is still accepted afterwards
    assert receiver.accept(payload, batch.batch_id, "http").status == "stored"


def test_concurrent_accepts_store_each_batch_once(receiver: Receiver) -> None:
    payloads = [encoded(i)[1] for i in range(6)]
    errors: list[BaseException] = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            for p in payloads:
                status = receiver.accept(p, None, "http").status
                with lock:
                    outcomes.append(status)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors
    assert outcomes.count("stored") == 6 and outcomes.count("duplicate") == 42
    assert len(receiver.db.batches()) == 6
    assert len(receiver.db.samples()) == sum(len(decode(p).samples) for p in payloads)


def test_database_survives_reopen_and_refuses_other_files(tmp_path: Path) -> None:
    batch, payload = encoded(0)
    r = Receiver.open(tmp_path / "d")
    r.accept(payload, None, "http")
    r.close()
    with ReceiverDb(tmp_path / "d", readonly=True) as db:
        assert db.batch(batch.batch_id) == batch
        with pytest.raises(ReceiverError, match="read-only"):
            db.count_invalid(None)
    with pytest.raises(ReceiverError, match="no receiver database"):
        ReceiverDb(tmp_path / "nothing", readonly=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "receiver.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReceiverError):
        ReceiverDb(tmp_path / "bad")


# -- HTTP -----------------------------------------------------------------------------------


def test_http_stored_then_duplicate(http_server: HttpReceiver,
                                    conn: http.client.HTTPConnection,
                                    receiver: Receiver) -> None:
    batch, payload = encoded(0)
    status, body = post(conn, payload, batch.batch_id)
    assert (status, body) == (201, {"status": "stored", "batch_id": batch.batch_id})
    # the same connection (keep-alive), any path
    status, body = post(conn, payload, batch.batch_id, path="/anything/else")
    assert (status, body) == (200, {"status": "duplicate", "batch_id": batch.batch_id})
    status, stats = get_json(conn, "/stats")
    assert status == 200
    assert stats["total"] == {"received": 2, "stored": 1, "duplicates": 1, "invalid": 0}
    assert stats["vehicles"][VEHICLE]["duplicates"] == 1
    assert receiver.db.batch(batch.batch_id) == batch
    assert receiver.db.batches()[0].transport == "http"
    assert get_json(conn, "/nothing")[0] == 404


def test_http_refuses_bad_batches_with_400(conn: http.client.HTTPConnection,
                                           receiver: Receiver) -> None:
    batch, payload = encoded(0)
    corrupt = bytearray(payload)
    corrupt[-20] ^= 1
    for data, key in ((payload[: len(payload) // 2], batch.batch_id),
                      (bytes(corrupt), batch.batch_id),
                      (payload, make_batch(1).batch_id)):
        status, body = post(conn, data, key)
        assert status == 400
        assert body["status"] == "invalid" and body["reason"]
    assert receiver.db.batches() == [] and receiver.db.samples() == []
    assert receiver.stats()["total"]["invalid"] == 3
    assert post(conn, payload, batch.batch_id)[0] == 201


def test_http_415_413_411(http_server: HttpReceiver, receiver: Receiver) -> None:
    _batch, payload = encoded(0)

    def fresh() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)

    c = fresh()
    assert post(c, payload, None, content_type="application/octet-stream")[0] == 415
    c.close()
    c = fresh()
    assert post(c, payload, None, content_type=CONTENT_TYPE + "; charset=binary")[0] == 201
    c.close()
    c = fresh()
    big = b"\0" * (64 * 1024 + 1)
    assert post(c, big, None)[0] == 413
    c.close()

    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", http_server.port), timeout=10) as s:
            s.sendall(request)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    no_length = raw(b"POST /batches HTTP/1.1\r\nHost: x\r\nContent-Type: " + CONTENT_TYPE.encode()
                    + b"\r\nConnection: close\r\n\r\n")
    assert no_length.startswith(b"HTTP/1.1 411 ")
    chunked = raw(b"POST /batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: " + CONTENT_TYPE.encode() + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 ")
    expect = raw(b"POST /batches HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 99999999\r\nContent-Type: " + CONTENT_TYPE.encode()
                 + b"\r\n\r\n")
    assert expect.startswith(b"HTTP/1.1 413 ")  # refused before the body, no 100 Continue
    assert receiver.stats()["total"] == {"received": 1, "stored": 1, "duplicates": 0,
                                         "invalid": 0}


def test_plain_http_only_on_loopback(receiver: Receiver) -> None:
    with pytest.raises(ReceiverError, match="refusing plain HTTP"):
        serve(receiver, "0.0.0.0", 0)
    with pytest.raises(ReceiverError, match="HOST:PORT"):
        parse_listen("8080")
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    with serve(receiver, "localhost", 0) as server:
        assert server.port > 0


def test_slow_clients_are_cut_off(receiver: Receiver) -> None:
    server = serve(receiver, "127.0.0.1", 0, timeout=0.5, request_timeout=1.0)
    try:
        # headers that never end, and a body that never comes
        for request in (b"POST /batches HTTP/1.1\r\nHost: x\r\n",
                        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Type: " + CONTENT_TYPE.encode()
                        + b"\r\nContent-Length: 1000\r\n\r\nBVRD"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(request)
                started = time.monotonic()
                # trickle a byte every 0.3 s: each read is quick, the whole is too slow
                s.settimeout(0.3)
                closed = False
                while time.monotonic() - started < 8:
                    try:
                        if s.recv(65536) == b"":
                            closed = True
                            break
                    except TimeoutError:
                        try:
                            s.send(b"x" if b"Length" in request else b"X-Slow: 1\r\n")
                        except OSError:
                            closed = True
                            break
                    except OSError:
                        closed = True
                        break
                assert closed, request
                assert time.monotonic() - started < 5
    finally:
        server.close()
    assert receiver.stats()["total"]["received"] == 0


def test_close_is_prompt_and_finishes_requests(receiver: Receiver) -> None:
    server = serve(receiver, "127.0.0.1", 0)  # default timeouts: 30 s
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    batch, payload = encoded(0)
    assert post(idle, payload, batch.batch_id)[0] == 201  # keep-alive connection, now idle
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 3
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        post(idle, encoded(1)[1], None)
    idle.close()
    assert receiver.db.batches()[0].batch_id == batch.batch_id


# -- HTTPS ---------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca_file", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca_file"]))
    for i, pem in enumerate(server_cert.cert_chain_pems):
        pem.write_to_path(str(files["cert"]), append=i > 0)
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    return {"ca": ca, **files}


def client_context(pki: dict[str, Any], with_cert: bool = False,
                   ca: trustme.CA | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca_file"]))
    if with_cert:
        (ca or pki["ca"]).issue_cert("vehicle-1@fleet").configure_cert(ctx)
    return ctx


def test_https_stores_and_dedupes(pki: dict[str, Any], receiver: Receiver) -> None:
    with serve(receiver, "127.0.0.1", 0, tls=TlsFiles(pki["cert"], pki["key"])) as server:
        assert server.url.startswith("https://")
        c = https_connection(server.port, client_context(pki))
        batch, payload = encoded(0)
        assert post(c, payload, batch.batch_id)[0] == 201
        assert post(c, payload, batch.batch_id)[0] == 200
        c.close()
        # a client that does not trust the server's CA gets nowhere
        with pytest.raises(ssl.SSLError):
            post(https_connection(server.port, ssl.create_default_context()), payload, None)
    assert receiver.db.batches()[0].transport == "https"
    assert receiver.db.batch(batch.batch_id) == batch


def test_https_mutual_tls(pki: dict[str, Any], receiver: Receiver) -> None:
    tls = TlsFiles(pki["cert"], pki["key"], client_ca=pki["ca_file"])
    batch, payload = encoded(0)
    with serve(receiver, "127.0.0.1", 0, tls=tls) as server:
        for ctx in (client_context(pki), client_context(pki, True, ca=trustme.CA())):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                post(https_connection(server.port, ctx), payload, batch.batch_id)
        assert receiver.db.batches() == []
        c = https_connection(server.port, client_context(pki, with_cert=True))
        assert post(c, payload, batch.batch_id)[0] == 201
        c.close()
    assert receiver.db.batch(batch.batch_id) == batch
    with pytest.raises(ReceiverError, match="--cert"):
        serve(receiver, "127.0.0.1", 0, tls=TlsFiles(pki["ca_file"], pki["ca_file"]))


def test_https_off_loopback_needs_a_client_ca_or_allow_anonymous(
        pki: dict[str, Any], receiver: Receiver, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    anonymous = TlsFiles(pki["cert"], pki["key"])
    with pytest.raises(ReceiverError, match=r"refusing HTTPS without client certificates on "
                       r"0\.0\.0\.0 .*--client-ca.*--allow-anonymous"):
        serve(receiver, "0.0.0.0", 0, tls=anonymous)
    cli = ["receive", "--listen", "0.0.0.0:0", "--cert", str(pki["cert"]), "--key",
           str(pki["key"]), "--dir", str(tmp_path / "cli")]
    assert main(cli) == 1
    assert main(["receive", "--listen", "127.0.0.1:0", "--allow-anonymous"]) == 1  # not HTTPS
    # tests bind loopback only: the address check itself says what serve() would bind
    with caplog.at_level(logging.WARNING, "agent.receiver"):
        assert bind_address("0.0.0.0", 0, anonymous, allow_anonymous=True) == (
            socket.AF_INET, "0.0.0.0")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "accepts anyone (--allow-anonymous)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "agent.receiver"):
        mtls = TlsFiles(pki["cert"], pki["key"], client_ca=pki["ca_file"])
        assert bind_address("0.0.0.0", 0, mtls)[1] == "0.0.0.0"
        assert bind_address("127.0.0.1", 0, anonymous)[1] == "127.0.0.1"  # loopback: allowed
    assert caplog.records == []


def test_the_receiver_does_not_import_the_upload_side() -> None:
    modules = ["agent.receiver", *(f"agent.receiver.{m}" for m in (
        "core", "database", "http_server", "listen", "mqtt_subscriber", "summary", "schema",
        "values")), "agent.cli.receive_cmd"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.startswith('agent.upload')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- MQTT ----------------------------------------------------------------------------------


def stored_count(receiver: Receiver) -> int:
    return int(receiver.stats()["total"]["stored"])


def test_mqtt_stores_and_survives_a_broker_restart(broker: Broker, receiver: Receiver) -> None:
    sub = subscribe(receiver, broker.url, client_id="receiver-under-test")
    publisher = Publisher(broker.port)
    try:
        assert sub.wait_subscribed(WAIT)
        batches = [encoded(i) for i in range(20)]
        for batch, payload in batches[:5]:
            publisher.publish(payload, batch.batch_id)
        wait_for(lambda: stored_count(receiver) == 5, what="the first 5 batches")
        # a burst the receiver is still working through when the broker goes down
        for batch, payload in batches[5:12]:
            publisher.publish(payload, batch.batch_id)
        broker.restart()
        for batch, payload in batches[12:]:
            publisher.publish(payload, batch.batch_id)
        wait_for(lambda: stored_count(receiver) == 20, what="all 20 batches")
        # a retried batch (same id) is a duplicate, not a second copy
        publisher.publish(batches[0][1], batches[0][0].batch_id)
        wait_for(lambda: receiver.stats()["total"]["duplicates"] >= 1, what="the duplicate")
    finally:
        publisher.close()
        sub.close()
    ids = [b.batch_id for b in receiver.db.batches()]
    assert sorted(ids) == sorted(b.batch_id for b, _ in batches)  # nothing lost or doubled
    assert len(receiver.db.samples()) == sum(len(b.samples) for b, _ in batches)
    for batch, _ in batches:
        assert receiver.db.batch(batch.batch_id) == batch
    assert {r.transport for r in receiver.db.batches()} == {"mqtt"}


def test_mqtt_queued_while_away_arrive_later(broker: Broker, tmp_path: Path) -> None:
    receiver = Receiver.open(tmp_path / "r")
    try:
        sub = subscribe(receiver, broker.url, client_id="away-receiver")
        assert sub.wait_subscribed(WAIT)  # the persistent session now exists
        sub.close()
        publisher = Publisher(broker.port)
        batches = [encoded(i) for i in range(4)]
        for batch, payload in batches:
            publisher.publish(payload, batch.batch_id)
        publisher.publish(b"garbage, not a batch", None)
        publisher.close()
        broker.restart()  # queued messages survive the broker's restart too
        assert stored_count(receiver) == 0
        sub = subscribe(receiver, broker.url, client_id="away-receiver")
        try:
            wait_for(lambda: stored_count(receiver) == 4, what="the queued batches")
            wait_for(lambda: receiver.stats()["total"]["invalid"] == 1, what="the garbage")
        finally:
            sub.close()
        # every message was acknowledged: the next session gets nothing again. (The pause:
        # the last PUBACKs are written before the DISCONNECT, but a broker that takes over
        # the client id before reading them would send those messages again.)
        time.sleep(0.5)
        sub = subscribe(receiver, broker.url, client_id="away-receiver")
        try:
            assert sub.wait_subscribed(WAIT)
            time.sleep(1.0)
        finally:
            sub.close()
        assert receiver.stats()["total"] == {"received": 5, "stored": 4, "duplicates": 0,
                                             "invalid": 1}
    finally:
        receiver.close()


def test_mqtt_id_property_must_match(broker: Any, receiver: Receiver) -> None:
    sub = subscribe(receiver, broker.url, client_id="mismatch-receiver")
    publisher = Publisher(broker.port)
    try:
        assert sub.wait_subscribed(WAIT)
        batch, payload = encoded(0)
        publisher.publish(payload, make_batch(1).batch_id)  # claims another id
        wait_for(lambda: receiver.stats()["total"]["invalid"] == 1, what="the mismatch")
        publisher.publish(payload, None)  # MQTT 3.1.1 style: the envelope alone
        wait_for(lambda: stored_count(receiver) == 1, what="the batch")
    finally:
        publisher.close()
        sub.close()
    assert receiver.db.batch(batch.batch_id) == batch


# -- summary -------------------------------------------------------------------------------


def test_summary(receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        receiver.accept(encoded(i)[1], None, "http")
    receiver.accept(encoded(0, OTHER_VEHICLE, odd_values=False)[1], None, "mqtt")
    receiver.accept(encoded(0)[1], None, "http")
    receiver.accept(b"junk", None, "http")
    summary = summarize(receiver.db)
    assert summary.counters == {"received": 6, "stored": 4, "duplicates": 1, "invalid": 1}
    by_vehicle = {v.vehicle: v for v in summary.vehicles}
    v = by_vehicle[VEHICLE]
    assert (v.batches, v.events, v.frames) == (3, 6, 9)
    rpm = next(s for s in v.signals if (s.message, s.signal) == ("Engine", "Rpm"))
    assert (rpm.count, rpm.unit, rpm.minimum, rpm.maximum) == (15, "rpm", 800.25, 801.75)
    assert rpm.first == make_batch(0).samples[0].timestamp
    load = next(s for s in v.signals if s.signal == "Load")
    assert (load.minimum, load.maximum) == (12, 16) and type(load.minimum) is int
    nan = next(s for s in v.signals if s.signal == "Nan")
    assert (nan.count, nan.minimum, nan.maximum) == (3, None, None)
    assert by_vehicle[""].counters["invalid"] == 1

    receiver.close()
    directory = str(tmp_path / "received")
    assert main(["receive", "--summary", directory]) == 0
    text = capsys.readouterr().out
    assert f"vehicle {VEHICLE}" in text and f"vehicle {OTHER_VEHICLE}" in text
    assert "6 received: 4 stored, 1 duplicates, 1 invalid" in text
    assert re.search(r"can0\s+Engine\.Rpm\s+15\s+2026-01-01 00:00:00\.000\s+"
                     r"2026-01-01 00:02:00\.040\s+800\.25\s+801\.75\s+rpm", text), text
    assert main(["receive", "--summary", directory, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counters"]["stored"] == 4
    vehicles = {v["vehicle"]: v for v in data["vehicles"]}
    inf = next(s for s in vehicles[VEHICLE]["signals"] if s["signal"] == "Inf")
    assert inf["minimum"] == "Infinity"
    assert main(["receive", "--summary", str(tmp_path / "none")]) == 1
    assert "no receiver database" in capsys.readouterr().err
    assert receive_cmd.render(summarize(ReceiverDb(directory, readonly=True))).startswith(
        "receiver database")


# -- the command ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_http_and_mqtt_until_a_signal(broker: Any, tmp_path: Path, sig: int) -> None:
    directory = tmp_path / "cli"
    cli = start_cli("--listen", "127.0.0.1:0", "--mqtt", broker.url, "--dir", str(directory),
                    "--client-id", "cli-receiver")
    try:
        wait_for(lambda: any("receiving on http" in x for x in cli.out), what="the URL")
        wait_for(lambda: any("subscribed to" in x for x in cli.out), what="the subscription")
        url = next(x for x in cli.out if "receiving on http" in x).split()[-1]
        port = int(url.rsplit(":", 1)[1])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        http_batch, http_payload = encoded(0)
        assert post(c, http_payload, http_batch.batch_id)[0] == 201
        c.close()
        publisher = Publisher(broker.port)
        mqtt_batch, mqtt_payload = encoded(1)
        try:
            publisher.publish(mqtt_payload, mqtt_batch.batch_id)
        finally:
            publisher.close()

        def arrived() -> bool:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                return bool(get_json(c, "/stats")[1]["total"]["stored"] == 2)
            finally:
                c.close()

        wait_for(arrived, what="both batches")
    finally:
        rc, err = cli.stop(sig)
    assert rc == 0, err
    assert "stopped; 2 received: 2 stored" in err
    with ReceiverDb(directory, readonly=True) as db:
        assert db.batch(http_batch.batch_id) == http_batch
        assert db.batch(mqtt_batch.batch_id) == mqtt_batch
        assert {r.transport for r in db.batches()} == {"http", "mqtt"}
    out = subprocess.run([sys.executable, "-m", "agent", "receive", "--summary", str(directory)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "2 received: 2 stored" in out.stdout


def test_cli_says_why_it_cannot_reach_the_broker_and_keeps_trying(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "mosquitto")  # its port is chosen, nothing listens there yet
    cli = start_cli("--mqtt", f"mqtt://user:s3cret@127.0.0.1:{broker.port}", "--dir",
                    str(tmp_path / "received"), "--client-id", "patient-receiver")
    try:
        wait_for(lambda: any("cannot connect" in x for x in cli.err), what="a word about it")
        line = next(x for x in cli.err if "cannot connect" in x)
        assert "WARNING" in line and f"mqtt://127.0.0.1:{broker.port}: connection refused" in line
        assert "s3cret" not in line and not any("subscribed" in x for x in cli.out)
        broker.start()  # late: the receiver is still trying
        try:
            wait_for(lambda: any("subscribed to" in x for x in cli.out), what="the subscription")
        finally:
            broker.stop()
    finally:
        rc, err = cli.stop()
    assert rc == 0, err
    assert re.search(r"connected to mqtt://127\.0\.0\.1:\d+ after \d+ failed attempts", err)
    assert "s3cret" not in err + "".join(cli.out)


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "--listen", "0.0.0.0:0", "--dir", str(tmp_path / "x")]) == 1
    assert "refusing plain HTTP" in capsys.readouterr().err
    assert main(["receive", "--dir", str(tmp_path / "x")]) == 1
    assert "nothing to do" in capsys.readouterr().err
    assert main(["receive", "--listen", "127.0.0.1:0", "--cert", "c.pem"]) == 1
    assert "--cert and --key" in capsys.readouterr().err
    assert main(["receive", "--summary", str(tmp_path), "--listen", "127.0.0.1:1"]) == 1


def test_batch_id_is_the_dedupe_key() -> None:
    # the receiver's key is the documented id (docs/batch-format.md §6 example)
    assert batch_id("a", 0, 0) == "044ff7947586322d7d4c819512576918"


def test_http_content_length_must_be_ascii_digits(http_server: HttpReceiver,
                                                  receiver: Receiver) -> None:
    # Headers are read as Latin-1, where "\xb2" (superscript two) is a digit to
    # str.isdigit() but not to int(): the handler raised and the client got no answer.
    for length in (b"\xb2", b"1\xb9"):
        with socket.create_connection(("127.0.0.1", http_server.port), timeout=10) as s:
            s.sendall(b"POST /batches HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      + CONTENT_TYPE.encode() + b"\r\nContent-Length: " + length
                      + b"\r\n\r\nxx")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert receiver.stats()["total"]["received"] == 0


def test_cli_unusable_dir_leaves_the_signal_handlers_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The handlers were installed before the database was opened, outside the try
    # that restores them: in-process callers were left with SIGINT/SIGTERM swallowed.
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    assert main(["receive", "--listen", "127.0.0.1:0", "--dir", str(not_a_dir)]) == 1
    assert str(not_a_dir) in capsys.readouterr().err
    assert {sig: signal.getsignal(sig) for sig in before} == before
