"""ChannelDecoder: counting what cannot be decoded, flags, the change filter; DBC loading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from agent.config import SignalRule
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.errors import DbcError
from agent.frames import OUT_OF_RANGE, TRUNCATED, Frame, Sample
from agent.policy.rules import RuleSet
from agent.policy.selection import Selector
from tests.conftest import corpus

DBC = """VERSION ""
BO_ 100 Engine: 8 X
 SG_ Rpm : 0|16@1+ (0.25,0) [0|8000] "rpm" X
 SG_ Temp : 16|8@1+ (1,-40) [-40|150] "degC" X
 SG_ Engine_Counter : 56|4@1+ (1,0) [0|15] "" X
 SG_ Engine_Checksum : 60|4@1+ (1,0) [0|15] "" X
BO_ 101 Gear: 2 X
 SG_ Gear : 0|4@1+ (1,0) [0|6] "" X
 SG_ Brake : 8|1@1+ (1,0) [0|1] "" X
BO_ 2364540158 J1939: 8 X
 SG_ Load : 0|8@1+ (1,0) [0|250] "%" X
VAL_ 101 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""

OTHER = """VERSION ""
BO_ 100 Duplicate: 8 X
 SG_ Other : 0|8@1+ (1,0) [0|255] "" X
BO_ 300 Door: 1 X
 SG_ Open : 0|1@1+ (1,0) [0|1] "" X
"""


@pytest.fixture
def dbs(tmp_path: Path) -> list[object]:
    (tmp_path / "car.dbc").write_text(DBC)
    (tmp_path / "other.dbc").write_text(OTHER)
    return [load_dbc(tmp_path / "car.dbc"), load_dbc(tmp_path / "other.dbc")]


def frame(fid: int, data: bytes, ts: float = 1.0, ext: bool = False) -> Frame:
    return Frame(ts, "can0", fid, ext, False, data)


class Samples:
    """decoder.decode(frame) as a list of samples (empty when it returns None)."""

    def __init__(self, decoder: ChannelDecoder) -> None:
        self.decoder = decoder
        self.stats = decoder.stats

    def decode(self, f: Frame) -> list[Sample]:
        decoded = self.decoder.decode(f)
        return [] if decoded is None else decoded.samples()


def test_several_dbcs_first_wins_and_unknown_ids_are_counted(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs))
    assert [s.signal for s in decoder.decode(frame(100, bytes(8)))] == [
        "Rpm", "Temp", "Engine_Counter", "Engine_Checksum"]
    assert [s.signal for s in decoder.decode(frame(300, b"\x01"))] == ["Open"]
    for _ in range(3):
        assert decoder.decode(frame(0x7FF, b"\x00")) == []
    assert decoder.stats.unknown == {0x7FF: 3}


def test_extended_ids_and_candump_8_digit_standard_ids(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs))
    (load,) = decoder.decode(frame(0x0CF004FE, b"\x2a" + bytes(7), ext=True))
    assert (load.message, load.value, load.unit) == ("J1939", 42, "%")
    # an 11-bit frame with the same number is not the 29-bit message
    assert decoder.decode(frame(0x0CF004FE, bytes(8), ext=False)) == []
    # candump writes 00000065 for an 11-bit id 0x065: extended flag, 11-bit message
    gear = decoder.decode(frame(101, b"\x03\x01", ext=True))
    assert [(s.signal, s.value, s.label) for s in gear] == [("Gear", 3, "D"), ("Brake", 1, None)]


def test_values_out_of_range_are_flagged_and_counted(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs))
    samples = decoder.decode(frame(101, b"\x07\x00"))
    assert samples[0].value == 7 and samples[0].flags == OUT_OF_RANGE
    assert samples[1].flags == 0
    assert decoder.stats.out_of_range == {(101, "Gear"): 1}


