"""Counters and checksums: recognised by name words, DBC attribute or configuration;
masked out of the change filter and left out of the default selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import SelectionConfig, parse_config
from agent.decode.dbc_cache import DbcCache
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.frames import Frame
from agent.policy.selection import Selector
from agent.volatile import Volatility, dbc_attribute, name_words, volatile_name
from tests.conftest import ROOT, corpus


@pytest.mark.parametrize("name", [
    "COUNTER", "CHECKSUM", "CRC", "Counter1", "ACC_CNT", "AliveCounter", "CHKSUM", "CHKS",
    "CRC8", "Parity", "CF_Clu_AliveCnt1", "StePinAn_No_Cnt", "StePinAn_No_Cs",
    "CanMsg375_No_Crc", "Steering_Counter", "VehicleDynamics_Checksum", "counter",
    "DI_torque1Counter", "CHKSM_TORQ_CRSH_1", "ALIV_COUNT_X", "CF_Lkas_MsgCount",
    "RollingCounter", "crc_16",
])
def test_counter_and_checksum_names(name: str) -> None:
    assert volatile_name(name)
    assert Volatility().is_volatile("M", name)


@pytest.mark.parametrize("name", [
    "ENCNTRL", "Account", "OdoCount", "DrLckCnt_No_ActlTgate", "Encounter", "Discs",
    "VehicleSpeed", "CtrStkPersIndex_D_Actl", "PrkAidSnsRrCntr_D_Stat", "Checksummed",
    "Crcx", "ACCAlwaysOne", "Cntr_Plg_Mode_Cmd", "", "123",
])
def test_data_names_are_not_volatile(name: str) -> None:
    assert not volatile_name(name)


def test_name_words_cut_at_separators_digits_and_humps() -> None:
    assert name_words("CF_Clu_AliveCnt1") == ["cf", "clu", "alive", "cnt", "1"]
    assert name_words("ACCAlwaysOne") == ["acc", "always", "one"]
    assert name_words("DI_torque1Counter") == ["di", "torque", "1", "counter"]
    assert name_words("CRC8") == ["crc", "8"]


def test_config_patterns_are_case_insensitive_and_the_last_match_decides() -> None:
    volatile = Volatility(["*seqno*", "!*Cnt*", "Door*Cnt*"])
    assert volatile.is_volatile("M", "MY_SEQNO")  # added, whatever the case
    assert not volatile.is_volatile("M", "ACC_CNT")  # removed: !*Cnt* matches last
    assert volatile.is_volatile("M", "DoorLockCnt")  # added back by the later pattern
    assert volatile.is_volatile("M", "CHECKSUM")  # no pattern matches: the name decides
    assert not Volatility(["!*"]).is_volatile("M", "COUNTER")
    # a dotted pattern names the message too
    assert Volatility(["engine.speed"]).is_volatile("Engine", "Speed")
    assert not Volatility(["gear.speed"]).is_volatile("Engine", "Speed")


ATTRIBUTES = """VERSION ""
BS_:
BU_: X
BO_ 100 Engine: 8 X
 SG_ Speed : 0|16@1+ (1,0) [0|65535] "" X
 SG_ Seq : 16|8@1+ (1,0) [0|255] "" X
 SG_ TripCount : 24|8@1+ (1,0) [0|255] "" X
 SG_ Engine_Counter : 32|4@1+ (1,0) [0|15] "" X
 SG_ Flag : 36|1@1+ (1,0) [0|1] "" X
 SG_ Engine_CRC : 40|8@1+ (1,0) [0|255] "" X
BA_DEF_ SG_ "BavardVolatile" INT 0 1;
BA_DEF_ SG_ "Other" ENUM "No","Yes";
BA_DEF_DEF_ "BavardVolatile" 0;
BA_DEF_DEF_ "Other" "No";
BA_ "BavardVolatile" SG_ 100 Seq 1;
BA_ "BavardVolatile" SG_ 100 Engine_Counter 0;
BA_ "Other" SG_ 100 Flag 1;
"""

ENUM_ATTRIBUTE = """VERSION ""
BS_:
BU_: X
BO_ 100 Engine: 8 X
 SG_ Speed : 0|16@1+ (1,0) [0|65535] "" X
 SG_ Seq : 16|8@1+ (1,0) [0|255] "" X
 SG_ CHECKSUM : 24|8@1+ (1,0) [0|255] "" X
