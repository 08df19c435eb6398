"""``bavard doctor``: each family of checks on real inputs (TLS servers on 127.0.0.1
with trustme certificates, a scripted ELM327 on a pty, the simulated ECUs and frames
on python-can's virtual bus, a real buffer, this machine's filesystem, clock and
netlink), then whole runs of ``python -m agent doctor`` against a running service and
without one. The CAN link checks are in test_doctor_netlink.py and tests/vcan."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import can
import pytest
import trustme
from cryptography import x509
from helpers.certs import Certs, make_certs
from helpers.consent import grant_for
from helpers.control_service import DBC, ROOT, SAMPLE, wait_for_socket
from helpers.elm_peer import ElmPeer
from test_obd_control import in_process  # noqa: F401 - a fixture
from test_obd_source import Car

from agent.config import ChannelConfig
from agent.control.client import ControlClient
from agent.doctor import clock, disk, endpoint, obd_adapter, traffic
from agent.doctor.certificate import pem_validity, validity
from agent.doctor.configuration import config_checks
from agent.doctor.result import Result
from agent.frames import Event
from agent.obd.settings import ObdSettings
from agent.sources.simulator.obd_ecu import SimulatedEcus
from agent.store import Store, StoreConfig
from agent.upload.settings import UploadConfig

NOW = datetime.datetime.now(datetime.UTC)


def statuses(results: list[Result]) -> dict[str, str]:
    return {r.name: r.status for r in results}


def named(results: list[Result], name: str) -> Result:
    return next(r for r in results if r.name == name)


# -- the upload endpoint -----------------------------------------------------------------------


class TlsServer:
    """Accepts on 127.0.0.1 and does the TLS handshake with ``context``, then waits for
    the peer to close; every wait bounded, stopped at the end of the test."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes: list[str] = []  # "ok" or the server's error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.handshakes.append("ok")
                    select.select([conn], [], [], 2.0)  # until the client closes
            except (ssl.SSLError, OSError) as exc:
                self.handshakes.append(str(exc))
                raw.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


def server_context(ca: trustme.CA, **dates: datetime.datetime) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost", **dates).configure_cert(ctx)
    return ctx


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[tuple[trustme.CA, Path]]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield authority, path


@contextlib.contextmanager
def serve(ctx: ssl.SSLContext) -> Iterator[TlsServer]:
    server = TlsServer(ctx)
    try:
        yield server
    finally:
        server.close()


def test_a_good_endpoint(ca: tuple[trustme.CA, Path]) -> None:
    authority, ca_file = ca
    with serve(server_context(authority)) as server:
        upload = UploadConfig(url=f"https://127.0.0.1:{server.port}/ingest", ca_file=ca_file)
        results = endpoint.endpoint_checks(upload, timeout=2.0)
        assert statuses(results) == {"upload DNS": "pass", "upload TCP": "pass",
                                     "upload TLS": "pass", "upload certificate": "pass"}
        assert "127.0.0.1 is an address" in named(results, "upload DNS").detail
        assert "certificate verified" in named(results, "upload TLS").detail
        assert "valid until" in named(results, "upload certificate").detail
        assert server.handshakes == ["ok"]


def test_a_certificate_that_expires_soon_by_name(ca: tuple[trustme.CA, Path]) -> None:
    authority, ca_file = ca
    soon = NOW + datetime.timedelta(days=10, hours=1)
    with serve(server_context(authority, not_after=soon)) as server:
        upload = UploadConfig(url=f"mqtts://localhost:{server.port}", ca_file=ca_file)
        results = endpoint.endpoint_checks(upload, timeout=2.0)
        assert named(results, "upload DNS").detail.startswith("localhost is ")
        assert named(results, "upload TLS").status == "pass"
        cert = named(results, "upload certificate")
        assert cert.status == "warn" and "in 10 days" in cert.detail
        assert cert.fix == "renew the server's certificate soon"