def test_short_frames_decode_what_fits_flagged(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs))
    samples = decoder.decode(frame(100, b"\x10\x00\x5a"))
    assert [(s.signal, s.value, s.flags) for s in samples] == [
        ("Rpm", 4.0, TRUNCATED), ("Temp", 50, TRUNCATED)]
    assert decoder.decode(frame(101, b"")) == []
    assert decoder.stats.truncated == {100: 1, 101: 1}
    # longer than the DBC says: trimmed, like cantools, and counted
    assert len(decoder.decode(frame(101, b"\x01\x00\xff"))) == 2
    assert decoder.stats.excess == {101: 1}


def test_selection_compiles_only_wanted_signals(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs, wanted=lambda m, s: s == "Temp"))
    assert [s.signal for s in decoder.decode(frame(100, bytes(8)))] == ["Temp"]
    assert decoder.decode(frame(101, b"\x01\x00")) == []
    assert decoder.stats.unknown == {}  # known but not selected: not "unknown"


def on_change(message: str, signal: str) -> tuple[bool, float, float | None]:
    return (True, 0.0, None)


def heartbeat(message: str, signal: str) -> tuple[bool, float, float | None]:
    return (True, 0.0, 1.0)


def test_change_filter_masks_counters_and_checksums(dbs: list[object]) -> None:
    decoder = Samples(ChannelDecoder("can0", dbs, change_rule=on_change,
                                     volatile=["*Counter", "*Checksum"]))
    base = bytearray(8)
    out = []
    for i in range(6):
        base[7] = (i & 0xF) | ((i * 7 & 0xF) << 4)  # counter and checksum change every frame
        out.append(decoder.decode(frame(100, bytes(base), ts=1.0 + i * 0.01)))
    assert [len(x) for x in out] == [4, 0, 0, 0, 0, 0]
    base[0] = 8  # Rpm moves
    assert len(decoder.decode(frame(100, bytes(base), ts=1.1))) == 4
    assert decoder.stats.unchanged == 5


def test_change_filter_off_with_a_heartbeat(dbs: list[object]) -> None:
    """Regression: the filter let an unchanged frame through max_period after the last
    frame it let through, but a heartbeat is due max_period after the signal's last
    *kept* sample: Brake's heartbeat at t=1.0 came at t=1.5 (Gear moved at t=0.5)."""
    frames = [frame(101, bytes([0 if i < 5 else 1, 1]), ts=i / 10) for i in range(20)]

    def kept(change_rule: Any) -> list[tuple[float, str]]:
        decoder = ChannelDecoder("can0", dbs, change_rule=change_rule)
        rules = RuleSet([SignalRule("*", on_change=True, max_period=1.0)])
        return [(s.timestamp, s.signal) for f in frames
                if (d := decoder.decode(f)) is not None for s in rules.filter_decoded(d)]

    assert (1.0, "Brake") in kept(None)
    assert kept(heartbeat) == kept(None)


def test_change_filter_off_when_a_signal_keeps_every_value(dbs: list[object]) -> None:
    def rule(message: str, signal: str) -> tuple[bool, float, float | None]:
        return (signal != "Temp", 0.0, None)

    decoder = Samples(ChannelDecoder("can0", dbs, change_rule=rule))
    assert all(len(decoder.decode(frame(100, bytes(8)))) == 4 for _ in range(3))


