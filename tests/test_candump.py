"""The candump parser: good forms, every kind of bad line, python-can parity, speed paths."""

from __future__ import annotations

import io
import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources import candump
from agent.sources.candump import MAX_LINE, SKIP_KINDS, parse_candump, read_lines

GOOD_1 = "(1436509052.249713) vcan0 123#11223344\n"
GOOD_2 = "(1436509052.349713) vcan0 123#55\n"


def parse(
    text: str, path: str = "t.log", warn_limit: int | None = 100
) -> tuple[list[Frame], Counter[str]]:
    """Parse ``text`` as the replay does: cut into lines by read_lines, then parsed."""
    stats: Counter[str] = Counter()
    lines = read_lines(io.StringIO(text, newline=""))
    frames = list(parse_candump(lines, path, None, stats, warn_limit=warn_limit))
    return frames, stats


# -- good lines ---------------------------------------------------------------


def test_classic_standard_frame() -> None:
    frames, stats = parse(GOOD_1)
    assert frames == [Frame(1436509052.249713, "vcan0", 0x123, False, False, b"\x11\x22\x33\x44")]
    assert stats == Counter()


def test_extended_id_is_eight_digits() -> None:
    frames, _ = parse("(1.5) can1 18DAF110#0102\n(1.6) can1 00000123#\n")
    assert frames == [
        Frame(1.5, "can1", 0x18DAF110, True, False, b"\x01\x02"),
        Frame(1.6, "can1", 0x123, True, False, b""),
    ]


def test_can_fd_frames_with_flags_nibble() -> None:
    data64 = bytes(range(64))
    text = (
        "(2.0) can0 123##1112233\n"  # BRS, 3 bytes
        f"(2.1) can0 1ABCDEF0##3{data64.hex()}\n"  # BRS|ESI, 64 bytes, 29-bit
        "(2.2) can0 7FF##0\n"  # 0 bytes
        f"(2.3) can0 7FF##0{bytes(12).hex()}\n"  # 12 bytes: a valid FD length
    )
    frames, stats = parse(text)
    assert stats == Counter()
    assert frames == [
        Frame(2.0, "can0", 0x123, False, True, b"\x11\x22\x33"),
        Frame(2.1, "can0", 0x1ABCDEF0, True, True, data64),
        Frame(2.2, "can0", 0x7FF, False, True, b""),
        Frame(2.3, "can0", 0x7FF, False, True, bytes(12)),
    ]


def test_direction_suffixes_and_crlf_are_accepted() -> None:
    text = "(1.0) vcan0 0C8#F0 T\r\n(2.0) vcan0 0C8#F1 R\r\n(3.0) vcan0 0C8#F2 r\n"
    frames, stats = parse(text)
    assert [f.data for f in frames] == [b"\xf0", b"\xf1", b"\xf2"]
    assert stats == Counter()


def test_raw_dlc_suffix_of_classic_frame_is_accepted() -> None:
    frames, _ = parse("(1.0) can0 123#1122334455667788_E\n")
    assert frames[0].data == bytes.fromhex("1122334455667788")


def test_channel_override_replaces_interface_name() -> None:
    stats: Counter[str] = Counter()
    lines = [GOOD_1, "(1.0) can9 123##0AA\n", "(1.0)  can9  123   [1]  AA\n"]
    frames = list(parse_candump(lines, "t.log", "body", stats))
    assert [f.channel for f in frames] == ["body", "body", "body"]


def test_human_form_of_candump_ta() -> None:
    text = (
        "(1436509052.249713)  can0  123   [4]  11 22 33 44\n"
        "(1436509052.249714)  can0  12345678   [2]  AB CD   '..'\n"  # ASCII column (-a)
        "(1436509052.249715)  can0  123  [12]  00 01 02 03 04 05 06 07 08 09 0A 0B\n"  # FD
        "(1436509052.249716)  can0  RX - -  321   [1]  FF\n"  # -x columns
        "(1436509052.249717)  can0  123   [0]\n"
    )
    frames, stats = parse(text)
    assert stats == Counter()
    assert frames == [
        Frame(1436509052.249713, "can0", 0x123, False, False, b"\x11\x22\x33\x44"),
        Frame(1436509052.249714, "can0", 0x12345678, True, False, b"\xab\xcd"),
        Frame(1436509052.249715, "can0", 0x123, False, True, bytes(range(12))),
        Frame(1436509052.249716, "can0", 0x321, False, False, b"\xff"),
        Frame(1436509052.249717, "can0", 0x123, False, False, b""),
    ]