def test_an_expired_certificate(ca: tuple[trustme.CA, Path]) -> None:
    authority, ca_file = ca
    dates = {"not_before": NOW - datetime.timedelta(days=60),
             "not_after": NOW - datetime.timedelta(days=2)}
    with serve(server_context(authority, **dates)) as server:
        upload = UploadConfig(url=f"https://127.0.0.1:{server.port}", ca_file=ca_file)
        results = endpoint.endpoint_checks(upload, timeout=2.0)
        tls = named(results, "upload TLS")
        assert tls.status == "fail" and "certificate has expired" in tls.detail
        assert tls.fix is not None and tls.fix.startswith("renew the server's certificate")
        cert = named(results, "upload certificate")
        expected = dates["not_after"].strftime("%Y-%m-%d %H:%M")
        assert cert.status == "fail" and cert.detail == f"expired on {expected} UTC"


def test_a_certificate_of_another_ca_and_one_not_valid_yet(
        ca: tuple[trustme.CA, Path], certs: Certs) -> None:
    authority, _ = ca
    later = {"not_before": NOW + datetime.timedelta(days=3),
             "not_after": NOW + datetime.timedelta(days=300)}
    with serve(server_context(authority, **later)) as server:
        upload = UploadConfig(url=f"https://127.0.0.1:{server.port}",
                              ca_file=certs.other_ca_file)
        results = endpoint.endpoint_checks(upload, timeout=2.0)
        tls = named(results, "upload TLS")
        assert tls.status == "fail" and tls.fix is not None
        assert f"upload.ca_file ({certs.other_ca_file}) must hold the CA" in tls.fix
        cert = named(results, "upload certificate")  # read without verification
        assert cert.status == "fail" and cert.detail.startswith("not valid before")


def test_client_certificates(certs: Certs, tmp_path: Path) -> None:
    with serve(certs.server_context(require_client_cert=True)) as server:
        url = f"https://127.0.0.1:{server.port}"
        results = endpoint.endpoint_checks(UploadConfig(url=url, ca_file=certs.ca_file), 2.0)
        tls = named(results, "upload TLS")  # TLS 1.3: the server's alert after the handshake
        assert tls.status == "fail" and "the server wants a client certificate" in tls.detail
        assert tls.fix == "set upload.cert_file and upload.key_file (mTLS)"
        stranger = trustme.CA().issue_cert("bavard-client@example.org")
        stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
        stranger.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
        os.chmod(tmp_path / "stranger.key", 0o600)
        upload = UploadConfig(url=url, ca_file=certs.ca_file,
                              cert_file=tmp_path / "stranger.pem",
                              key_file=tmp_path / "stranger.key")
        tls = named(endpoint.endpoint_checks(upload, 2.0), "upload TLS")
        assert tls.status == "fail" and "refused our client certificate" in tls.detail
        upload = UploadConfig(url=url, ca_file=certs.ca_file, cert_file=certs.client_cert,
                              key_file=certs.client_key)
        results = endpoint.endpoint_checks(upload, 2.0)
        assert statuses(results) == {"upload DNS": "pass", "upload TCP": "pass",
                                     "upload TLS": "pass", "upload certificate": "pass",
                                     "client certificate": "pass"}
        assert "with our client certificate" in named(results, "upload TLS").detail


def test_a_closed_port_a_name_that_does_not_resolve_and_plain_http() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: refused
    port = sock.getsockname()[1]
    try:
        results = endpoint.endpoint_checks(UploadConfig(url=f"https://127.0.0.1:{port}"), 2.0)
    finally:
        sock.close()
    tcp = named(results, "upload TCP")
    assert tcp.status == "fail" and "Connection refused" in tcp.detail
    assert "upload TLS" not in statuses(results)

    results = endpoint.endpoint_checks(UploadConfig(url="https://bavard.invalid/x"), 2.0)
    assert statuses(results) == {"upload DNS": "fail", "upload TCP": "skip"}
    assert "cannot resolve bavard.invalid" in named(results, "upload DNS").detail

    with socket.create_server(("127.0.0.1", 0)) as plain:
        url = f"http://127.0.0.1:{plain.getsockname()[1]}/ingest"
        results = endpoint.endpoint_checks(UploadConfig(url=url), 2.0)
    assert statuses(results)["upload TLS"] == "skip"
    assert "a receiver on this machine" in named(results, "upload TLS").detail
    (result,) = endpoint.endpoint_checks(None, 2.0)
    assert result.status == "skip"