def test_change_filter_with_multiplexed_pages(tmp_path: Path) -> None:
    (tmp_path / "mux.dbc").write_text("""VERSION ""
BO_ 200 Pages: 8 X
 SG_ Page M : 0|8@1+ (1,0) [0|1] "" X
 SG_ A m0 : 8|8@1+ (1,0) [0|255] "" X
 SG_ B m1 : 8|8@1+ (1,0) [0|255] "" X
 SG_ Shared : 16|8@1+ (1,0) [0|255] "" X
""")
    db = load_dbc(tmp_path / "mux.dbc")

    def counts(wanted: Any, payloads: list[bytes]) -> list[int]:
        decoder = Samples(ChannelDecoder("can0", [db], wanted, change_rule=on_change))
        return [len(decoder.decode(frame(200, d, ts=1 + i / 100)))
                for i, d in enumerate(payloads)]

    page0, page1 = bytes([0, 5, 7]) + bytes(5), bytes([1, 9, 7]) + bytes(5)
    no_page = Selector(exclude=["Page"])
    # each page is compared with the last frame of the same page
    assert counts(no_page, [page0, page1, page0, page1]) == [2, 2, 0, 0]
    # the multiplexer itself changes in every frame when pages alternate
    assert counts(lambda m, s: True, [page0, page1, page0, page1]) == [3, 3, 3, 3]
    # a signal outside the pages is compared with the last frame of any page:
    # 7 -> 8 (page 1) -> 7 (page 0, same bits as the last page-0 frame) is a change
    page1_shared = bytes([1, 9, 8]) + bytes(5)
    assert counts(no_page, [page0, page1_shared, page0]) == [2, 2, 2]
    decoder = ChannelDecoder("can0", [db], change_rule=on_change)
    assert decoder.decode(frame(200, b"\x02" + bytes(7))) is None
    assert decoder.stats.bad_mux == {200: 1}


PAGES = """VERSION ""
BO_ 200 Pages: 8 X
 SG_ Page M : 0|8@1+ (1,0) [0|3] "" X
 SG_ A m0 : 8|8@1+ (1,0) [0|255] "" X
 SG_ S m1 : 8|8@1+ (1,0) [0|255] "" X
 SG_ Shared : 16|8@1+ (1,0) [0|255] "" X
SG_MUL_VAL_ 200 S Page 1-2;
"""


def values_of(decoder: ChannelDecoder, payloads: list[bytes]) -> list[dict[str, Any] | None]:
    out = []
    for i, data in enumerate(payloads):
        decoded = decoder.decode(frame(200, data, ts=1 + i / 100))
        out.append(None if decoded is None else {s.signal: s.value for s in decoded.samples()})
    return out


def test_change_filter_and_a_signal_on_several_pages(tmp_path: Path) -> None:
    """Regression: S (pages 1 and 2) was compared with the last page-1 frame only, so
    5 (page 1) -> 9 (page 2) -> 5 (page 1) lost the change back to 5."""
    (tmp_path / "pages.dbc").write_text(PAGES)
    decoder = ChannelDecoder("can0", [load_dbc(tmp_path / "pages.dbc")],
                             Selector(exclude=["Page"]), change_rule=on_change)
    got = values_of(decoder, [bytes([1, 5, 7, 0, 0, 0, 0, 0]), bytes([2, 9, 7, 0, 0, 0, 0, 0]),
                              bytes([1, 5, 7, 0, 0, 0, 0, 0])])
    assert [v and v["S"] for v in got] == [5, 9, 5]


def test_unknown_multiplexer_value_does_not_hide_the_next_change(tmp_path: Path) -> None:
    """Regression: the filter remembered the bits of a frame with an unknown multiplexer
    value, which gives no record: the next frame with the same bits was skipped, and
    Shared 7 -> 8 never reached the rules."""
    (tmp_path / "pages.dbc").write_text(PAGES.replace("SG_MUL_VAL_ 200 S Page 1-2;\n", ""))
    decoder = ChannelDecoder("can0", [load_dbc(tmp_path / "pages.dbc")],
                             Selector(exclude=["Page"]), change_rule=on_change)
    got = values_of(decoder, [bytes([1, 5, 7, 0, 0, 0, 0, 0]), bytes([9, 5, 8, 0, 0, 0, 0, 0]),
                              bytes([1, 5, 8, 0, 0, 0, 0, 0]), bytes([1, 5, 8, 0, 0, 0, 0, 0])])
    assert got == [{"S": 5, "Shared": 7}, None, {"S": 5, "Shared": 8}, None]
    assert decoder.stats.bad_mux == {200: 1}
    assert decoder.stats.unchanged == 1


