"""MqttTransport against a real Mosquitto (tests/helpers/broker.py) and, for PUBACK and
CONNACK reason codes Mosquitto cannot be made to send, a tiny scripted MQTT 5 peer."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.broker import Broker, BrokerTls
from helpers.certs import Certs, make_certs
from helpers.mqtt_peer import MqttPeer
from helpers.subscriber import Subscriber

from agent.errors import ConfigError, RefusedUploadError, TransientUploadError
from agent.upload.mqtt import MqttTransport
from agent.upload.transport import TransportConfig, open_transport

PAYLOAD = bytes(range(256)) * 200  # 51 200 bytes, every byte value
VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"


def transport(url: str, **kw: object) -> MqttTransport:
    kw.setdefault("timeout", 2.0)
    return MqttTransport(TransportConfig(url, **kw))  # type: ignore[arg-type]


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port)
    yield sub
    sub.close()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


def configured_broker(directory: Path, *lines: str, tls: BrokerTls | None = None) -> Broker:
    """A broker with extra configuration lines. Run as root, Mosquitto drops to the
    ``mosquitto`` user, which cannot read pytest's private temporary directory."""
    b = Broker(directory, tls=tls)
    conf = b.conf.read_text()
    if os.geteuid() == 0 and "\nuser " not in conf:
        lines += ("user root",)
    b.conf.write_text(conf + "".join(f"{line}\n" for line in lines))
    return b.start()


def tls_broker(tmp_path: Path, certs: Certs, require_client_cert: bool = False) -> Broker:
    return configured_broker(tmp_path / "tls-broker", tls=BrokerTls(
        certs.ca_file, certs.server_cert, certs.server_key, require_client_cert))


def test_mqtt5_topic_payload_batch_id(broker: Broker, subscriber: Subscriber) -> None:
    t = open_transport(TransportConfig(broker.url, timeout=2.0))
    assert isinstance(t, MqttTransport)
    t.send("01J9Z3BATCH", VEHICLE, PAYLOAD)
    t.send("01J9Z3BATCH2", VEHICLE, b"")
    t.close()
    first, second = subscriber.get(), subscriber.get()
    assert (first.topic, first.payload, first.user_properties) == \
        (f"bavard/{VEHICLE}/batch", PAYLOAD, (("batch-id", "01J9Z3BATCH"),))
    assert (second.payload, second.user_properties) == (b"", (("batch-id", "01J9Z3BATCH2"),))


def test_mqtt311(broker: Broker) -> None:
    sub = Subscriber(broker.port, version=311)
    try:
        t = transport(broker.url, mqtt_version=311, topic="fleet/{vehicle}", client_id="box-7")
        t.send("b1", VEHICLE, PAYLOAD)
        t.close()
        msg = sub.get()
        assert (msg.topic, msg.payload, msg.user_properties) == (f"fleet/{VEHICLE}", PAYLOAD, ())
    finally:
        sub.close()


def test_one_connection_for_many_sends(broker: Broker, subscriber: Subscriber) -> None:
    t = transport(broker.url)
    for i in range(5):
        t.send(f"b{i}", VEHICLE, PAYLOAD)
    t.close()
    assert [subscriber.get().user_properties[0][1] for _ in range(5)] == \
        [f"b{i}" for i in range(5)]


def test_broker_stopped_then_restarted(broker: Broker, subscriber: Subscriber) -> None:
    t = transport(broker.url, timeout=1.0)
    t.send("b1", VEHICLE, PAYLOAD)
    broker.stop()
    start = time.monotonic()
    with pytest.raises(TransientUploadError, match=r"connection (refused|lost)"):
        t.send("b2", VEHICLE, PAYLOAD)
    assert time.monotonic() - start < 2.0
    broker.start()
    t.send("b2", VEHICLE, PAYLOAD)
    t.close()
    got = [subscriber.get().user_properties for _ in range(2)]
    assert got == [(("batch-id", "b1"),), (("batch-id", "b2"),)]