def test_certificate_dates_read_from_der(ca: tuple[trustme.CA, Path], tmp_path: Path) -> None:
    authority, _ = ca
    for after in (NOW + datetime.timedelta(days=90),  # UTCTime
                  datetime.datetime(2051, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)):  # Generalized
        leaf = authority.issue_cert("example.org", not_after=after)
        pem = leaf.cert_chain_pems[0].bytes()
        expected = x509.load_pem_x509_certificate(pem)
        got = validity(ssl.PEM_cert_to_DER_cert(pem.decode()))
        assert got.not_after == expected.not_valid_after_utc
        assert got.not_before == expected.not_valid_before_utc
        (tmp_path / "leaf.pem").write_bytes(pem)
        assert pem_validity(tmp_path / "leaf.pem") == got
    with pytest.raises(ValueError, match="DER"):
        validity(b"\x30\x03\x02\x01\x01")
    (tmp_path / "nothing.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="no PEM certificate"):
        pem_validity(tmp_path / "nothing.pem")


# -- disk and buffer ---------------------------------------------------------------------------


def fake_fs(free_share: float, total: int = 1_000_000) -> os.statvfs_result:
    free = int(total * free_share)
    return os.statvfs_result((4096, 4096, total, free, free, 1000, 500, 500, 0, 255))


def test_disk_space(tmp_path: Path) -> None:
    store = StoreConfig(state_dir=tmp_path / "state")
    result = disk.space(store, None)
    assert result.status == "pass"
    assert f"{tmp_path / 'state'} does not exist yet" in result.detail  # its parent
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    greedy = StoreConfig(state_dir=tmp_path, quota_bytes=free * 2, min_free_bytes=0)
    result = disk.space(greedy, None)
    assert result.status == "fail" and "cannot grow to its quota" in result.detail
    assert result.fix is not None and "lower [store] quota_bytes to" in result.fix
    small = StoreConfig(state_dir=tmp_path, quota_bytes=1024 * 1024)
    assert disk.space(small, None, statvfs=lambda p: fake_fs(0.05)).status == "warn"
    assert disk.space(small, None, statvfs=lambda p: fake_fs(0.01)).status == "fail"
    assert disk.space(small, None, statvfs=lambda p: fake_fs(0.5)).status == "pass"


def test_buffer_age_and_dead_letters(tmp_path: Path) -> None:
    t = [1_700_000_000.0]
    config = StoreConfig(state_dir=tmp_path, commit_interval=0.05)
    with Store(config, clock=lambda: t[0]) as store:
        store.put_events([Event(t[0], "obd", "dtc.set", f"P010{i}", 3) for i in range(3)])
        store.flush(10)
        batch = store.next_batch()
        assert batch is not None
        store.dead_letter(batch.seq_first, batch.seq_last, "refused")
        store.put_events([Event(t[0], "obd", "dtc.set", "P0200", 3)])
        store.flush(10)
    day = 86_400.0
    fresh = disk.disk_checks(config, None, upload=True, wall=t[0] + 60)
    assert statuses(fresh) == {"disk": "pass", "buffer": "pass", "dead letters": "warn"}
    assert "1 item waiting, the oldest 60 s old" in named(fresh, "buffer").detail
    old = disk.disk_checks(config, None, upload=True, wall=t[0] + 2 * day)
    buffer = named(old, "buffer")
    assert buffer.status == "warn" and "2.0 days old: uploads are not happening" in \
        buffer.detail
    kept = disk.disk_checks(config, None, upload=False, wall=t[0] + 2 * day)
    assert named(kept, "buffer").status == "pass"
    assert "no [upload]" in named(kept, "buffer").detail
    none = disk.disk_checks(StoreConfig(state_dir=tmp_path / "new"), None, upload=True)
    assert named(none, "buffer").status == "skip"


# -- the clock -----------------------------------------------------------------------------------


def test_the_clock() -> None:
    real = clock.adjtimex()  # this machine's kernel, read only
    assert 0 <= real.state <= 5 and real.maxerror_us >= 0
    results = clock.clock_checks()
    assert named(results, "clock").status == "pass"
    assert named(results, "clock sync").status == ("pass" if real.synchronised else "warn")
    built = clock.package_time()
    before = clock.clock_checks(wall=lambda: built - 86_400 * 400,
                                sync=lambda: clock.Sync(0, 0, 1500))
    assert statuses(before) == {"clock": "fail", "clock sync": "pass"}
    assert "before this bavard was installed" in named(before, "clock").detail
    unsynced = clock.clock_checks(sync=lambda: clock.Sync(clock.TIME_ERROR,
                                                          clock.STA_UNSYNC, 16_000_000))
    sync = named(unsynced, "clock sync")
    assert sync.status == "warn" and sync.fix is not None and "set-ntp true" in sync.fix


# -- the configuration -------------------------------------------------------------------------


def test_the_configuration(tmp_path: Path) -> None:
    missing = config_checks(tmp_path / "none.toml")
    assert missing.config is None and missing.results[0].status == "fail"
    assert missing.results[0].detail.startswith(f"{tmp_path / 'none.toml'}: cannot read file")
    assert missing.results[0].fix == "give the service's configuration with --config FILE"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[[channels]]\nname = "v"\nlog = "{tmp_path}/x.log"\ndbc = ["{DBC}"]\n'
                   "speeed = 2\n")
    checked = config_checks(bad)
    assert {r.status for r in checked.results} == {"fail"}
    assert any("speeed" in r.detail for r in checked.results)
    warned = tmp_path / "warned.toml"
    warned.write_text(f'[[channels]]\nname = "v"\nsimulate = true\n[selection]\n'
                      f'include = ["Nothing.Here*"]\n[store]\nstate_dir = "{tmp_path}"\n')
    checked = config_checks(warned)
    assert [r.status for r in checked.results] == ["pass", "warn"]
    assert "'Nothing.Here*' matches no signal" in checked.results[1].detail