def test_short_frame_does_not_hide_the_next_change(tmp_path: Path) -> None:
    """Regression: a short frame is decoded without the filter; the next full frame,
    the same as the one before the short frame, was skipped although the rules had
    last seen the short frame's value."""
    (tmp_path / "pages.dbc").write_text(PAGES.replace("SG_MUL_VAL_ 200 S Page 1-2;\n", ""))
    decoder = ChannelDecoder("can0", [load_dbc(tmp_path / "pages.dbc")],
                             Selector(exclude=["Page"]), change_rule=on_change)
    got = values_of(decoder, [bytes([1, 5, 7, 0, 0, 0, 0, 0]), bytes([1, 6]),
                              bytes([1, 5, 7, 0, 0, 0, 0, 0]), bytes([1, 5, 7, 0, 0, 0, 0, 0])])
    assert got == [{"S": 5, "Shared": 7}, {"S": 6}, {"S": 5, "Shared": 7}, None]


def test_change_filter_with_a_big_endian_signal_that_does_not_fit(tmp_path: Path) -> None:
    """Regression: a DBC loaded with strict=False (a Motorola signal past the end of its
    message) crashed the decoder's start-up with 'negative shift count' under an
    on-change rule."""
    (tmp_path / "fit.dbc").write_text('VERSION ""\nBO_ 100 M: 2 X\n'
                                      ' SG_ A : 0|8@1+ (1,0) [0|0] "" X\n'
                                      ' SG_ B : 23|16@0+ (1,0) [0|0] "" X\n')
    decoder = Samples(ChannelDecoder("can0", [load_dbc(tmp_path / "fit.dbc")],
                                     change_rule=on_change))
    assert [(s.signal, s.value) for s in decoder.decode(frame(100, b"\x01\x02"))] == [("A", 1)]
    assert decoder.decode(frame(100, b"\x01\x03")) == []  # B is not decoded: unchanged


def test_strictly_rejected_dbc_loads_non_strict_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "overlap.dbc"
    path.write_text('VERSION ""\nBO_ 1 M: 1 X\n SG_ A : 0|8@1+ (1,0) [0|0] "" X\n'
                    ' SG_ B : 4|4@1+ (1,0) [0|0] "" X\n')
    with caplog.at_level(logging.WARNING):
        db = load_dbc(path)
    assert [m.name for m in db.messages] == ["M"]
    assert f"{path}: loaded with strict=False: " in caplog.text
    assert "overlapping" in caplog.text


def test_unloadable_dbc_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.dbc"
    path.write_text('VERSION ""\n\nBO_ 100 M: 8 X\n SG_ B : 8|8@1+ (1,0 [0|0] "" X\n')
    with pytest.raises(DbcError, match=rf"^{path}:4: not a loadable DBC: Invalid syntax"):
        load_dbc(path)
    with pytest.raises(DbcError, match="cannot read"):
        load_dbc(tmp_path / "absent.dbc")


def test_corpus_dbcs_that_cantools_rejects_strictly() -> None:
    folder = corpus("cantools", "dbc")
    for name in ("bad_message_length", "issue_63"):
        assert load_dbc(folder / f"{name}.dbc").messages
    with pytest.raises(DbcError, match=r"issue_199\.dbc: not a loadable DBC: Standard frame id"):
        load_dbc(folder / "issue_199.dbc")


def test_corpus_fd_and_choices() -> None:
    db = load_dbc(corpus("cantools", "dbc", "fd_test.dbc"))
    decoder = Samples(ChannelDecoder("can0", [db]))
    for message in db.messages:
        data = bytes(range(message.length))
        got = {s.signal: s.value for s in decoder.decode(
            Frame(0.0, "can0", message.frame_id, message.is_extended_frame, True, data))}
        assert got == message.decode(data, decode_choices=False)