def test_blank_lines_are_ignored_and_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    frames, stats = parse(f"\n{GOOD_1}   \n\t\n{GOOD_2}\n")
    assert len(frames) == 2
    assert stats == Counter()
    assert caplog.records == []


def test_many_distinct_ids_beyond_the_id_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candump, "_ID_CACHE_MAX", 2)
    text = "".join(f"({i}.0) can0 {i:03X}#{i:02X}\n" for i in range(10)) * 2
    frames, _ = parse(text)
    assert [(f.arbitration_id, f.data) for f in frames] == [(i, bytes([i])) for i in range(10)] * 2


# -- every kind of bad line -----------------------------------------------------

BAD_LINES: list[tuple[str, str]] = [
    ("comment", "# candump -l can0, started 10:00"),
    ("remote", "(1436509052.249713) vcan0 123#R"),
    ("remote", "(1436509052.249713) vcan0 123#R5"),
    ("remote", "(1436509052.249713)  can0  123   [4]  remote request"),
    ("error_frame", "(1436509052.249713) vcan0 20000080#0000000000000000"),
    (
        "error_frame",
        "(1436509052.249713)  can0  20000080   [8]  00 00 00 00 00 00 00 00   ERRORFRAME",
    ),
    ("error", "(1436509052.249713) vcan0 ERROR"),
    ("no_timestamp", "vcan0 123#11223344"),
    ("no_timestamp", "1436509052.249713 vcan0 123#11223344"),
    ("no_timestamp", "  can0  123   [4]  11 22 33 44"),
    ("bad_timestamp", "(14365x9052.2) vcan0 123#11"),
    ("bad_timestamp", "(2015-07-10 08:17:32.249713) vcan0 123#11"),
    ("bad_timestamp", "(inf) vcan0 123#11"),  # regression: inf and nan were frames
    ("bad_timestamp", "(nan) vcan0 123#11"),
    ("bad_timestamp", "(1e999)  can0  123   [1]  11"),
    ("truncated", "(1436509052.2497"),
    ("truncated", "(14365.2) can0 12"),
    ("truncated", "(14365.2) can0"),
    ("truncated", "(14365.2) can0 123##"),
    ("truncated", "(14365.2)  can0  123   [4]  11 22"),
    ("bad_hex", "(1436509052.249713) vcan0 12G#11223344"),
    ("bad_hex", "(1436509052.249713) vcan0 123#1122ZZ44"),
    ("bad_hex", "(1436509052.249713) vcan0 123##X11"),
    ("bad_hex", "(1436509052.249713) vcan0 0x1#11"),
    ("odd_length", "(1436509052.249713) vcan0 123#1122334"),
    ("odd_length", "(1436509052.249713)  can0  123   [2]  11 2"),
    ("too_long", "(1594172462.126542) vcan0 064#F001FFFFFFFFFFFFFFFF"),
    ("too_long", "(1594172462.126542) vcan0 064##0" + "00" * 65),
    ("bad_length", "(1594172462.126542) vcan0 064##0" + "00" * 9),
    ("bad_length", "(1594172462.126542)  can0  064   [x]  00"),
    ("bad_id", "(1436509052.249713) vcan0 FFF#11"),
    ("bad_id", "(1436509052.249713) vcan0 123456789#11"),
    ("bad_id", "(1436509052.249713) vcan0 #11"),
    ("unsupported", "(1436509052.249713) vcan0 123###00:00:00#11"),
    ("bad_format", "(1436509052.249713) vcan0 123#11 extra"),
    ("bad_format", "hello world"),
    ("long_line", "A" * (MAX_LINE + 1)),
    # a good frame, but past the limit: read only as far as the limit, so skipped
    ("long_line", "(1436509052.249713) vcan0 123#11" + " " * MAX_LINE),
]


def test_every_skip_kind_is_documented_and_exercised() -> None:
    assert {kind for kind, _ in BAD_LINES} == set(SKIP_KINDS)


