"""What the wheel ships: the files agent/resources.py looks for when installed.

Built with hatchling's own builder, offline, in a fraction of a second; skipped
where the build backend is not installed (it is one of the test extras).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builders = pytest.importorskip("hatchling.builders.wheel")
    out = tmp_path_factory.mktemp("wheel")
    [built] = builders.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return Path(built)


def test_the_wheel_ships_the_demo_dbc_and_the_sample_drive(wheel: Path) -> None:
    """Regression: only dbc/ was force-included; sample_drive_path() failed from a wheel."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "agent/data/dbc/demo_vehicle.dbc" in names
        assert "agent/data/sample_drive.log" in names
        assert "agent/defaults/demo.toml" in names
        shipped = z.read("agent/data/sample_drive.log")
    assert shipped == (ROOT / "tests" / "data" / "sample_drive.log").read_bytes()
    assert not any(name.startswith("tests/") for name in names)


def test_resources_are_found_in_the_unpacked_wheel(wheel: Path, tmp_path: Path) -> None:
    """The package as a wheel installs it (no repository around it) finds both files."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("from agent.resources import demo_dbc_path, sample_drive_path\n"
            "print(demo_dbc_path()); print(sample_drive_path())")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(site / "agent" / "data" / "dbc" / "demo_vehicle.dbc"),
                                  str(site / "agent" / "data" / "sample_drive.log")]