def test_whole_sample_drive_equals_cantools() -> None:
    """Every value of every frame of the shipped drive, compiled decoders vs cantools."""
    from agent.sources.replay import ReplaySource
    from tests.conftest import ROOT

    db = load_dbc(ROOT / "dbc" / "demo_vehicle.dbc")
    decoder = ChannelDecoder("can0", [db])
    compared = 0
    with ReplaySource("can0", ROOT / "tests" / "data" / "sample_drive.log") as source:
        for f in source.frames():
            decoded = decoder.decode(f)
            assert decoded is not None
            expected = db.decode_message(f.arbitration_id, f.data, decode_choices=False)
            got = dict(zip((i.name for i in decoded.signals), decoded.values, strict=True))
            assert got == expected
            assert all(type(got[k]) is type(v) for k, v in expected.items())
            compared += len(got)
    assert compared == 477_840
    assert decoder.stats.decoded == 84_240


# -- layering and DBC bounds (issue 9: 5.5, 4.2, 6.4) ------------------------------------


def test_decode_does_not_import_policy() -> None:
    """decode/ is below policy/: the glob matching both need lives in agent.globs."""
    import ast

    from tests.conftest import ROOT

    for path in sorted((ROOT / "agent" / "decode").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "agent.policy" or n.startswith("agent.policy.")
                           for n in names), (path.name, names)


def test_empty_and_garbage_dbcs_are_errors_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.dbc").write_bytes(b"")
    with pytest.raises(DbcError, match=r"empty\.dbc: not a loadable DBC: the file is empty"):
        load_dbc(tmp_path / "empty.dbc")
    (tmp_path / "blank.dbc").write_bytes(b"\n \r\n")
    with pytest.raises(DbcError, match="the file is empty"):
        load_dbc(tmp_path / "blank.dbc")
    (tmp_path / "garbage.dbc").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DbcError) as info:
        load_dbc(tmp_path / "garbage.dbc")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'garbage.dbc'}:1: not a loadable DBC: Invalid")
    assert message.isprintable()  # the bytes cantools quotes are escaped


def test_dbc_over_the_size_limit_is_refused_with_its_size(tmp_path: Path) -> None:
    from agent.decode.dbc_files import MAX_DBC_BYTES

    path = tmp_path / "huge.dbc"
    with path.open("wb") as f:  # sparse: nothing is written, nothing must be read
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(DbcError, match=rf"huge\.dbc: not loaded: 52_428_800 bytes, over the "
                                       rf"limit of {MAX_DBC_BYTES:_} bytes"):
        load_dbc(path)


def test_a_long_comment_is_refused_before_cantools_parses_it(tmp_path: Path) -> None:
    """A 1 MiB comment made cantools' tokenizer use 248 MiB (5 MiB: 1.1 GiB)."""
    from agent.decode.dbc_files import MAX_STRING_CHARS

    path = tmp_path / "comment.dbc"
    lines = "\n".join("x" * 99 for _ in range(10_486))  # over several lines: no help
    path.write_text(f'VERSION ""\nBS_:\nBU_: X\nBO_ 100 M: 8 X\n SG_ A : 0|8@1+ (1,0) [0|255] '
                    f'"" X\nCM_ SG_ 100 A "{lines}";\n')
    with pytest.raises(DbcError, match=rf"comment\.dbc:6: not loaded: a quoted string \(a "
                                       rf"comment\?\) of 1_048_599 characters, over the limit "
                                       rf"of {MAX_STRING_CHARS:_}"):
        load_dbc(path)
    # at the limit, with escaped quotes inside, it loads
    text = "y" * (MAX_STRING_CHARS - 5) + '\\"x\\"'
    path.write_text(f'VERSION ""\nBS_:\nBU_: X\nBO_ 100 M: 8 X\n SG_ A : 0|8@1+ (1,0) [0|255] '
                    f'"" X\nCM_ SG_ 100 A "{text}";\n')
    assert load_dbc(path).messages[0].signals[0].comment.startswith("yyy")


