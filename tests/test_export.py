"""``bavard export``: the buffer as an open bundle, read back without bavard.

The buffer is made by the real store from the sample drive replayed through the
real pipeline (one decoded channel, one raw channel, a few events), exported in
each format, and read back with csv, json and pyarrow: every value, timestamp and
count must be what the store was given. Then the filters, bad input, a full disk
(a real tmpfs, as root) and an export from a running service.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cantools
import pytest
from helpers.consent import grant_for
from helpers.sample_buffer import DBC, EVENTS, LOG, START, SampleBuffer, make_sample_buffer

from agent.batch.ids import dbc_fingerprint, pseudonymous_vehicle_id
from agent.frames import Event, Frame, Sample
from agent.store import DB_NAME, Store, StoreConfig, read_stats_file
from tests.conftest import ROOT

VIN = "WVWZZZ1JZXW000001"
Buffer = SampleBuffer


@pytest.fixture(scope="module")
def buffer(tmp_path_factory: pytest.TempPathFactory) -> SampleBuffer:
    return make_sample_buffer(tmp_path_factory.mktemp("buffer"))


def bavard(*args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)


def export(buffer: Buffer, out: Path, *args: str) -> dict[str, Any]:
    done = bavard("export", "--config", str(buffer.config), "-o", str(out), "--json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["path"] == str(out)
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    assert manifest == result["manifest"]
    return manifest


# ---------------------------------------------------------------- reading back


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def read_csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")  # RFC 4180
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    return list(table.to_pylist())


READERS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def same_value(fmt: str, row: dict[str, Any], expected: int | float) -> bool:
    """The value exactly as stored: CSV text is the float's repr (an int's digits)."""
    if fmt == "csv":
        return bool(row["value"] == repr(expected))
    if fmt == "parquet":
        exact_int = row["value_int"] == expected if isinstance(expected, int) else (
            row["value_int"] is None)
        return exact_int and row["value"] == float(expected)
    return type(row["value"]) is type(expected) and row["value"] == expected


def check_time(fmt: str, row: dict[str, Any], ts: float) -> None:
    stamp = float(row["timestamp"]) if fmt == "csv" else row["timestamp"]
    assert stamp == ts  # the float itself, bit for bit
    if fmt == "parquet":
        assert row["time"] == datetime.fromtimestamp(ts, UTC)
    else:
        assert row["time"] == iso(ts)


def check_samples(fmt: str, rows: list[dict[str, Any]], expected: list[Sample]) -> None:
    assert len(rows) == len(expected)
    for row, s in zip(rows, expected, strict=True):
        check_time(fmt, row, s.timestamp)
        assert (row["channel"], row["message"], row["signal"], row["unit"]) == (
            s.channel, s.message, s.signal, s.unit)
        assert same_value(fmt, row, s.value), (row, s)
        assert row["label"] == (s.label or "" if fmt == "csv" else s.label)


def check_frames(fmt: str, rows: list[dict[str, Any]], expected: list[Frame]) -> None:
    assert len(rows) == len(expected)
    for row, f in zip(rows, expected, strict=True):
        check_time(fmt, row, f.timestamp)
        assert int(row["id"], 16) == f.arbitration_id
        assert len(row["id"]) == (8 if f.is_extended else 3)
        assert bytes.fromhex(row["data"]) == f.data
        flags = (row["extended"], row["fd"])
        want = (f.is_extended, f.is_fd)
        assert flags == (tuple(str(b).lower() for b in want) if fmt == "csv" else want)


def check_events(fmt: str, rows: list[dict[str, Any]], expected: list[Event]) -> None:
    assert len(rows) == len(expected)
    for row, e in zip(rows, expected, strict=True):
        check_time(fmt, row, e.timestamp)
        assert (row["channel"], row["kind"], row["detail"], int(row["priority"])) == (
            e.channel, e.kind, e.detail, e.priority)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_files(out: Path, manifest: dict[str, Any]) -> None:
    """Every data file listed, with its rows, bytes and sha256; SHA256SUMS agrees."""
    listed = {f["name"]: f for f in manifest["files"]}
    data = {p.name for p in out.iterdir()} - {"manifest.json", "README.txt", "SHA256SUMS"}
    assert set(listed) == data
    sums = dict(reversed(line.split("  ", 1))
                for line in (out / "SHA256SUMS").read_text().splitlines())
    for name, entry in listed.items():
        assert entry["bytes"] == (out / name).stat().st_size
        assert entry["sha256"] == sha256(out / name) == sums[name]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_format_reads_back_as_the_store_holds_it(buffer: Buffer, tmp_path: Path,
                                                      fmt: str) -> None:
    out = tmp_path / "bundle"
    manifest = export(buffer, out, "--format", fmt)
    read = READERS[fmt]
    check_samples(fmt, read(out / f"samples.{fmt}"), buffer.samples)
    check_frames(fmt, read(out / f"frames.{fmt}"), buffer.frames)
    check_events(fmt, read(out / f"events.{fmt}"), buffer.events)
    check_files(out, manifest)

    assert manifest["format"] == "bavard-export" and manifest["format_version"] == 1
    assert manifest["counts"] == {"samples": len(buffer.samples), "events": len(buffer.events),
                                  "frames": len(buffer.frames)}
    assert {f["name"]: f["rows"] for f in manifest["files"]} == {
        f"samples.{fmt}": len(buffer.samples), f"events.{fmt}": len(buffer.events),
        f"frames.{fmt}": len(buffer.frames)}
    first = min(x.timestamp for x in [*buffer.samples, *buffer.frames, *buffer.events])
    last = max(x.timestamp for x in [*buffer.samples, *buffer.frames, *buffer.events])
    assert manifest["time_range"]["found"]["first"]["epoch"] == first
    assert manifest["time_range"]["found"]["last"]["epoch"] == last
    # the DBC, fingerprinted as the uploader's Identity does it
    assert manifest["dbc_fingerprint"] == dbc_fingerprint([DBC])
    assert [(d["name"], d["sha256"]) for d in manifest["dbc_files"]] == [
        ("demo_vehicle.dbc", sha256(DBC))]
    channels = {c["name"]: c for c in manifest["channels"]}
    assert channels["raw0"]["mode"] == "raw" and channels["raw0"]["counts"]["frames"] == 84_240
    assert channels["can0"]["counts"]["samples"] == len(buffer.samples)
    # every signal with its unit, range, labels and count
    per_signal: dict[tuple[str, str], int] = {}
    units = {}
    for s in buffer.samples:
        per_signal[(s.message, s.signal)] = per_signal.get((s.message, s.signal), 0) + 1
        units[(s.message, s.signal)] = s.unit
    signals = {(e["message"], e["signal"]): e for e in manifest["signals"]}
    assert {k: e["samples"] for k, e in signals.items()} == per_signal
    assert {k: e["unit"] for k, e in signals.items()} == units
    gear = signals[("Transmission", "GearLever")]
    assert gear["choices"]["3"] == "D" and gear["described_by"] == "dbc"
    dbc = cantools.database.load_file(str(DBC))
    for (message, name), entry in signals.items():
        sig = dbc.get_message_by_name(message).get_signal_by_name(name)
        assert (entry["minimum"], entry["maximum"], entry["scale"], entry["offset"]) == (
            sig.minimum, sig.maximum, sig.scale, sig.offset)
    readme = (out / "README.txt").read_text()
    assert "sha256sum -c SHA256SUMS" in readme and f"samples.{fmt}" in readme
    assert "VehicleDynamics.VehicleSpeed [km/h]" in readme


def test_time_range_and_signal_globs(buffer: Buffer, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    since, until = START + 30, START + 90.5
    done = bavard("export", "--config", str(buffer.config), "-o", str(out), "--json",
                  "--since", "2026-01-01T00:00:30", "--until", str(until),
                  "--signals", "Transmission.*", "--signals", "VehicleSpeed",
                  "--signals", "NoSuch*", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    assert "--since 2026-01-01T00:00:30: no time zone given, read as UTC" in done.stderr
    assert "warning: --signals 'NoSuch*' matched no signal" in done.stderr
    manifest = json.loads(done.stdout)["manifest"]
    assert any("NoSuch*" in w for w in manifest["warnings"])
    assert manifest["time_range"]["asked"]["since"]["epoch"] == since

    def wanted(s: Sample) -> bool:
        return since <= s.timestamp < until and (
            s.message == "Transmission" or s.signal == "VehicleSpeed")

    expected = [s for s in buffer.samples if wanted(s)]
    assert {s.message for s in expected} == {"Transmission", "VehicleDynamics"}
    check_samples("jsonl", read_jsonl(out / "samples.jsonl"), expected)
    # --signals selects samples; frames and events are filtered by time only
    check_frames("jsonl", read_jsonl(out / "frames.jsonl"),
                 [f for f in buffer.frames if since <= f.timestamp < until])
    check_events("jsonl", read_jsonl(out / "events.jsonl"), [EVENTS[1]])
    check_files(out, manifest)

    # --class and --channel: only the raw channel's frames, with a relative time
    only = tmp_path / "frames-only"
    manifest = export(buffer, only, "--class", "frames", "--channel", "raw0",
                      "--since", "-20000d", "--until", f"{START + 10}")
    assert [f["name"] for f in manifest["files"]] == ["frames.csv"]
    check_frames("csv", read_csv(only / "frames.csv"),
                 [f for f in buffer.frames if f.timestamp < START + 10])


def test_bad_input_is_refused_and_leaves_nothing(buffer: Buffer, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    bad = bavard("export", "--config", str(buffer.config), "-o", str(out), "--since", "yesterday")
    assert bad.returncode == 1
    assert bad.stderr.startswith("bavard export: --since 'yesterday': not a time: use ISO 8601")
    backwards = bavard("export", "--config", str(buffer.config), "-o", str(out),
                       "--since", "now", "--until", "-1h")
    assert backwards.returncode == 1 and "is not before --until -1h" in backwards.stderr
    missing = bavard("export", "--state-dir", str(tmp_path / "nowhere"), "-o", str(out))
    assert missing.returncode == 1 and "no buffer" in missing.stderr
    assert list(tmp_path.iterdir()) == []

    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    taken = bavard("export", "--config", str(buffer.config), "-o", str(out))
    assert taken.returncode == 1 and "exists and is not empty (--force" in taken.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    manifest = export(buffer, out, "--force", "--class", "events")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt", "SHA256SUMS", "events.csv", "manifest.json"]
    check_files(out, manifest)


def test_dead_letters_and_batches_in_flight_are_exported(tmp_path: Path) -> None:
    """What the box still holds: a batch handed out for upload, and one the receiver
    refused (dead letters), are exported like the rest; an acknowledged one is gone."""
    state = tmp_path / "state"
    samples = [Sample(START + i, "can0", "M", f"S{i // 100}", i * 0.5, "V")
               for i in range(400)]
    with Store(StoreConfig(state_dir=state, chunk_items=100, commit_interval=0.05)) as store:
        for at in range(0, 400, 100):
            store.put_samples(samples[at:at + 100])
            store.flush()
        acked = store.next_batch(max_items=100)
        refused = store.next_batch(max_items=100)
        in_flight = store.next_batch(max_items=100)
        assert acked is not None and refused is not None and in_flight is not None
        store.ack(acked.seq_first, acked.seq_last)
        store.dead_letter(refused.seq_first, refused.seq_last, "HTTP 422")
        store.flush()
        assert store.stats().dead_letter_items == 100
        out = tmp_path / "bundle"
        done = bavard("export", "--state-dir", str(state), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    check_samples("csv", read_csv(out / "samples.csv"), samples[100:])
    manifest = json.loads(done.stdout)["manifest"]
    assert manifest["counts"]["samples"] == 300
    assert [s["described_by"] for s in manifest["signals"]] == ["samples"] * 3  # no DBC known
    assert manifest["dbc_files"] == [] and manifest["dbc_fingerprint"] is None


def test_parquet_without_pyarrow_names_the_extra(buffer: Buffer, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    code = ("import sys; sys.modules['pyarrow'] = None; from agent.cli.main import main; "
            f"sys.exit(main(['export', '--config', {str(buffer.config)!r}, '-o', {str(out)!r}, "
            "'--format', 'parquet']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert "pip install 'bavard[parquet]'" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (mounting needs root; elsewhere the test skips)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CAP_SYS_ADMIN)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_removes_the_partial_bundle(buffer: Buffer, small_fs: Path) -> None:
    out = small_fs / "bundle"
    done = bavard("export", "--config", str(buffer.config), "-o", str(out))
    assert done.returncode == 1
    assert f"-o {out}: the disk is full; the partial export was removed" in done.stderr
    assert "so the whole export needs about" in done.stderr and "are free there" in done.stderr
    assert list(small_fs.iterdir()) == []  # nothing left, not even the temporary directory
    # the same export of less fits
    manifest = export(buffer, out, "--class", "events")
    assert manifest["counts"]["events"] == len(EVENTS)


def test_export_while_the_service_runs(tmp_path: Path) -> None:
    """The real service writes its buffer (a replay at real time) while exports read it."""
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    secret = tmp_path / "fleet.secret"
    secret.write_bytes(b"0123456789abcdef-fleet-secret")
    config.write_text(f'[[channels]]\nname = "v"\nlog = "{LOG}"\ndbc = "{DBC}"\nspeed = 1\n'
                      f'[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n'
                      f'[vehicle]\nvin = "{VIN}"\nid_secret_file = "{secret}"\n'
                      f'[control]\nsocket = "{tmp_path / "control"}"\n')
    env = {**os.environ, "BAVARD_SOCKET": str(tmp_path / "control")}
    log = tmp_path / "log"
    grant_for(config)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)
    try:
        wait_until(lambda: stored(state, "samples") > 500, 30, log)
        first = export_live(config, tmp_path / "one", env)
        assert first["counts"]["samples"] > 500
        assert first["counts"]["events"] >= 1  # the service's start
        seen = first["counts"]["samples"]
        wait_until(lambda: stored(state, "samples") > seen + 500, 30, log)
        second = export_live(config, tmp_path / "two", env)
        assert second["counts"]["samples"] > seen + 500  # it went on writing meanwhile
        assert proc.poll() is None, log.read_text()
        # the pseudonym the batches carry, never the VIN
        assert second["vehicle"]["pseudonym"] == pseudonymous_vehicle_id(
            VIN, secret.read_bytes())
        for path in (tmp_path / "two").iterdir():
            assert VIN.encode() not in path.read_bytes()
        assert second["dbc_fingerprint"] == dbc_fingerprint([DBC])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def export_live(config: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    done = bavard("export", "--config", str(config), "-o", str(out), "--json", env=env)
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)["manifest"]
    check_files(out, manifest)
    rows = read_csv(out / "samples.csv")
    assert len(rows) == manifest["counts"]["samples"]
    return manifest


def stored(state: Path, label: str) -> int:
    try:
        return read_stats_file(state / DB_NAME, time.time()).classes[label].items
    except Exception:  # not created yet
        return 0


def wait_until(condition: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
