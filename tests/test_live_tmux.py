"""``bavard live`` in a real terminal: tmux (its own server, a 160x40 pane running a
plain bash) types the command, sends the keys, and reads the screen back with
``capture-pane``. Straight from the sample drive's log, and against a running
service (``bavard run`` with the simulator, its control socket in tmp_path).

What is checked on the screen: the header (source, signal counts, PAUSED), signal
names and values that change between two captures, the filter as typed (substring,
glob, Backspace, Esc), pause freezing the table and resume thawing it, scrolling,
the service's end said in the header; after q or Ctrl-C: the alternate screen left,
the shell's prompt back, the terminal's modes restored (``stty -a``), exit status 0.
Every wait polls the pane for at most a few seconds.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.control_service import DBC, ROOT, SAMPLE, running_service

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

WIDTH, HEIGHT = 160, 40
WAIT = 15.0  # seconds any one thing may take to show on the screen
PROMPT = "prompt$ "


class Tmux:
    """One tmux server of the test's own, one session, one pane running bash."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = tmp_path / "tmux.sock"
        self.tmux("new-session", "-d", "-s", "live", "-x", str(WIDTH), "-y", str(HEIGHT),
                  "-c", str(ROOT),
                  f"env PS1={shlex.quote(PROMPT)} PYTHONDONTWRITEBYTECODE=1 "
                  "bash --norc --noprofile")
        self.wait_for(lambda s: PROMPT.rstrip() in s, "the shell's prompt")

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "live", "-l", text)

    def keys(self, *names: str) -> None:
        self.tmux("send-keys", "-t", "live", *names)

    def run(self, command: str) -> None:
        self.type(f"{command}; echo exit=$?")
        self.keys("Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "live")

    def alternate(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "live", "#{alternate_on}").strip() == "1"

    def wait_for(self, check: Callable[[str], object], what: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} on the screen after {timeout} s:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True,
                       timeout=10)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    terminal = Tmux(tmp_path)
    try:
        yield terminal
    finally:
        terminal.close()


def rows(screen: str) -> dict[str, list[str]]:
    """Message.Signal -> the row's cells after it (value, unit..., rate, age, stored)."""
    out = {}
    for line in screen.splitlines()[4:]:
        cells = line.split()
        if len(cells) >= 2 and "." in cells[1] and not line.startswith("rows "):
            out[cells[1]] = cells[2:]
    return out


def channels(screen: str) -> set[str]:
    return {line.split()[0] for line in screen.splitlines()[4:]
            if len(line.split()) >= 2 and line.split()[1] in rows(screen)}


def values(screen: str) -> dict[str, str]:
    return {name: cells[0] for name, cells in rows(screen).items()}


def header(screen: str) -> str:
    return screen.splitlines()[0]


def filter_line(screen: str) -> str:
    return screen.splitlines()[1]


def changed(before: str, after: str) -> bool:
    """Some signal on both screens shows another value on the second."""
    old, new = values(before), values(after)
    return any(new[name] != value for name, value in old.items() if name in new)


def changing(tmux: Tmux, wanted: Callable[[str], object] = lambda s: True) -> tuple[str, str]:
    """Two screens, the second with a value that changed since the first."""
    first = tmux.wait_for(lambda s: wanted(s) and len(rows(s)) > 0, "rows")
    second = tmux.wait_for(lambda s: wanted(s) and changed(first, s), "a value that changes")
    return first, second


def exits(screen: str) -> list[str]:
    """The exit statuses the commands run with :meth:`Tmux.run` printed, in order."""
    return re.findall(r"^exit=(\d+)$", screen, re.MULTILINE)


def quit_and_check_the_terminal(tmux: Tmux, *keys: str) -> str:
    """Press ``keys`` (q by default); the live screen ends with status 0 and the
    terminal is as it was."""
    tmux.keys(*(keys or ("q",)))
    before = len(exits(tmux.screen()))
    screen = tmux.wait_for(lambda s: len(exits(s)) > before, "the command's end")
    assert exits(screen)[-1] == "0", screen
    assert not tmux.alternate()
    assert screen.rstrip().endswith(PROMPT.rstrip())
    tmux.run("stty -a")
    modes = tmux.wait_for(lambda s: len(exits(s)) > before + 1, "stty's modes").split()
    assert {"icanon", "echo", "isig", "icrnl"} <= set(modes), modes
    assert not {"-icanon", "-echo"} & set(modes)
    return screen