def test_longest_string_follows_cantools_escapes() -> None:
    from agent.decode.dbc_files import longest_string

    assert longest_string('a "bc" d "efgh" i') == (4, 9)
    assert longest_string(r'"a\"b" "c"') == (4, 0)
    assert longest_string('x "unterminated') == (12, 2)
    assert longest_string("no strings") == (0, 0)
    assert longest_string('""') == (0, 0)


def test_a_fifo_or_a_device_as_dbc_is_refused_without_waiting(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "pipe.dbc"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_dbc(fifo)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # old behaviour: blocked in open(); release it, then fail
        with open(fifo, "wb"):
            pass
        thread.join(5)
        pytest.fail("load_dbc waited on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], DbcError)
    assert "not a regular file" in str(outcome[0])
    with pytest.raises(DbcError, match="not a regular file"):
        load_dbc(Path("/dev/null"))


# -- the chunk API (issue 13: decode_many, what the pipeline calls) ----------------------


def unusual_frames() -> list[Frame]:
    """Frames of every kind the decoder treats apart, twice each (first sight, then the
    learnt path), mixed with ordinary ones: unknown, unselected, 29-bit, candump's
    8-digit 11-bit id, short, long, out of range, unknown multiplexer value."""
    kinds = [
        frame(100, bytes([0x10, 0x00, 0x5A, 0, 0, 0, 0, 0x21])),
        frame(0x7FF, b"\x00"),  # unknown
        frame(300, b"\x01"),  # known, but Door is not selected below
        frame(0x0CF004FE, b"\x2a" + bytes(7), ext=True),
        frame(101, b"\x03\x01", ext=True),  # 8-digit spelling of 0x065
        frame(100, b"\x10\x00\x5a"),  # short
        frame(101, b"\x01\x00\xff"),  # long
        frame(101, b"\x07\x00"),  # Gear 7: out of range
        frame(0x1ABCDE01, b"\x00", ext=True),  # unknown 29-bit
        frame(200, b"\x09" + bytes(7)),  # unknown multiplexer value
        frame(200, b"\x01\x05\x07" + bytes(5)),
        frame(100, bytes([0x10, 0x00, 0x5A, 0, 0, 0, 0, 0x32])),  # only the counter moved
    ]
    return [f._replace(timestamp=1.0 + i / 100) for i, f in enumerate(kinds * 2)]


@pytest.mark.parametrize("rule", [None, on_change])
@pytest.mark.parametrize("size", [1, 5, 512])
def test_decode_many_gives_what_decode_gives_frame_by_frame(
    tmp_path: Path, dbs: list[object], rule: Any, size: int
) -> None:
    """Same records, same order, same flags, same stats; in chunks of any size."""
    (tmp_path / "pages.dbc").write_text(PAGES)
    databases = [*dbs, load_dbc(tmp_path / "pages.dbc")]
    wanted = Selector(exclude=["Open"])
    one = ChannelDecoder("can0", databases, wanted, change_rule=rule,
                         volatile=["*Counter", "*Checksum"])
    many = ChannelDecoder("can0", databases, wanted, change_rule=rule,
                          volatile=["*Counter", "*Checksum"])
    frames = unusual_frames()
    expected = [d for f in frames if (d := one.decode(f)) is not None]
    got = [d for i in range(0, len(frames), size) for d in many.decode_many(frames[i:i + size])]
    def plain(records: list[Any]) -> list[tuple[Any, ...]]:  # SignalInfo: compared by identity
        return [(*d[:3], tuple(i.name for i in d.signals), *d[4:]) for d in records]

    assert plain(got) == plain(expected) and len(got) > 10
    assert all(type(d).__name__ == "Decoded" for d in got)
    assert repr(many.stats) == repr(one.stats)
    stats = many.stats
    assert stats.unknown == {0x7FF: 2, 0x1ABCDE01: 2}
    assert stats.truncated == {100: 2} and stats.excess == {101: 2}
    assert stats.bad_mux == {200: 2}
    assert stats.out_of_range == {(101, "Gear"): 2}
    assert stats.unchanged == (0 if rule is None else 2)  # 2nd round: J1939, first Engine
    assert stats.decoded == len(got)
    flagged = [d for d in got if d.message == "Gear" and d.values[0] == 7]
    assert [d.flags for d in flagged] == [(OUT_OF_RANGE, 0)] * 2
    assert [d.flags for d in got if d.message == "Engine" and len(d.values) == 2] == [
        (TRUNCATED, TRUNCATED)] * 2


def test_out_of_range_counts_are_read_when_asked(dbs: list[object]) -> None:
    """The generated code counts out-of-range values in a list of its own; the stats
    read the same Counter as before, as often as asked, without counting twice."""
    decoder = ChannelDecoder("can0", dbs)
    decoder.decode_many([frame(101, b"\x07\x00"), frame(101, b"\x09\x01"),
                         frame(100, bytes([0, 0xFF, 0xFF, 0, 0, 0, 0, 0]))])
    assert decoder.stats.out_of_range == {(101, "Gear"): 2, (100, "Rpm"): 1,
                                          (100, "Temp"): 1}
    assert decoder.stats.out_of_range == {(101, "Gear"): 2, (100, "Rpm"): 1,
                                          (100, "Temp"): 1}
    decoder.decode(frame(101, b"\x08\x00"))
    assert decoder.stats.out_of_range[(101, "Gear")] == 3
    assert "out_of_range=Counter({(101, 'Gear'): 3" in repr(decoder.stats)


def test_a_flood_of_unknown_ids_is_counted_and_bounded(dbs: list[object]) -> None:
    from agent.decode.decoder import MAX_IGNORED

    decoder = ChannelDecoder("can0", dbs)
    frames = [frame(0x10000 + i, b"\x00", ext=True) for i in range(MAX_IGNORED + 100)]
    assert decoder.decode_many(frames) == []
    assert decoder.decode_many(frames[-3:]) == []
    assert len(decoder._table) <= len(decoder.selected) + MAX_IGNORED
    assert sum(decoder.stats.unknown.values()) == MAX_IGNORED + 103
    assert decoder.stats.unknown[0x10000 + MAX_IGNORED + 99] == 2


def test_whole_sample_drive_in_chunks_equals_cantools() -> None:
    """The shipped drive through decode_many in the pipeline's chunks: cantools' values."""
    from agent.sources.replay import ReplaySource
    from tests.conftest import ROOT

    db = load_dbc(ROOT / "dbc" / "demo_vehicle.dbc")
    decoder = ChannelDecoder("can0", [db])
    with ReplaySource("can0", ROOT / "tests" / "data" / "sample_drive.log") as source:
        frames = list(source.frames())
    records = [d for i in range(0, len(frames), 512)
               for d in decoder.decode_many(frames[i:i + 512])]
    assert len(records) == len(frames) == decoder.stats.decoded == 84_240
    for f, decoded in zip(frames, records, strict=True):
        assert decoded.timestamp == f.timestamp
        expected = db.decode_message(f.arbitration_id, f.data, decode_choices=False)
        got = dict(zip((i.name for i in decoded.signals), decoded.values, strict=True))
        assert got == expected
        assert all(type(got[k]) is type(v) for k, v in expected.items())
        labels = db.decode_message(f.arbitration_id, f.data)
        assert [decoded.labels[i] if decoded.labels else None
                for i in range(len(decoded.values))] == [
            str(labels[i.name]) if hasattr(labels[i.name], "value") else None
            for i in decoded.signals]
