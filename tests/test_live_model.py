"""``bavard live``'s model on a clock the test moves: rates over the sliding window,
ages, the highlight of a changed value and its expiry, the history points, the filter
(substring and glob), pause that freezes the rows while samples keep coming, scrolling.
Then the keys as a terminal sends them, and the screen as rich draws it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rich.console import Console

from agent.console import keys as k
from agent.console.keys import parse_keys
from agent.console.live_feed import DirectFeed
from agent.console.live_model import (
    HIGHLIGHT,
    HISTORY,
    RATE_WINDOW,
    LiveModel,
    LiveSample,
    format_value,
)
from agent.console.live_view import format_age, render
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.sources.replay import ReplaySource

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"


class Clock:
    def __init__(self) -> None:
        self.now = 1024.0  # binary fractions add up exactly from here

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sample(sig: str, value: float, msg: str = "EngineData", ch: str = "can0",
           label: str | None = None, kept: bool | None = True) -> LiveSample:
    return LiveSample(0.0, ch, msg, sig, value, "rpm", label, kept)


def row(model: LiveModel, name: str) -> object:
    rows = {r.name: r for r in model.view()}
    return rows[name]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_rate_counts_the_last_window_then_falls_to_zero(clock: Clock) -> None:
    model = LiveModel(clock)
    for _ in range(100):  # 10 s at 10 samples/s
        clock.advance(0.1)
        model.add([sample("EngineSpeed", 1.0)])
    r = row(model, "EngineData.EngineSpeed")
    assert r.rate == pytest.approx(10.0, abs=0.21)  # type: ignore[attr-defined]
    assert model.rate() == pytest.approx(10.0, abs=0.21)
    clock.advance(RATE_WINDOW + 0.01)
    assert row(model, "EngineData.EngineSpeed").rate == 0.0  # type: ignore[attr-defined]
    assert model.rate() == 0.0
    assert model.samples == 100


def test_rate_before_a_whole_window_divides_by_the_time_so_far(clock: Clock) -> None:
    model = LiveModel(clock)
    clock.advance(2.0)
    model.add([sample("EngineSpeed", float(i)) for i in range(20)])
    assert row(model, "EngineData.EngineSpeed").rate == pytest.approx(10.0)  # type: ignore[attr-defined]
    model2 = LiveModel(clock)  # less than a second: a second, not a burst / 0
    clock.advance(0.1)
    model2.add([sample("EngineSpeed", 1.0)] * 3)
    assert model2.rate() == pytest.approx(3.0)


def test_age_is_the_time_since_the_last_sample(clock: Clock) -> None:
    model = LiveModel(clock)
    model.add([sample("EngineSpeed", 1.0), sample("EngineLoad", 2.0)])
    clock.advance(1.5)
    model.add([sample("EngineLoad", 2.0)])
    clock.advance(2.5)
    assert row(model, "EngineData.EngineSpeed").age == pytest.approx(4.0)  # type: ignore[attr-defined]
    assert row(model, "EngineData.EngineLoad").age == pytest.approx(2.5)  # type: ignore[attr-defined]


def test_a_changed_value_is_highlighted_for_a_moment(clock: Clock) -> None:
    model = LiveModel(clock)
    model.add([sample("EngineSpeed", 800.0)])
    assert not row(model, "EngineData.EngineSpeed").highlighted  # type: ignore[attr-defined]
    clock.advance(0.5)
    model.add([sample("EngineSpeed", 800.0)])  # the same value: no change
    assert not row(model, "EngineData.EngineSpeed").highlighted  # type: ignore[attr-defined]
    model.add([sample("EngineSpeed", 850.0)])
    clock.advance(HIGHLIGHT - 0.01)
    assert row(model, "EngineData.EngineSpeed").highlighted  # type: ignore[attr-defined]
    clock.advance(0.02)
    assert not row(model, "EngineData.EngineSpeed").highlighted  # type: ignore[attr-defined]
    # a new choice label is a change too; NaN after NaN is not
    model.add([sample("Gear", 1, label="P"), sample("Temp", math.nan)])
    clock.advance(2)
    model.add([sample("Gear", 1, label="R"), sample("Temp", math.nan)])
    assert row(model, "EngineData.Gear").highlighted  # type: ignore[attr-defined]
    assert row(model, "EngineData.Gear").value == "R"  # type: ignore[attr-defined]
    assert not row(model, "EngineData.Temp").highlighted  # type: ignore[attr-defined]


def test_history_keeps_one_point_per_step_the_last_value_of_it(clock: Clock) -> None:
    model = LiveModel(clock)
    for i in range(16):  # 1 s at 16 samples/s: four steps of 0.25 s
        model.add([sample("EngineSpeed", float(i))])
        clock.advance(0.0625)
    history = row(model, "EngineData.EngineSpeed").history  # type: ignore[attr-defined]
    assert history == (3.0, 7.0, 11.0, 15.0)
    for i in range(200):
        model.add([sample("EngineSpeed", float(i))])
        clock.advance(0.25)
    assert len(row(model, "EngineData.EngineSpeed").history) == HISTORY  # type: ignore[attr-defined]


def test_filter_by_substring_any_case_and_by_glob(clock: Clock) -> None:
    model = LiveModel(clock)
    model.add([sample("EngineSpeed", 1), sample("EngineLoad", 2),
               sample("VehicleSpeed", 3, msg="VehicleDynamics"),
               sample("CoolantTemp", 4, msg="EngineTemps")])
    names = lambda: [r.name for r in model.view()]  # noqa: E731
    for char in "speed":
        model.type_char(char)
    assert names() == ["EngineData.EngineSpeed", "VehicleDynamics.VehicleSpeed"]
    model.set_filter("enginedata.")
    assert names() == ["EngineData.EngineLoad", "EngineData.EngineSpeed"]
    model.set_filter("*speed")  # no dot: the signal's name alone, any case
    assert names() == ["EngineData.EngineSpeed", "VehicleDynamics.VehicleSpeed"]
    model.set_filter("engine*.*t*")  # a dot: Message.Signal
    assert names() == ["EngineTemps.CoolantTemp"]
    model.set_filter("*speeds")
    assert names() == []
    model.backspace()
    assert model.filter == "*speed"
    assert names() == ["EngineData.EngineSpeed", "VehicleDynamics.VehicleSpeed"]
    model.set_filter("")
    assert len(names()) == 4


def test_pause_freezes_the_rows_while_samples_still_come(clock: Clock) -> None:
    model = LiveModel(clock)
    model.add([sample("EngineSpeed", 800.0), sample("EngineLoad", 10.0)])
    model.toggle_pause()
    for _ in range(10):
        clock.advance(0.5)
        model.add([sample("EngineSpeed", 3000.0), sample("VehicleSpeed", 50.0)])
    frozen = model.view()
    assert [(r.name, r.value, r.age) for r in frozen] == [
        ("EngineData.EngineLoad", "10", 0.0), ("EngineData.EngineSpeed", "800", 0.0)]
    model.set_filter("load")  # the filter works on the frozen rows
    assert [r.name for r in model.view()] == ["EngineData.EngineLoad"]
    model.set_filter("")
    assert model.samples == 22  # nothing piled up: every sample was taken in
    model.toggle_pause()
    assert {r.name: r.value for r in model.view()} == {
        "EngineData.EngineLoad": "10", "EngineData.EngineSpeed": "3000",
        "EngineData.VehicleSpeed": "50"}


def test_scroll_stays_within_the_rows(clock: Clock) -> None:
    model = LiveModel(clock)
    model.scroll(5, shown=30, page=10)
    assert model.offset == 5
    model.scroll(100, shown=30, page=10)
    assert model.offset == 20
    model.scroll(-100, shown=30, page=10)
    assert model.offset == 0
    model.scroll(3, shown=5, page=10)  # everything fits: no scrolling
    assert model.offset == 0
    model.scroll(4, shown=30, page=10)
    model.set_filter("x")  # a new filter starts from the top
    assert model.offset == 0


def test_samples_items_of_the_stream() -> None:
    item = {"t": 1.5, "ch": "vehicle", "msg": "Brake", "sig": "ABSActive", "v": 1,
            "unit": "", "label": "Active", "kept": False}
    assert LiveSample.from_item(item) == LiveSample(1.5, "vehicle", "Brake", "ABSActive", 1,
                                                    "", "Active", False)
    nan = LiveSample.from_item({**item, "v": None})  # the service's NaN
    assert math.isnan(nan.value)
    for bad in ({**item, "v": "x"}, {**item, "v": True}, {"t": 1}, {**item, "t": None}):
        with pytest.raises(ValueError):
            LiveSample.from_item(bad)


def test_values_and_ages_as_shown() -> None:
    assert [format_value(v) for v in (3, 12.300000000000001, 123456.7, 1e-7, math.inf)] == [
        "3", "12.3", "123456.7", "1e-07", "inf"]
    assert [format_age(s) for s in (0.04, 9.96, 12.4, 125, 7380)] == [
        "0.0s", "10.0s", "12s", "2m05s", "2h03m"]


def test_keys_as_the_terminal_sends_them() -> None:
    assert parse_keys("ab \x7f\x08\r") == ["a", "b", " ", k.BACKSPACE, k.BACKSPACE, k.ENTER]
    assert parse_keys("\x1b[A\x1b[B\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[4~") == [
        k.UP, k.DOWN, k.UP, k.PAGE_UP, k.PAGE_DOWN, k.HOME, k.END]
    assert parse_keys("\x1b") == [k.ESC]
    assert parse_keys("\x1bq") == [k.ESC, "q"]  # Alt+q: Esc, then q
    assert parse_keys("\x1b[1;5A") == [k.UP]  # Ctrl+Up: still up
    assert parse_keys("\x1b[15~x\x1b[200~") == ["x"]  # F5 and a paste marker: dropped whole
    assert parse_keys("\x1b[") == []  # cut short
    assert parse_keys("\x01\x15é") == [k.CLEAR_LINE, "é"]


def test_the_screen_shows_header_rows_pause_and_the_highlight(clock: Clock) -> None:
    model = LiveModel(clock)
    model.known, model.selected = 78, 62
    model.add([sample("EngineSpeed", 800.0, kept=True),
               sample("Gear", 3, msg="Transmission", label="D", kept=False),
               sample("Odometer", 12345.6, msg="Odometer", kept=None)])
    clock.advance(0.5)
    model.add([sample("EngineSpeed", 850.0)])
    console = Console(record=True, width=160, height=20, color_system="standard",
                      force_terminal=True)
    screen, page = render(model, "log drive.log", 20)
    console.print(screen)
    text = console.export_text(styles=False, clear=False)
    assert page == 15
    lines = text.splitlines()
    assert lines[0].startswith("bavard live  log drive.log  3 signals (78 known, 62 selected)")
    assert "dropped 0" in lines[0] and "PAUSED" not in lines[0]
    assert lines[1].startswith("filter: _")
    cells = {line.split()[1]: line.split() for line in lines[4:7]}
    assert cells["EngineData.EngineSpeed"][2:6] == ["850", "rpm", "2.0/s", "0.0s"]
    assert cells["EngineData.EngineSpeed"][6] == "yes"
    assert cells["Transmission.Gear"][2] == "D" and cells["Transmission.Gear"][6] == "no"
    assert cells["Odometer.Odometer"][6] == "-"
    styled = console.export_text(styles=True)
    changed = next(line for line in styled.splitlines() if "EngineSpeed" in line)
    assert "\x1b[1;30;43m" in changed  # bold black on yellow: the changed value
    still = next(line for line in styled.splitlines() if "Odometer.Odometer" in line)
    assert "43m" not in still
    model.toggle_pause()
    model.set_filter("nothing")
    screen, _ = render(model, "log drive.log", 20)
    console.print(screen)
    text = console.export_text()
    assert "PAUSED" in text.splitlines()[0]
    assert "0/3 signals" in text and "no signal matches 'nothing'" in text


def test_direct_feed_decodes_a_log_with_every_signal(tmp_path: Path) -> None:
    log = tmp_path / "drive.log"
    log.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:2000])
                   + "(1767225610.000000) can1 100#0000000000000000\n")
    decoder = ChannelDecoder("log", [load_dbc(DBC)])
    batches: list[list[LiveSample]] = []
    feed = DirectFeed(ReplaySource("log", log), decoder, "log drive.log", channel="can0")
    import threading

    why = feed.run(lambda samples, dropped, bad: batches.append(samples), threading.Event())
    feed.close()
    assert why == "the log ended"
    got = [s for batch in batches for s in batch]
    assert got and all(s.channel == "can0" and s.kept is None for s in got)
    # counters and checksums too: every signal is selected
    assert {"EngineData_Counter", "EngineSpeed"} <= {s.signal for s in got}
    assert max(len(b) for b in batches) <= 256 + 13  # handed on in batches
