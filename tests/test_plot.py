"""``bavard plot``: a PNG from the sample drive's buffer, and what matplotlib drew in it."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers.sample_buffer import START, SampleBuffer, make_sample_buffer

from tests.conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def buffer(tmp_path_factory: pytest.TempPathFactory) -> SampleBuffer:
    return make_sample_buffer(tmp_path_factory.mktemp("buffer"))


def plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "plot", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def lines(summary: dict[str, Any]) -> dict[str, int]:
    return {line["signal"]: line["points"] for sub in summary["subplots"]
            for line in sub["lines"]}


def test_plot_draws_each_signal_with_every_point(buffer: SampleBuffer, tmp_path: Path) -> None:
    out = tmp_path / "drive.png"
    done = plot("VehicleDynamics.VehicleSpeed", "WheelSpeeds.*", "Transmission.GearLever",
                "EngineSpeed", "--config", str(buffer.config), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["output"] == str(out) and summary["bytes"] == out.stat().st_size > 20_000
    width, height = png_size(out)
    assert width == 1100 and height > 600  # 11 inches at 100 dpi; four subplots tall

    counts = Counter(f"{s.message}.{s.signal}" for s in buffer.samples)
    wanted = ["VehicleDynamics.VehicleSpeed", "Transmission.GearLever", "EngineData.EngineSpeed",
              *(f"WheelSpeeds.WheelSpeed{w}" for w in ("FL", "FR", "RL", "RR"))]
    assert lines(summary) == {name: counts[name] for name in wanted}
    kinds = {(sub["kind"], sub["unit"]): sorted(x["signal"] for x in sub["lines"])
             for sub in summary["subplots"]}
    assert kinds == {
        ("enumeration", None): ["Transmission.GearLever"],
        ("unit", "km/h"): ["VehicleDynamics.VehicleSpeed", *(f"WheelSpeeds.WheelSpeed{w}"
                                                             for w in ("FL", "FR", "RL", "RR"))],
        ("unit", "rpm"): ["EngineData.EngineSpeed"],
    }
    gear = next(sub for sub in summary["subplots"] if sub["kind"] == "enumeration")
    seen = {s.label for s in buffer.samples if s.signal == "GearLever"}
    order = ["P", "R", "N", "D", "S"]
    assert gear["labels"] == [name for name in order if name in seen]


def test_time_range_limits_the_points(buffer: SampleBuffer, tmp_path: Path) -> None:
    out = tmp_path / "minute.png"
    done = plot("VehicleSpeed", "--state-dir", str(buffer.state), "-o", str(out), "--json",
                "--since", f"{START + 60}", "--until", "2026-01-01T00:02:00Z")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    expected = sum(1 for s in buffer.samples if s.signal == "VehicleSpeed"
                   and START + 60 <= s.timestamp < START + 120)
    assert lines(summary) == {"VehicleDynamics.VehicleSpeed": expected}
    assert summary["first"] >= "2026-01-01T00:01:00" and summary["last"] < "2026-01-01T00:02:00"
    png_size(out)


def test_an_unknown_signal_names_close_ones_and_writes_nothing(buffer: SampleBuffer,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    done = plot("VehicleSpeed", "VehicleSped", "--config", str(buffer.config), "-o", str(out))
    assert done.returncode == 1
    assert done.stderr.startswith("bavard plot: no signal 'VehicleSped' between ")
    assert "close names: VehicleDynamics.VehicleSpeed" in done.stderr
    late = plot("VehicleSpeed", "--config", str(buffer.config), "-o", str(out),
                "--since", f"{START + 1000}")
    assert late.returncode == 1 and "the buffer holds no sample in that range" in late.stderr
    bad = plot("VehicleSpeed", "--config", str(buffer.config), "-o", str(out), "--since", "soon")
    assert bad.returncode == 1 and "--since 'soon': not a time" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_error_names_the_extra(buffer: SampleBuffer,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    code = ("import sys; sys.modules['matplotlib'] = None; from agent.cli.main import main; "
            f"sys.exit(main(['plot', 'VehicleSpeed', '--config', {str(buffer.config)!r}, "
            f"'-o', {str(out)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert "pip install 'bavard[plot]'" in done.stderr
    assert list(tmp_path.iterdir()) == []