BA_DEF_ SG_ "BavardVolatile" ENUM "No","Yes";
BA_ "BavardVolatile" SG_ 100 Seq 1;
BA_ "BavardVolatile" SG_ 100 CHECKSUM 0;
"""


def volatile_of(db: Any, volatility: Volatility | None = None) -> set[str]:
    volatility = volatility or Volatility()
    return {s.name for m in db.messages for s in m.signals if volatility.of(m, s)}


def test_dbc_attribute_overrides_the_name_and_its_default_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(ATTRIBUTES)
    db = load_dbc(tmp_path / "a.dbc")
    # Seq by attribute; Engine_Counter is data by attribute; Engine_CRC by name (the
    # BA_DEF_DEF_ of 0 does not switch the name rule off); Flag's attribute is another one
    assert volatile_of(db) == {"Seq", "Engine_CRC"}
    (seq,) = [s for s in db.messages[0].signals if s.name == "Seq"]
    assert dbc_attribute(seq) is True
    # the configuration has the last word
    assert volatile_of(db, Volatility(["!seq", "engine_counter"])) == {"Engine_Counter",
                                                                      "Engine_CRC"}


def test_enum_attribute_values_by_their_names(tmp_path: Path) -> None:
    (tmp_path / "e.dbc").write_text(ENUM_ATTRIBUTE)
    assert volatile_of(load_dbc(tmp_path / "e.dbc")) == {"Seq"}


def test_attribute_survives_the_dbc_cache(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(ATTRIBUTES)
    cache = DbcCache(tmp_path / "cache")
    cold = load_dbc(tmp_path / "a.dbc", cache=cache)
    warm = load_dbc(tmp_path / "a.dbc", cache=cache)
    assert cache.hits == 1
    assert volatile_of(warm) == volatile_of(cold) == {"Seq", "Engine_CRC"}


# -- the change filter ------------------------------------------------------------------


def default_volatile(tmp_path: Path) -> tuple[str, ...]:
    """``selection.volatile`` of a configuration without [selection]: what the pipeline
    hands the decoder."""
    return parse_config('[[channels]]\nname = "c"\nsimulate = true\n', tmp_path).selection.volatile


def frames_changing_only(message: Any, names: list[str], count: int = 6) -> list[Frame]:
    """``count`` frames of ``message`` whose only differences are in the signals ``names``."""
    base = {s.name: 0 for s in message.signals}
    frames = []
    for i in range(count):
        values = dict(base)
        for name in names:
            (signal,) = [s for s in message.signals if s.name == name]
            values[name] = (i + 1) % (1 << min(signal.length, 16))
        data = message.encode(values, scaling=False, strict=False)
        frames.append(Frame(0.01 * i, "can0", message.frame_id, message.is_extended_frame,
                            False, bytes(data)))
    assert len({f.data for f in frames}) == count  # the bits really change
    return frames


def on_change(message: str, signal: str) -> tuple[bool, float, float | None]:
    return (True, 0.0, None)


def skipped(db: Any, message_name: str, volatile: tuple[str, ...]) -> tuple[int, int, list[str]]:
    """(decoded, unchanged) for frames of ``message_name`` whose only change is in its
    counters and checksums, every signal kept on change; and those signals' names."""
    message = db.get_message_by_name(message_name)
    names = [s.name for s in message.signals if Volatility(volatile).of(message, s)]
    assert names, message_name
    decoder = ChannelDecoder("can0", [db], lambda m, s: True, on_change, volatile)
    for frame in frames_changing_only(message, names):
        decoder.decode(frame)
    return decoder.stats.decoded, decoder.stats.unchanged, names


def test_change_filter_skips_frames_where_only_the_toyota_checksum_changed(
        tmp_path: Path) -> None:
    db = load_dbc(corpus("opendbc", "toyota_iQ_2009_can.dbc"))
    decoded, unchanged, names = skipped(db, "ENGINE", default_volatile(tmp_path))
    assert names == ["CHECKSUM"]
    assert (decoded, unchanged) == (1, 5)


