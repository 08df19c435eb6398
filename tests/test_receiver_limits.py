"""The receiver's memory is bounded: a few KB that would unpack to gigabytes are refused
before msgpack builds anything (HTTP and MQTT alike), an MQTT message over ``--max-bytes``
is refused unread, and at most ``max_decodes`` batches are checked and stored at once."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from helpers.broker import Broker
from helpers.receiver_batches import (
    Publisher,
    amplifying_batch,
    encoded,
    post,
    start_cli,
    wait_for,
)

from agent.batch import limits
from agent.receiver.core import Receiver
from agent.receiver.http_server import serve
from agent.receiver.mqtt_subscriber import subscribe

RSS_LIMIT_MB = 100


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) / 1024


def test_amplifying_batches_are_refused_with_bounded_memory(broker: Broker,
                                                            tmp_path: Path) -> None:
    cli = start_cli("--listen", "127.0.0.1:0", "--mqtt", broker.url, "--dir",
                    str(tmp_path / "received"), "--client-id", "limits-receiver")
    try:
        wait_for(lambda: any("subscribed to" in x for x in cli.out), what="the subscription")
        url = next(x for x in cli.out if "receiving on http" in x).split()[-1]
        c = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
        bombs = [amplifying_batch(limits.body_limit(records) - 5, records)
                 for records in (0, 50_000)]
        assert all(len(bomb) < 20_000 for bomb in bombs)  # each unpacked: 0.5 to 1.4 GB
        for bomb in bombs:
            status, answer = post(c, bomb, None)
            assert status == 400, answer
            assert "would take more than" in answer["reason"]
        publisher = Publisher(broker.port)
        try:
            for bomb in bombs:
                publisher.publish(bomb, None)
            batch, payload = encoded(1)
            publisher.publish(payload, batch.batch_id)
        finally:
            publisher.close()
        batch, payload = encoded(0)  # and a good batch still goes through
        assert post(c, payload, batch.batch_id)[0] == 201

        def counted() -> dict[str, int]:
            c.request("GET", "/stats")
            return dict(json.loads(c.getresponse().read())["total"])

        wait_for(lambda: counted()["received"] == 6, what="the MQTT messages")
        assert counted() == {"received": 6, "stored": 2, "duplicates": 0, "invalid": 4}
        c.close()
        peak = peak_rss_mb(cli.proc.pid)
    finally:
        rc, err = cli.stop()
    assert rc == 0, err
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_an_mqtt_message_over_max_bytes_is_refused_unread(broker: Broker,
                                                          tmp_path: Path) -> None:
    receiver = Receiver.open(tmp_path / "r")
    small_batch, small = encoded(0, rows=1)
    big_batch, big = encoded(1, rows=300)
    assert len(small) < len(big)
    sub = subscribe(receiver, broker.url, client_id="max-bytes", max_bytes=len(small))
    publisher = Publisher(broker.port)
    try:
        assert sub.wait_subscribed(10)
        publisher.publish(big, big_batch.batch_id)
        publisher.publish(small, small_batch.batch_id)
        wait_for(lambda: receiver.stats()["total"]["received"] == 2, what="both messages")
        assert receiver.stats()["total"] == {"received": 2, "stored": 1, "duplicates": 0,
                                             "invalid": 1}
        assert [b.batch_id for b in receiver.db.batches()] == [small_batch.batch_id]
    finally:
        publisher.close()
        sub.close()
        receiver.close()


def test_batches_wait_for_their_turn_then_get_503(tmp_path: Path) -> None:
    """One decode at a time: while a batch is in the receiver's hands (its commit held up
    by a lock the test takes on the database), the next one waits ``busy_wait`` seconds,
    then is told to come back (503, Retry-After); afterwards it goes through."""
    receiver = Receiver.open(tmp_path / "r", max_decodes=1, busy_wait=0.5)
    lock = sqlite3.connect(tmp_path / "r" / "receiver.sqlite", isolation_level=None)
    server = serve(receiver, "127.0.0.1", 0)
    answers: list[tuple[int, str, Any]] = []

    def send(index: int) -> None:
        batch, payload = encoded(index)
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        c.request("POST", "/batches", payload, {"Content-Type": "application/vnd.bavard.batch",
                                                "Idempotency-Key": batch.batch_id})
        r = c.getresponse()
        answers.append((r.status, r.getheader("Retry-After") or "", r.read()))
        c.close()

    try:
        lock.execute("BEGIN IMMEDIATE")  # the receiver's next commit waits for it
        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) == 1, what="the first answer", timeout=10)
        assert answers[0][:2] == (503, "5"), answers
        lock.execute("COMMIT")
        for t in threads:
            t.join(30)
        assert sorted(a[0] for a in answers) == [201, 503]
        retried = encoded(0), encoded(1)
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        assert sorted(post(c, p, b.batch_id)[0] for b, p in retried) == [200, 201]
        c.close()
    finally:
        lock.close()
        server.close()
        receiver.close()
