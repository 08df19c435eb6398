"""The privacy ledger (agent.privacy.ledger) and the report built from it
(agent.privacy.report), on real SQLite files in tmp_path; the wall clock is moved by
hand."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.errors import BavardError
from agent.privacy import report
from agent.privacy.consent import ConsentBook
from agent.privacy.ledger import CORRUPT_SUFFIX, DAY, DB_NAME, KEEP_DAYS, RETRY_OPEN, Ledger

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def garage_batch(ledger: Ledger, batch_id: str, nbytes: int = 1000) -> None:
    ledger.uploaded("garage", "maintenance", batch_id, nbytes=nbytes, ts_first=T0 - 60,
                    ts_last=T0 - 1, classes={"samples": 30, "events": 2, "frames": 0},
                    contents={("signal", "Engine.EngineSpeed"): 20,
                              ("signal", "Engine.CoolantTemp"): 10,
                              ("event", "dtc.appeared"): 2})


def insurer_batch(ledger: Ledger, batch_id: str, nbytes: int = 300) -> None:
    ledger.uploaded("insurer", "insurance", batch_id, nbytes=nbytes, ts_first=T0 - 30,
                    ts_last=T0 - 20, classes={"samples": 0, "events": 3, "frames": 0},
                    contents={("event", "driving.harsh_braking"): 2,
                              ("event", "trip.end"): 1})


def test_what_left_and_what_was_purged_per_purpose_and_destination(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path, clock=clock)
    garage_batch(ledger, "a" * 32)
    clock.now += 60
    garage_batch(ledger, "b" * 32, nbytes=1200)
    insurer_batch(ledger, "c" * 32)
    clock.now += 60
    ledger.purged("insurer", "insurance", reason="consent revoked", items=1204, nbytes=90_112)
    ledger.uploaded("fleet0", "fleet", "d" * 32, nbytes=50, ts_first=T0, ts_last=T0 + 1,
                    classes={"frames": 4}, contents={("frames", "raw0"): 4})

    assert ledger.totals() == [
        {"purpose": "fleet", "destination": "fleet0", "batches": 1, "bytes": 50, "items": 4,
         "classes": {"frames": 4}, "ts_first": T0, "ts_last": T0 + 1,
         "first_sent": T0 + 120, "last_sent": T0 + 120},
        {"purpose": "insurance", "destination": "insurer", "batches": 1, "bytes": 300,
         "items": 3, "classes": {"events": 3, "frames": 0, "samples": 0},
         "ts_first": T0 - 30, "ts_last": T0 - 20, "first_sent": T0 + 60,
         "last_sent": T0 + 60},
        {"purpose": "maintenance", "destination": "garage", "batches": 2, "bytes": 2200,
         "items": 64, "classes": {"events": 4, "frames": 0, "samples": 60},
         "ts_first": T0 - 60, "ts_last": T0 - 1, "first_sent": T0, "last_sent": T0 + 60}]
    assert ledger.contents() == [
        ("fleet", "fleet0", "frames", "raw0", 4),
        ("insurance", "insurer", "event", "driving.harsh_braking", 2),
        ("insurance", "insurer", "event", "trip.end", 1),
        ("maintenance", "garage", "event", "dtc.appeared", 4),
        ("maintenance", "garage", "signal", "Engine.EngineSpeed", 40),
        ("maintenance", "garage", "signal", "Engine.CoolantTemp", 20)]
    assert ledger.purges() == [{"time": T0 + 120, "destination": "insurer",
                                "purpose": "insurance", "reason": "consent revoked",
                                "items": 1204, "bytes": 90_112}]
    # since: the batches and purges from then on
    assert [t["batches"] for t in ledger.totals(T0 + 30)] == [1, 1, 1]
    assert ledger.purges(T0 + 121) == []
    text = report.render(report.build(ledger, ConsentBook(tmp_path), None))
    assert "  to fleet0: 1 batch, 4 items (4 frames), 50 B (50 bytes)" in text
    assert "    frames: raw0 4" in text
    assert ledger.failures == 0
    assert stat.S_IMODE((tmp_path / DB_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / f"{DB_NAME}-wal").stat().st_mode) == 0o600
    ledger.close()


def test_the_report_accounts_for_every_byte_and_tells_the_consent_history(
        tmp_path: Path) -> None:
    clock = Clock()
    consent = ConsentBook(tmp_path, clock=clock)
    ledger = Ledger(tmp_path, clock=clock)
    consent.grant("maintenance", None, uid=1000)
    consent.grant("insurance", T0 + 7 * DAY, uid=1000)
    clock.now += 60
    garage_batch(ledger, "a" * 32, nbytes=1000)
    insurer_batch(ledger, "b" * 32, nbytes=300)
    clock.now += 60
    consent.revoke("insurance", uid=0)
    ledger.purged("insurer", "insurance", reason="consent revoked", items=12, nbytes=2048)

    doc = report.build(ledger, consent, None, ["maintenance", "insurance", "repair"])
    assert doc["totals"] == {"batches": 2, "bytes": 1300, "items": 35, "purged_items": 12,
                             "purged_bytes": 2048}
    assert [p["purpose"] for p in doc["purposes"]] == ["maintenance", "insurance", "repair"]
    maintenance, insurance, repair = doc["purposes"]
    assert maintenance["consent"] == {"granted": True, "since": T0, "until": None,
                                      "uid": 1000}
    assert insurance["consent"] == {"granted": False}
    assert repair == {"purpose": "repair", "consent": {"granted": False}, "batches": 0,
                      "bytes": 0, "items": 0, "purged_items": 0, "purged_bytes": 0,
                      "destinations": []}
    [garage] = maintenance["destinations"]
    assert garage["signals"] == {"Engine.EngineSpeed": 20, "Engine.CoolantTemp": 10}
    assert garage["events"] == {"dtc.appeared": 2} and garage["frames"] == {}
    assert garage["bytes"] == 1000 and garage["purged"] == {"purges": 0, "items": 0,
                                                            "bytes": 0}
    [insurer] = insurance["destinations"]
    assert insurer["purged"] == {"purges": 1, "items": 12, "bytes": 2048}
    assert [(h["purpose"], h["action"], h["uid"]) for h in doc["consent_history"]] == [
        ("maintenance", "grant", 1000), ("insurance", "grant", 1000),
        ("insurance", "revoke", 0)]

    text = report.render(doc)
    lines = text.splitlines()
    assert lines[1] == ("  in all: 2 batches, 35 items, 1.3 KiB (1,300 bytes); purged before "
                        "upload: 12 items (2.0 KiB)")
    assert f"maintenance: granted by uid 1000 on {report.when(T0)}" in lines
    assert ("  to garage: 1 batch, 32 items (2 events, 30 samples), 1000 B (1,000 bytes)"
            in lines)
    assert "    signals: Engine.EngineSpeed 20, Engine.CoolantTemp 10" in lines
    assert "    events: dtc.appeared 2" in lines
    assert "insurance: not granted" in lines
    assert "    purged: 12 items (2.0 KiB) in 1 purge" in lines
    assert "repair: not granted" in lines and "  nothing left the box" in lines
    assert (f"  {report.when(T0 + 120)}  insurer (insurance): 12 items (2.0 KiB), consent "
            "revoked") in lines
    assert (f"  {report.when(T0)}  insurance granted by uid 1000 until "
            f"{report.until_words(T0 + 7 * DAY)}") in lines
    assert f"  {report.when(T0 + 120)}  insurance revoked by uid 0" in lines

    assert ("    signals: Engine.EngineSpeed 20 and 1 more (10)"
            in report.render(doc, top=1).splitlines())

    later = report.build(ledger, consent, T0 + 100, ["maintenance"])
    assert later["totals"]["batches"] == 0 and later["totals"]["purged_items"] == 12
    assert [h["action"] for h in later["consent_history"]] == ["revoke"]


def test_the_ledger_forgets_what_is_older_than_its_keeping_time(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path, clock=clock)
    garage_batch(ledger, "a" * 32)
    ledger.purged("garage", "maintenance", reason="consent revoked", items=1, nbytes=1)
    clock.now += (KEEP_DAYS - 1) * DAY
    garage_batch(ledger, "b" * 32)
    assert ledger.totals()[0]["batches"] == 2
    clock.now += 2 * DAY  # the first batch is now 401 days old; a day passed since a prune
    garage_batch(ledger, "c" * 32)
    [totals] = ledger.totals()
    assert totals["batches"] == 2 and totals["first_sent"] == T0 + (KEEP_DAYS - 1) * DAY
    assert ledger.purges() == []
    assert ledger.contents()[0][4] == 4  # dtc.appeared: the two batches kept


def test_a_ledger_that_cannot_be_written_never_stops_an_upload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    state = tmp_path / "state"  # not there yet
    with caplog.at_level(logging.ERROR, logger="agent.privacy.ledger"):
        ledger = Ledger(state, clock=clock)
        assert "the privacy ledger cannot be opened" in caplog.text
        caplog.clear()
        for i in range(5):
            garage_batch(ledger, f"{i:032x}")
        ledger.purged("garage", "maintenance", reason="consent revoked", items=1, nbytes=1)
        assert ledger.failures == 6
        [warning] = caplog.records  # one a minute, at most
        assert "the upload of batch 000" in warning.getMessage()
        assert str(state / DB_NAME) in warning.getMessage()
        state.mkdir()
        clock.now += RETRY_OPEN
        caplog.clear()
        garage_batch(ledger, "f" * 32)  # opened again, and recorded
        assert caplog.records == []
    assert ledger.failures == 6 and ledger.totals()[0]["batches"] == 1


def test_a_bad_record_is_refused_whole_and_logged(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger(tmp_path, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="agent.privacy.ledger"):
        ledger.uploaded("garage", "maintenance", "a" * 32, nbytes=10, ts_first=T0,
                        ts_last=T0, classes={"samples": 1},
                        contents={("position", "x"): 1})
        ledger.uploaded("garage", "maintenance", "b" * 32, nbytes=-1, ts_first=T0,
                        ts_last=T0, classes={"samples": 1}, contents={})
    assert ledger.failures == 2 and ledger.totals() == [] and ledger.contents() == []
    assert "('position', 'x') is not (signal|event|frames, name)" in caplog.text


def test_a_corrupt_ledger_is_moved_aside_and_a_new_one_started(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database, " * 100)
    with caplog.at_level(logging.ERROR, logger="agent.privacy.ledger"):
        ledger = Ledger(tmp_path, clock=Clock())
    assert "moved aside" in caplog.text
    assert (tmp_path / f"{DB_NAME}{CORRUPT_SUFFIX}").read_bytes().startswith(b"this is not")
    garage_batch(ledger, "a" * 32)
    assert ledger.totals()[0]["bytes"] == 1000


def test_a_ledger_that_cannot_be_read_is_an_error_for_the_report(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).mkdir()
    ledger = Ledger(tmp_path, clock=Clock())
    with pytest.raises(BavardError, match=f"{tmp_path / DB_NAME}: the privacy ledger cannot "
                                          "be opened"):
        report.build(ledger, ConsentBook(tmp_path), None)


def test_uploaders_in_threads_share_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    failures: list[BaseException] = []

    def upload(destination: str) -> None:
        try:
            for i in range(50):
                ledger.uploaded(destination, "fleet", f"{i:032x}", nbytes=10, ts_first=T0,
                                ts_last=T0, classes={"samples": 2},
                                contents={("signal", "A.B"): 2})
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=upload, args=(f"d{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures and not any(t.is_alive() for t in threads)
    totals: list[dict[str, Any]] = ledger.totals()
    assert [(t["destination"], t["batches"], t["bytes"]) for t in totals] == [
        (f"d{i}", 50, 500) for i in range(4)]
    assert ledger.failures == 0
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT sum(count) FROM contents").fetchone()[0] == 400
    assert os.path.getsize(tmp_path / DB_NAME) > 0
