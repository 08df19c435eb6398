"""Generated per-message decoders give exactly cantools' values."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.decode.compile import compile_message
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