def test_no_matching_subscribers_is_retried_not_lost(tmp_path: Path) -> None:
    """A broker without persistence crashed and forgot the receiver's session; the agent
    is back before the receiver: PUBACK 0x10, and the batch must stay with the agent."""
    b = Broker(tmp_path / "mosquitto", persistence=False).start()
    sub = Subscriber(b.port)
    t = transport(b.url)
    try:
        t.send("b1", VEHICLE, PAYLOAD)
        assert sub.get().user_properties == (("batch-id", "b1"),)
        sub.close()
        b.restart(signal.SIGKILL)
        for _ in range(2):  # as often as it is tried: never taken as delivered
            with pytest.raises(TransientUploadError, match=r"No matching subscribers \(0x10\) "
                               r"for batch b2 .*no subscriber can receive it yet"):
                t.send("b2", VEHICLE, PAYLOAD)
        sub = Subscriber(b.port)  # the receiver subscribes again
        t.send("b2", VEHICLE, PAYLOAD)
        assert sub.get().user_properties == (("batch-id", "b2"),) and sub.nothing()
    finally:
        t.close()
        sub.close()
        b.stop()


def test_no_puback_is_transient_within_the_timeout(broker: Broker,
                                                  subscriber: Subscriber) -> None:
    t = transport(broker.url, timeout=0.5)
    t.send("b1", VEHICLE, PAYLOAD)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(TransientUploadError, match=r"no PUBACK for batch b2 within 0.5 s"):
            t.send("b2", VEHICLE, PAYLOAD)
        assert 0.4 < time.monotonic() - start < 1.5
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    t.send("b3", VEHICLE, PAYLOAD)  # a new connection, clean
    t.close()
    ids = set()
    for _ in range(3):
        ids.add(subscriber.get().user_properties[0][1])
    assert ids == {"b1", "b2", "b3"}  # b2 reached the broker before it froze


def test_close_unblocks_a_waiting_send(broker: Broker, subscriber: Subscriber) -> None:
    t = transport(broker.url, timeout=10.0)
    t.send("b1", VEHICLE, PAYLOAD)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        timer = threading.Timer(0.3, t.close)
        timer.start()
        start = time.monotonic()
        with pytest.raises(TransientUploadError, match=r"transport closed"):
            t.send("b2", VEHICLE, PAYLOAD)
        assert time.monotonic() - start < 1.5
        timer.join(5.0)
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    t.send("b3", VEHICLE, PAYLOAD)
    t.close()
    t.close()


def test_client_id_and_one_connection_for_many_sends() -> None:
    with MqttPeer() as peer:
        t = transport(peer.url)
        for i in range(3):
            t.send(f"b{i}", VEHICLE, PAYLOAD)
        t.close()
        t.send("b3", VEHICLE, PAYLOAD)
        t.close()
        t = transport(peer.url, client_id="box-7")
        t.send("b4", VEHICLE, PAYLOAD)
        t.close()
        assert peer.client_ids == [f"bavard-{VEHICLE}"] * 2 + ["box-7"]
        assert len(peer.published) == 5


def test_oversize_batch_is_refused_without_sending(broker: Broker,
                                                   subscriber: Subscriber) -> None:
    t = transport(broker.url, max_batch_bytes=100)
    with pytest.raises(RefusedUploadError, match=r"max_batch_bytes"):
        t.send("b1", VEHICLE, PAYLOAD)
    assert subscriber.nothing()


def test_broker_maximum_packet_size_is_refused_without_sending(tmp_path: Path) -> None:
    b = configured_broker(tmp_path / "small", "max_packet_size 20000")
    try:
        sub = Subscriber(b.port)
        t = transport(b.url)
        with pytest.raises(RefusedUploadError, match=r"over the broker's Maximum Packet Size "
                                                     r"\(20000\); not sent"):
            t.send("b1", VEHICLE, PAYLOAD)
        t.send("b2", VEHICLE, PAYLOAD[:10000])
        assert sub.get().user_properties == (("batch-id", "b2"),)
        t.close()
        sub.close()
    finally:
        b.stop()


