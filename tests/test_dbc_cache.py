"""The DBC cache: a warm load decodes exactly like a cold one; entries are private,
atomic, bounded; a damaged, foreign or mismatched entry is ignored and replaced."""

from __future__ import annotations

import logging
import os
import pickle
import random
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.decode import dbc_cache
from agent.decode.dbc_cache import DbcCache, default_directory, use_cache
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.frames import Frame
from tests.conftest import ROOT, corpus

SMALL = """VERSION ""
BO_ 100 Engine: 8 X
 SG_ Rpm : 0|16@1+ (0.25,0) [0|8000] "rpm" X
 SG_ Temp : 16|8@1+ (1,-40) [-40|150] "degC" X
VAL_ 100 Temp 0 "cold" ;
"""

OTHER = """VERSION ""
BO_ 200 Door: 1 X
 SG_ Open : 0|1@1+ (1,0) [0|1] "" X
"""

# cantools rejects it strictly (overlapping signals): loaded with strict=False and a warning
OVERLAP = """VERSION ""
BO_ 300 Bad: 2 X
 SG_ A : 0|8@1+ (1,0) [0|0] "" X
 SG_ B : 4|8@1+ (1,0) [0|0] "" X
"""


def entries(cache: DbcCache) -> list[Path]:
    return sorted(cache.directory.glob("dbc-*.pickle"))


def random_frames(db: Any, seed: int, per_message: int = 12) -> list[Frame]:
    """Frames of every message with random bytes, plus some too short and unknown ids."""
    rng = random.Random(seed)
    frames = []
    for message in db.messages:
        for i in range(per_message):
            length = message.length if i % 6 else max(0, message.length - 1)
            frames.append(Frame(float(i), "can0", message.frame_id, message.is_extended_frame,
                                message.is_fd, rng.randbytes(length)))
    frames.append(Frame(0.0, "can0", 0x7FF, False, False, b"\1\2"))
    return frames


def decode_all(db: Any, frames: list[Frame]) -> tuple[str, str, str]:
    """Everything observable about decoding ``frames`` with ``db``, through the generated
    decoders (records and stats) and through cantools itself, as text (NaN == NaN)."""
    decoder = ChannelDecoder("can0", [db])
    records = [decoder.decode(f) for f in frames]
    by_cantools = []
    for f in frames:
        try:
            message = db.get_message_by_frame_id(f.arbitration_id)
            by_cantools.append(repr(message.decode(f.data, decode_choices=True)))
        except Exception as exc:
            by_cantools.append(f"{type(exc).__name__}: {exc}")
    return repr(records), repr(decoder.stats), repr(by_cantools)


def cold_and_warm(path: Path, cache: DbcCache) -> tuple[Any, Any]:
    cold = load_dbc(path, cache=cache)
    assert cache.misses == 1 and len(entries(cache)) == 1
    warm = load_dbc(path, cache=cache)
    assert cache.hits == 1, "the second load must come from the cache"
    assert warm is not cold
    return cold, warm


def corpus_dbcs() -> list[Any]:
    return [
        pytest.param(("dbc", "demo_vehicle.dbc"), id="demo_vehicle"),
        pytest.param(("opendbc", "ford_lincoln_base_pt.dbc"), id="ford_lincoln_base_pt"),
        pytest.param(("cantools", "dbc", "vehicle.dbc"), id="vehicle"),
        pytest.param(("cantools", "dbc", "multiplex_2.dbc"), id="multiplex_2"),
        pytest.param(("cantools", "dbc", "fd_test.dbc"), id="fd_test"),
        pytest.param(("cantools", "dbc", "issue_63.dbc"), id="issue_63-non-strict"),
        pytest.param(("cantools", "dbc", "choices.dbc"), id="choices"),
    ]


@pytest.mark.parametrize("where", corpus_dbcs())
def test_warm_cache_decodes_exactly_like_cold(where: tuple[str, ...], tmp_path: Path) -> None:
    path = ROOT.joinpath(*where) if where[0] == "dbc" else corpus(*where)
    cache = DbcCache(tmp_path / "cache")
    cold, warm = cold_and_warm(path, cache)
    uncached = load_dbc(path)
    assert cold.as_dbc_string() == warm.as_dbc_string() == uncached.as_dbc_string()
    frames = random_frames(cold, seed=len(cold.messages))
    expected = decode_all(uncached, frames)
    assert decode_all(cold, frames) == expected
    assert decode_all(warm, frames) == expected
    # and the same as cantools' own load_file
    direct: Any = cantools.database.load_file(str(path), database_format="dbc",
                                         strict=where[-1] != "issue_63.dbc")
    assert warm.as_dbc_string() == direct.as_dbc_string()


