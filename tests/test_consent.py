"""The consent book (agent.privacy.consent) and the per-destination keys (agent.privacy.keys),
on real files in tmp_path. The wall clock is the one thing moved by hand."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from agent.batch.ids import pseudonymous_vehicle_id
from agent.errors import BavardError
from agent.privacy.consent import AUDIT_NAME, FILE_NAME, ConsentBook
from agent.privacy.keys import destination_key, key_path, rotate_key

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
VIN = "WVWZZZ1JZXW000001"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def audit(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state / AUDIT_NAME).read_text().splitlines()]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- grants ----------------------------------------------------------------------------------


def test_nothing_is_granted_by_default_and_nothing_is_written(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path, clock=Clock())
    for purpose in ("maintenance", "insurance", "repair", "fleet", "diagnostics", "other"):
        assert not book.granted(purpose)
    assert book.grants() == {} and book.history() == [] and book.problem is None
    assert sorted(os.listdir(tmp_path)) == []


def test_grant_and_revoke_are_written_private_and_audited_with_the_uid(tmp_path: Path) -> None:
    clock = Clock()
    book = ConsentBook(tmp_path, clock=clock)
    change = book.grant("insurance", T0 + 86_400, uid=1000)
    assert change == {"purpose": "insurance", "granted": True, "since": T0,
                      "until": T0 + 86_400, "uid": 1000, "previous": None}
    assert book.granted("insurance") and not book.granted("maintenance")
    clock.now += 10
    book.grant("maintenance", None, uid=0)
    clock.now += 10
    again = book.grant("insurance", None, uid=0)  # extended: until revoked
    assert again["previous"] == {"since": T0, "until": T0 + 86_400, "uid": 1000}
    assert book.grants() == {"insurance": {"since": T0 + 20, "until": None, "uid": 0},
                             "maintenance": {"since": T0 + 10, "until": None, "uid": 0}}
    clock.now += 10
    revoked = book.revoke("insurance", uid=1001)
    assert revoked == {"purpose": "insurance", "granted": False,
                       "previous": {"since": T0 + 20, "until": None, "uid": 0}}
    assert not book.granted("insurance") and book.granted("maintenance")

    on_disk = json.loads((tmp_path / FILE_NAME).read_text())
    assert on_disk == {"version": 1, "grants": {
        "maintenance": {"since": T0 + 10, "until": None, "uid": 0}}}
    assert mode(tmp_path / FILE_NAME) == 0o600 and mode(tmp_path / AUDIT_NAME) == 0o600
    assert audit(tmp_path) == [
        {"time": T0, "purpose": "insurance", "action": "grant", "until": T0 + 86_400,
         "uid": 1000},
        {"time": T0 + 10, "purpose": "maintenance", "action": "grant", "until": None, "uid": 0},
        {"time": T0 + 20, "purpose": "insurance", "action": "grant", "until": None, "uid": 0},
        {"time": T0 + 30, "purpose": "insurance", "action": "revoke", "until": None,
         "uid": 1001}]
    assert book.history(T0 + 15) == audit(tmp_path)[2:]
    # a new book (the service restarted) reads the same
    fresh = ConsentBook(tmp_path, clock=clock)
    assert fresh.granted("maintenance") and not fresh.granted("insurance")
    # revoking what is not granted is the owner's act all the same: audited
    assert fresh.revoke("repair", uid=5)["previous"] is None
    assert audit(tmp_path)[-1]["action"] == "revoke" and audit(tmp_path)[-1]["uid"] == 5


def test_a_grant_ends_at_its_until_and_the_expiry_is_audited(tmp_path: Path) -> None:
    clock = Clock()
    book = ConsentBook(tmp_path, clock=clock)
    book.grant("insurance", T0 + 100, uid=0)
    clock.now = T0 + 99.9
    assert book.granted("insurance")
    clock.now = T0 + 100
    assert not book.granted("insurance")  # the pipeline's check: nothing written by it
    assert [e["action"] for e in audit(tmp_path)] == ["grant"]
    clock.now = T0 + 500
    assert book.grants() == {}
    assert audit(tmp_path)[-1] == {"time": T0 + 100, "purpose": "insurance",
                                   "action": "expire", "until": T0 + 100, "uid": None}
    assert json.loads((tmp_path / FILE_NAME).read_text())["grants"] == {}
    book.grants()
    assert len(audit(tmp_path)) == 2  # written down once


def test_a_past_until_or_a_bad_name_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path, clock=Clock(), purposes=["maintenance", "insurance"])
    with pytest.raises(BavardError, match="is not in the future"):
        book.grant("insurance", T0 - 1, uid=0)
    with pytest.raises(BavardError, match="is not in the future"):
        book.grant("insurance", T0, uid=0)
    with pytest.raises(BavardError, match=r"unknown purpose 'research'; known: insurance, "
                                          r"maintenance"):
        book.grant("research", None, uid=0)
    with pytest.raises(BavardError, match="not a purpose's name"):
        book.revoke("../etc", uid=0)
    assert os.listdir(tmp_path) == []


BAD_FILES = {
    "not JSON": (b'{"version": 1, "grants": {"insurance": {', "not JSON"),
    "a list": (b"[]", "not a consent file of version 1"),
    "another version": (b'{"version": 2, "grants": {}}', "not a consent file of version 1"),
    "an extra key": (b'{"version": 1, "grants": {}, "all": true}',
                     "not a consent file of version 1"),
    "an until in words": (b'{"version": 1, "grants": {"insurance": {"since": 1, "until": '
                          b'"tomorrow", "uid": 0}, "maintenance": {"since": 1, "until": null, '
                          b'"uid": 0}}}', "grants.insurance: expected"),
    "a boolean uid": (b'{"version": 1, "grants": {"maintenance": {"since": 1, "until": null, '
                      b'"uid": true}}}', "grants.maintenance: expected"),
    "a bad name": (b'{"version": 1, "grants": {"*": {"since": 1, "until": null, "uid": 0}}}',
                   "grants: '*' is not a purpose's name"),
    "an unknown purpose": (b'{"version": 1, "grants": {"maintenance": {"since": 1, "until": '
                           b'null, "uid": 0}, "research": {"since": 1, "until": null, '
                           b'"uid": 0}}}', "grants.research: not a purpose of the "
                                           "configuration"),
    "too large": (b" " * (1 << 20) + b'{"version": 1, "grants": {}}', "larger than"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_consent_file_grants_nothing_says_so_once_and_is_rewritten_cleanly(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    content, reason = BAD_FILES[case]
    (tmp_path / FILE_NAME).write_bytes(content)
    clock = Clock()
    with caplog.at_level(logging.ERROR, logger="agent.privacy.consent"):
        book = ConsentBook(tmp_path, clock=clock, purposes=["maintenance", "insurance"])
        for _ in range(5):
            clock.now += 1.5
            assert not book.granted("maintenance") and not book.granted("insurance")
        assert book.grants() == {}
    assert book.problem is not None and reason in book.problem
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1, errors
    assert str(tmp_path / FILE_NAME) in errors[0] and reason in errors[0]
    assert "NOTHING is granted" in errors[0]

    book.grant("insurance", None, uid=7)
    assert book.problem is None and book.granted("insurance")
    assert not book.granted("maintenance")  # nothing is kept from the bad file
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {
        "version": 1, "grants": {"insurance": {"since": clock.now, "until": None, "uid": 7}}}
    entry = audit(tmp_path)[-1]
    assert entry["action"] == "grant" and "was discarded" in str(entry["note"])
    assert reason in str(entry["note"])


def test_an_unreadable_consent_file_grants_nothing_and_a_change_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).mkdir()  # cannot be read (nor replaced) as a file, even by root
    (tmp_path / FILE_NAME / "x").write_text("x")
    with caplog.at_level(logging.ERROR, logger="agent.privacy.consent"):
        book = ConsentBook(tmp_path, clock=Clock())
    assert not book.granted("fleet") and "cannot read it" in str(book.problem)
    assert "cannot read it" in caplog.text
    with pytest.raises(BavardError, match=f"{tmp_path / FILE_NAME}: cannot write the consent"):
        book.grant("fleet", None, uid=0)
    assert not book.granted("fleet") and not (tmp_path / AUDIT_NAME).exists()


def test_an_audit_log_that_cannot_be_written_undoes_the_change(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path, clock=Clock())
    book.grant("maintenance", None, uid=0)
    before = (tmp_path / FILE_NAME).read_bytes()
    (tmp_path / AUDIT_NAME).unlink()
    (tmp_path / AUDIT_NAME).mkdir()
    with pytest.raises(BavardError, match=r"cannot write the consent audit log.*nothing "
                                          r"changed"):
        book.grant("insurance", None, uid=0)
    with pytest.raises(BavardError, match="nothing changed"):
        book.revoke("maintenance", uid=0)
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert book.granted("maintenance") and not book.granted("insurance")


def test_a_change_by_another_writer_is_seen_within_a_second(tmp_path: Path) -> None:
    clock = Clock()
    pipeline_side = ConsentBook(tmp_path, clock=clock)
    other = ConsentBook(tmp_path, clock=clock)  # the command line, with no service
    assert not pipeline_side.granted("repair")
    other.grant("repair", None, uid=0)
    clock.now += 0.5
    assert not pipeline_side.granted("repair")  # the file is not looked at yet
    clock.now += 0.5
    assert pipeline_side.granted("repair")
    other.revoke("repair", uid=0)
    clock.now += 1.0
    assert not pipeline_side.granted("repair")
    clock.now -= 3600  # the wall clock set back: looked at again all the same
    other.grant("repair", None, uid=0)
    assert pipeline_side.granted("repair")


def test_the_history_skips_lines_that_are_not_entries(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    book = ConsentBook(tmp_path, clock=Clock())
    book.grant("fleet", None, uid=0)
    with open(tmp_path / AUDIT_NAME, "ab") as f:
        f.write(b'garbage\n{"time": "x", "action": "grant"}\n[1]\n')
    book.revoke("fleet", uid=0)
    with caplog.at_level(logging.WARNING, logger="agent.privacy.consent"):
        history = book.history()
    assert [e["action"] for e in history] == ["grant", "revoke"]
    assert "3 lines are not audit entries" in caplog.text


def test_readers_and_a_writer_in_threads(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path)  # the real wall clock
    stop = threading.Event()
    seen = {True: 0, False: 0}
    failures: list[BaseException] = []

    def read() -> None:
        try:
            deadline = time.monotonic() + 10
            while not stop.is_set() and time.monotonic() < deadline:
                seen[book.granted("fleet")] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(40):
            if i % 2:
                book.revoke("fleet", uid=0)
            else:
                book.grant("fleet", None, uid=0)
            time.sleep(0.005)
    finally:
        stop.set()
        for t in readers:
            t.join(10)
    assert not failures and not any(t.is_alive() for t in readers)
    assert seen[True] and seen[False]
    assert not book.granted("fleet") and len(book.history()) == 40


# -- keys ------------------------------------------------------------------------------------


def test_a_destination_key_is_made_once_private_and_differs_per_destination(
        tmp_path: Path) -> None:
    key = destination_key(tmp_path, "insurer")
    assert len(key) == 32 and destination_key(tmp_path, "insurer") == key
    path = key_path(tmp_path, "insurer")
    assert path == tmp_path / "keys" / "insurer.key" and path.read_bytes() == key
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    garage = destination_key(tmp_path, "garage")
    assert garage != key
    assert pseudonymous_vehicle_id(VIN, key) != pseudonymous_vehicle_id(VIN, garage)


def test_rotating_a_key_gives_an_unlinkable_pseudonym(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    old = destination_key(tmp_path, "insurer")
    garage = destination_key(tmp_path, "garage")
    with caplog.at_level(logging.INFO, logger="agent.privacy.keys"):
        rotate_key(tmp_path, "insurer")
    new = destination_key(tmp_path, "insurer")
    assert new != old and len(new) == 32 and destination_key(tmp_path, "garage") == garage
    assert pseudonymous_vehicle_id(VIN, new) != pseudonymous_vehicle_id(VIN, old)
    assert old not in b"".join(p.read_bytes() for p in (tmp_path / "keys").iterdir())
    assert "rotated the pseudonym key of destination insurer" in caplog.text
    rotate_key(tmp_path, "fresh")  # a destination without a key yet gets one
    assert len(destination_key(tmp_path, "fresh")) == 32


def test_a_truncated_key_is_replaced_and_logged(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = key_path(tmp_path, "insurer")
    path.parent.mkdir()
    path.write_bytes(b"short")
    with caplog.at_level(logging.ERROR, logger="agent.privacy.keys"):
        key = destination_key(tmp_path, "insurer")
    assert len(key) == 32 and path.read_bytes() == key
    assert f"{path} holds 5 bytes" in caplog.text


@pytest.mark.parametrize("name", ["", "Insurer", "../x", "a.b", "x" * 33, "a b"])
def test_a_bad_destination_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BavardError, match="is not a destination's name"):
        destination_key(tmp_path, name)
    with pytest.raises(BavardError, match="is not a destination's name"):
        rotate_key(tmp_path, name)
    assert not (tmp_path / "keys").exists()


def test_a_key_that_cannot_be_read_or_written_names_the_file(tmp_path: Path) -> None:
    path = key_path(tmp_path, "insurer")
    path.mkdir(parents=True)  # a directory where the key should be
    with pytest.raises(BavardError, match=f"cannot read the pseudonym key {path}"):
        destination_key(tmp_path, "insurer")
    (path / "x").write_text("x")
    with pytest.raises(BavardError, match=f"cannot write the pseudonym key {path}"):
        rotate_key(tmp_path, "insurer")
