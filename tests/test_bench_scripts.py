"""The benchmark scripts run, compare equal work, and fail when a contender is wrong.

Nothing here times anything: each script runs in its small smoke mode on the
sample drive; only its exit status and the rows it prints are looked at. The
``--wrong NAME:KIND`` hook corrupts one contender's output before the script's
own checks, which must then end the run with status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.frames import Frame

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
TIMEOUT = 300  # seconds; a smoke run takes a few on an idle machine


def benchlib() -> ModuleType:
    """scripts/benchlib.py, imported from its file (once)."""
    if "benchlib" not in sys.modules:
        spec = importlib.util.spec_from_file_location("benchlib", SCRIPTS / "benchlib.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchlib"] = module
        spec.loader.exec_module(module)
    return sys.modules["benchlib"]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def ok(script: str, *args: str) -> str:
    done = run(script, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fails(script: str, *args: str) -> str:
    done = run(script, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CHECK FAILED" in done.stderr, done.stderr
    return done.stderr


# --- the rows each script prints


def test_decode_prints_the_fair_baseline_and_every_row() -> None:
    out = ok("bench_decode.py", "--quick")
    assert "demo sample drive: 20,000 frames, 20,000 in the DBC" in out
    for row in ("cantools (by_id.get + Message.decode)", "bavard compiled decoders",
                "cantools + skip unchanged payload bytes", "bavard path (change filter)",
                "bavard path, counters/checksums not selected"):
        assert f"  {row} " in out, out
    assert "1.00x" in out.splitlines()[1]  # the baseline is the first row
    assert "checked: compiled decoders = cantools on all 20,000 DBC frames" in out


def test_batch_prints_equal_information_and_the_agents_configuration() -> None:
    out = ok("bench_batch.py", "--quick")
    assert "(a) equal information: every signal of every DBC frame" in out
    assert "candump text of the DBC frames, zstd-3" in out
    assert "lossless: every batch decoded back gives cantools' values" in out
    assert "(b) the agent as the demo configures it" in out
    assert "candump text of every frame, zstd-3" in out
    assert "left out: 0 frames of unknown ids" in out  # the sample drive's ids are all known
    assert "values of unselected signals (counters, checksums)" in out


def test_ingest_prints_the_fair_baseline_and_checks_the_store() -> None:
    out = ok("bench_ingest.py", "--quick")
    assert "cantools decoding alone (by_id.get + Message.decode, frames in memory)" in out
    assert "bavard replay -> decode -> on-change -> store" in out
    assert "checked: the store holds the 122,970 samples" in out


def test_a_missing_corpus_is_a_skipped_row(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--log/--dbc add a row; a corpus that is not there is one line, not a failure."""
    lib = benchlib()
    monkeypatch.setattr(lib, "CORPUS_CASES",
                        (lib.Case("nowhere", tmp_path / "no.log", tmp_path / "no.dbc"),))
    args = argparse.Namespace(log=[tmp_path / "mine.log"], dbc=[tmp_path / "mine.dbc"],
                              no_corpus=False)
    assert lib.cases(args) == [lib.SAMPLE_DRIVE,
                               lib.Case("mine.log (mine.dbc)", tmp_path / "mine.log",
                                        tmp_path / "mine.dbc")]
    out = capsys.readouterr().out
    assert out == f"nowhere: skipped, {tmp_path / 'no.log'} or {tmp_path / 'no.dbc'} is not there\n"


# --- the checks fire


@pytest.mark.parametrize(("wrong", "says"), [
    ("compiled:value", "bavard compiled decoders: frame 0"),  # a wrong value, frame by frame
    ("compiled:skip", "bavard compiled decoders: 10000 known frames not decoded"),
    # every frame it decoded is right, but what on-change would store is not
    ("filter:skip", "bavard path (change filter): stored sample"),
    ("cantools-skip:skip", "cantools + skip unchanged payload bytes: stored sample"),
])
def test_decode_fails_when_a_contender_is_wrong(wrong: str, says: str) -> None:
    err = fails("bench_decode.py", "--quick", "--wrong", wrong)
    assert says in err, err


@pytest.mark.parametrize(("wrong", "says"), [
    ("equal:value", "(a): frame 0"),  # a batch does not give cantools' values back
    ("agent:skip", "(b) the batches: sample"),
])
def test_batch_fails_when_a_row_is_wrong(wrong: str, says: str) -> None:
    err = fails("bench_batch.py", "--quick", "--frames", "5000", "--wrong", wrong)
    assert says in err, err


def test_owner_checks_that_the_router_stores_what_the_store_alone_does() -> None:
    out = ok("bench_owner.py", "--quick")
    assert "(2) pipeline -> router (consent, purposes) -> store" in out
    assert "(3) as (2), with the insights" in out and "1.00x (1)" in out
    assert "checked: (2) and (3) store the same samples as (1)" in out


