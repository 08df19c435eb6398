"""Receivers that scale out: several ``bavard receive`` processes on one lake, and every
batch in it exactly once.

* MQTT: three ``--share`` receivers behind a real Mosquitto split the batches the
  agent's own MQTT transport publishes; one is SIGKILLed while batches are flowing
  and, as a supervisor would, started again with its client id once the publisher is
  done. Every batch is in the lake once per kind, none lost, none twice, and each
  instance stored some.
* HTTP: two ``--listen`` receivers on one lake, batches POSTed alternately, some twice
  to both: 201 for the first copy, 200 "duplicate" for a repeat, even at the process
  that never saw it (the lake already has it).
* Retiring an instance (``MqttReceiver.leave``): its session's batches are stored,
  and the broker gives the group's later batches to the others only.
* The ``$share/`` filter, the default client id and bad group names (no broker).

Real processes on loopback only; every wait has a deadline; children killed in
``finally``.
"""

from __future__ import annotations

import http.client
import logging
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.broker import Broker
from helpers.receiver_batches import (
    OTHER_VEHICLE,
    VEHICLE,
    Cli,
    make_batch,
    post,
    start_cli,
    wait_for,
)

from agent.batch import encode
from agent.cli.main import main
from agent.errors import ReceiverError
from agent.receiver.core import Receiver
from agent.receiver.mqtt_share import DEFAULT_CLIENT_ID, default_client_id, subscription_filter
from agent.receiver.mqtt_subscriber import MqttReceiver, MqttSettings, subscribe
from agent.upload.mqtt import MqttTransport
from agent.upload.transport import TransportConfig

pytest.importorskip("pyarrow")
from agent.lake import Lake  # needs pyarrow
from agent.lake.read import batch_ids

WAIT = 30.0  # seconds: the bound of every wait on the processes
KINDS = ("samples", "events", "frames")
VEHICLES = (VEHICLE, OTHER_VEHICLE, "5a1e0c3b9d8f47e2a6b4c1d0e9f8a7b6")
GROUP = "lake"
STORED = re.compile(r"\b(stored|duplicate) batch ([0-9a-f]{32}) of vehicle")
STOPPED = re.compile(r"stopped; (\d+) received: (\d+) stored, (\d+) duplicates, "
                     r"(\d+) invalid")


