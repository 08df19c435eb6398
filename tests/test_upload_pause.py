"""Uploads by hand: the pause switch kept in the state directory, an uploader that takes
no batch while paused (and gives back the one it was retrying), and ``upload_now`` ending
a linger and a backoff pause. A real store, a real HTTP peer on loopback, the uploader's
own waits (nothing patched but the jitter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.http_peer import HttpPeer, Reply

from agent.errors import BavardError
from agent.frames import Sample
from agent.store.buffer import Store
from agent.store.settings import StoreConfig
from agent.upload.http import HttpTransport
from agent.upload.pause import FILE_NAME, PauseSwitch
from agent.upload.settings import UploadConfig
from agent.upload.uploader import Identity, Uploader

VEHICLE = "0123456789abcdef0123456789abcdef"


def samples(n: int, t0: float = 1_767_225_600.0) -> list[Sample]:
    return [Sample(t0 + i * 0.01, "vehicle", "Engine", "Rpm", 800 + i, "rpm", None, 0)
            for i in range(n)]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll (bounded) until ``condition`` holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.02)
    return time.monotonic() - started


@contextmanager
def running(store: Store, url: str, pause: PauseSwitch | None = None,
            **settings: object) -> Iterator[Uploader]:
    config = UploadConfig(url=url, timeout=2.0, **settings)  # type: ignore[arg-type]
    uploader = Uploader(store, HttpTransport(config.transport()), config, Identity(VEHICLE),
                        rng=lambda: 0.5, pause=pause)
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield uploader
    finally:
        stop.set()
        uploader.wake()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(StoreConfig(state_dir=tmp_path / "state", commit_interval=0.05)) as s:
        yield s


def acked(store: Store) -> int:
    return store.stats().classes["samples"].acked


def test_the_pause_is_kept_in_the_state_directory(tmp_path: Path) -> None:
    switch = PauseSwitch(tmp_path, clock=lambda: 1234.5)
    assert switch.paused is None
    paused, new = switch.pause("brake job")
    assert new and (paused.since, paused.reason) == (1234.5, "brake job")
    assert switch.pause("again") == (paused, False)  # already paused: kept as it was
    again = PauseSwitch(tmp_path)  # a restart
    assert again.paused == paused
    assert again.resume() == paused
    assert not (tmp_path / FILE_NAME).exists()
    assert PauseSwitch(tmp_path).paused is None
    assert again.resume() is None  # not paused: nothing to end


def test_an_unreadable_pause_file_still_pauses(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    paused = PauseSwitch(tmp_path).paused
    assert paused is not None and "unreadable" in paused.reason
    (tmp_path / FILE_NAME).write_text("[1, 2]")
    assert PauseSwitch(tmp_path).paused is not None


def test_a_pause_that_cannot_be_written_is_not_done(tmp_path: Path) -> None:
    switch = PauseSwitch(tmp_path / "missing")
    with pytest.raises(BavardError, match="cannot pause uploads"):
        switch.pause()
    assert switch.paused is None


def test_a_paused_uploader_takes_no_batch_until_resumed(store: Store, tmp_path: Path) -> None:
    switch = PauseSwitch(tmp_path)
    switch.pause("test")
    store.put_samples(samples(100))
    store.flush()
    with HttpPeer() as peer, running(store, peer.url, switch, linger=0.0) as uploader:
        wait_until(lambda: uploader.stats.state == "paused", 10, "the state says paused")
        time.sleep(0.5)  # several rounds
        assert peer.requests == [] and store.stats().inflight_batches == 0
        switch.resume()
        uploader.upload_now()
        wait_until(lambda: acked(store) == 100, 10, "delivered once resumed")
        assert len(peer.requests) == 1


def test_a_pause_ends_the_retries_and_releases_the_batch(store: Store, tmp_path: Path) -> None:
    switch = PauseSwitch(tmp_path)
    store.put_samples(samples(50))
    store.flush()
    with HttpPeer() as peer, running(store, peer.url, switch, linger=0.0,
                                     retry_initial=60.0, retry_max=60.0) as uploader:
        peer.script(*[Reply(503)] * 10)
        wait_until(lambda: uploader.stats.state == "backoff", 10, "backing off")
        switch.pause()
        took = wait_until(lambda: uploader.stats.state == "paused", 5, "paused")
        assert took < 2.0  # not the 30 s of the backoff
        assert len(peer.requests) == 1
        stats = store.stats()
        assert stats.inflight_batches == 0  # released (it comes back as the same range)
        assert stats.classes["samples"].items == 50


def test_upload_now_ends_a_backoff_pause(store: Store) -> None:
    store.put_samples(samples(50))
    store.flush()
    with HttpPeer() as peer, running(store, peer.url, linger=0.0, retry_initial=60.0,
                                     retry_max=60.0) as uploader:
        peer.script(Reply(503))  # then 200
        wait_until(lambda: uploader.stats.state == "backoff", 10, "backing off")
        done = uploader.upload_now()
        assert done["state"] == "backoff" and done["backoff_ended"]
        took = wait_until(lambda: acked(store) == 50, 5, "delivered")
        assert took < 2.0  # the backoff was 30 s (rng 0.5 under a 60 s cap)
        assert len(peer.requests) == 2


def test_upload_now_ends_a_linger(store: Store) -> None:
    with HttpPeer() as peer, running(store, peer.url, linger=120.0) as uploader:
        store.put_samples(samples(10))
        uploader.wake()
        wait_until(lambda: acked(store) == 10, 10, "the first small batch")
        store.put_samples(samples(10, t0=1_767_225_700.0))
        store.flush()
        uploader.wake()
        time.sleep(0.5)
        assert acked(store) == 10  # lingering: a small batch waits for more
        done = uploader.upload_now()
        assert done["linger_ended"]
        wait_until(lambda: acked(store) == 20, 5, "sent at once")