@pytest.mark.parametrize("wrong", ["router:skip", "insights:value"])
def test_owner_fails_when_a_path_stores_something_else(wrong: str) -> None:
    err = fails("bench_owner.py", "--quick", "--wrong", wrong)
    assert "demo sample drive: the store holds" in err, err


def test_ingest_fails_when_the_store_is_wrong() -> None:
    err = fails("bench_ingest.py", "--quick", "--wrong", "bavard:value")
    assert "demo sample drive, the store: sample 0" in err, err


# --- the fair baseline


DBC = """VERSION ""
BS_:
BU_: ECU
BO_ 256 Standard: 2 ECU
 SG_ A : 0|16@1+ (1,0) [0|65535] "" ECU
BO_ 2147483904 Extended: 2 ECU
 SG_ B : 0|16@1+ (0.5,0) [0|32767.5] "" ECU
"""


def test_the_baseline_keeps_extended_ids_apart_and_skips_unknown_ones(tmp_path: Path) -> None:
    """0x100 as an 11-bit and as a 29-bit id are two messages; 0x101 is unknown and
    costs nothing (no exception); candump's 8-digit spelling of an 11-bit id finds
    the 11-bit message only when no 29-bit message has that id."""
    lib = benchlib()
    (tmp_path / "t.dbc").write_text(DBC)
    db = lib.load(lib.Case("t", tmp_path / "t.log", tmp_path / "t.dbc"))
    frames = [Frame(1.0, "can0", 0x100, False, False, b"\x02\x00"),
              Frame(2.0, "can0", 0x100, True, False, b"\x02\x00"),
              Frame(3.0, "can0", 0x101, False, False, b"\x02\x00")]
    out: list[Any] = []
    lib.cantools_plain(db, frames)()(out)
    assert [(f.timestamp, name, dict(values)) for f, name, values in out] == [
        (1.0, "Standard", {"A": 2}), (2.0, "Extended", {"B": 1.0})]
    by_id = lib.cantools_by_id(db)
    assert by_id[0x100].name == "Standard"
    assert by_id[0x100 | lib.EXTENDED].name == "Extended"
    assert 0x101 not in by_id


# --- upload: every batch reaches the peers, ours and plain alike


def test_upload_checks_that_every_batch_arrived() -> None:
    if not Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto not installed (the test command installs it)")
    out = ok("bench_upload.py", "--batches", "10", "--rounds", "1")
    assert "checked: the HTTP sink received all 30 batches" in out, out
    assert "checked: the MQTT subscriber received all 30 batches" in out, out
    assert out.count("ratio ours/plain:") == 2


def test_upload_fails_when_a_batch_is_missing() -> None:
    err = fails("bench_upload.py", "--batches", "10", "--rounds", "1", "--wrong", "ours:skip")
    assert "the HTTP sink received (28, " in err, err  # the warm-up leg is ours too


def test_replay_checks_that_the_parsers_agree() -> None:
    out = ok("bench_replay.py", "--lines", "5000", "--repeat", "1")
    assert "checked: the three give the same 5,000 frames" in out, out
    assert "ratio:" in out


@pytest.mark.parametrize(("wrong", "says"), [
    ("candump:value", "agent.sources.candump against python-can: frame 0:"),
    ("candump:skip", "agent.sources.candump against python-can: frame 1:"),
])
def test_replay_fails_when_the_parser_is_wrong(wrong: str, says: str) -> None:
    err = fails("bench_replay.py", "--lines", "5000", "--repeat", "1", "--wrong", wrong)
    assert says in err, err


# --- obd: both contenders ask the same emulated ELM327 and receive the same values


def test_obd_checks_that_both_received_the_same_values() -> None:
    pytest.importorskip("elm")
    pytest.importorskip("obd")
    out = ok("bench_obd.py", "--seconds", "1", "--rounds", "1")
    assert "checked: for each of the 6 PIDs every contender received the same" in out, out
    assert out.count("PIDs/s") == 4 and "ratio:" in out


@pytest.mark.parametrize(("wrong", "says"), [
    ("bavard:value", "bavard received"),  # each value off by one
    ("python-obd:skip", ", python-obd []"),  # a PID's values all left out
])
def test_obd_fails_when_a_contender_is_wrong(wrong: str, says: str) -> None:
    pytest.importorskip("elm")
    pytest.importorskip("obd")
    err = fails("bench_obd.py", "--seconds", "0.5", "--rounds", "1", "--wrong", wrong)
    assert "CHECK FAILED: PID " in err and says in err, err


# --- control: ingest with and without the control socket's subscribers