@pytest.mark.parametrize("message", ["AWD_Torque_Data", "ECG_Data3_FD1"])
def test_change_filter_skips_frames_where_only_ford_counters_changed(tmp_path: Path,
                                                                    message: str) -> None:
    db = load_dbc(corpus("opendbc", "ford_lincoln_base_pt.dbc"))
    decoded, unchanged, names = skipped(db, message, default_volatile(tmp_path))
    assert len(names) == 2 and any(n.endswith("_Cnt") for n in names)
    assert (decoded, unchanged) == (1, 5)


def test_change_filter_on_the_demo_dbc(tmp_path: Path) -> None:
    db = load_dbc(ROOT / "dbc" / "demo_vehicle.dbc")
    decoded, unchanged, names = skipped(db, "Steering", default_volatile(tmp_path))
    assert names == ["Steering_Counter", "Steering_Checksum"]
    assert (decoded, unchanged) == (1, 5)
    # a real change is never skipped
    message = db.get_message_by_name("Steering")
    decoder = ChannelDecoder("can0", [db], lambda m, s: True, on_change, ())
    frames = frames_changing_only(message, ["Steering_Counter", "SteeringWheelRate"])
    assert [decoder.decode(f) is not None for f in frames] == [True] * 6


def test_config_can_unmask_a_counter(tmp_path: Path) -> None:
    db = load_dbc(ROOT / "dbc" / "demo_vehicle.dbc")
    decoded, unchanged, names = skipped(db, "Steering", ("!Steering_Checksum",))
    assert names == ["Steering_Counter"]
    assert (decoded, unchanged) == (1, 5)


# -- the default selection --------------------------------------------------------------


def selected(selection: SelectionConfig, db: Any, message: str) -> list[str]:
    select = Selector.from_config(selection, [db])
    return [s.name for s in db.get_message_by_name(message).signals if select(message, s.name)]


def test_counters_and_checksums_are_not_selected_by_default(tmp_path: Path) -> None:
    db = load_dbc(ROOT / "dbc" / "demo_vehicle.dbc")
    no_selection = parse_config('[[channels]]\nname = "c"\nsimulate = true\n', tmp_path)
    assert selected(no_selection.selection, db, "Steering") == [
        "SteeringWheelAngle", "SteeringWheelRate"]
    # kept when asked for: all of them, or one named exactly
    assert selected(SelectionConfig(include_volatile=True), db, "Steering") == [
        "SteeringWheelAngle", "SteeringWheelRate", "Steering_Counter", "Steering_Checksum"]
    named = SelectionConfig(include=("*", "Steering.Steering_Counter"))
    assert selected(named, db, "Steering") == [
        "SteeringWheelAngle", "SteeringWheelRate", "Steering_Counter"]
    # a wildcard is not "naming" one; exclude still applies to a named one
    assert selected(SelectionConfig(include=("Steering*",)), db, "Steering") == [
        "SteeringWheelAngle", "SteeringWheelRate"]
    assert selected(SelectionConfig(include=("Steering_Counter",),
                                    exclude=("*Counter",)), db, "Steering") == []


def test_default_selection_uses_the_dbc_attribute_and_opendbc_names(tmp_path: Path) -> None:
    (tmp_path / "a.dbc").write_text(ATTRIBUTES)
    db = load_dbc(tmp_path / "a.dbc")
    assert selected(SelectionConfig(), db, "Engine") == [
        "Speed", "TripCount", "Engine_Counter", "Flag"]
    toyota = load_dbc(corpus("opendbc", "toyota_iQ_2009_can.dbc"))
    engine = selected(SelectionConfig(), toyota, "ENGINE")
    assert "CHECKSUM" not in engine and engine


def test_config_toml_reads_volatile_patterns_and_include_volatile(tmp_path: Path) -> None:
    config = parse_config('[[channels]]\nname = "c"\nsimulate = true\n[selection]\n'
                          'volatile = ["MySeq", "!Odo*"]\ninclude_volatile = true\n', tmp_path)
    assert config.selection.volatile == ("MySeq", "!Odo*")
    assert config.selection.include_volatile is True
