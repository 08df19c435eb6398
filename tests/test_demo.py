"""The demo: simulator -> agent -> receiver on loopback; everything reaches the receiver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.receiver.database import ReceiverDb

ROOT = Path(__file__).resolve().parents[1]


def test_demo_delivers_everything_it_read_to_the_receiver(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "agent", "demo", "--duration", "3", "--speed",
                          "10", "--dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "0 records waiting" in out.stdout, out.stdout
    sent = re.search(r"upload\s+(\d+) batches, ([\d,]+) records", out.stdout)
    assert sent is not None, out.stdout
    batches, records = int(sent[1]), int(sent[2].replace(",", ""))
    with ReceiverDb(tmp_path / "received", readonly=True) as db:
        # two destinations, the fleet's and the insurer's, each under its own pseudonym
        vehicles = {b.vehicle for b in db.batches()}
        (fleet,) = {s.vehicle for s in db.batches() if s.samples > 100}
        assert len(vehicles) == 2
        assert len(db.batches(vehicle=fleet)) == batches > 0
        assert len(db.samples(vehicle=fleet)) + len(db.events(vehicle=fleet)) == records > 1000
        # the OBD channel read the simulated ECU's VIN: every batch under its pseudonym
        assert [e.kind for e in db.events(vehicle=fleet) if e.channel != "insights"] == [
            "service.start", "vehicle.identified"]
        assert "trip.start" in {e.kind for e in db.events(vehicle=fleet)}  # the insights
        (insurer,) = vehicles - {fleet}
        assert {e.kind.split(".")[0] for e in db.events(vehicle=insurer)} <= {
            "trip", "driving"}  # what an insurer may receive, nothing else
        obd = {s.signal for s in db.samples(vehicle=fleet) if s.channel == "obd"}
        assert {"ENGINE_RPM", "VEHICLE_SPEED", "MIL"} <= obd
        assert db.counters()["total"]["duplicates"] == 0
    assert "EngineData.EngineSpeed" in out.stdout  # the receiver's summary
    assert "OBD.ENGINE_RPM" in out.stdout


def run_bavard(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, check=False)


def test_the_demo_plays_the_whole_drive_cycle_by_default() -> None:
    """Regression: at its defaults (20 s at real time) the demo showed a parked car."""
    from agent.cli.main import build_parser
    from agent.sources.simulator import DEFAULT_CYCLE_LENGTH

    args = build_parser(only="demo").parse_args(["demo"])
    assert args.duration == 0  # until the drive cycle ends
    assert 0 < DEFAULT_CYCLE_LENGTH / args.speed <= 30  # and that is soon


def test_a_relative_dir_holds_the_buffer_and_the_whole_drive_reaches_the_receiver(
    tmp_path: Path,
) -> None:
    """Regression: `demo --dir demo1` put the buffer in demo1/demo1/state. Played flat out
    (--speed 0), the rest at its defaults: highway speed and the harsh brake arrive."""
    out = run_bavard("demo", "--speed", "0", "--dir", "demo1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "demo1").iterdir()) == [
        "demo.toml", "received", "state"]
    assert (tmp_path / "demo1" / "state" / "buffer.sqlite3").is_file()
    with ReceiverDb(tmp_path / "demo1" / "received", readonly=True) as db:
        (fleet,) = {s.vehicle for s in db.batches() if s.samples > 100}
        values: dict[str, list[float]] = {}
        for s in db.samples(vehicle=fleet):
            values.setdefault(s.signal, []).append(float(s.value))
        kinds = {e.kind for e in db.events()}
    # every event the box works out, on this drive cycle
    assert {"trip.start", "trip.end", "driving.harsh_braking", "driving.harsh_acceleration",
            "driving.speeding", "driving.night", "maintenance.service_due",
            "maintenance.battery", "maintenance.coolant"} <= kinds
    assert "events the box worked out" in out.stdout
    assert max(values["VehicleSpeed"]) >= 119  # the highway
    assert min(values["LongitudinalAccel"]) <= -5.5  # the harsh brake...
    assert max(values["ABSActive"]) == 1  # ...with ABS
    assert "GearLever" in values and 1 in values["GearLever"]  # reversing into the space
    assert f"bavard buffer --state-dir {tmp_path / 'demo1' / 'state'}" in out.stdout

    shown = run_bavard("buffer", "--state-dir", "demo1/state", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    assert stats["classes"]["samples"]["acked"] == sum(len(v) for v in values.values())


def test_buffer_on_a_directory_without_one_says_so_and_where_to_look(tmp_path: Path) -> None:
    (tmp_path / "demo1" / "state").mkdir(parents=True)
    out = run_bavard("buffer", "--state-dir", "demo1", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout == ""
    assert "no buffer in demo1 (no buffer.sqlite3 there)" in out.stderr
    (tmp_path / "demo1" / "state" / "buffer.sqlite3").write_bytes(b"")
    out = run_bavard("buffer", "--state-dir", "demo1", cwd=tmp_path)
    assert out.returncode == 1
    assert "there is one in demo1/state: --state-dir demo1/state" in out.stderr
    out = run_bavard("buffer", "--state-dir", "nowhere", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (1, "")
    assert "nowhere is not a directory" in out.stderr


DEMO_SH = ROOT / "scripts" / "demo.sh"


def test_demo_sh_passes_its_arguments_to_the_demo_not_to_pip(tmp_path: Path) -> None:
    """Regression: `scripts/demo.sh --help` ran `pip install -e ".[--help]"` and failed.

    A virtualenv of the test's own stands in for .venv: it runs the project's real
    interpreter and is marked installed, so no install is attempted.
    """
    real = ROOT / ".venv"
    if not (real / "bin" / "bavard").exists():
        pytest.skip(f"no installed virtualenv at {real}")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(real / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "bin" / "python").symlink_to(real / "bin" / "python")
    (venv / "bin" / "bavard").symlink_to(real / "bin" / "bavard")
    (venv / ".bavard-installed").touch()  # newer than pyproject.toml
    env = {**os.environ, "BAVARD_VENV": str(venv)}
    out = subprocess.run(["bash", str(DEMO_SH), "--help"], capture_output=True, text=True,
                         timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "usage: bavard demo" in out.stdout
    assert "--duration" in out.stdout
    assert "pip" not in out.stderr
    assert sorted(p.name for p in venv.iterdir()) == [".bavard-installed", "bin", "pyvenv.cfg"]