def batches(count: int) -> list[tuple[str, str, bytes]]:
    """``count`` distinct batches, (batch id, vehicle, encoded), the vehicles in turn."""
    out = []
    for i in range(count):
        vehicle = VEHICLES[i % len(VEHICLES)]
        batch = make_batch(i // len(VEHICLES), vehicle, rows=3, odd_values=False)
        out.append((batch.batch_id, vehicle, encode(batch)))
    return out


def logged(cli: Cli, status: str) -> list[str]:
    """The batch ids the receiver's log says it ``status`` (stored or duplicate)."""
    return [m[2] for line in list(cli.err) if (m := STORED.search(line)) and m[1] == status]


def stop_line(cli: Cli) -> tuple[int, int, int, int]:
    """(received, stored, duplicates, invalid) of a receiver stopped with SIGTERM."""
    rc, err = cli.stop()
    assert rc == 0, err[-3000:]
    found = STOPPED.findall(err)
    assert len(found) == 1, err[-3000:]
    received, stored, duplicates, invalid = map(int, found[0])
    return received, stored, duplicates, invalid


def in_lake(lake: Path, kind: str = "samples") -> Counter[str]:
    return batch_ids(lake, kind=kind) if lake.exists() else Counter()


@contextmanager
def receivers() -> Iterator[list[Cli]]:
    """A list to start receivers into; each one still running is killed on the way out."""
    running: list[Cli] = []
    try:
        yield running
    finally:
        for cli in running:
            if cli.proc.poll() is None:
                cli.proc.kill()
                cli.proc.wait(10)


def start_mqtt(running: list[Cli], broker: Broker, lake: Path, client_id: str) -> Cli:
    cli = start_cli("--mqtt", broker.url, "--share", GROUP, "--client-id", client_id,
                    "--lake", str(lake))
    running.append(cli)
    wait_for(lambda: any("subscribed to" in line for line in cli.out) or
             cli.proc.poll() is not None, WAIT, f"{client_id} to subscribe")
    assert cli.proc.poll() is None, "".join(cli.err)[-3000:]
    return cli


# -- MQTT: a shared subscription, one member SIGKILLed ------------------------------------


def test_shared_subscription_member_killed_mid_run(tmp_path: Path, broker: Broker) -> None:
    sent = batches(150)
    expected = Counter({bid: 1 for bid, _, _ in sent})
    lake = tmp_path / "lake"
    published = 0
    errors: list[BaseException] = []
    killed = threading.Event()

    def publish() -> None:
        nonlocal published
        transport = MqttTransport(TransportConfig(url=broker.url, timeout=10.0))
        try:
            for i, (bid, vehicle, payload) in enumerate(sent):
                if i == len(sent) * 2 // 3:  # the last third while r0 is dead, whatever
                    killed.wait(WAIT)         # the speed of this machine
                transport.send(bid, vehicle, payload)  # returns on the PUBACK
                published += 1
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            transport.close()

    with receivers() as running:
        first, second, third = (start_mqtt(running, broker, lake, f"scale-r{i}")
                                for i in range(3))
        filters = [line for cli in (first, second, third) for line in cli.err
                   if "subscribing to" in line]
        assert len(filters) == 3 and all(f"$share/{GROUP}/bavard/+/batch" in line
                                          for line in filters), filters
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        # mid-run: a third published, the receivers behind (delivered, not acknowledged)
        wait_for(lambda: published >= len(sent) // 3 and len(logged(first, "stored")) >= 3,
                 WAIT, "a third of the batches published, and some stored by r0")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        at_kill = published
        killed.set()
        assert at_kill < len(sent), "the publisher was done before the kill"
        before = set(logged(first, "stored"))
        publisher.join(WAIT)
        assert not publisher.is_alive() and not errors, errors
        # what the dead one held is not handed to the others: it waits in its session
        assert set(in_lake(lake)) != set(expected)
        again = start_mqtt(running, broker, lake, "scale-r0")  # the supervisor's restart
        wait_for(lambda: set(in_lake(lake)) == set(expected), WAIT, "every batch in the lake")
        time.sleep(0.3)  # a late second copy would show now
        counts = {name: stop_line(cli) for name, cli in
                  (("r1", second), ("r2", third), ("r0 again", again))}

    for kind in KINDS:
        assert in_lake(lake, kind) == expected, kind
    stored = Counter(bid for cli in (first, second, third, again)
                     for bid in logged(cli, "stored"))
    assert set(stored.values()) == {1}  # never stored twice, by one instance or two
    duplicates = logged(again, "duplicate")  # written before the kill, acknowledged after
    assert set(duplicates) <= set(expected) - set(logged(again, "stored"))
    # a batch whose files r0 renamed into place just before the kill, its log line lost:
    # redelivered to r0 again, found in the lake (at most the 2 it handles at once)
    unlogged = set(expected) - set(stored)
    assert unlogged <= set(duplicates) and len(unlogged) <= 2, unlogged
    for (name, (received, n_stored, n_dup, invalid)), cli in zip(
            counts.items(), (second, third, again), strict=True):
        assert (n_stored, n_dup, invalid) == (len(logged(cli, "stored")),
                                              len(logged(cli, "duplicate")), 0), name
        assert received == n_stored + n_dup
    assert before and logged(second, "stored") and logged(third, "stored")  # they split it
    assert logged(again, "stored") or duplicates  # the dead one's session came back to it
    print(f"published at the kill: {at_kill}/{len(sent)}; stored by r0 before it: "
          f"{len(before)}, r1: {counts['r1'][1]}, r2: {counts['r2'][1]}, r0 again: "
          f"{counts['r0 again'][1]} (+{counts['r0 again'][2]} duplicates)")


def publish_all(url: str, sent: list[tuple[str, str, bytes]]) -> None:
    transport = MqttTransport(TransportConfig(url=url, timeout=10.0))
    try:
        for bid, vehicle, payload in sent:
            transport.send(bid, vehicle, payload)
    finally:
        transport.close()


def stored(receiver: Receiver) -> int:
    return int(receiver.stats()["total"].get("stored", 0))


def test_leave_retires_an_instance(tmp_path: Path, broker: Broker,
                                   caplog: pytest.LogCaptureFixture,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    sent = batches(60)
    lake = tmp_path / "lake"
    kept, retired = Receiver(None, lake=Lake(lake)), Receiver(None, lake=Lake(lake))
    settings = MqttSettings(broker.url, share=GROUP, client_id="scale-retired")
    try:
        with subscribe(kept, broker.url, share=GROUP, client_id="scale-kept") as other:
            away = MqttReceiver(retired, settings).start()
            assert other.wait_subscribed(WAIT) and away.wait_subscribed(WAIT)
            away.close()  # stopped (its session stays in the group, taking its share)
            publish_all(broker.url, sent[:30])
            wait_for(lambda: stored(kept) >= 10, WAIT, "the other instance's share")
            time.sleep(0.3)
            assert stored(kept) < 30  # the rest waits in the stopped one's session
            handled = MqttReceiver(retired, settings).leave(quiet=0.5, timeout=WAIT)
            assert handled == stored(retired) == 30 - stored(kept) > 0
            publish_all(broker.url, sent[30:])  # the group is one member now
            wait_for(lambda: stored(kept) == 60 - handled, WAIT,
                     "every later batch at the instance that stayed")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="agent.receiver.mqtt_subscriber"):
            assert MqttReceiver(retired, settings).leave(quiet=0.2, timeout=WAIT) == 0
        assert "(session new)" in caplog.text  # the broker had forgotten it
        assert stored(retired) == handled
        capsys.readouterr()
        assert main(["receive", "--mqtt", broker.url, "--share", GROUP, "--client-id",
                     "scale-retired", "--leave", "--lake", str(lake)]) == 0
        assert capsys.readouterr().out.startswith(
            f"left $share/{GROUP}/bavard/+/batch as scale-retired: 0 batches handled; "
            f"0 received")
    finally:
        kept.close()
        retired.close()
    for kind in KINDS:
        assert in_lake(lake, kind) == Counter({bid: 1 for bid, _, _ in sent}), kind


# -- HTTP: two processes on one lake ------------------------------------------------------


def start_http(running: list[Cli], lake: Path) -> tuple[Cli, int]:
    cli = start_cli("--listen", "127.0.0.1:0", "--lake", str(lake))
    running.append(cli)
    wait_for(lambda: any("receiving on http://" in line for line in cli.out) or
             cli.proc.poll() is not None, WAIT, "the receiver to listen")
    assert cli.proc.poll() is None, "".join(cli.err)[-3000:]
    url = next(line for line in cli.out if "receiving on http://" in line)
    return cli, int(url.strip().rsplit(":", 1)[1])


def test_two_http_receivers_on_one_lake(tmp_path: Path) -> None:
    sent = batches(24)
    lake = tmp_path / "lake"
    with receivers() as running:
        (a, port_a), (b, port_b) = start_http(running, lake), start_http(running, lake)
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
                 for port in (port_a, port_b)]
        answers: list[tuple[int, int, object]] = []  # (batch index, status, JSON status)
        repeats = {0: 0, 1: 0}  # repeats sent to a and to b
        try:
            for i, (bid, _, payload) in enumerate(sent):
                first = i % 2
                code, body = post(conns[first], payload, bid)
                assert (code, body["status"], body["batch_id"]) == (201, "stored", bid), body
                if i % 3 == 0:  # again, to both: the other one never saw it
                    for which in (1 - first, first):
                        code, body = post(conns[which], payload, bid)
                        answers.append((i, code, body["status"]))
                        repeats[which] += 1
        finally:
            for conn in conns:
                conn.close()
        assert answers and all(code == 200 and status == "duplicate"
                               for _, code, status in answers), answers
        counts = [stop_line(a), stop_line(b)]
    expected = Counter({bid: 1 for bid, _, _ in sent})
    for kind in KINDS:
        assert in_lake(lake, kind) == expected, kind
    halves = [len(sent[0::2]), len(sent[1::2])]
    assert counts == [(halves[w] + repeats[w], halves[w], repeats[w], 0) for w in (0, 1)]


