"""A service killed (SIGKILL, or SIGABRT as systemd's watchdog sends it) and started
again continues with nothing lost that was committed, and nothing twice at the receiver."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers.consent import grant_for

from agent.frames import Sample
from agent.receiver.core import Receiver
from agent.receiver.database import ReceiverDb
from agent.receiver.http_server import serve
from agent.store.buffer import Store
from agent.store.settings import StoreConfig

ROOT = Path(__file__).resolve().parents[1]


def key(s: Sample) -> tuple[Any, ...]:
    return (s.timestamp, s.channel, s.message, s.signal, repr(s.value), s.unit, s.flags)


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    grant_for(config)
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def committed_not_uploaded(state: Path) -> list[Sample]:
    """Everything in the buffer, read as the uploader would, then put back."""
    found: list[Sample] = []
    ranges = []
    with Store(StoreConfig(state_dir=state)) as store:
        while (batch := store.next_batch()) is not None:  # each in flight until released
            found.extend(batch.samples)
            ranges.append((batch.seq_first, batch.seq_last))
        for first, last in ranges:
            store.release(first, last)  # it comes back as the same range
    return found


def received(directory: Path) -> list[Sample]:
    with ReceiverDb(directory, readonly=True) as db:
        return db.samples()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT], ids=["SIGKILL", "SIGABRT"])
def test_killed_and_restarted_loses_nothing_committed(tmp_path: Path, sig: int) -> None:
    receiver = Receiver.open(tmp_path / "received")
    server = serve(receiver, "127.0.0.1", 0)
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "bavard.toml"
    config.write_text('[[channels]]\nname = "vehicle"\nsimulate = true\nspeed = 5.0\n'
                      '[selection]\nexclude = ["*Counter*", "*Checksum*"]\n'
                      '[[signals]]\nmatch = "*"\non_change = true\n'
                      f'[store]\nstate_dir = "{state}"\ncommit_interval = 0.2\n'
                      f'chunk_items = 2000\n[upload]\nurl = "{server.url}"\n'
                      'batch_seconds = 5.0\nlinger = 3.0\n'  # data waits
                      '[insights]\nenabled = false\n')  # no event batch ends the linger
    log = tmp_path / "agent.log"
    try:
        agent = start(config, log)
        deadline = time.monotonic() + 60
        while receiver.stats()["total"]["stored"] < 3:
            assert time.monotonic() < deadline and agent.poll() is None, log.read_text()
            time.sleep(0.1)
        agent.send_signal(sig)
        agent.wait(10)
        before = received(tmp_path / "received")
        waiting = committed_not_uploaded(state)
        assert waiting, "the kill should leave committed samples behind"

        agent = start(config, log)
        deadline = time.monotonic() + 60
        # a batch received but not acknowledged before the kill is in both: a set
        want = set(map(key, before + waiting))
        while True:  # what was committed, and something read after the restart
            got = set(map(key, received(tmp_path / "received")))
            if want <= got and len(got) > len(want):
                break
            assert time.monotonic() < deadline and agent.poll() is None, log.read_text()
            time.sleep(0.2)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        server.close()
        receiver.close()
    final = Counter(map(key, received(tmp_path / "received")))
    assert max(final.values()) == 1  # nothing twice
    assert want <= set(final)  # nothing committed lost
    assert len(final) > len(want)  # and it went on reading after the restart