def test_not_authorised_topic_is_transient_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    acl = tmp_path / "acl.conf"
    acl.write_text("topic write bavard/#\ntopic read bavard/#\n")
    b = configured_broker(tmp_path / "acl", f"acl_file {acl}")
    sub = Subscriber(b.plain_port, topic="bavard/#")
    try:
        t = transport(b.url, topic="elsewhere/{vehicle}")
        with caplog.at_level(logging.ERROR, "agent.upload"), \
                pytest.raises(TransientUploadError, match=r"PUBACK Not authorized \(0x87\)"):
            t.send("b1", VEHICLE, PAYLOAD)
        assert ["upload.topic" in r.getMessage() for r in caplog.records] == [True]
        t.close()
        transport(b.url).send("b2", VEHICLE, PAYLOAD)
        assert sub.get().user_properties == (("batch-id", "b2"),)
    finally:
        sub.close()
        b.stop()


@pytest.mark.parametrize(("code", "outcome"), [
    (0x00, None), (0x10, TransientUploadError),  # 0x10: no subscriber can have it yet
    (0x80, RefusedUploadError), (0x83, RefusedUploadError), (0x99, RefusedUploadError),
    (0x87, TransientUploadError), (0x90, TransientUploadError), (0x91, TransientUploadError),
    (0x97, TransientUploadError),
    (0x95, "lost"), (0x9F, "lost"),  # not PUBACK codes: paho drops the connection
])
def test_puback_reason_codes(code: int, outcome: type[Exception] | str | None) -> None:
    with MqttPeer() as peer:
        peer.script(code)
        t = transport(peer.url)
        if outcome is None:
            t.send("b1", VEHICLE, PAYLOAD)
        elif outcome == "lost":
            # paho drops the connection on the bad PUBACK, maybe before publish() returns
            with pytest.raises(TransientUploadError, match=r"connection lost: Protocol error|"
                                                           r"cannot publish batch b1: The client "
                                                           r"is not currently connected"):
                t.send("b1", VEHICLE, PAYLOAD)
        else:
            assert isinstance(outcome, type)
            with pytest.raises(outcome, match=rf"\(0x{code:02x}\) for batch b1"):
                t.send("b1", VEHICLE, PAYLOAD)
        t.send("b2", VEHICLE, PAYLOAD)  # and the next one goes
        t.close()
        assert peer.published == [(f"bavard/{VEHICLE}/batch", PAYLOAD)] * 2


@pytest.mark.parametrize("code", [0x86, 0x87, 0x8A, 0x89])
def test_connack_refused_is_transient_and_logged(
        code: int, caplog: pytest.LogCaptureFixture) -> None:
    with MqttPeer(connack=code) as peer:
        t = transport(peer.url)
        with caplog.at_level(logging.ERROR, "agent.upload"), \
                pytest.raises(TransientUploadError,
                match=rf"refused the connection: .*0x{code:02x}"):
            t.send("b1", VEHICLE, PAYLOAD)
        t.close()
        assert peer.published == []
    assert any("check the credentials" in r.getMessage() for r in caplog.records
               if r.name == "agent.upload.mqtt")


def test_mqtts_custom_ca_and_unknown_ca(tmp_path: Path, certs: Certs) -> None:
    b = tls_broker(tmp_path, certs)
    sub = Subscriber(b.plain_port)
    try:
        sub_ok = transport(b.url, ca_file=certs.ca_file)
        sub_ok.send("b1", VEHICLE, PAYLOAD)
        sub_ok.close()
        with pytest.raises(TransientUploadError, match=r"certificate verification failed"):
            transport(b.url, ca_file=certs.other_ca_file).send("b2", VEHICLE, PAYLOAD)
        assert sub.get().user_properties == (("batch-id", "b1"),) and sub.nothing()
    finally:
        sub.close()
        b.stop()