# -- the filter and the client id (no broker) ---------------------------------------------


def test_share_filter() -> None:
    assert subscription_filter("bavard/+/batch", None) == "bavard/+/batch"
    assert subscription_filter("bavard/+/batch", "lake") == "$share/lake/bavard/+/batch"
    assert subscription_filter("fleet/#", "a-b_c.1") == "$share/a-b_c.1/fleet/#"


@pytest.mark.parametrize("group", ["", "a/b", "/", "fleet+", "+", "#", "lake#", "a\0b"])
def test_bad_share_group_is_refused(group: str, tmp_path: Path) -> None:
    with pytest.raises(ReceiverError, match="--share"):
        subscription_filter("bavard/+/batch", group)
    receiver = Receiver.open(tmp_path)
    try:  # refused before any connection is tried
        with pytest.raises(ReceiverError, match="--share"):
            MqttReceiver(receiver, MqttSettings("mqtt://127.0.0.1:1", share=group))
    finally:
        receiver.close()


def test_share_with_a_shared_topic_is_refused() -> None:
    with pytest.raises(ReceiverError, match=r"--share.*already a shared subscription"):
        subscription_filter("$share/other/bavard/+/batch", "lake")


def test_default_client_id(tmp_path: Path) -> None:
    assert default_client_id(None) == DEFAULT_CLIENT_ID == "bavard-receiver"
    host = socket.gethostname()
    assert default_client_id("lake") == f"bavard-receiver-lake-{host}"
    assert default_client_id("lake") == default_client_id("lake")  # stable across restarts
    assert default_client_id("other") != default_client_id("lake")
    receiver = Receiver.open(tmp_path)
    try:
        plain = MqttReceiver(receiver, MqttSettings("mqtt://127.0.0.1:1"))
        shared = MqttReceiver(receiver, MqttSettings("mqtt://127.0.0.1:1", share="lake"))
        named = MqttReceiver(receiver, MqttSettings("mqtt://127.0.0.1:1", share="lake",
                                                    client_id="r7"))
        assert (plain.client_id, plain.filter) == ("bavard-receiver", "bavard/+/batch")
        assert (shared.client_id, shared.filter) == (f"bavard-receiver-lake-{host}",
                                                     "$share/lake/bavard/+/batch")
        assert (named.client_id, named.filter) == ("r7", "$share/lake/bavard/+/batch")
    finally:
        receiver.close()


@pytest.mark.parametrize(("args", "error"), [
    (["--listen", "127.0.0.1:0", "--share", "g"], "--share is for --mqtt"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--leave"], "--leave retires one member"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--share", "g", "--listen", "127.0.0.1:0", "--leave"],
     "--leave retires one member"),
    (["--mqtt", "mqtt://127.0.0.1:1", "--share", "a/b"], "--share 'a/b': a shared"),
])
def test_share_and_leave_arguments(args: list[str], error: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "--lake", str(tmp_path / "lake"), *args]) == 1
    assert error in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # refused before anything was opened
