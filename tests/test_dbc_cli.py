"""``bavard dbc list|show`` against cantools' own reading of the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.cli.main import main
from tests.conftest import ROOT, corpus

DEMO = ROOT / "dbc" / "demo_vehicle.dbc"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["dbc", *args, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_list_gives_every_message_as_cantools_reads_it(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    listed = run_json(capsys, "list", str(DEMO))["files"]
    assert [f["path"] for f in listed] == [str(DEMO)]
    db = cantools.database.load_file(str(DEMO))
    messages = listed[0]["messages"]
    assert [(m["id"], m["name"], m["length"], m["senders"], m["signals"]) for m in messages] == [
        (m.frame_id, m.name, m.length, m.senders, len(m.signals)) for m in db.messages]
    by_name = {m["name"]: m for m in messages}
    # GenMsgCycleTime attributes of the demo DBC
    assert by_name["Steering"]["cycle_time_ms"] == 20
    assert by_name["EngineData"]["cycle_time_ms"] == 10
    assert by_name["AmbientConditions"]["cycle_time_ms"] == 1000
    assert by_name["AmbientConditions"]["extended"] is True
    assert by_name["AmbientConditions"]["id_hex"] == "0x18FEF521"
    assert by_name["Steering"]["id_hex"] == "0x0C0"

    assert main(["dbc", "list", str(DEMO)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{DEMO}: 15 messages")
    assert "0x18FEF521 x  AmbientConditions  8      1000 ms  BCM      5" in text
    assert "0x0C0         Steering           5      20 ms    EPS      4" in text


def test_show_gives_each_signal_as_cantools_reads_it(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    shown = run_json(capsys, "show", str(DEMO))["messages"]
    db = cantools.database.load_file(str(DEMO))
    assert [m["name"] for m in shown] == [m.name for m in db.messages]
    for entry, message in zip(shown, db.messages, strict=True):
        assert entry["comment"] == message.comment
        for s, sig in zip(entry["signals"], message.signals, strict=True):
            assert (s["name"], s["start"], s["length"], s["byte_order"], s["signed"],
                    s["scale"], s["offset"], s["minimum"], s["maximum"], s["unit"],
                    s["receivers"], s["comment"]) == (
                sig.name, sig.start, sig.length, sig.byte_order, sig.is_signed, sig.scale,
                sig.offset, sig.minimum, sig.maximum, sig.unit or "", sig.receivers,
                sig.comment)
            assert s["choices"] == ({str(k): str(v) for k, v in sig.choices.items()}
                                    if sig.choices else None)
    body = next(m for m in shown if m["name"] == "BodyStatus")
    mux = {s["name"]: s["multiplexing"] for s in body["signals"]}
    assert mux["BodyStatus_Page"] == {"role": "multiplexer"}
    assert mux["CabinTemp"] == {"role": "multiplexed", "by": "BodyStatus_Page", "values": [2]}


@pytest.mark.parametrize("wanted", ["Transmission", "transmission", "0x140", "140", "320",
                                    "0X140"])
def test_show_one_message_by_name_or_id(capsys: pytest.CaptureFixture[str], wanted: str) -> None:
    shown = run_json(capsys, "show", str(DEMO), wanted)["messages"]
    assert [m["name"] for m in shown] == ["Transmission"]
    gear = next(s for s in shown[0]["signals"] if s["name"] == "GearLever")
    assert gear["choices"]["3"] == "D"

    assert main(["dbc", "show", str(DEMO), wanted]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Transmission 0x140 (standard), 4 bytes, every 50 ms, from TCU")
    assert "values: 0=P, 1=R, 2=N, 3=D, 4=S, 15=Invalid" in text


def test_show_extended_id_with_the_dbc_flag_bit(capsys: pytest.CaptureFixture[str]) -> None:
    for wanted in ("0x18FEF521", "18fef521", "2566845729"):  # the last: as the DBC writes it
        shown = run_json(capsys, "show", str(DEMO), wanted)["messages"]
        assert [m["name"] for m in shown] == ["AmbientConditions"], wanted


def test_a_miss_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dbc", "show", str(DEMO), "Transmision"]) == 1
    err = capsys.readouterr().err
    assert err == (f"bavard dbc: {DEMO}: no message 'Transmision'; did you mean "
                   f"Transmission, GnssPosition?\n")
    assert main(["dbc", "show", str(DEMO), "0x7FF"]) == 1
    assert f"no message '0x7FF'; it has 15 messages: bavard dbc list {DEMO}" in (
        capsys.readouterr().err)


def test_an_ambiguous_number_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    dbc = tmp_path / "two.dbc"
    dbc.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: A\n\n'
                   'BO_ 256 Dec: 8 A\n SG_ S1 : 0|8@1+ (1,0) [0|255] "" A\n\n'
                   'BO_ 598 Hex: 8 A\n SG_ S2 : 0|8@1+ (1,0) [0|255] "" A\n\n')
    assert main(["dbc", "show", str(dbc), "256"]) == 1
    err = capsys.readouterr().err
    assert "message '256' is ambiguous: Dec (0x100) or Hex (0x256)" in err
    assert [m["name"] for m in run_json(capsys, "show", str(dbc), "0x256")["messages"]] == ["Hex"]


def test_a_broken_dbc_names_file_and_line(tmp_path: Path) -> None:
    dbc = tmp_path / "broken.dbc"
    lines = DEMO.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("BO_ 320"))
    lines[at] = "BO_ 320 Transmission 4 TCU"  # the colon lost
    dbc.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "agent", "dbc", "list", str(dbc)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"bavard dbc: {dbc}:{at + 1}: not a loadable DBC")


def test_corpus_dbcs_list_as_cantools_reads_them(capsys: pytest.CaptureFixture[str]) -> None:
    """Every DBC of cantools' test suite and opendbc: the same messages as cantools gives
    (strict or not, as the service loads them), or a clear error for the broken ones."""
    folder = corpus("cantools", "dbc")
    files = sorted(folder.glob("*.dbc")) + sorted(corpus("opendbc").glob("*.dbc"))
    listed = failed = 0
    for path in files:
        try:
            db = cantools.database.load_file(str(path), strict=False)
        except Exception:
            assert main(["dbc", "list", str(path)]) == 1, path
            assert capsys.readouterr().err.startswith(f"bavard dbc: {path}"), path
            failed += 1
            continue
        got = run_json(capsys, "list", str(path))["files"][0]["messages"]
        assert [(m["id"], m["name"], m["signals"]) for m in got] == [
            (m.frame_id, m.name, len(m.signals)) for m in db.messages], path
        shown = run_json(capsys, "show", str(path))["messages"]
        assert sum(len(m["signals"]) for m in shown) == sum(len(m.signals) for m in db.messages)
        listed += 1
    assert listed >= 80 and failed >= 1
