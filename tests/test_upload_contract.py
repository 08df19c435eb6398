"""One contract for every upload transport, each against a real loopback receiver.

A receiver wraps the real peer (HttpPeer; Mosquitto plus a subscriber) behind
the few moves the contract needs: what arrived, go away and come back, accept
but never acknowledge (freeze), and a payload it refuses.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from helpers.broker import Broker
from helpers.http_peer import HANG, HttpPeer, Reply
from helpers.subscriber import Subscriber

from agent.errors import ConfigError, RefusedUploadError, TransientUploadError
from agent.upload.transport import Transport, TransportConfig, open_transport

PAYLOAD = os.urandom(48 * 1024)


class Receiver(Protocol):
    url: str

    def received(self, count: int) -> list[tuple[str, bytes]]: ...  # (batch id, payload)
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def refused_payload(self) -> bytes: ...


class HttpReceiver:
    def __init__(self) -> None:
        self.peer = HttpPeer().start()
        self.url = self.peer.url

    def received(self, count: int) -> list[tuple[str, bytes]]:
        return [(r.headers["Idempotency-Key"], r.body)
                for r in self.peer.wait_for_requests(count) if r.complete]

    def stop(self) -> None:
        self.peer.stop()

    def start(self) -> None:
        self.peer.start()

    def freeze(self) -> None:
        self.peer.script(Reply(action=HANG, hang=10.0))

    def thaw(self) -> None:
        pass  # a HANG is for one request

    def refused_payload(self) -> bytes:
        self.peer.script(Reply(413, body=b"too large"))
        return PAYLOAD

    def close(self) -> None:
        self.peer.stop()


class MqttReceiver:
    MAX_PACKET = 100_000

    def __init__(self, directory: Path) -> None:
        self.broker = Broker(directory)
        conf = self.broker.conf.read_text() + f"max_packet_size {self.MAX_PACKET}\n"
        if os.geteuid() == 0 and "\nuser " not in conf:
            conf += "user root\n"  # else Mosquitto drops to a user that cannot read tmp_path
        self.broker.conf.write_text(conf)
        self.broker.start()
        self.subscriber = Subscriber(self.broker.port)
        self.url = self.broker.url

    def received(self, count: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(count):
            msg = self.subscriber.get()
            out.append((dict(msg.user_properties)["batch-id"], msg.payload))
        return out

    def stop(self) -> None:
        self.broker.stop()

    def start(self) -> None:
        self.broker.start()

    def freeze(self) -> None:
        assert self.broker.proc is not None
        self.broker.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.broker.proc is not None:
            self.broker.proc.send_signal(signal.SIGCONT)

    def refused_payload(self) -> bytes:
        return PAYLOAD * 3  # over the broker's Maximum Packet Size

    def close(self) -> None:
        self.thaw()
        self.subscriber.close()
        self.broker.stop()


@pytest.fixture(params=["http", "mqtt"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    r = HttpReceiver() if request.param == "http" else MqttReceiver(tmp_path / "broker")
    try:
        yield r
    finally:
        r.close()


def connect(receiver: Receiver, timeout: float = 2.0, **kw: object) -> Transport:
    return open_transport(TransportConfig(receiver.url, timeout=timeout,  # type: ignore[arg-type]
                                          **kw))


class TestTransportContract:
    def test_payload_arrives_byte_identical_with_its_batch_id(self, receiver: Receiver) -> None:
        t = connect(receiver)
        t.send("01J9Z3A", "veh1", PAYLOAD)
        t.send("01J9Z3B", "veh1", PAYLOAD[::-1])
        t.send("01J9Z3C", "veh1", b"\x00")
        t.close()
        assert receiver.received(3) == [("01J9Z3A", PAYLOAD), ("01J9Z3B", PAYLOAD[::-1]),
                                         ("01J9Z3C", b"\x00")]

    def test_receiver_gone_is_transient_then_the_same_batch_goes(self,
                                                                 receiver: Receiver) -> None:
        t = connect(receiver, timeout=1.0)
        t.send("b1", "veh1", PAYLOAD)
        receiver.stop()
        start = time.monotonic()
        with pytest.raises(TransientUploadError):
            t.send("b2", "veh1", PAYLOAD)
        assert time.monotonic() - start < 2.0
        receiver.start()
        t.send("b2", "veh1", PAYLOAD)
        t.close()
        assert receiver.received(2) == [("b1", PAYLOAD), ("b2", PAYLOAD)]

    def test_refusal_is_refused_and_the_next_batch_goes(self, receiver: Receiver) -> None:
        t = connect(receiver)
        with pytest.raises(RefusedUploadError):
            t.send("b1", "veh1", receiver.refused_payload())
        t.send("b2", "veh1", PAYLOAD)
        t.close()
        assert receiver.received(1)[-1] == ("b2", PAYLOAD)

    def test_oversize_batch_is_refused_without_sending(self, receiver: Receiver) -> None:
        t = connect(receiver, max_batch_bytes=len(PAYLOAD) - 1)
        with pytest.raises(RefusedUploadError, match=r"upload.max_batch_bytes"):
            t.send("b1", "veh1", PAYLOAD)
        t.send("b2", "veh1", PAYLOAD[:1000])
        t.close()
        assert receiver.received(1) == [("b2", PAYLOAD[:1000])]

    def test_no_acknowledgement_in_time_is_transient(self, receiver: Receiver) -> None:
        t = connect(receiver, timeout=0.5)
        t.send("b1", "veh1", PAYLOAD)
        receiver.freeze()
        start = time.monotonic()
        try:
            with pytest.raises(TransientUploadError, match=r"within 0.5 s"):
                t.send("b2", "veh1", PAYLOAD)
            assert 0.4 < time.monotonic() - start < 1.5
        finally:
            receiver.thaw()
        t.send("b3", "veh1", PAYLOAD)
        t.close()
        assert {batch for batch, _ in receiver.received(3)} == {"b1", "b2", "b3"}

    def test_close_unblocks_a_waiting_send_and_send_works_after(self,
                                                              receiver: Receiver) -> None:
        t = connect(receiver, timeout=10.0)
        t.close()  # before any send: harmless
        t.send("b1", "veh1", PAYLOAD)
        receiver.freeze()
        try:
            timer = threading.Timer(0.3, t.close)
            timer.start()
            start = time.monotonic()
            with pytest.raises(TransientUploadError, match=r"closed"):
                t.send("b2", "veh1", PAYLOAD)
            assert time.monotonic() - start < 1.5
            timer.join(5.0)
        finally:
            receiver.thaw()
        t.send("b3", "veh1", PAYLOAD)
        t.close()
        t.close()
        assert {batch for batch, _ in receiver.received(3)} == {"b1", "b2", "b3"}


@pytest.mark.parametrize("scheme", ["https", "http", "mqtts", "mqtt"])
@pytest.mark.parametrize("host", ["fleet..example.org", "x" * 64 + ".example.org"])
def test_a_host_name_that_cannot_be_looked_up_is_a_config_error(scheme: str,
                                                                 host: str) -> None:
    # The resolver's IDNA encoding raised UnicodeError from inside send(), neither of
    # the two upload errors: the uploader's loop does not expect it.
    with pytest.raises(ConfigError, match=r"^upload.url: .* is not a valid host name"):
        open_transport(TransportConfig(f"{scheme}://{host}:1/v1/batches", timeout=0.5))
