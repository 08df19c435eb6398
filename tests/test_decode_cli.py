"""`bavard decode` against cantools' own decoding of the same frames."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.cli.main import main
from tests.conftest import ROOT, corpus


def decode_jsonl(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    assert main(["decode", *args, "--output", str(out)]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def candump_frames(path: Path) -> list[tuple[str, int, bytes]]:
    frames = []
    for line in path.read_text().splitlines():
        stamp, _iface, rest = line.split()[:3]
        fid, _, data = rest.partition("#")
        frames.append((stamp[1:-1], int(fid, 16), bytes.fromhex(data)))
    return frames


def test_motec_log_equals_cantools(tmp_path: Path) -> None:
    log = corpus("motec", "can_sample.log")
    dbc = corpus("motec", "sample_can_spec.dbc")
    records = decode_jsonl(tmp_path, str(log), "--dbc", str(dbc))
    db = cantools.database.load_file(str(dbc))
    expected = []
    for stamp, fid, data in candump_frames(log):
        try:
            message = db.get_message_by_frame_id(fid)
        except KeyError:
            continue
        for name, value in message.decode(data, decode_choices=False).items():
            expected.append((float(stamp), message.name, name, value,
                             message.get_signal_by_name(name).unit or ""))
    got = [(r["timestamp"], r["message"], r["signal"], r["value"], r["unit"]) for r in records]
    assert len(got) == len(expected) > 90_000
    assert got == expected
    assert {r["channel"] for r in records} == {"can0"}
    flagged = {(r["message"], r["signal"]) for r in records if "flags" in r}
    # the corpus README: GEAR 7 above the DBC max 6, steering angle -457.3 below -450
    assert ("ID_141", "GEAR") in flagged and ("ID_D0", "STEER_ANGLE") in flagged
    assert all(r["flags"] == ["out_of_range"] for r in records if "flags" in r)


def test_socialledge_golden_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cantools test suite's expected output of `cantools decode` for a candump log."""
    log = corpus("cantools", "socialledge_decode_log_format.input.log")
    expected_text = corpus("cantools", "socialledge_decode_log_format.expected.txt").read_text()
    dbc = corpus("cantools", "dbc", "socialledge.dbc")
    records = decode_jsonl(tmp_path, str(log), "--dbc", str(dbc))
    # expected: "(ts) vcan0 ID#DATA ::" followed by "    NAME: value," lines
    expected: list[tuple[str, str, str]] = []
    stamp = ""
    for line in expected_text.splitlines():
        head = re.match(r"\((\d+\.\d+)\) vcan0 \S+( [TR])? ::$", line)
        if head:
            stamp = head.group(1)
        field = re.match(r"\s+(\w+): (.*?),?$", line)
        if field:
            expected.append((stamp, field.group(1), field.group(2)))
    got = [(f"{r['timestamp']:.6f}", r["signal"], str(r.get("label", r["value"])))
           for r in records]
    # `cantools decode --prune` strips the choice names' common prefix: undo it
    got = [(t, name, value if value == want or not value.endswith("_" + want) else want)
           for (t, name, value), (_, _, want) in zip(got, expected, strict=False)]
    assert got == expected
    err = capsys.readouterr().err
    # the 10-byte classic frame, the ERROR line: skipped; the unknown id 0x1F3: counted
    assert "too_long 1" in err and "error 1" in err
    assert "unknown ids: 0x1F3 x1" in err


def test_csv_and_signal_glob(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    log = ROOT / "tests" / "data" / "sample_drive.log"
    dbc = ROOT / "dbc" / "demo_vehicle.dbc"
    assert main(["decode", str(log), "--dbc", str(dbc), "--format", "csv",
                 "--signals", "EngineData.EngineSpeed", "--signals", "Gear*",
                 "--output", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["signal"] for r in rows} == {"EngineSpeed", "GearLever"}
    assert sum(r["signal"] == "EngineSpeed" for r in rows) == sum(
        1 for line in log.read_text().splitlines() if " 100#" in line)
    lever = next(r for r in rows if r["signal"] == "GearLever")
    assert lever["label"] in {"P", "R", "N", "D", "S"}
    assert all(math.isfinite(float(r["value"])) for r in rows)


def test_missing_log_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dbc = ROOT / "dbc" / "demo_vehicle.dbc"
    assert main(["decode", str(tmp_path / "nope.log"), "--dbc", str(dbc)]) == 1
    assert "nope.log" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_summary_counts_frames_longer_than_the_dbc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: frames longer than the DBC says were trimmed and counted, but the
    summary left them out."""
    log = tmp_path / "long.log"
    first = (ROOT / "tests" / "data" / "sample_drive.log").read_text().splitlines()[0]
    stamp, iface, frame = first.split()
    fid, _, data = frame.partition("#")
    padded = data + "00" * (12 - len(data) // 2)  # a 12-byte CAN FD frame
    log.write_text(f"{first}\n{stamp} {iface} {fid}##0{padded}\n")
    records = decode_jsonl(tmp_path, str(log), "--dbc", str(ROOT / "dbc" / "demo_vehicle.dbc"))
    assert len(records) == 2 * len({r["signal"] for r in records})
    assert f"long frames: 0x{int(fid, 16):X} x1" in capsys.readouterr().err
