"""The systemd units and the install/uninstall scripts.

- bavard.service: the directives the agent relies on, and its sandbox scored by
  ``systemd-analyze security --offline=true`` (exposure <= 2.0), and
  ``systemd-analyze verify`` (skipped when systemd-analyze is absent);
- MemoryDenyWriteExecute=yes: the agent runs under the kernel's equivalent,
  prctl(PR_SET_MDWE) (Linux >= 6.3, skipped before);
- 80-bavard-can0.network and bavard-can@.service;
- scripts/install.sh into a DESTDIR, twice (the second run changes nothing),
  then scripts/uninstall.sh (nothing of ours left, config kept unless --purge).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> every value in order (systemd keys may repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}: no continuation lines expected"
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


# ---------------------------------------------------------------- bavard.service


def test_service_directives() -> None:
    unit = parse_unit(SYSTEMD / "bavard.service")
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/opt/bavard/venv/bin/bavard run --config /etc/bavard/bavard.toml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "User": "bavard",
        "Group": "bavard",
        "StateDirectory": "bavard",
        "StateDirectoryMode": "0700",
        "ConfigurationDirectory": "bavard",
        "RuntimeDirectory": "bavard",
        "CacheDirectory": "bavard",
        "Restart": "on-failure",
        "WatchdogSec": "30s",
        "TimeoutStopSec": "10s",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "MemoryMax": "200M",
    }
    service = unit["Service"]
    wrong = {k: service.get(k) for k, v in expected.items() if service.get(k, [None])[-1] != v}
    assert wrong == {}
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0"  # never give up restarting
    assert "DynamicUser" not in service
    assert "RestartSec" in service and "TasksMax" in service
    assert sorted(one(unit, "Service", "RestrictAddressFamilies").split()) == sorted(
        ["AF_CAN", "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
    )
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # serial OBD adapters get through the device cgroup; nothing else does
    allowed = {v.split()[0] for v in service["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyACM"} <= allowed
    assert all(a.startswith("char-tty") or a == "char-rfcomm" for a in allowed)
    # uploads go to arbitrary hosts: no IP allow list
    assert "IPAddressDeny" not in service and "IPAddressAllow" not in service
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@needs_analyze
def test_service_exposure_is_at_most_2() -> None:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(SYSTEMD / "bavard.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = out.stdout + out.stderr
    m = re.search(r"Overall exposure level for bavard\.service: (\d+\.\d+)", text)
    if m is None and "--offline" in text:
        pytest.skip(f"this systemd-analyze has no --offline: {text.strip()[:200]}")
    assert m, text
    assert float(m.group(1)) <= 2.0, text


def _verify(*units: Path) -> list[str]:
    """systemd-analyze verify; the complaints, minus the binaries that only exist installed."""
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    only_installed = re.compile(
        r"Command (/opt/bavard/venv/bin/bavard|/sbin/ip|/bin/kill) is not executable"
    )
    return [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if line.strip() and not only_installed.search(line)
    ]


@needs_analyze
def test_units_verify(tmp_path: Path) -> None:
    assert _verify(SYSTEMD / "bavard.service") == []
    instance = tmp_path / "bavard-can@can0.service"
    shutil.copy(SYSTEMD / "bavard-can@.service", instance)
    assert _verify(SYSTEMD / "bavard-can@.service", instance) == []


@needs_analyze
def test_verify_does_catch_a_broken_unit(tmp_path: Path) -> None:
    bad = tmp_path / "bavard.service"
    text = (SYSTEMD / "bavard.service").read_text()
    bad.write_text(text.replace("Type=notify\n", "Type=notifyy\n"))
    assert any("Type" in line or "notifyy" in line for line in _verify(bad))


# ---------------------------------------------------------------- MemoryDenyWriteExecute

MDWE_LAUNCHER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit(77)
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    """
)

