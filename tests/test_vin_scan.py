"""The VIN scan that ends every test session (tests/helpers/vin_scan.py) finds a VIN in
each encoding it looks for, and nothing else."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from helpers.vin_scan import encodings, known_vins, scan

from agent.sources.simulator.obd_ecu import DEFAULT_VIN

ROOT = Path(__file__).resolve().parents[1]
PLANTED = "planted.sqlite"  # not receiver.sqlite: the session's own scan skips it


def database(path: Path, *cells: object) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE event (detail, data)")
    db.executemany("INSERT INTO event VALUES (?, ?)", [(c, None) for c in cells])
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("form", [
    lambda v: f"VIN read: {v}",
    lambda v: v.encode("utf-16-le"),
    lambda v: b"\xfe\xff" + v.encode("utf-16-be"),
    lambda v: "id=" + v.encode().hex(),
    lambda v: v.encode().hex().upper(),
    lambda v: base64.b64encode(b"vin:" + v.encode() + b";").decode(),
    lambda v: base64.b64encode(b"v" + v.encode()).decode(),
    lambda v: base64.b64encode(b"vi" + v.encode() + b"...").decode(),
    lambda v: b"\x00\x01" + v.encode() + b"\x02",
])
def test_a_vin_in_any_encoding_is_found(tmp_path: Path, form) -> None:  # type: ignore[no-untyped-def]
    db = database(tmp_path / PLANTED, "nothing here", form(DEFAULT_VIN))
    found = scan([db], {DEFAULT_VIN})
    assert len(found) >= 1 and DEFAULT_VIN in found[0]


def test_pseudonyms_and_other_text_are_not_a_vin(tmp_path: Path) -> None:
    from agent.batch.ids import pseudonymous_vehicle_id

    pseudonym = pseudonymous_vehicle_id(DEFAULT_VIN, b"k" * 32)
    db = database(tmp_path / PLANTED, pseudonym, "VIN read on obd; the pseudonym "
                  "follows it", DEFAULT_VIN[:16], b"\x00" * 64)
    assert scan([db], {DEFAULT_VIN}) == []


def test_the_vins_of_the_tests_and_simulators_are_known() -> None:
    vins = known_vins(ROOT / "tests", ROOT / "agent")
    assert DEFAULT_VIN in vins and "WVWZZZ1JZXW000001" in vins
    assert all(len(v) == 17 for v in vins)
    assert set(encodings(DEFAULT_VIN)) >= {"ascii", "utf-16-le", "hex", "base64+0"}
