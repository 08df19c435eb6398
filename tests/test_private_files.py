"""Personal data is owner-only whatever the umask: the agent's state directory, its buffer
(with SQLite's -wal and -shm), the moved-aside corrupt copies, the metered budget, the
pseudonym secret, and the receiver's directory and database. Run under umask 022, as
by hand outside systemd (whose unit sets UMask=0077 and StateDirectoryMode=0700)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from helpers.receiver_batches import encoded

from agent.config import Config
from agent.frames import Event, Sample
from agent.receiver.core import Receiver
from agent.service.identity import SECRET_NAME, id_secret
from agent.store import Store, StoreConfig
from agent.store.settings import DB_NAME
from agent.upload.budget import FILE_NAME, DataBudget


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def modes(directory: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in directory.iterdir()}


def fill(store: Store) -> None:
    store.put_samples([Sample(float(i), "can0", "M", "S", i) for i in range(100)])
    store.put_events([Event(1.0, "can0", "dtc", "P0001")])
    store.flush()


def test_the_state_directory_and_everything_in_it_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "var" / "bavard"  # neither exists yet
    with Store(StoreConfig(state_dir=state)) as store:
        fill(store)
        DataBudget(state, 10_000_000, None).charge(1000)
        config = SimpleNamespace(vehicle=SimpleNamespace(id_secret_file=None),
                                 store=SimpleNamespace(state_dir=state))
        id_secret(cast(Config, config))
        files = modes(state)
        assert {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", FILE_NAME,
                SECRET_NAME} <= set(files)
        assert set(files.values()) == {0o600}, files
    assert mode(state) == mode(tmp_path / "var") == 0o700
    assert set(modes(state).values()) == {0o600}


def test_an_existing_directory_is_kept_and_older_files_are_narrowed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o750)  # the operator's choice (or systemd's StateDirectory=)
    with Store(StoreConfig(state_dir=state)) as store:
        fill(store)
    for path in state.glob(f"{DB_NAME}*"):  # as an older version left them under umask 022
        path.chmod(0o644)
    with Store(StoreConfig(state_dir=state)) as store:
        fill(store)
        assert set(modes(state).values()) == {0o600}, modes(state)
    assert mode(state) == 0o750


def test_a_corrupt_buffer_moved_aside_stays_owner_only(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(b"not a database" * 1000)
    db.chmod(0o644)
    with Store(StoreConfig(state_dir=tmp_path)) as store:
        fill(store)
        files = modes(tmp_path)
    assert any(".corrupt-" in name for name in files)
    assert set(files.values()) == {0o600}, files


def test_the_receivers_directory_and_database_are_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "srv" / "received"
    receiver = Receiver.open(directory)
    try:
        batch: Any
        batch, payload = encoded(0)
        assert receiver.accept(payload, batch.batch_id, "http").status == "stored"
        files = modes(directory)
        assert {"receiver.sqlite", "receiver.sqlite-wal", "receiver.sqlite-shm"} <= set(files)
        assert set(files.values()) == {0o600}, files
    finally:
        receiver.close()
    assert mode(directory) == mode(tmp_path / "srv") == 0o700
