"""``bavard consent`` and ``bavard privacy``: on the state directory's files when no service
answers (for real: the consent file, the buffers the purge empties, the ledger, the
keys), and the service's handlers (agent.control.privacy_commands) on a real control
server over a real Unix socket, with a real consent book, ledger and buffers behind
them. The whole service (``bavard run``) is the lead's end-to-end test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.consent_cmd import local_time
from agent.cli.main import main
from agent.config import Config, load_config
from agent.control import protocol
from agent.control.client import ControlClient
from agent.control.privacy_commands import privacy_commands
from agent.control.server import ControlServer
from agent.control.tap import Tap
from agent.errors import BavardError, ControlError
from agent.frames import Event, Sample
from agent.privacy.consent import AUDIT_NAME, FILE_NAME, ConsentBook
from agent.privacy.keys import key_path
from agent.privacy.ledger import Ledger
from agent.privacy.purge import purge_purpose
from agent.privacy.purposes import purposes_of
from agent.privacy.report import until_words
from agent.service.identity import rotate_destination_key
from agent.store import DB_NAME, Store, StoreConfig, read_stats_file

T0 = 1_767_225_600.0
CONFIG = """
[[channels]]
name = "sim"
simulate = true

[store]
state_dir = "{state}"
commit_interval = 0.1

[control]
socket = "{socket}"

[upload]
url = "http://127.0.0.1:9/garage"
purpose = "maintenance"

