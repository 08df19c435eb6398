"""Generated per-message decoders give exactly cantools' values."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.decode.compile import Hooks, compile_message
from agent.frames import OUT_OF_RANGE, Frame
from tests.conftest import CORPUS

DBC_FILES = sorted(
    [*CORPUS.glob("cantools/dbc/*.dbc"), *CORPUS.glob("opendbc/*.dbc"),
     *CORPUS.glob("css_obd2/*.dbc"), *CORPUS.glob("motec/*.dbc")]
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b) and type(a) is type(b)


def check_database(db: Any, rng: random.Random, rounds: int) -> int:
    compared = 0
    for message in db.messages:
        if message.is_container:
            continue
        compiled = compile_message(message, lambda m, s: True)
        if compiled is None:  # no signal, or none that fits in the message
            assert all(s.start + s.length > 8 * message.length for s in message.signals)
            continue
        for _ in range(rounds):
            data = rng.randbytes(message.length)
            try:
                expected = message.decode(data, decode_choices=False)
            except cantools.database.DecodeError:
                continue  # cantools cannot decode it (e.g. overlapping signals)
            try:
                infos, values, labels, _in_range = compiled.values(data)
            except KeyError:
                pytest.fail(f"{message.name}: unknown multiplexer but cantools decoded {data!r}")
            got = {i.name: v for i, v in zip(infos, values, strict=True)}
            assert _in_range == all(
                i.minimum is None or i.maximum is None or i.minimum <= v <= i.maximum
                for i, v in zip(infos, values, strict=True)), message.name
            assert got.keys() == expected.keys(), message.name
            for name, value in expected.items():
                assert same(got[name], value), (message.name, name, got[name], value)
            choice_labels = message.decode(data, decode_choices=True)
            for i, info in enumerate(infos):
                label = labels[i] if labels is not None else None
                want = choice_labels[info.name]
                assert label == (str(want) if hasattr(want, "value") else None)
            compared += 1
    return compared


@pytest.mark.skipif(not DBC_FILES, reason="third-party corpus not present")
def test_every_corpus_dbc_decodes_like_cantools() -> None:
    rng = random.Random(2026)
    compared = 0
    for path in DBC_FILES:
        try:
            db = cantools.database.load_file(str(path), strict=False)
        except Exception:
            continue  # files that cantools cannot load at all are tested in test_dbc_files
        compared += check_database(db, rng, rounds=20)
    assert compared > 10_000


def test_own_dbc_with_every_kind_of_signal(tmp_path: Path) -> None:
    """Motorola and Intel, signed, float, scaled int and float, choices, nested mux, 29-bit."""
    path = tmp_path / "kinds.dbc"
    path.write_text("""VERSION ""
BO_ 2566844926 Ext: 8 X
 SG_ Mux M : 0|4@1+ (1,0) [0|15] "" X
 SG_ Sub m1M : 4|4@1+ (1,0) [0|15] "" X
 SG_ Deep m2 : 8|8@1- (0.5,-3) [-60|60] "degC" X
 SG_ Page1 m1 : 16|16@0- (1,0) [0|0] "" X
 SG_ Temp m0 : 8|12@0+ (0.25,-40) [-40|100] "degC" X
 SG_ Level : 39|8@0+ (1,0) [0|100] "%" X
 SG_ F : 32|32@1- (1,0) [0|0] "" X
BO_ 100 Std: 8 X
 SG_ Gear : 0|4@1+ (1,0) [0|6] "" X
 SG_ Big : 55|16@0+ (2,100) [0|0] "" X
 SG_ Dbl : 8|32@1- (1.5,0.25) [0|0] "" X
VAL_ 100 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
VAL_ 2566844926 Mux 0 "zero" 1 "one" ;
SIG_VALTYPE_ 2566844926 F : 1;
SG_MUL_VAL_ 2566844926 Sub Mux 1-1;
SG_MUL_VAL_ 2566844926 Deep Sub 2-2;
SG_MUL_VAL_ 2566844926 Page1 Sub 1-1;
""")
    db = cantools.database.load_file(str(path), strict=False)
    assert check_database(db, random.Random(1), rounds=3000) > 3100


RANGES = """VERSION ""
BO_ 1 Ranges: 8 X
 SG_ Tenth : 0|12@1+ (0.1,0) [0|300] "" X
 SG_ Offset : 12|8@1+ (1,-40) [-40|150] "" X
 SG_ Signed : 20|12@1- (0.005,0) [-1.2775|1.2775] "" X
 SG_ Odd : 32|8@1+ (2.155,6.315) [0|61] "" X
 SG_ Falling : 40|8@1+ (-0.5,10) [0|5] "" X
 SG_ Between : 48|8@1+ (0.3,0) [0.31|0.89] "" X
 SG_ Never : 56|4@1+ (1,100) [0|10] "" X
 SG_ Fraction : 60|4@1+ (0.1,0.05) [0.25|0.65] "" X