# -- traffic --------------------------------------------------------------------------------------


def send_frames(channel: str, ids: list[int], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        bus = can.Bus(interface="virtual", channel=channel)
        try:
            n = 0
            while not stop.wait(0.005) and n < 10_000:
                bus.send(can.Message(arbitration_id=ids[n % len(ids)], is_extended_id=False,
                                     data=bytes(8)))
                n += 1
        finally:
            bus.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("ids", "status", "text"), [
    ([0x100, 0x140, 0x7FF], "pass", "67% of the 3 ids seen are in the DBCs (1 unknown)"),
    ([0x7FE, 0x7FF], "fail", "none of their ids is in the DBCs"),
    ([], "warn", "no frame in 0.5 s of listening"),
])
def test_listening_to_a_bus(ids: list[int], status: str, text: str) -> None:
    name = f"bavard-doctor-{os.getpid()}-{len(ids)}"
    ch = ChannelConfig("bench", dbc=(DBC,), interface="virtual", channel=name)
    stop = threading.Event()
    sender = send_frames(name, ids, stop) if ids else None
    try:
        result = traffic.judge_heard("bench", traffic.hear(ch, 0.5), traffic.known_ids(ch, {}))
    finally:
        stop.set()
        if sender is not None:
            sender.join(5)
    assert result.status == status and text in result.detail, result
    assert "listened 0.5 s" in result.detail or not ids


@pytest.mark.parametrize(("ids", "exclude", "status", "text"), [
    ([0x7FE, 0x7FF], [], "fail", "the service reads no frame (its kernel filter passes"),
    ([0x100], ["EngineData.*"], "warn", "the service reads no frame, yet the bus carries"),
])
def test_a_service_that_reads_nothing_is_listened_beside(
        tmp_path: Path, ids: list[int], exclude: list[str], status: str, text: str) -> None:
    """The service reads its bus through a filter of the selected ids: the doctor listens
    to everything beside it to tell a silent bus from a DBC or a selection that does not
    fit (python-can's virtual bus filters like the kernel does)."""
    from agent.config import load_config
    from agent.service.daemon import Daemon

    name = f"bavard-doctor-live-{os.getpid()}-{len(ids)}"
    socket_path = tmp_path / "control"
    config_path = tmp_path / "bavard.toml"
    config_path.write_text(f"""
[[channels]]
name = "bench"
interface = "virtual"
channel = "{name}"
dbc = ["{DBC}"]

[selection]
exclude = {json.dumps(exclude)}

[store]
state_dir = "{tmp_path / 'state'}"

[control]
socket = "{socket_path}"
""")
    grant_for(config_path)
    daemon = Daemon(config_path)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    stop = threading.Event()
    sender = send_frames(name, ids, stop)
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.05)
        time.sleep(2.5)  # the service's rate meter has looked at least once
        with ControlClient.connect(socket_path, timeout=5) as service:
            doc = service.call("status")
        (channel,) = doc["channels"]
        assert channel["state"] == "up" and channel["frames_per_s"] == 0, channel
        (result,) = traffic.traffic_checks(load_config(config_path), doc, 0.5)
    finally:
        stop.set()
        sender.join(5)
        daemon.request_stop()
        runner.join(15)
    assert result.status == status and text in result.detail, result


