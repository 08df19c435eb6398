"""The real-kernel tier's runners (scripts/vcan_run.sh, scripts/uml/run.sh,
scripts/qemu/run.sh) and the test command's setup (scripts/test_deps.sh).

Decisions:

* **A crashed guest is a failure, never "no vcan here"**: a kernel panic while
  the command runs gives status 123 with the kernel's own panic line on
  stderr, one line, no stack; a guest that does not boot gives 122. 125 (the
  tier skipped outside CI) is kept for "no runner can exist here".
* **UML dying at boot falls through to QEMU**: on hosts whose CPUs have AMX,
  Debian's UML panics at boot ("ptrace set fp regs failed", then "Kernel panic
  - not syncing: Attempted to kill init!"). The same panic is had on any host
  by giving the real UML run an init that exits at once
  (``BAVARD_UML_APPEND=init=/bin/false``); the picker must then say so in one
  line and run the command in QEMU, whose guest has vcan0 (mtu 72) and
  can-isotp.
* **Cost**: a UML boot is about 3 s, a QEMU boot under TCG about 9 s; the
  tests here boot UML twice and QEMU twice (once only as far as its init),
  about 20 s in all. Each skips where its runner cannot run, except under
  ``BAVARD_REQUIRE_VCAN=1`` (CI) on a kernel without vcan, where a missing
  runner is a failure (UML only on x86_64, the one Debian builds it for).
* **The mosquitto service**: the test command disables the service of a
  mosquitto it has just installed (the tests start their own broker). Checked
  on the real tools (deb-systemd-helper, update-rc.d) in a mount and PID
  namespace of the test's own, /etc and /var/lib/systemd under a throwaway
  overlay: the machine's own files and processes are never touched.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.vcan import conftest as vcan_conftest

SCRIPTS = ROOT / "scripts"
REQUIRED = os.environ.get("BAVARD_REQUIRE_VCAN") == "1"
QEMU = f"qemu-system-{platform.machine()}"
UML_ARCH = platform.machine() == "x86_64"  # Debian builds user-mode-linux for amd64 only
PANIC = "Kernel panic - not syncing:"


def need(ok: bool, why: str, required: bool = True) -> None:
    """Skip when ``ok`` is false; fail instead in CI (BAVARD_REQUIRE_VCAN=1) when the
    tier depends on the runner: this kernel has no vcan, and ``required``."""
    if not ok:
        if REQUIRED and required and not native_vcan_possible():
            pytest.fail(f"{why}, and BAVARD_REQUIRE_VCAN=1")
        pytest.skip(why)


def amx_host() -> bool:
    """Debian's UML dies at boot on CPUs with AMX."""
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@functools.cache
def native_vcan_possible() -> bool:
    if Path("/sys/class/net/vcan0").exists():
        return True
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    return os.geteuid() == 0 and Path(modprobe).exists() and subprocess.run(
        [modprobe, "--dry-run", "vcan"], capture_output=True, timeout=30).returncode == 0


