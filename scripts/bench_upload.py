#!/usr/bin/env python3
"""Upload transports on loopback: ours against the plain library doing the same work.

Payloads are real batches: tests/data/sample_drive.log decoded through
dbc/demo_vehicle.dbc, every signal on change, cut into 60 s batches and
encoded (zstd 3), as scripts/bench_batch.py does (about 40 kB each). Each leg
sends ``--batches`` of them, cycling, each with its own batch id:

- HTTP: ``HttpTransport`` against plain ``http.client`` (one keep-alive
  connection, the same headers, the response read whole), to a minimal HTTP/1.1
  sink in a child process (so its CPU is not counted here);
- MQTT: ``MqttTransport`` against plain paho (publish QoS 1 with the batch-id
  user property, then ``wait_for_publish``), to a Mosquitto started on a free
  port (skipped with a message when Mosquitto is not installed), with a QoS 1
  subscriber in a child process: without one Mosquitto answers PUBACK 0x10
  "no matching subscribers", which the agent rightly takes as not delivered.

Checked: the HTTP sink and the MQTT subscriber count what reached them; every
batch sent, ours and plain, must have arrived whole, or the run fails.

Each leg opens its connection and closes it at the end, ours and plain alike.
Legs run in interleaved rounds (the order alternates), and the figures are
the medians over rounds: batches/s, MB/s, CPU seconds per MB (process_time of
this process: the client side only) and the ratio ours/plain.

Usage: scripts/bench_upload.py [--batches N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import http.client  # noqa: E402

import benchlib  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from agent.batch import Batch, dbc_fingerprint, encode, signal_metadata  # noqa: E402
from agent.batch.wire import BATCH_ID_PROPERTY, CONTENT_TYPE, IDEMPOTENCY_HEADER  # noqa: E402
from agent.config import SelectionConfig, SignalRule  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.decode.decoder import ChannelDecoder  # noqa: E402
from agent.frames import Sample  # noqa: E402
from agent.policy.rules import RuleSet  # noqa: E402
from agent.policy.selection import Selector  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402
from agent.upload.http import USER_AGENT, HttpTransport  # noqa: E402
from agent.upload.mqtt import MqttTransport  # noqa: E402
from agent.upload.transport import TransportConfig  # noqa: E402

VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TOPIC = f"bavard/{VEHICLE}/batch"

# both peers read how many batches were sent from their stdin, then print
# "<count> <bytes>" of what they received
SINK = r"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
got = [0, 0]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with lock:
            got[0] += 1
            got[1] += len(body)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=s.serve_forever, daemon=True).start()
print(s.server_address[1], flush=True)
sys.stdin.read()
s.shutdown()
print(got[0], got[1], flush=True)
"""

SUBSCRIBER = r"""
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, topic = int(sys.argv[1]), sys.argv[2]
got = [0, 0]
subscribed = threading.Event()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber", protocol=mqtt.MQTTv5)
def on_message(client, userdata, message):
    got[0] += 1
    got[1] += len(message.payload)
c.on_message = on_message
c.on_subscribe = lambda *a: subscribed.set()
c.on_connect = lambda client, *a: client.subscribe(topic, qos=1)
c.connect("127.0.0.1", port)
c.loop_start()
if not subscribed.wait(10):
    sys.exit("the subscriber got no SUBACK within 10 s")
print("subscribed", flush=True)
want = int(sys.stdin.readline() or 0)  # what was sent: wait (a little) for the last ones
for _ in range(100):
    if got[0] >= want:
        break
    time.sleep(0.1)
c.disconnect()
c.loop_stop()
print(got[0], got[1], flush=True)
"""


def sample_batches(seconds: float = 60.0) -> list[bytes]:
    """The sample drive as encoded batches of ``seconds`` each."""
    dbc = ROOT / "dbc" / "demo_vehicle.dbc"
    db = load_dbc(dbc)
    rules = RuleSet([SignalRule("*", on_change=True)])
    # the agent's default selection: counters and checksums are not data
    decoder = ChannelDecoder("can0", [db], Selector.from_config(SelectionConfig(), [db]),
                             lambda m, s: (True, 0.0, None))
    meta, fingerprint = signal_metadata("can0", [db]), dbc_fingerprint([dbc])
    out: list[bytes] = []
    samples: list[Sample] = []
    seq, start = 0, None
    log = ROOT / "tests" / "data" / "sample_drive.log"

    def close() -> None:
        nonlocal seq, samples
        if samples:
            batch = Batch(VEHICLE, seq, seq + len(samples) - 1, fingerprint,
                          samples).with_metadata(meta)
            seq = batch.seq_last + 1
            out.append(encode(batch, level=3))
            samples = []

    with ReplaySource("bench", log, speed=0, channel="can0") as source:
        for frame in source.frames():
            if start is None or frame.timestamp - start >= seconds:
                close()
                start = frame.timestamp
            decoded = decoder.decode(frame)
            if decoded is not None:
                samples.extend(rules.filter_decoded(decoded))
    close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the peer exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


# -- legs: each sends ``n`` batches over one connection and closes it -------------------

Leg = Callable[[list[bytes], int], None]


def ours(url: str, skip: bool = False) -> Leg:
    """``skip``: the test-only ``--wrong ours:skip``, the last batch of each leg not sent."""
    def leg(payloads: list[bytes], n: int) -> None:
        cls = HttpTransport if url.startswith("http") else MqttTransport
        t = cls(TransportConfig(url, timeout=10.0))
        for i in range(n - 1 if skip else n):
            t.send(f"batch-{i}", VEHICLE, payloads[i % len(payloads)])
        t.close()
    return leg