# -- OBD ---------------------------------------------------------------------------------------


@pytest.fixture
def elm(tmp_path: Path) -> Iterator[ElmPeer]:
    with ElmPeer(answers=Car().answers(), protocol="6") as peer:
        yield peer


def elm_channel(port: str) -> ChannelConfig:
    return ChannelConfig("elm", obd=ObdSettings(port=port, protocol="6"))


@pytest.mark.parametrize(("volts", "status"), [("12.6V", "pass"), ("11.8V", "warn"),
                                                 ("11.2V", "fail"), ("14.2V", "pass"),
                                                 ("15.6V", "warn"), ("25.1V", "pass"),
                                                 ("23.5V", "warn")])
def test_an_elm327_and_its_battery(elm: ElmPeer, volts: str, status: str) -> None:
    elm.voltage = volts
    results = obd_adapter.direct(elm_channel(elm.path), timeout=1.0)
    assert statuses(results) == {"ELM327 elm": "pass", "OBD elm": "pass",
                                 "battery elm": status}
    assert "ELM327 v1.5 on" in named(results, "ELM327 elm").detail
    assert "ISO 15765-4 (CAN 11/500), 1 ECU(s) answered 01 00" in \
        named(results, "OBD elm").detail
    assert named(results, "battery elm").detail.startswith(volts[:-1] + " V")


def test_an_elm327_without_a_vehicle_and_no_adapter(elm: ElmPeer, tmp_path: Path) -> None:
    elm.obd_override = ["UNABLE TO CONNECT"]
    elm.voltage = "11.9V"
    results = obd_adapter.direct(elm_channel(elm.path), timeout=1.0)
    assert statuses(results) == {"ELM327 elm": "pass", "OBD elm": "fail", "battery elm": "warn"}
    assert named(results, "OBD elm").fix == obd_adapter.IGNITION_FIX
    (result,) = obd_adapter.direct(elm_channel(str(tmp_path / "ttyUSB4")), timeout=1.0)
    assert result.status == "fail" and "no ELM327 answers" in result.detail


def test_native_obd_on_the_simulated_ecus() -> None:
    name = f"bavard-doctor-obd-{os.getpid()}"
    ch = ChannelConfig("obd", obd=ObdSettings(interface="virtual", channel=name))
    with SimulatedEcus.open("virtual", name, speed=1.0).start():
        (result,) = obd_adapter.direct(ch, timeout=1.0)
    assert result.status == "pass" and "ECU 7E8, 7E9 answered 01 00" in result.detail
    (result,) = obd_adapter.direct(ch, timeout=0.3)  # the ECUs are gone
    assert result.status == "fail" and "no ECU answered 01 00 within 0.3 s" in result.detail