MDWE_PROBE = textwrap.dedent(
    """
    import contextlib, importlib, io, mmap, pkgutil, sqlite3, ssl, sys, tempfile
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        mdwe = False
    except PermissionError:
        mdwe = True
    import agent
    for m in pkgutil.walk_packages(agent.__path__, "agent."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
    import msgpack, zstandard
    blob = zstandard.ZstdCompressor(level=3).compress(msgpack.packb({"v": [1, 2.5]}))
    assert msgpack.unpackb(zstandard.ZstdDecompressor().decompress(blob)) == {"v": [1, 2.5]}
    ssl.create_default_context()
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(d + "/x.db")
        db.execute("pragma journal_mode=wal")
        db.execute("create table t(x)")
        db.commit()
    from agent.cli.main import main
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["demo", "--duration", "1", "--speed", "0"])
    print("mdwe" if mdwe else "no-mdwe", rc, "_cffi_backend" in sys.modules)
    """
)


def test_the_agent_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    launcher = tmp_path / "mdwe.py"
    launcher.write_text(MDWE_LAUNCHER)
    probe = tmp_path / "probe.py"
    probe.write_text(MDWE_PROBE)
    out = subprocess.run(
        [sys.executable, str(launcher), str(probe)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if out.returncode == 77:
        pytest.skip("prctl(PR_SET_MDWE) not supported by this kernel (needs Linux >= 6.3)")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["mdwe", "0", "False"], out.stdout


# ---------------------------------------------------------------- CAN bring-up


def test_networkd_can0() -> None:
    net = parse_unit(SYSTEMD / "80-bavard-can0.network")
    assert one(net, "Match", "Name") == "can0"
    assert one(net, "CAN", "BitRate") in {"500K", "500000"}
    assert one(net, "CAN", "RestartSec") == "100ms"
    assert one(net, "Link", "RequiredForOnline") == "no"
    networkd = Path("/lib/systemd/systemd-networkd")
    if networkd.exists():  # the keys exist in this systemd's networkd
        binary = networkd.read_bytes()
        for key in (b"BitRate", b"RestartSec", b"RequiredForOnline"):
            assert key in binary


def test_can_template() -> None:
    unit = parse_unit(SYSTEMD / "bavard-can@.service")
    assert one(unit, "Unit", "BindsTo") == "sys-subsystem-net-devices-%i.device"
    assert one(unit, "Unit", "After") == "sys-subsystem-net-devices-%i.device"
    assert one(unit, "Unit", "Before") == "bavard.service"
    service = unit["Service"]
    assert one(unit, "Service", "Type") == "oneshot"
    assert one(unit, "Service", "RemainAfterExit") == "yes"
    assert "-/etc/bavard/can.env" in service["EnvironmentFile"]
    assert "-/etc/bavard/can-%i.env" in service["EnvironmentFile"]
    assert service["ExecStart"] == [
        "/sbin/ip link set %i type can bitrate ${BITRATE} restart-ms ${RESTART_MS} $CAN_OPTIONS",
        "/sbin/ip link set %i up",
    ]
    assert one(unit, "Service", "Environment").split() == [
        "BITRATE=500000",
        "RESTART_MS=100",
        "CAN_OPTIONS=",
    ]
    assert one(unit, "Install", "WantedBy") == "sys-subsystem-net-devices-%i.device"


# ---------------------------------------------------------------- install / uninstall


def clone(tmp_path: Path, *, with_package: bool = False) -> Path:
    """A snapshot of the files install.sh uses (others may be editing the checkout)."""
    src = tmp_path / "clone"
    parts = ["scripts/install.sh", "scripts/uninstall.sh", "systemd", "dbc/demo_vehicle.dbc"]
    if with_package:
        parts += ["agent", "dbc", "pyproject.toml", "README.md", "LICENSE",
                  "tests/data/sample_drive.log"]
    for part in parts:
        origin, target = ROOT / part, src / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"),
                            dirs_exist_ok=True)
        else:
            shutil.copy2(origin, target)
    return src


def run_script(src: Path, name: str, destdir: Path, *args: str, **env: str) -> str:
    out = subprocess.run(
        ["bash", str(src / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DESTDIR": str(destdir), **env},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, size, mtime_ns, sha256 or link target) of everything under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


OUR_FILES = [
    "etc/bavard/bavard.toml",
    "etc/bavard/dbc/demo_vehicle.dbc",
    "etc/systemd/network/80-bavard-can0.network",
    "etc/systemd/system/bavard-can@.service",
    "etc/systemd/system/bavard.service",
]


def test_install_twice_into_destdir_then_uninstall(tmp_path: Path) -> None:
    src = clone(tmp_path)
    dest = tmp_path / "root"
    first = run_script(src, "install.sh", dest, BAVARD_INSTALL_SKIP_VENV="1")
    assert "installing files only" in first and "skipped systemctl" in first
    assert files(dest) == OUR_FILES
    assert (dest / "etc/bavard/bavard.toml").read_bytes() == (
        src / "systemd/bavard.toml"
    ).read_bytes()
    # the first configuration is valid where it is installed
    check = subprocess.run([sys.executable, "-m", "agent", "config", "check",
                            str(dest / "etc/bavard/bavard.toml")], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    assert stat.S_IMODE((dest / "etc/bavard/bavard.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((dest / "etc/systemd/system/bavard.service").stat().st_mode) == 0o644

    before = tree(dest)
    second = run_script(src, "install.sh", dest, "--skip-venv")
    assert "nothing to change" in second
    assert tree(dest) == before

    # an operator's configuration is never overwritten; a changed unit is updated
    (dest / "etc/bavard/bavard.toml").write_text("# mine\n")
    (src / "systemd/bavard.toml").write_text("# a newer example\n")
    (dest / "etc/systemd/system/bavard.service").write_text("# edited by hand\n")
    (dest / "etc/systemd/system/bavard-can@.service").chmod(0o600)
    third = run_script(src, "install.sh", dest, "--skip-venv")
    assert "installed /etc/systemd/system/bavard.service" in third
    assert (dest / "etc/bavard/bavard.toml").read_text() == "# mine\n"
    assert tree(dest)["etc/systemd/system/bavard.service"][3] == before[
        "etc/systemd/system/bavard.service"
    ][3]
    assert stat.S_IMODE((dest / "etc/systemd/system/bavard-can@.service").stat().st_mode) == 0o644

    # an enablement symlink, as systemctl enable would leave it
    wants = dest / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "bavard.service").symlink_to("/etc/systemd/system/bavard.service")
    (dest / "var/lib/bavard").mkdir(parents=True)
    (dest / "var/lib/bavard/buffer.sqlite").write_bytes(b"not uploaded yet")

    run_script(src, "uninstall.sh", dest)
    assert files(dest) == ["etc/bavard/bavard.toml", "etc/bavard/dbc/demo_vehicle.dbc",
                           "var/lib/bavard/buffer.sqlite"]
    run_script(src, "uninstall.sh", dest, "--purge")
    assert files(dest) == []


def test_scripts_help_and_bad_arguments() -> None:
    for name in ("install.sh", "uninstall.sh"):
        script = ROOT / "scripts" / name
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.startswith(f"usage: scripts/{name}")
        bad = subprocess.run(
            [str(script), "--bogus"], capture_output=True, text=True, env={**os.environ}
        )
        assert bad.returncode == 2 and "unknown argument" in bad.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    out = subprocess.run(
        ["shellcheck", str(ROOT / "scripts/install.sh"), str(ROOT / "scripts/uninstall.sh")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout


@pytest.mark.slow
def test_install_with_the_virtualenv(tmp_path: Path) -> None:
    """The real venv step, once: pip installs the clone (about 20 s here)."""
    src = clone(tmp_path, with_package=True)
    dest = tmp_path / "root"
    out = run_script(src, "install.sh", dest)
    assert "created the virtualenv /opt/bavard/venv" in out
    bavard = dest / "opt/bavard/venv/bin/bavard"
    version = subprocess.run([str(bavard), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("bavard "), version.stderr
    # non-editable: the venv does not depend on the clone staying there
    check = subprocess.run(
        [str(dest / "opt/bavard/venv/bin/python"), "-c", "import agent; print(agent.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(dest / "opt/bavard/venv") in check.stdout

    before = tree(dest)
    again = run_script(src, "install.sh", dest)
    assert "nothing to change" in again
    assert tree(dest) == before

    # changed sources: the package is reinstalled, nothing else
    (src / "agent" / "_install_probe.py").write_text("X = 1\n")
    third = run_script(src, "install.sh", dest)
    assert "pip install" in third
    run_script(src, "uninstall.sh", dest, "--purge")
    assert files(dest) == []