def test_warning_of_a_non_strict_file_is_given_again_on_a_hit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "bad.dbc").write_text(OVERLAP)
    cache = DbcCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        load_dbc(tmp_path / "bad.dbc", cache=cache)
        cold = [r.getMessage() for r in caplog.records]
        caplog.clear()
        load_dbc(tmp_path / "bad.dbc", cache=cache)
        warm = [r.getMessage() for r in caplog.records]
    assert cache.hits == 1
    assert cold == warm
    assert len(warm) == 1 and "loaded with strict=False" in warm[0] and "overlapping" in warm[0]


def test_crlf_file_loads_like_cantools_load_file(tmp_path: Path) -> None:
    path = tmp_path / "crlf.dbc"
    path.write_bytes(SMALL.replace("\n", "\r\n").replace("cold", "k\xe4lt").encode("cp1252"))
    db = load_dbc(path, cache=DbcCache(tmp_path / "cache"))
    direct: Any = cantools.database.load_file(str(path))
    assert db.as_dbc_string() == direct.as_dbc_string()
    assert str(db.messages[0].signals[1].choices[0]) == "k\xe4lt"


def test_entries_are_private_and_the_directory_is_created_0700(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(SMALL)
    cache = DbcCache(tmp_path / "deep" / "cache")
    load_dbc(tmp_path / "a.dbc", cache=cache)
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    [entry] = entries(cache)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert not list(cache.directory.glob(".tmp-*")), "no temporary file left behind"
    assert entry.read_bytes().startswith(dbc_cache.MAGIC)


def test_a_changed_file_is_a_new_entry(tmp_path: Path) -> None:
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    load_dbc(path, cache=cache)
    path.write_text(SMALL.replace("Rpm", "Speed"))  # same name, same size class, new bytes
    db = load_dbc(path, cache=cache)
    assert cache.hits == 0 and cache.misses == 2
    assert [s.name for s in db.messages[0].signals] == ["Speed", "Temp"]
    assert len(entries(cache)) == 2


def test_key_covers_versions_and_the_bytes() -> None:
    key = DbcCache.key(b"BO_ 1 A: 8 X\n")
    assert key["sha256"] == DbcCache.key(b"BO_ 1 A: 8 X\n")["sha256"]
    assert key["sha256"] != DbcCache.key(b"BO_ 2 A: 8 X\n")["sha256"]
    assert key["cantools"] == cantools.__version__
    assert {"bavard", "python", "format", "pickle", "policy"} <= key.keys()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty", "other key"])
def test_damaged_entry_is_ignored_and_replaced(
        damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    expected = load_dbc(path, cache=cache).as_dbc_string()
    [entry] = entries(cache)
    raw = entry.read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) - 20]
    elif damage == "flipped":  # still a valid pickle perhaps: the checksum catches it
        i = raw.index(b"rpm")
        raw = raw[:i] + b"rpM" + raw[i + 3:]
    elif damage == "garbage":
        raw = os.urandom(len(raw))
    elif damage == "empty":
        raw = b""
    else:
        raw = raw.replace(cantools.__version__.encode(), b"0.0.0", 1)
    entry.write_bytes(raw)
    with caplog.at_level(logging.DEBUG, logger="agent.decode.dbc_cache"):
        db = load_dbc(path, cache=cache)
    assert cache.hits == 0
    assert db.as_dbc_string() == expected
    assert any("ignoring" in r.getMessage() for r in caplog.records)
    # replaced by a good entry
    assert load_dbc(path, cache=cache).as_dbc_string() == expected
    assert cache.hits == 1


def test_entry_holding_something_else_is_not_used(tmp_path: Path) -> None:
    """A well-formed entry (right key, right checksum) must still hold a Database."""
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    key = DbcCache.key(path.read_bytes())
    cache.put(key, dbc_cache.CachedDbc(["not", "a", "database"], None))
    assert cache.get(key) is None
    db = load_dbc(path, cache=cache)
    assert db.messages[0].name == "Engine"
    assert cache.get(key) is not None


def test_group_writable_entry_and_symlink_are_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    load_dbc(path, cache=cache)
    [entry] = entries(cache)
    entry.chmod(0o620)
    assert cache.get(DbcCache.key(path.read_bytes())) is None
    entry.chmod(0o600)
    assert cache.get(DbcCache.key(path.read_bytes())) is not None
    target = tmp_path / "elsewhere.pickle"
    entry.rename(target)
    entry.symlink_to(target)
    assert cache.get(DbcCache.key(path.read_bytes())) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_entry_of_another_user_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    load_dbc(path, cache=cache)
    [entry] = entries(cache)
    os.chown(entry, 12345, 12345)
    assert cache.get(DbcCache.key(path.read_bytes())) is None