# -- whole runs ------------------------------------------------------------------------------


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "doctor", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[str]:
    from agent.receiver.core import Receiver
    from agent.receiver.http_server import serve as serve_http

    got = Receiver.open(tmp_path / "received")
    server = serve_http(got, "127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.close()
        got.close()


def test_doctor_against_a_running_service(tmp_path: Path, receiver: str) -> None:
    config = tmp_path / "bavard.toml"
    socket_path = tmp_path / "control"
    config.write_text(f"""
[[channels]]
name = "vehicle"
log = "{SAMPLE}"
dbc = ["{DBC}"]
speed = 0.2

[store]
state_dir = "{tmp_path / 'state'}"
commit_interval = 0.2

[upload]
url = "{receiver}"
require_link = false
linger = 0.2
batch_seconds = 1.0

[control]
socket = "{socket_path}"
""")
    log = tmp_path / "service.log"
    grant_for(config)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)
    try:
        wait_for_socket(proc, socket_path, log, 30.0)
        deadline = time.monotonic() + 30
        while True:  # the first upload, so that "last upload" has an age
            with ControlClient.connect(socket_path, timeout=5) as service:
                status = service.call("status")
            if status["upload"]["last_upload_age_s"] is not None:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        done = doctor("--config", str(config), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        doc = json.loads(done.stdout)
        checks = {c["name"]: c for c in doc["checks"]}
        assert doc["ok"] is True and doc["counts"]["fail"] == 0
        assert checks["service"]["status"] == "pass"
        assert f"(pid {proc.pid})" in checks["service"]["detail"]
        assert checks["service configuration"]["status"] == "pass"
        assert checks["watchdog"]["status"] == "pass"
        assert checks["configuration"]["status"] == "pass"
        assert checks["traffic"]["status"] == "skip"  # a replayed log: no bus
        assert checks["disk"]["status"] == "pass"
        assert checks["last upload"]["status"] == "pass"
        assert " ago (state " in checks["last upload"]["detail"]
        assert checks["upload TCP"]["status"] == "pass"
        assert checks["upload TLS"]["status"] == "skip"  # http:// to this machine
        # the traffic of a channel as the service counts it
        vehicle = next(c for c in status["channels"] if c["name"] == "vehicle")
        assert traffic.from_status("vehicle", vehicle).status in ("pass", "warn")

        # uploads paused by hand: a warning with the command that resumes them
        with ControlClient.connect(socket_path, timeout=5) as service:
            service.call("upload.pause", reason="doctor test")
        # and the file changed under the running service: a warning, not a failure
        config.write_text(config.read_text() + "\n# edited\n")
        done = doctor("--config", str(config))
        assert done.returncode == 0, done.stdout
        assert "changed since the service loaded it" in done.stdout
        assert "fix: sudo systemctl reload bavard" in done.stdout
        assert "uploads are paused (doctor test)" in done.stdout
        assert "fix: bavard resume" in done.stdout
    finally:
        proc.terminate()
        proc.wait(15)


def test_doctor_without_the_service_and_with_a_broken_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bavard.toml"
    socket_path = tmp_path / "control"
    config.write_text(f'[[channels]]\nname = "v"\nsimulate = true\n[store]\nstate_dir = '
                      f'"{tmp_path / "state"}"\n[control]\nsocket = "{socket_path}"\n')
    done = doctor("--config", str(config))
    assert done.returncode == 0, done.stdout  # warnings only
    lines = done.stdout.splitlines()
    assert lines[0].startswith("WARN  service") and f"nothing answers on {socket_path}" in \
        lines[0]
    assert lines[1].strip() == ("fix: sudo systemctl start bavard (or bavard run --config "
                                "FILE)")
    assert any(line.startswith("ok    configuration") for line in lines)
    assert lines[-1].endswith("0 failed, " + lines[-1].split("0 failed, ")[1])

    config.write_text(config.read_text() + "bogus = 1\n")
    done = doctor("--config", str(config))
    assert done.returncode == 1
    assert any(line.startswith("FAIL  configuration") and "bogus" in line
               for line in done.stdout.splitlines())
    done = doctor("--config", str(config), "--timeout", "0")
    assert done.returncode == 2 and "--timeout must be above 0" in done.stderr


def test_doctor_reads_the_obd_channels_from_the_service(
        in_process: tuple[Path, SimulatedEcus, str], tmp_path: Path) -> None:  # noqa: F811
    """The service holds the adapters: the doctor reads its figures, opens nothing."""
    _, ecus, _ = in_process
    requests = ecus.requests
    done = doctor("--config", str(tmp_path / "bavard.toml"), "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # the elm channel has no adapter
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["service"]["status"] == "pass"
    obd = checks["OBD obd"]
    assert obd["status"] == "pass" and "the vehicle answers (1 connections" in obd["detail"]
    elm = checks["OBD elm"]
    assert elm["status"] == "fail" and "adapter fault" in elm["detail"]
    assert elm["fix"].startswith("check the adapter on")
    assert checks["battery elm"]["status"] == "skip"
    assert ecus.requests - requests < 20  # the service's polls only: no scan of ours
