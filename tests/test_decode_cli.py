"""`bavard decode` against cantools' own decoding of the same frames."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
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


def test_signal_glob_matching_nothing_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --signals glob that matches no signal of the DBCs (a typo) is named on stderr;
    the other globs still select, and the decode succeeds."""
    out = tmp_path / "out.jsonl"
    log = ROOT / "tests" / "data" / "sample_drive.log"
    dbc = ROOT / "dbc" / "demo_vehicle.dbc"
    assert main(["decode", str(log), "--dbc", str(dbc), "--signals", "EngineSpeed",
                 "--signals", "EngineSped", "--signals", "Nope.*", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "'EngineSped' matches no signal" in err and "'Nope.*' matches no signal" in err
    assert "'EngineSpeed' matches" not in err
    assert out.read_text().count('"EngineSpeed"') > 1000


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


# -- standard input and pipes (regression: the log was opened twice) -------------------------

SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
DEMO_DBC = ROOT / "dbc" / "demo_vehicle.dbc"


def bavard(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "agent", *args], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=120, check=False)


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
@pytest.mark.parametrize("lines", [100, 5000])  # 5000 lines: 170 KiB, beyond a pipe's buffer
def test_a_log_on_standard_input_decodes_like_the_file(
    tmp_path: Path, name: str, lines: int
) -> None:
    """Regression: `cat drive.log | bavard decode /dev/stdin` decoded 84,144 of 84,240
    frames, `head -100 drive.log | ...` 4 of 100; `-` was not accepted."""
    text = b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:lines])
    log = tmp_path / "part.log"
    log.write_bytes(text)
    expected = bavard("decode", str(log), "--dbc", str(DEMO_DBC))
    assert expected.returncode == 0
    got = bavard("decode", name, "--dbc", str(DEMO_DBC), stdin=text)
    assert got.returncode == 0, got.stderr.decode()
    assert got.stdout == expected.stdout
    frames = text.count(b"\n")
    assert f"bavard decode: {frames} frames; {frames} decoded".encode() in got.stderr
    assert b"WARNING" not in got.stderr


def test_a_gzip_log_through_a_pipe_decodes() -> None:
    text = b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:5000])
    got = bavard("decode", "-", "--dbc", str(DEMO_DBC), stdin=gzip.compress(text))
    assert got.returncode == 0, got.stderr.decode()
    assert b"bavard decode: 5000 frames; 5000 decoded;" in got.stderr


def test_progress_does_not_count_the_lines_of_a_pipe(tmp_path: Path) -> None:
    """Counting lines for the progress bar would read a named pipe before the decoder."""
    from agent.cli.progress import count_lines

    fifo = tmp_path / "p.log"
    os.mkfifo(fifo)
    result: list[int | None] = []
    counter = threading.Thread(target=lambda: result.append(count_lines(str(fifo))), daemon=True)
    counter.start()
    counter.join(10)
    if counter.is_alive():  # it opened the FIFO: release it, then fail
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    assert result == [None]
    assert count_lines(str(SAMPLE)) == 84240


# -- unreadable logs: a warning and exit status 3 ----------------------------------------------


def test_random_bytes_named_asc_are_a_warning_and_status_3(tmp_path: Path) -> None:
    """Regression: 0 frames, no warning, exit 0."""
    path = tmp_path / "noise.asc"
    path.write_bytes(random.Random(5).randbytes(5000))
    out = bavard("decode", str(path), "--dbc", str(DEMO_DBC))
    assert out.returncode == 3
    assert out.stdout == b""
    assert f"bavard decode: warning: {path}: no CAN frame could be read".encode() in out.stderr


def test_a_mostly_unreadable_log_is_status_3_but_still_decoded(tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines(keepends=True)[:20]
    path = tmp_path / "mangled.log"
    path.write_text("".join(lines) + "".join(line.replace("#", "#Z") for line in lines) * 2)
    out = tmp_path / "out.jsonl"
    assert main(["decode", str(path), "--dbc", str(DEMO_DBC), "-o", str(out)]) == 3
    assert len(out.read_text().splitlines()) > 20  # the good frames are still decoded
    path.write_text("".join(lines) + "".join(line.replace("#", "#Z") for line in lines[:9]))
    assert main(["decode", str(path), "--dbc", str(DEMO_DBC), "-o", str(out)]) == 0


def test_help_documents_stdin_and_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["decode", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "'-' = standard input" in text
    assert "exit status:" in text
    assert "\n  3  the log gave no CAN frame at all, or mostly unreadable lines" in text


# -- -v / -q after the subcommand (regression: "unrecognized arguments: -v") -----------------


@pytest.mark.parametrize("flag", ["-v", "-vv", "--verbose", "-q", "--quiet"])
def test_log_options_after_the_subcommand(tmp_path: Path, flag: str) -> None:
    out = tmp_path / "out.jsonl"
    log = tmp_path / "a.log"
    log.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:10]))
    assert main(["decode", str(log), "--dbc", str(DEMO_DBC), "-o", str(out), flag]) == 0
    assert len(out.read_text().splitlines()) > 10


def test_log_options_before_and_after_add_up() -> None:
    from agent.cli.main import build_parser

    for argv, verbose in ((["-v", "decode", "x", "--dbc", "d", "-v"], 2),
                          (["decode", "x", "--dbc", "d", "-vv"], 2),
                          (["-vv", "decode", "x", "--dbc", "d"], 2),
                          (["decode", "x", "--dbc", "d"], 0)):
        args = build_parser(only="decode").parse_args(argv)
        assert args.verbose + getattr(args, "sub_verbose", 0) == verbose, argv
    args = build_parser(only="batch").parse_args(["batch", "inspect", "f", "-q"])
    assert args.sub_quiet is True
    args = build_parser(only="config").parse_args(["config", "check", "f", "-v"])
    assert args.sub_verbose == 1