def plain_http(port: int) -> Leg:
    def leg(payloads: list[bytes], n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
        for i in range(n):
            payload = payloads[i % len(payloads)]
            conn.request("POST", "/v1/batches", body=payload, headers={
                "Content-Type": CONTENT_TYPE, "Content-Length": str(len(payload)),
                IDEMPOTENCY_HEADER: f"batch-{i}", "User-Agent": USER_AGENT})
            response = conn.getresponse()
            response.read()
            if response.status != 204:
                raise SystemExit(f"plain http: HTTP {response.status}")
        conn.close()
    return leg


def plain_paho(port: int) -> Leg:
    def leg(payloads: list[bytes], n: int) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plain-{VEHICLE}",
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        client.connect("127.0.0.1", port, clean_start=True)
        client.loop_start()
        for i in range(n):
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [(BATCH_ID_PROPERTY, f"batch-{i}")]
            info = client.publish(TOPIC, payloads[i % len(payloads)], qos=1, properties=props)
            info.wait_for_publish(10.0)
            if not info.is_published():
                raise SystemExit("plain paho: no PUBACK within 10 s")
        client.disconnect()
        client.loop_stop()
    return leg


WARM_UP = 20  # batches sent once before the rounds


def expected(payloads: list[bytes], n: int, rounds: int, legs: int) -> tuple[int, int]:
    """(batches, bytes) a peer receives from one run of :func:`run`."""
    def size(k: int) -> int:
        return sum(len(payloads[i % len(payloads)]) for i in range(k))
    warm = min(n, WARM_UP)
    return warm + rounds * legs * n, size(warm) + rounds * legs * size(n)


def check_received(peer: subprocess.Popen[str], want: tuple[int, int], what: str) -> None:
    """Tell the peer what was sent, read its "<count> <bytes>": all must have arrived."""
    assert peer.stdin is not None and peer.stdout is not None
    peer.stdin.write(f"{want[0]}\n")
    peer.stdin.close()
    line = peer.stdout.readline().split()
    got = (int(line[0]), int(line[1])) if len(line) == 2 else None
    if got != want:
        print(f"CHECK FAILED: {what} received {got} (batches, bytes), sent {want}",
              file=sys.stderr)
        raise SystemExit(1)
    print(f"  checked: {what} received all {want[0]} batches, {want[1]:,} bytes")


def run(legs: dict[str, Leg], payloads: list[bytes], n: int,
        rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Per leg, per round: (wall seconds, CPU seconds)."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in legs}
    names = list(legs)
    legs[names[0]](payloads, min(n, WARM_UP))  # warm up imports and the peers
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            cpu, wall = time.process_time(), time.perf_counter()
            legs[name](payloads, n)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def report(title: str, times: dict[str, list[tuple[float, float]]], megabytes: float,
           n: int) -> None:
    print(title)
    stats = {}
    for name, rounds in times.items():
        wall = statistics.median(w for w, _ in rounds)
        cpu = statistics.median(c for _, c in rounds)
        stats[name] = (n / wall, megabytes / wall, cpu / megabytes)
        print(f"  {name:<18} {n / wall:8.0f} batches/s {megabytes / wall:8.1f} MB/s "
              f"{cpu / megabytes * 1e3:8.2f} ms CPU per MB")
    o, p = stats.values()
    print(f"  ratio ours/plain:  {o[0] / p[0]:8.2f} throughput      "
          f"{o[2] / p[2]:8.2f} CPU per MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500, help="batches per leg and round")
    parser.add_argument("--rounds", type=int, default=7)
    benchlib.add_wrong_argument(parser, ("ours",))
    args = parser.parse_args()
    wrong = benchlib.parse_wrong(args.wrong, ("ours",))
    if wrong is not None and wrong[1] != "skip":
        parser.error("--wrong: only ours:skip here (a transport sends bytes, not values)")
    skip = wrong is not None

    start = time.perf_counter()
    payloads = sample_batches()
    sizes = [len(p) for p in payloads]
    n = args.batches
    megabytes = sum(sizes[i % len(sizes)] for i in range(n)) / 1e6
    print(f"{len(payloads)} batches of the sample drive, {min(sizes)} to {max(sizes)} bytes "
          f"(built in {time.perf_counter() - start:.1f} s); {n} sends per leg, "
          f"{args.rounds} interleaved rounds, medians")

    want = expected(payloads, n, args.rounds, 2)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        wait_listening(port, sink)
        times = run({"HttpTransport": ours(f"http://127.0.0.1:{port}/v1/batches", skip),
                     "plain http.client": plain_http(port)}, payloads, n, args.rounds)
        report("HTTP (loopback, keep-alive, sink in a child process)", times, megabytes, n)
        check_received(sink, want, "the HTTP sink")
    finally:
        sink.kill()
        sink.wait(5.0)

    if not Path(MOSQUITTO).exists():
        print("MQTT: skipped, mosquitto is not installed (apt-get install -y mosquitto)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "max_inflight_messages 0\nlog_dest none\n")
        broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        subscriber = None
        try:
            wait_listening(port, broker)
            subscriber = subprocess.Popen(
                [sys.executable, "-c", SUBSCRIBER, str(port), TOPIC], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True)
            assert subscriber.stdout is not None
            if subscriber.stdout.readline().strip() != "subscribed":
                raise SystemExit("the MQTT subscriber did not subscribe")
            times = run({"MqttTransport": ours(f"mqtt://127.0.0.1:{port}", skip),
                         "plain paho": plain_paho(port)}, payloads, n, args.rounds)
            report("MQTT 5 QoS 1 (loopback Mosquitto, a QoS 1 subscriber in a child process)",
                   times, megabytes, n)
            check_received(subscriber, want, "the MQTT subscriber")
        finally:
            if subscriber is not None:
                subscriber.kill()
                subscriber.wait(5.0)
            broker.terminate()
            broker.wait(5.0)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