def test_control_prints_the_three_conditions_and_checks_the_store() -> None:
    out = ok("bench_control.py", "--repeat", "1", "--rounds", "1")
    assert "sample drive x1: 84,240 frames, 122,970 samples stored, 1 round" in out, out
    for row in ("(1) no control server", "(2) two stuck subscribers (frames, samples), never read",
                "(3) one reader of every frame and every sample"):
        assert f"  {row} " in out, out
    assert "frames/s" in out and "frames per CPU-s" in out
    # (1) against itself, wall clock and CPU (another row may round to 1.00x too)
    (alone,) = [line for line in out.splitlines() if "(1) no control server" in line]
    assert alone.count("1.00x (1)") == 2, out
    assert out.count("dropped and counted") == 4
    assert ("checked: the store holds the same 122,970 samples in the three conditions; every "
            "frame and sample was sent to each peer or counted as lost") in out


def test_control_fails_when_a_condition_stored_other_samples() -> None:
    err = fails("bench_control.py", "--repeat", "1", "--rounds", "1", "--wrong", "reader:value")
    assert "(3) one reader of every frame and every sample, the store: sample" in err, err


# --- live: CPU per bus frame on vcan0 (scripts/bench_live.py, scripts/live_check.py)


def live_check() -> ModuleType:
    """scripts/live_check.py, imported from its file (once; it imports benchlib)."""
    benchlib()
    if "live_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("live_check", SCRIPTS / "live_check.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["live_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["live_check"]


def test_live_input_is_the_log_retimed_in_order_and_replays_as_it_was(tmp_path: Path) -> None:
    """1/rate apart from the first timestamp, the log again from its start when short,
    and the candump text written for canplayer reads back as the same frames (29-bit
    ids and CAN FD included)."""
    check = live_check()
    frames = [Frame(5.0, "can0", 0x100, False, False, b"\x01\x02"),
              Frame(9.0, "can0", 0x18FEF521, True, False, b""),
              Frame(9.5, "can0", 0x7FF, False, True, bytes(range(12)))]
    played = check.retimed(frames, 4000, 5)
    assert [f.timestamp - check.EPOCH for f in played] == pytest.approx(
        [i / 4000 for i in range(5)], abs=1e-6)
    assert [f._replace(timestamp=0) for f in played] == [
        f._replace(timestamp=0) for f in frames + frames[:2]]
    check.write_log(played, tmp_path / "played.log")
    again = benchlib().read_frames(tmp_path / "played.log")
    assert [f[2:] for f in again] == [f[2:] for f in played]
    assert [round(f.timestamp, 6) for f in again] == [round(f.timestamp, 6) for f in played]


def series(*values: Any, signal: str = "Speed") -> dict[tuple[str, str], list[tuple[Any, None]]]:
    return {("M", signal): [(v, None) for v in values]}


def test_live_check_compares_each_signals_stored_values_in_order() -> None:
    check = live_check()
    mismatch = benchlib().Mismatch
    ref = series(1, 2, 3, 2)
    exact = lambda key: True  # noqa: E731
    fuzzy = lambda key: False  # noqa: E731
    assert check.check("x", series(1, 2, 3, 2), ref, exact, lost=False) == (
        "1 signals equal, 0 as a subsequence")
    for wrong, says in ((series(1, 2, 4, 2), "stored value 2 is (4, None)"),
                        (series(1, 3, 2), "stored value 1 is (3, None)"),
                        (series(1, 2, 3), "3 values stored, cantools + on-change gives 4"),
                        (series(1, 2, 3, 2, signal="Other"), "stored M.Other")):
        with pytest.raises(mismatch, match=re.escape(says)):
            check.check("x", wrong, ref, exact, lost=False)
    # a deadband keeps some changes, a heartbeat repeats one: still cantools' values in order
    assert check.check("x", series(1, 1, 3), ref, fuzzy, lost=False) == (
        "0 signals equal, 1 as a subsequence")
    with pytest.raises(mismatch, match=r"stored value \(1, None\) \(change 1\) is not one"):
        check.check("x", series(2, 2, 1), ref, fuzzy, lost=False)  # out of order
    with pytest.raises(mismatch, match="nothing stored"):
        check.check("x", {}, ref, fuzzy, lost=False)
    # a contender that lost frames stored fewer changes, never others
    assert check.check("x", series(1, 2), ref, exact, lost=True) == (
        "0 signals equal, 1 as a subsequence")
    with pytest.raises(mismatch, match="is not one of cantools' values"):
        check.check("x", series(1, 5), ref, exact, lost=True)


def test_live_reference_is_on_change_over_the_selected_signals() -> None:
    check = live_check()
    values = {0: ("M", {"A": (1, None), "C": (0, None)}), 1: ("M", {"A": (1, None)}),
              2: ("M", {"A": (2, "two"), "C": (1, None)}), 3: ("M", {"A": (float("nan"), None)}),
              4: ("M", {"A": (float("nan"), None)})}
    ref = check.reference(values, lambda message, signal: signal == "A")
    assert list(ref) == [("M", "A")]
    assert ref[("M", "A")][:2] == [(1, None), (2, "two")] and len(ref[("M", "A")]) == 3