def test_mqtts_mutual_tls(tmp_path: Path, certs: Certs) -> None:
    b = tls_broker(tmp_path, certs, require_client_cert=True)
    sub = Subscriber(b.plain_port)
    try:
        t = transport(b.url, ca_file=certs.ca_file, cert_file=certs.client_cert,
                      key_file=certs.client_key)
        t.send("b1", VEHICLE, PAYLOAD)
        t.close()
        with pytest.raises(TransientUploadError):
            transport(b.url, ca_file=certs.ca_file).send("b2", VEHICLE, PAYLOAD)
        assert sub.get().user_properties == (("batch-id", "b1"),) and sub.nothing()
    finally:
        sub.close()
        b.stop()


def test_config_errors(certs: Certs) -> None:
    with pytest.raises(ConfigError, match=r"upload.mqtt_version: 4 is not 5 or 311"):
        transport("mqtt://127.0.0.1", mqtt_version=4)
    with pytest.raises(ConfigError, match=r"upload.topic"):
        transport("mqtt://127.0.0.1", topic="bavard/{vin}")
    with pytest.raises(ConfigError, match=r"upload.topic: 'bavard/\+/x' is not a topic"):
        transport("mqtt://127.0.0.1", topic="bavard/+/x")
    with pytest.raises(ConfigError, match=r"upload.url"):
        transport("mqtt://")
    os.chmod(certs.client_key, 0o644)
    with pytest.raises(ConfigError, match=r"upload.key_file: private key .* mode 0644"):
        transport("mqtts://127.0.0.1", cert_file=certs.client_cert, key_file=certs.client_key)


def test_stalled_peer_bounds_the_send_and_close() -> None:
    # A PUBLISH bigger than the socket buffers sticks when the peer stops reading (a
    # link that carries nothing any more). Paho's thread only ends once its queue is
    # written, so without cutting the socket the send waited for the keep-alive (60 s).
    big = PAYLOAD * 320  # 16 MB
    with MqttPeer(stall=True) as peer:
        t = transport(peer.url, timeout=0.5, max_batch_bytes=len(big))
        start = time.monotonic()
        with pytest.raises(TransientUploadError, match=r"no PUBACK for batch b1 within 0.5 s"):
            t.send("b1", VEHICLE, big)
        assert time.monotonic() - start < 2.0
        start = time.monotonic()
        t.close()
        assert time.monotonic() - start < 1.0


def test_close_during_a_stalled_publish_is_prompt() -> None:
    big = PAYLOAD * 320
    with MqttPeer(stall=True) as peer:
        t = transport(peer.url, timeout=30.0, max_batch_bytes=len(big))
        timer = threading.Timer(0.3, t.close)
        timer.start()
        start = time.monotonic()
        with pytest.raises(TransientUploadError, match=r"transport closed"):
            t.send("b1", VEHICLE, big)
        timer.join(5.0)
        assert not timer.is_alive()
        assert time.monotonic() - start < 2.0


def test_failed_sends_leave_no_sockets_or_threads() -> None:
    # Each failed attempt used to keep its socket and paho's socket pair open (a
    # session <-> client reference cycle) until a garbage collection came by.
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with MqttPeer(connack=None) as peer:
        t = transport(peer.url, timeout=0.05)
        threads, files = threading.active_count(), fds()
        gc.disable()
        try:
            for i in range(50):
                with pytest.raises(TransientUploadError, match=r"no CONNACK"):
                    t.send(f"b{i}", VEHICLE, PAYLOAD)
            t.close()
            deadline = time.monotonic() + 5.0  # the peer's threads see the EOF and end
            while (fds() > files or threading.active_count() > threads) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            # none left over (fewer is no leak: a thread of an earlier test may end meanwhile)
            assert fds() - files <= 0 and threading.active_count() - threads <= 0, (
                fds() - files, threading.active_count() - threads)
        finally:
            gc.enable()
        assert len(peer.client_ids) == 50
