"""Real batches for the receiver tests, small clients that send them (HTTP, MQTT), and
``bavard receive`` as a child process.

``make_batch`` builds what the pipeline makes (frames of several signals at one
timestamp, scaled floats, ints, labels, flags) plus the awkward values the
format promises to keep (NaN with a payload, ``-0.0``, infinities, integers
beyond int64, booleans), events and raw frames, and signal metadata.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
import zstandard
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.batch import Batch, SignalMeta, batch_id, encode
from agent.batch.container import COMPRESSION_ZSTD, FORMAT_VERSION, assemble
from agent.batch.wire import BATCH_ID_PROPERTY, CONTENT_TYPE, IDEMPOTENCY_HEADER
from agent.frames import OUT_OF_RANGE, TRUNCATED, Event, Frame, Sample

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds: the bound of every wait for something to arrive
VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"
OTHER_VEHICLE = "bfdd8abb0b15040427141397b75d4746"
NAN_WITH_PAYLOAD = struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\x00\x2a")[0]
T0 = 1767225600.000064


def make_batch(index: int = 0, vehicle: str = VEHICLE, rows: int = 5,
               odd_values: bool = True) -> Batch:
    """Batch number ``index`` of ``vehicle``: sequence range [10 * index, 10 * index + 9]."""
    samples: list[Sample] = []
    base = T0 + index * 60.0
    for r in range(rows):
        t = base + r * 0.010007
        samples.append(Sample(t, "can0", "Engine", "Rpm", 800.25 + 0.25 * (r + index), "rpm"))
        samples.append(Sample(t, "can0", "Engine", "Load", 12 + r, "%"))
        samples.append(Sample(t, "can0", "Gear", "Lever", 3, "", "D"))
        samples.append(Sample(t, "can1", "Body", "Temp", -40.0 + 0.5 * r, "degC",
                              flags=OUT_OF_RANGE if r == 0 else 0))
    if odd_values:
        t = base + rows * 0.010007
        samples += [
            Sample(t, "can0", "Odd", "Nan", NAN_WITH_PAYLOAD),
            Sample(t, "can0", "Odd", "NegZero", -0.0),
            Sample(t, "can0", "Odd", "Inf", float("inf")),
            Sample(t, "can0", "Odd", "Big", 2**70 + index, flags=TRUNCATED),
            Sample(t, "can0", "Odd", "Small", -(2**64)),
            Sample(t, "can0", "Odd", "Flag", True, label="on"),
            Sample(t, "can0", "Odd", "Whole", 3.0, "V"),
            Sample(-0.0, "can0", "Odd", "Epoch", 1),
        ]
    events = [Event(base + 0.5, "can0", "dtc", "P0420 catalyst", 2),
              Event(base + 0.6, "", "trip", "start", 2**65)]
    frames = [Frame(base + 0.001, "can0", 0x123, False, False, b"\x01\x02\x03"),
              Frame(base + 0.002, "can1", 0x18DAF110, True, True, bytes(range(64))),
              Frame(base + 0.003, "can0", 0x7DF, False, False, b"")]
    signals = {
        ("can0", "Engine", "Rpm"): SignalMeta("rpm", 0.25, 0, 0, 16383.75),
        ("can0", "Gear", "Lever"): SignalMeta("", 1, 0, 0, 7, {3: "D", 7: "R", 0: "P"}),
        ("can1", "Body", "Temp"): SignalMeta("degC", 0.5, -40.0, -40, 87.5),
    }
    return Batch(vehicle, 10 * index, 10 * index + 9, "ab" * 32, samples, events, frames,
                 signals)


def encoded(index: int = 0, vehicle: str = VEHICLE, **kwargs: Any) -> tuple[Batch, bytes]:
    batch = make_batch(index, vehicle, **kwargs)
    return batch, encode(batch)


def amplifying_batch(arrays: int, records: int = 0, vehicle: str = VEHICLE) -> bytes:
    """A well-framed batch (good CRC, envelope and ids; the envelope announces ``records``
    samples) whose zstd body is one msgpack array of ``arrays`` empty arrays: a few KB
    that unpack to ``arrays`` Python lists (about 64 bytes each)."""
    envelope = {"batch_id": batch_id(vehicle, 0, 9), "vehicle_id": vehicle, "seq_first": 0,
                "seq_last": 9, "time_first": None, "time_last": None, "dbc_fingerprint": "",
                "samples": records, "events": 0, "frames": 0}
    raw = b"\xdd" + struct.pack(">I", arrays) + b"\x90" * arrays
    body = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(raw)
    return assemble(FORMAT_VERSION, COMPRESSION_ZSTD, msgpack.packb(envelope), body)


def post(conn: http.client.HTTPConnection, payload: bytes, key: str | None,
         content_type: str = CONTENT_TYPE, path: str = "/batches") -> tuple[int, Any]:
    """POST one batch; (status, JSON body)."""
    headers = {"Content-Type": content_type}
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = key
    conn.request("POST", path, body=payload, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, json.loads(body) if body else None


def get_json(conn: http.client.HTTPConnection, path: str) -> tuple[int, Any]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def https_connection(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


class Publisher:
    """A plain paho client (MQTT 5) publishing batches at QoS 1, waiting for each PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, payload: bytes, batch_id: str | None, vehicle: str = VEHICLE,
                timeout: float = 20.0) -> None:
        """Publish until the broker acknowledged it (again after a reconnect if need be)."""
        props = Properties(PacketTypes.PUBLISH)
        if batch_id is not None:
            props.UserProperty = (BATCH_ID_PROPERTY, batch_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.client.is_connected():
                time.sleep(0.05)
                continue
            info = self.client.publish(f"bavard/{vehicle}/batch", payload, qos=1,
                                       properties=props)
            try:
                info.wait_for_publish(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except (RuntimeError, ValueError):
                time.sleep(0.05)
                continue
            if info.is_published():
                return
        raise AssertionError(f"no PUBACK within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``condition`` every 50 ms until it holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


@dataclass
class Cli:
    """``bavard -v receive ARGS`` running as a child process; ``out`` and ``err`` are the
    lines of its stdout and stderr so far."""

    proc: subprocess.Popen[str]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; (exit status, all of stderr) once it has exited."""
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("bavard receive did not stop within 15 s") from None
        for reader in self.readers:
            reader.join(5)
        return rc, "".join(self.err)


def start_cli(*args: str) -> Cli:
    proc = subprocess.Popen([sys.executable, "-m", "agent", "-v", "receive", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    cli = Cli(proc)
    for stream, lines in ((proc.stdout, cli.out), (proc.stderr, cli.err)):
        assert stream is not None
        reader = threading.Thread(target=lines.extend, args=(stream,), daemon=True)
        reader.start()
        cli.readers.append(reader)
    return cli