def test_live_from_a_log_filter_pause_scroll_quit(tmux: Tmux) -> None:
    tmux.run(f"{shlex.quote(sys.executable)} -m agent live --log {SAMPLE} --dbc {DBC} "
             "--speed 1")
    _first, second = changing(tmux)
    assert tmux.alternate()
    top = header(second)
    assert top.startswith("bavard live  log sample_drive.log  ")
    assert re.search(r"\d+ signals \(80 known\)", top), top
    assert re.search(r"[1-9][\d,]* samples/s", top) and "dropped 0" in top
    table = rows(second)
    assert "EngineData.EngineSpeed" in table
    assert table["EngineData.EngineSpeed"][1] == "rpm"
    assert table["EngineData.EngineSpeed"][-2] == "-"  # stored: no policy without a service
    assert all(any(re.fullmatch(r"\d+\.\d/s", c) for c in cells) for cells in table.values())
    assert second.splitlines()[2].split()[:4] == ["channel", "message.signal", "value", "unit"]

    # scrolling: 78 signals do not fit in 40 lines
    full = tmux.wait_for(lambda s: "rows 1-35 of 78" in s, "the first page")
    tmux.keys("Down", "Down")
    scrolled = tmux.wait_for(lambda s: "rows 3-37 of 78" in s, "two rows down")
    assert next(iter(rows(scrolled))) == list(rows(full))[2]
    tmux.keys("NPage")
    tmux.wait_for(lambda s: "rows 38-72 of 78" in s, "a page down")
    tmux.keys("End")
    tmux.wait_for(lambda s: "rows 44-78 of 78" in s, "the end")

    # a substring, any case
    tmux.type("engineSP")
    one = tmux.wait_for(lambda s: list(rows(s)) == ["EngineData.EngineSpeed"], "the filter")
    assert filter_line(one).startswith("filter: engineSP_")
    assert re.search(r"  1/\d+ signals", header(one)), header(one)
    tmux.keys("BSpace", "BSpace")
    two = tmux.wait_for(lambda s: filter_line(s).startswith("filter: engine_"), "Backspace")
    assert set(rows(two)) >= {"EngineData.EngineSpeed", "EngineTemps.CoolantTemp",
                              "IgnitionStatus.EngineRunning"}
    assert all("engine" in name.lower() for name in rows(two))
    # Esc clears it; then a glob
    tmux.keys("Escape")
    tmux.wait_for(lambda s: filter_line(s).startswith("filter: _") and len(rows(s)) == 35,
                  "the filter cleared")
    tmux.type("*temp")
    temps = tmux.wait_for(lambda s: filter_line(s).startswith("filter: *temp_")
                          and "EngineTemps.CoolantTemp" in rows(s), "the glob")
    assert all(name.lower().endswith("temp") for name in rows(temps)), rows(temps)
    assert len(rows(temps)) >= 8

    # pause: the table freezes (values and ages), the header says so; resume thaws it
    tmux.keys("Escape")
    tmux.type("Counter")
    tmux.wait_for(lambda s: len(rows(s)) == 10, "the counters")
    tmux.keys("Space")
    paused = tmux.wait_for(lambda s: "PAUSED" in header(s), "PAUSED")
    time.sleep(1.5)
    still = tmux.screen()
    assert "PAUSED" in header(still)
    assert rows(still) == rows(paused)  # values, rates and ages: all frozen
    tmux.keys("Space")
    tmux.wait_for(lambda s: "PAUSED" not in header(s) and changed(still, s),
                  "the table moving again")

    quit_and_check_the_terminal(tmux, "Escape", "q")
    assert "bavard live: reading the log sample_drive.log directly" in tmux.screen()


def test_live_from_the_running_service(tmux: Tmux, tmp_path: Path) -> None:
    with running_service(tmp_path, "simulator", speed=1.0) as (proc, socket):
        tmux.run(f"{shlex.quote(sys.executable)} -m agent live --socket {socket}")
        _first, second = changing(tmux, lambda s: "EngineData.EngineSpeed" in rows(s))
        top = header(second)
        assert top.startswith(f"bavard live  service {socket}  ")
        # the service decodes what its selection takes: counters and checksums are not
        assert re.search(r"\d+ signals \(80 known, 64 selected\)", top), top
        table = rows(second)
        assert channels(second) == {"vehicle"}
        assert not any("_Counter" in name for name in table)
        assert table["EngineData.EngineSpeed"][-2] == "yes"  # stored: kept by the policy
        tmux.type("vehiclespeed")
        tmux.wait_for(lambda s: list(rows(s)) == ["VehicleDynamics.VehicleSpeed"], "the filter")
        tmux.keys("Escape", "Space")
        tmux.wait_for(lambda s: "PAUSED" in header(s), "PAUSED")
        quit_and_check_the_terminal(tmux, "C-c")  # Ctrl-C ends it as cleanly as q
        assert proc.poll() is None  # the service runs on

        # --signals: the service sends only those
        tmux.run(f"clear; {shlex.quote(sys.executable)} -m agent live --socket {socket} "
                 "--signals 'EngineData.*'")
        engine = tmux.wait_for(lambda s: len(rows(s)) == 4, "EngineData's signals")
        assert set(rows(engine)) == {"EngineData.EngineSpeed", "EngineData.AccelPedalPosition",
                                     "EngineData.EngineLoad", "EngineData.EngineTorque"}
        assert "4 signals (6 known, 4 selected)" in header(engine)
        quit_and_check_the_terminal(tmux)

        # the service goes away under the table: it says so and stays until q
        tmux.run(f"clear; {shlex.quote(sys.executable)} -m agent live --socket {socket}")
        tmux.wait_for(lambda s: len(rows(s)) > 10, "the rows")
        proc.terminate()
        proc.wait(30)
        gone = tmux.wait_for(lambda s: "the service closed the connection" in header(s),
                             "the end of the service")
        assert len(rows(gone)) > 10
        quit_and_check_the_terminal(tmux)