def run(cmd: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


def stderr_lines(proc: subprocess.CompletedProcess[str], word: str) -> list[str]:
    return [line for line in proc.stderr.splitlines() if word in line]


def test_a_uml_guest_that_panics_under_the_command_is_a_failure_with_the_panic_line() -> None:
    need(Path("/usr/bin/linux.uml").exists(), "no User-Mode Linux here", UML_ARCH)
    if amx_host():
        pytest.skip("UML does not boot on CPUs with AMX (the QEMU tests cover this host)")
    proc = run([str(SCRIPTS / "uml" / "run.sh"), "sh", "-c",
                "echo before; echo c > /proc/sysrq-trigger; echo after"], timeout=300)
    assert proc.returncode == 123, proc.stderr
    assert "before" in proc.stdout and "after" not in proc.stdout
    panic = stderr_lines(proc, PANIC)
    assert len(panic) == 1, proc.stderr
    assert "the guest crashed while the command ran" in panic[0]
    assert panic[0].endswith("Kernel panic - not syncing: sysrq triggered crash")
    assert "Call Trace" not in proc.stderr and len(proc.stderr.splitlines()) <= 3


def test_uml_dying_at_boot_falls_through_to_qemu_with_vcan0_and_can_isotp() -> None:
    if native_vcan_possible():
        pytest.skip("this kernel has vcan: the tier runs natively, no guest needed")
    need(Path("/usr/bin/linux.uml").exists(), "no User-Mode Linux here", UML_ARCH)
    need(shutil.which(QEMU) is not None, f"no {QEMU} here")
    check = ("test -e /sys/class/net/vcan0 && test \"$(cat /sys/class/net/vcan0/mtu)\" = 72"
             " && modprobe can-isotp && grep -q '^can_isotp ' /proc/modules && echo guest-ok")
    proc = run([str(SCRIPTS / "vcan_run.sh"), "sh", "-c", check],
               BAVARD_VCAN_RUNNER="auto", BAVARD_UML_APPEND="init=/bin/false")
    need(proc.returncode != 125, f"QEMU cannot run here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1:] == ["guest-ok"], proc.stdout + proc.stderr
    uml = stderr_lines(proc, "User-Mode Linux:")
    assert len(uml) == 1, proc.stderr
    assert PANIC in uml[0] and uml[0].endswith("running in QEMU instead"), uml[0]
    assert "Call Trace" not in proc.stderr and "Aborted" not in proc.stderr, proc.stderr


def test_a_qemu_guest_that_does_not_boot_is_a_failure_not_a_skip() -> None:
    need(shutil.which(QEMU) is not None, f"no {QEMU} here")
    proc = run([str(SCRIPTS / "vcan_run.sh"), "true"],
               BAVARD_VCAN_RUNNER="qemu", BAVARD_QEMU_APPEND="rdinit=/bin/false")
    need(proc.returncode != 125, f"QEMU cannot run here: {proc.stderr.strip()}")
    assert proc.returncode == 122, proc.stderr
    qemu = stderr_lines(proc, "QEMU:")
    assert len(qemu) == 1, proc.stderr
    assert "the guest did not boot" in qemu[0] and PANIC in qemu[0], qemu[0]


def test_forcing_native_where_this_kernel_has_no_vcan_is_unavailable() -> None:
    if native_vcan_possible():
        pytest.skip("this kernel has vcan")
    proc = run([str(SCRIPTS / "vcan_run.sh"), "true"], timeout=60, BAVARD_VCAN_RUNNER="native")
    assert proc.returncode == 125
    assert "no vcan0" in proc.stderr


def test_an_unknown_runner_is_refused() -> None:
    proc = run([str(SCRIPTS / "vcan_run.sh"), "true"], timeout=60, BAVARD_VCAN_RUNNER="docker")
    assert proc.returncode == 125
    assert "BAVARD_VCAN_RUNNER must be" in proc.stderr


@pytest.mark.parametrize(("value", "slow"), [
    (None, 1.0), ("4", 4.0), ("0.5", 1.0), ("1e9", 20.0), ("inf", 1.0), ("nan", 1.0), ("x", 1.0)])
def test_the_vcan_tier_stretches_its_waits_by_bavard_vcan_slow(
        monkeypatch: pytest.MonkeyPatch, value: str | None, slow: float) -> None:
    if value is None:
        monkeypatch.delenv("BAVARD_VCAN_SLOW", raising=False)
    else:
        monkeypatch.setenv("BAVARD_VCAN_SLOW", value)
    assert vcan_conftest._slowdown() == slow


QUIET_MOSQUITTO = r"""
set -eu
T=$1
for d in /etc /var/lib/systemd; do
  [ -d "$d" ] || continue
  n=$(echo "$d" | tr / _)
  mkdir -p "$T/$n/u" "$T/$n/w"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/$n/u,workdir=$T/$n/w" "$d"
done
mount -t tmpfs tmpfs /run
# as a fresh install leaves it: enabled for systemd and for SysV init
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sfn /lib/systemd/system/mosquitto.service \
  /etc/systemd/system/multi-user.target.wants/mosquitto.service
for r in 2 3 4 5; do
  rm -f /etc/rc$r.d/[SK][0-9][0-9]mosquitto
  ln -s ../init.d/mosquitto /etc/rc$r.d/S01mosquitto
done
. scripts/test_deps.sh --functions-only
test_deps_quiet_service mosquitto
echo "wants: $(ls /etc/systemd/system/*.wants/ | grep -c mosquitto || true)"
echo "rc: $(cd /etc && ls rc2.d rc3.d rc4.d rc5.d | grep mosquitto | sort | uniq -c | tr -s ' ')"
"""


def test_the_mosquitto_service_the_test_command_installed_is_left_disabled(
        tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mount namespaces need root")
    if not (Path("/etc/init.d/mosquitto").exists()
            and Path("/lib/systemd/system/mosquitto.service").exists()):
        pytest.skip("mosquitto is not installed")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux)")
    proc = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "bash", "-c",
         QUIET_MOSQUITTO, "quiet", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "overlay" in proc.stderr:
        pytest.skip(f"no overlay mounts here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert "wants: 0" in lines, proc.stdout  # no systemd link left
    assert "rc: 4 K01mosquitto" in lines, proc.stdout  # SysV: stopped in runlevels 2-5