[destinations.insurer]
url = "http://127.0.0.1:9/insurer"
purpose = "insurance"
"""
KNOWN = "known: maintenance, repair, insurance, fleet, diagnostics"


@pytest.fixture
def box() -> Iterator[Path]:
    """A short directory (a socket's path is at most 107 bytes) with a configuration:
    ``bavard.toml``, its state directory ``state``, its socket ``control`` (nobody
    listens there unless a test starts a server)."""
    where = Path(tempfile.mkdtemp(prefix="bv-prv-"))
    (where / "state").mkdir()
    (where / "bavard.toml").write_text(CONFIG.format(state=where / "state",
                                                     socket=where / "control"))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def pending(state_dir: Path, samples: int, events: int) -> None:
    """Data waiting for upload in the buffer of ``state_dir``, as the router stores it."""
    with Store(StoreConfig(state_dir=state_dir, commit_interval=0.05)) as store:
        store.put_samples([Sample(T0 + i, "sim", "Engine", "EngineSpeed", 800.0 + i, "rpm")
                           for i in range(samples)])
        store.put_events([Event(T0 + i, "insights", "driving.harsh_braking", "x", 1)
                          for i in range(events)])
        store.flush(10)


def depth(state_dir: Path) -> int:
    stats = read_stats_file(state_dir / DB_NAME, time.time())
    return sum(c.items for c in stats.classes.values()) + stats.dead_letter_items


def audit(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / AUDIT_NAME).read_text().splitlines()]


# -- no service: on the files --------------------------------------------------------------


def test_grant_show_and_revoke_on_the_files_when_no_service_answers(
        box: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, state = str(box / "bavard.toml"), box / "state"
    status, out, err = cli(capsys, "consent", "show", "--config", config, "--json")
    assert status == 0, err
    shown = json.loads(out)
    assert [(p["purpose"], p["granted"], p["destinations"]) for p in shown["purposes"]] == [
        ("maintenance", False, ["main"]), ("repair", False, []),
        ("insurance", False, ["insurer"]), ("fleet", False, []), ("diagnostics", False, [])]
    assert shown["purposes"][2]["receives"] == {"signals": [], "events": ["driving.*",
                                                                        "trip.*"],
                                                "frames": False, "geohash": 0}
    assert shown["service"] is False
    assert f"no service answers on {box / 'control'}: read from {state} directly" in err

    status, out, err = cli(capsys, "consent", "grant", "insurance", "--until", "2099-06-30",
                           "--config", config)
    assert status == 0, err
    until = local_time("2099-06-30", "--until", end_of_day=True)
    assert out == ("granted insurance until the end of 2099-06-30: destination insurer "
                   "receives its data from now on\n")
    assert f"{state / FILE_NAME} changed directly" in err
    assert ConsentBook(state).grants()["insurance"]["until"] == until
    assert audit(state)[-1]["uid"] == os.getuid()

    status, out, err = cli(capsys, "consent", "show", "--config", config)
    assert status == 0
    assert (f"insurance: granted by uid {os.getuid()} on " in out
            and "until the end of 2099-06-30 -> insurer" in out)
    assert "maintenance: not granted -> main" in out

    pending(state / "destinations" / "insurer", samples=0, events=25)
    pending(state, samples=40, events=2)  # the garage's: not touched
    status, out, err = cli(capsys, "consent", "revoke", "insurance", "--config", config,
                           "--json")
    assert status == 0, err
    revoked = json.loads(out)
    assert revoked["purged"] == {"insurer": {"items": 25, "bytes": revoked["bytes"]}}
    assert revoked["items"] == 25 and revoked["bytes"] > 0
    assert revoked["message"].startswith("revoked insurance: purged 25 items (")
    assert revoked["message"].endswith(") pending for destination insurer")
    assert revoked["previous"]["until"] == until and not ConsentBook(state).granted("insurance")
    assert depth(state / "destinations" / "insurer") == 0 and depth(state) == 42
    status, out, _ = cli(capsys, "consent", "revoke", "insurance", "--config", config)
    assert out == ("revoked insurance (it was not granted): nothing was pending for "
                   "destination insurer\n")

    status, out, err = cli(capsys, "privacy", "report", "--config", config, "--json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["purges"][0]["destination"] == "insurer" and doc["purges"][0]["items"] == 25
    assert [h["action"] for h in doc["consent_history"]] == ["grant", "revoke", "revoke"]
    assert "the report is read from" in err
    status, out, _ = cli(capsys, "privacy", "report", "--since", "1h", "--config", config)
    assert status == 0 and "insurer (insurance): 25 items" in out


def test_the_direct_path_refuses_what_it_must(box: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = str(box / "bavard.toml")
    status, _, err = cli(capsys, "consent", "grant", "research", "--config", config)
    assert status == 1 and err == f"bavard consent: unknown purpose 'research'; {KNOWN}\n"
    status, _, err = cli(capsys, "consent", "grant", "fleet", "--until", "2001-01-01",
                         "--config", config)
    assert status == 1 and err == "bavard consent: --until 2001-01-01: that is in the past\n"
    status, _, err = cli(capsys, "consent", "grant", "fleet", "--until", "next week",
                         "--config", config)
    assert status == 1 and "--until next week: expected a date (2026-06-30)" in err
    status, _, err = cli(capsys, "privacy", "report", "--since", "yesterday", "--config",
                         config)
    assert status == 1 and "or a time before now: 30d, 12h, 90m, 2w" in err
    status, _, err = cli(capsys, "privacy", "rotate-key", "garage", "--config", config)
    assert status == 1 and "no destination 'garage'" in err and "main, insurer" in err
    status, _, err = cli(capsys, "consent", "show", "--config", str(box / "missing.toml"))
    assert status == 1 and "missing.toml" in err
    assert not (box / "state" / FILE_NAME).exists()

    # a service that holds the buffers but answers elsewhere: its files are its own
    with Store(StoreConfig(state_dir=box / "state")):
        status, _, err = cli(capsys, "consent", "revoke", "insurance", "--config", config)
        assert status == 1 and "a process holds the buffer" in err
        assert "name its socket with --socket" in err
    assert not (box / "state" / AUDIT_NAME).exists()

    shutil.rmtree(box / "state")
    status, _, err = cli(capsys, "consent", "grant", "fleet", "--config", config)
    assert status == 1 and f"{box / 'state'} ([store] state_dir of" in err


def test_rotate_key_on_the_files(box: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, state = str(box / "bavard.toml"), box / "state"
    old = key_path(state, "insurer")
    old.parent.mkdir(mode=0o700)
    old.write_bytes(b"k" * 32)
    status, out, err = cli(capsys, "privacy", "rotate-key", "insurer", "--config", config)
    assert status == 0, err
    assert out.startswith("rotated the pseudonym key of destination insurer: its next ")
    new = old.read_bytes()
    assert len(new) == 32 and new != b"k" * 32
    status, out, _ = cli(capsys, "privacy", "rotate-key", "main", "--config", config,
                         "--json")
    assert json.loads(out)["rotated"] is True and len((state / "vehicle-id.secret")
                                                      .read_bytes()) == 32


# -- the service's handlers, on a real control server -----------------------------------------


class Owner:
    """What the handlers ask of the daemon, made of the real parts on a state
    directory (the daemon's own, agent.service.owner, is the lead's to test whole)."""

    def __init__(self, config: Config) -> None:
        state = Path(config.store.state_dir)
        self.config = config
        self.consent = ConsentBook(state, purposes=purposes_of(config))
        self.ledger = Ledger(state)

    def grant(self, purpose: str, until: float | None, uid: int) -> dict[str, Any]:
        return self.consent.grant(purpose, until, uid)

    def revoke(self, purpose: str, uid: int) -> dict[str, Any]:
        change = self.consent.revoke(purpose, uid)
        return {**change, "purged": purge_purpose(self.config, purpose, self.ledger)}

    def rotate_key(self, destination: str) -> dict[str, Any]:
        rotate_destination_key(self.config, destination)
        return {"destination": destination, "rotated": True}


@pytest.fixture
def served(box: Path) -> Iterator[tuple[Owner, Path]]:
    owner = Owner(load_config(box / "bavard.toml"))
    server = ControlServer(box / "control", privacy_commands(owner), Tap(), hello={},
                           group=None)
    server.start()
    try:
        yield owner, box / "control"
    finally:
        server.close()
        owner.ledger.close()


def test_the_commands_through_the_service(served: tuple[Owner, Path], box: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    owner, socket = served
    state = box / "state"
    status, out, err = cli(capsys, "consent", "grant", "insurance", "--socket", str(socket),
                           "--json")
    assert status == 0 and err == ""  # no word of a direct path
    granted = json.loads(out)
    assert granted["uid"] == os.getuid() and granted["until"] is None
    assert granted["destinations"] == ["insurer"] and "service" not in granted
    assert owner.consent.granted("insurance")

    status, out, err = cli(capsys, "consent", "show", "--socket", str(socket))
    assert status == 0 and "insurance: granted by uid" in out and err == ""

    pending(state / "destinations" / "insurer", samples=10, events=5)
    status, out, err = cli(capsys, "consent", "revoke", "insurance", "--socket", str(socket))
    assert status == 0, err
    assert out.startswith("revoked insurance: purged 15 items (")
    assert depth(state / "destinations" / "insurer") == 0

    owner.ledger.uploaded("insurer", "insurance", "a" * 32, nbytes=321, ts_first=T0,
                          ts_last=T0 + 5, classes={"events": 3},
                          contents={("event", "trip.end"): 3})
    status, out, _ = cli(capsys, "privacy", "report", "--socket", str(socket), "--json")
    through = json.loads(out)
    status, out, _ = cli(capsys, "privacy", "report", "--config", str(box / "bavard.toml"),
                         "--socket", str(box / "nobody"), "--json")
    direct = json.loads(out)
    for doc in (through, direct):
        doc.pop("generated"), doc.pop("service", None)
    assert through == direct
    assert through["totals"]["bytes"] == 321 and through["totals"]["purged_items"] == 15

    before = key_path(state, "insurer").read_bytes() if key_path(state, "insurer").exists() \
        else b""
    status, out, err = cli(capsys, "privacy", "rotate-key", "insurer", "--socket", str(socket))
    assert status == 0 and out.startswith("rotated the pseudonym key of destination insurer")
    assert key_path(state, "insurer").read_bytes() != before


def test_the_uid_audited_is_the_peers_whatever_the_request_says(
        served: tuple[Owner, Path], box: Path) -> None:
    _, socket = served
    with ControlClient.connect(socket) as service:
        service.call("consent.grant", purpose="fleet", _uid=4242)
        service.call("consent.revoke", purpose="fleet", _uid=4242)
    assert [(e["action"], e["uid"]) for e in audit(box / "state")] == [
        ("grant", os.getuid()), ("revoke", os.getuid())]


@pytest.mark.parametrize(("cmd", "args", "message"), [
    ("consent.grant", {"purpose": "research"}, f"purpose: unknown purpose 'research' ({KNOWN})"),
    ("consent.grant", {}, "purpose: unknown purpose None"),
    ("consent.grant", {"purpose": "fleet", "until": 1.0}, "until: 1970-01-01"),
    ("consent.grant", {"purpose": "fleet", "until": "tomorrow"},
     "until: seconds since the epoch, got 'tomorrow'"),
    ("consent.grant", {"purpose": "fleet", "all": True},
     "consent.grant: unknown argument 'all' (it takes purpose, until)"),
    ("consent.revoke", {"purpose": 5}, "purpose: unknown purpose 5"),
    ("consent.show", {"x": 1}, "consent.show: unknown argument 'x' (it takes none)"),
    ("privacy.report", {"since": True}, "since: seconds since the epoch, got True"),
    ("privacy.rotate-key", {"destination": "../x"},
     "destination: no destination '../x' (destinations: main, insurer)"),
])
def test_bad_arguments_are_refused_and_change_nothing(
        served: tuple[Owner, Path], box: Path, cmd: str, args: dict[str, Any],
        message: str) -> None:
    _, socket = served
    with ControlClient.connect(socket) as service, pytest.raises(ControlError) as info:
        service.call(cmd, **args)
    assert info.value.code == protocol.BAD_ARGS and message in str(info.value)
    assert not (box / "state" / FILE_NAME).exists() and not (box / "state" / "keys").exists()


# -- times -----------------------------------------------------------------------------------


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_dates_are_local_time(paris: None) -> None:
    summer_midnight = 1_782_856_800.0  # 2026-07-01T00:00:00+02:00
    assert local_time("2026-06-30", "--until", end_of_day=True) == summer_midnight
    assert local_time("2026-06-30", "--since") == summer_midnight - 86_400
    assert local_time("2026-06-30T18:00", "--until") == summer_midnight - 6 * 3600
    assert local_time("2026-06-30T18:00+00:00", "--until") == summer_midnight - 4 * 3600
    assert until_words(summer_midnight) == "the end of 2026-06-30"
    assert until_words(summer_midnight + 1) == "2026-07-01 00:00:01"
    before = time.time()
    ago = local_time("2h", "--since", relative=True)
    assert before - 7200 <= ago <= time.time() - 7200
    with pytest.raises(BavardError, match="--since 2h: expected a date"):
        local_time("2h", "--since")
    with pytest.raises(BavardError, match="--until 2026-02-30: expected a date"):
        local_time("2026-02-30", "--until")