@pytest.mark.parametrize(
    ("kind", "bad"), BAD_LINES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD_LINES)]
)
def test_bad_line_is_counted_logged_and_the_rest_plays(
    kind: str, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.sources.candump")
    frames, stats = parse(f"{GOOD_1}{bad}\n{GOOD_2}", path="logs/drive.log")
    assert len(frames) == 2
    assert stats == Counter({kind: 1})
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("logs/drive.log:2: ")
    assert f"({kind})" in message
    expected_level = logging.DEBUG if kind in candump.INFO_KINDS else logging.WARNING
    assert record.levelno == expected_level


def test_truncated_last_line_without_newline(caplog: pytest.LogCaptureFixture) -> None:
    frames, stats = parse(f"{GOOD_1}{GOOD_2}(1436509052.2497", path="cut.log")
    assert len(frames) == 2
    assert stats == Counter({"truncated": 1})
    assert "cut.log:3: " in caplog.text


def test_log_with_every_kind_of_bad_line_plays_to_its_end() -> None:
    good = [f"(1000.{i:06d}) can0 {0x100 + i % 3:03X}#{i:04X}" for i in range(40)]
    lines: list[str] = []
    for i, (_, bad) in enumerate(BAD_LINES):
        lines += [good[i % 40], bad, ""]  # blank lines: ignored, not counted
    lines += good[:7]
    lines.append("(1436509052.2497")  # a truncated last line, no newline
    frames, stats = parse("\n".join(lines))
    assert len(frames) == len(BAD_LINES) + 7
    expected = Counter(kind for kind, _ in BAD_LINES)
    expected["truncated"] += 1
    assert stats == expected
    assert frames[-1] == Frame(1000.000006, "can0", 0x100, False, False, b"\x00\x06")


def test_warnings_per_kind_are_capped_but_all_counted(caplog: pytest.LogCaptureFixture) -> None:
    text = "vcan0 123#11\n" * 10
    frames, stats = parse(text, warn_limit=3)
    assert frames == []
    assert stats == Counter({"no_timestamp": 10})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert messages[-1] == "t.log:3: further 'no_timestamp' lines are counted, not logged"


def test_read_error_of_the_lines_is_a_source_error_naming_the_position() -> None:
    def lines() -> Iterator[str]:
        yield GOOD_1
        yield GOOD_2
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    gen = parse_candump(lines(), "x.log.gz")
    assert next(gen).data == b"\x11\x22\x33\x44"
    next(gen)
    with pytest.raises(SourceError, match=r"x\.log\.gz: cannot read past line 2"):
        next(gen)


# -- line length -------------------------------------------------------------------


@pytest.mark.parametrize("block", [7, 100, 1 << 16])
def test_lines_are_cut_at_the_limit_whatever_the_block_size(block: int) -> None:
    """Regression: a line was read whole, however long (a 2 GiB line: 2.1 GB, MemoryError)."""
    text = f"{GOOD_1}{'B' * 50}\n{'A' * 1000}\n{GOOD_2}{'C' * 30}"
    got = list(read_lines(io.StringIO(text), limit=40, block=block))
    assert [type(line).__name__ for line in got] == [
        "str", "OverlongLine", "OverlongLine", "str", "str"
    ]
    assert [got[0], got[3], got[4]] == [GOOD_1[:-1], GOOD_2[:-1], "C" * 30]
    # an over-long line keeps (at most 100 of) its first characters, for the warning
    assert 40 < len(got[1]) <= 50 and set(got[1]) == {"B"}
    assert 40 < len(got[2]) <= 100 and set(got[2]) == {"A"}


def test_an_overlong_last_line_without_newline_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frames, stats = parse(GOOD_1 + GOOD_2 + "7" * (3 * MAX_LINE), path="big.log")
    assert len(frames) == 2
    assert stats == Counter({"long_line": 1})
    assert "big.log:3: line longer than 4096 characters (long_line): '7777" in caplog.text


class CountingText(io.TextIOBase):
    """A text stream of ``size`` characters without a newline, then ``tail``; it records
    the largest read asked of it."""

    def __init__(self, size: int, tail: str) -> None:
        self.left = size
        self.tail = tail
        self.largest = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> str:
        assert n is not None and n > 0, "read everything at once"
        self.largest = max(self.largest, n)
        if self.left:
            take = min(n, self.left)
            self.left -= take
            return "x" * take
        out, self.tail = self.tail[:n], self.tail[n:]
        return out


def test_a_huge_line_is_read_in_blocks_and_the_rest_plays() -> None:
    f = CountingText(1 << 28, "\n" + GOOD_1 + GOOD_2)
    stats: Counter[str] = Counter()
    frames = list(parse_candump(read_lines(f), "huge.log", None, stats))
    assert len(frames) == 2
    assert stats == Counter({"long_line": 1})
    assert f.largest <= 1 << 16


# -- parity with python-can and properties ---------------------------------------


def write_clean_log(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        ts = 1_600_000_000.0
        for i in range(count):
            ts += rng.random() / 100
            ext = rng.random() < 0.3
            can_id = f"{rng.randrange(0x20000000):08X}" if ext else f"{rng.randrange(0x800):03X}"
            chan = rng.choice(("can0", "vcan1"))
            if i % 7 == 3:
                size = rng.choice((0, 5, 8, 12, 16, 32, 48, 64))
                frame = f"{can_id}##{rng.randrange(4)}{rng.randbytes(size).hex().upper()}"
            else:
                frame = f"{can_id}#{rng.randbytes(rng.randrange(9)).hex()}"
            suffix = rng.choice(("", "", " T", " R"))
            f.write(f"({ts:.6f}) {chan} {frame}{suffix}\n")


def test_frames_equal_python_can_canutils_reader(tmp_path: Path) -> None:
    can = pytest.importorskip("can")
    path = tmp_path / "clean.log"
    write_clean_log(path, 3000)
    with path.open() as f:
        ours = list(parse_candump(f, str(path)))
    theirs = [
        (m.timestamp, m.channel, m.arbitration_id, m.is_extended_id, m.is_fd, bytes(m.data))
        for m in can.CanutilsLogReader(path)
    ]
    assert len(ours) == 3000
    assert [tuple(f) for f in ours] == theirs


frame_strategy = st.builds(
    Frame,
    timestamp=st.integers(0, 2**41).map(lambda us: us / 1_000_000),
    channel=st.sampled_from(["can0", "vcan0", "slcan1"]),
    arbitration_id=st.integers(0, 0x7FF),
    is_extended=st.booleans(),
    is_fd=st.booleans(),
    data=st.binary(max_size=8),
).map(
    lambda f: f._replace(
        arbitration_id=f.arbitration_id * 0x3FFFF if f.is_extended else f.arbitration_id
    )
)


def to_line(f: Frame) -> str:
    can_id = f"{f.arbitration_id:08X}" if f.is_extended else f"{f.arbitration_id:03X}"
    sep = "##0" if f.is_fd else "#"
    return f"({f.timestamp:.6f}) {f.channel} {can_id}{sep}{f.data.hex()}\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(frame_strategy, max_size=20))
def test_written_frames_parse_back_identically(frames: list[Frame]) -> None:
    parsed, stats = parse("".join(to_line(f) for f in frames))
    assert parsed == frames
    assert stats == Counter()


line_parts = st.sampled_from(
    ["(1.5)", "(", ")", "can0", " ", "  ", "123", "1ABCDEF0", "#", "##", "R", "[4]", "[", "]",
     "11", "2", "ZZ", "T", "\t", "ERROR", "-", "remote", "20000080", "_E"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(line_parts, max_size=8).map("".join), max_size=10))
def test_any_line_is_a_frame_or_skipped_exactly_once(lines: list[str]) -> None:
    stats: Counter[str] = Counter()
    frames = list(parse_candump([line + "\n" for line in lines], "fuzz.log", None, stats))
    non_blank = sum(1 for line in lines if line.strip())
    assert len(frames) + sum(stats.values()) == non_blank
    assert set(stats) <= set(SKIP_KINDS)
    for frame in frames:
        assert len(frame.data) <= (64 if frame.is_fd else 8)
        assert frame.arbitration_id <= (0x1FFFFFFF if frame.is_extended else 0x7FF)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=10))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    stats: Counter[str] = Counter()
    frames = list(parse_candump(lines, "fuzz.log", None, stats))
    assert len(frames) + sum(stats.values()) <= len(lines)


def test_unicode_digits_in_a_length_are_a_bad_length() -> None:
    assert parse("(1.0)  can0  123   [\u00b2]  11 22\n")[1] == Counter({"bad_length": 1})