"""


def test_range_checks_on_raw_values_are_exact(tmp_path: Path) -> None:
    """A range test of the raw integer (bounds found by bisection) says what the test of
    the scaled value says, for every raw value of each signal: bounds between two
    representable values, float rounding at the ends, a falling scale, none in range."""
    path = tmp_path / "ranges.dbc"
    path.write_text(RANGES)
    message = cantools.database.load_file(str(path)).get_message_by_name("Ranges")
    for signal in message.signals:
        compiled = compile_message(message, lambda m, s, name=signal.name: s == name)
        assert compiled is not None
        n = signal.length
        raws = range(-(1 << (n - 1)), 1 << (n - 1)) if signal.is_signed else range(1 << n)
        flagged = 0
        for raw in raws:
            data = ((raw & ((1 << n) - 1)) << signal.start).to_bytes(8, "little")
            _infos, (value,), _labels, in_range = compiled.values(data)
            assert value == message.decode(data, decode_choices=False)[signal.name]
            assert in_range == (signal.minimum <= value <= signal.maximum), (signal.name, raw)
            record = compiled.decode(Frame(0.0, "can0", 1, False, False, data))
            assert record is not None
            assert record[6] == (None if in_range else (OUT_OF_RANGE,))
            flagged += not in_range
        assert compiled.range_counts == [flagged], signal.name
    sources = {s.name: compile_message(message, lambda m, x, n=s.name: x == n).source
               for s in message.signals}
    assert "    if r0 <= 3000:\n" in sources["Tenth"]  # one comparison, of the raw value
    assert "    if 0 <= vr0 <= 5:\n" in sources["Falling"]  # the scaled value's


def test_decode_hands_a_frame_of_another_length_to_its_hook(tmp_path: Path) -> None:
    """A frame of another length than the DBC's goes to the hook, whatever the message
    reads (struct fields, one word, single bytes); so does a multiplexer value the DBC
    does not define."""
    path = tmp_path / "lengths.dbc"
    path.write_text("""VERSION ""
BO_ 1 Fields: 8 X
 SG_ A : 0|16@1+ (1,0) [0|0] "" X
 SG_ B : 16|16@1+ (1,0) [0|0] "" X
 SG_ C : 32|12@1+ (1,0) [0|0] "" X
BO_ 2 Word: 8 X
 SG_ A : 0|12@1+ (1,0) [0|0] "" X
BO_ 3 Bytes: 3 X
 SG_ A : 0|4@1+ (1,0) [0|0] "" X
BO_ 4 Pages: 2 X
 SG_ P M : 0|8@1+ (1,0) [0|0] "" X
 SG_ A m1 : 8|8@1+ (1,0) [0|0] "" X
""")
    db = cantools.database.load_file(str(path))
    refused: list[tuple[str, int]] = []
    bad: list[int] = []
    hooks = Hooks(other_length=lambda f: refused.append((f.channel, len(f.data))),
                  bad_mux=lambda f, value: bad.append(value))
    for message in db.messages:
        compiled = compile_message(message, lambda m, s: True, hooks=hooks)
        assert compiled is not None
        for length in (0, message.length - 1, message.length + 1):
            assert compiled.decode(Frame(0.0, message.name, 1, False, False,
                                         bytes(length))) is None
        assert compiled.decode(Frame(0.0, message.name, 1, False, False,
                                     bytes([1] * message.length))) is not None
    assert refused == [(m.name, n) for m in db.messages
                       for n in (0, m.length - 1, m.length + 1)]
    pages = compile_message(db.get_message_by_name("Pages"), lambda m, s: True, hooks=hooks)
    assert pages is not None
    assert pages.decode(Frame(0.0, "can0", 4, False, False, b"\x07\x00")) is None
    assert bad == [7]
    with pytest.raises(KeyError):
        pages.values(b"\x07\x00")