def test_world_writable_directory_is_not_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.dbc").write_text(SMALL)
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    directory.chmod(0o777)
    cache = DbcCache(directory)
    with caplog.at_level(logging.WARNING):
        db = load_dbc(tmp_path / "a.dbc", cache=cache)
        load_dbc(tmp_path / "a.dbc", cache=cache)
    assert db.messages[0].name == "Engine"
    assert entries(cache) == [] and cache.hits == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.decode.dbc_cache"]
    assert len(warnings) == 1 and "writable by group or others" in warnings[0]


def test_unwritable_cache_only_costs_the_cache(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(SMALL)
    (tmp_path / "file").write_text("a file, not a directory")
    cache = DbcCache(tmp_path / "file" / "cache")
    assert load_dbc(tmp_path / "a.dbc", cache=cache).messages[0].name == "Engine"
    assert load_dbc(tmp_path / "a.dbc", cache=cache).messages[0].name == "Engine"
    assert cache.hits == 0


def test_cache_keeps_the_most_recently_used_entries(tmp_path: Path) -> None:
    cache = DbcCache(tmp_path / "cache", max_entries=2)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.dbc")
        paths[-1].write_text(SMALL.replace("Engine", f"Engine{i}"))
    load_dbc(paths[0], cache=cache)
    load_dbc(paths[1], cache=cache)
    for entry in entries(cache):  # make the order of use unambiguous at any mtime resolution
        os.utime(entry, (time.time() - 100, time.time() - 100))
    load_dbc(paths[0], cache=cache)  # a hit: now the most recently used
    assert cache.hits == 1
    load_dbc(paths[2], cache=cache)  # a third entry: the least recently used (1) goes
    assert len(entries(cache)) == 2
    hits = cache.hits
    load_dbc(paths[0], cache=cache)
    load_dbc(paths[2], cache=cache)
    assert cache.hits == hits + 2
    load_dbc(paths[1], cache=cache)
    assert cache.hits == hits + 2, "entry 1 was removed"


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    cache = DbcCache(tmp_path / "cache")
    cache.directory.mkdir(mode=0o700)
    stale = cache.directory / ".tmp-crashed.pickle"
    fresh = cache.directory / ".tmp-writing.pickle"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "a.dbc").write_text(OTHER)
    load_dbc(tmp_path / "a.dbc", cache=cache)
    assert not stale.exists()
    assert fresh.exists()


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    dbc_cache._reset()
    yield
    dbc_cache._reset()


@pytest.mark.usefixtures("fresh_default")
def test_use_cache_makes_it_the_default_of_load_dbc(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(SMALL)
    assert dbc_cache.active_cache() is None, "no cache unless asked for"
    cache = DbcCache(tmp_path / "cache")
    use_cache(cache)
    load_dbc(tmp_path / "a.dbc")
    load_dbc(tmp_path / "a.dbc")
    assert (cache.misses, cache.hits) == (1, 1)
    use_cache(None)
    load_dbc(tmp_path / "a.dbc")
    assert (cache.misses, cache.hits) == (1, 1), "use_cache(None) turns it off"


@pytest.mark.usefixtures("fresh_default")
def test_systemd_cache_directory_turns_the_cache_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.dbc").write_text(SMALL)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "systemd"))
    load_dbc(tmp_path / "a.dbc")
    cache = dbc_cache.active_cache()
    assert cache is not None and cache.directory == tmp_path / "systemd"
    assert len(entries(cache)) == 1
    load_dbc(tmp_path / "a.dbc")
    assert cache.hits == 1
    use_cache(None)  # the entry point may still turn it off
    assert dbc_cache.active_cache() is None


def test_default_directory() -> None:
    assert default_directory({"CACHE_DIRECTORY": "/var/cache/bavard", "HOME": "/h"}) == Path(
        "/var/cache/bavard")
    assert default_directory({"CACHE_DIRECTORY": "/a:/b"}) == Path("/a")
    assert default_directory({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/bavard")
    assert default_directory({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.cache/bavard")
    assert default_directory({"HOME": "/h"}) == Path("/h/.cache/bavard")


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DbcCache("/nonexistent", max_entries=0)


def test_gc_paused_restores_the_previous_state() -> None:
    import gc

    assert gc.isenabled()
    with dbc_cache.gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with dbc_cache.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pickled_payload_is_a_plain_database(tmp_path: Path) -> None:
    """What an entry holds after its header: (Database, warning), nothing of ours."""
    path = tmp_path / "a.dbc"
    path.write_text(SMALL)
    cache = DbcCache(tmp_path / "cache")
    load_dbc(path, cache=cache)
    [entry] = entries(cache)
    payload = entry.read_bytes().split(b"\n", 3)[3]
    db, warning = pickle.loads(payload)
    assert isinstance(db, cantools.database.can.Database) and warning is None
