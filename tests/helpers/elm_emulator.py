"""elm327-emulator as a subprocess on a pty, for the tests (a test-only dependency:
it is CC-BY-NC-SA, never imported by bavard).

``elm -s car -b FILE`` writes the pty path as the first line of FILE and reads
Python statements from its stdin, one a line, executed in its interpreter with
``emulator`` (the running ``elm.Elm``) in scope. stdin is kept open, so a test
can change the emulated car while it runs (``send``). The emulator writes its
DEBUG log ``elm.log`` into its working directory: the helper runs it in a
directory of the test's own.

Stable port: the pty path changes with every (re)start, so the helper keeps a
symlink ``<workdir>/elm-pty`` pointing at the current pty; a configured port
``<workdir>/elm-pty`` stays valid across ``restart()`` (pyserial opens a
symlink like the device itself).

Known quirks of the installed emulator (4.0.0, "car" scenario):

* its mode 03/07/0A answers lack the ISO 15765-4 DTC-count byte
  (``43 01 43 01 96`` for P0143, P0196); ``set_dtcs(count_byte=True)`` injects
  the count as a fake first entry, which makes the answer a real ISO 15765-4
  one (``43 02 01 43 01 96``). With none stored it answers ``43 00``. A decoder
  can tell the two shapes apart on CAN by the length: 1 + 1 + 2n with the
  count, 1 + 2n without it.
* after mode 04 its DTCs stay cleared until ``emulator.counters['cmd_dtc_cleared']``
  is reset (``set_dtcs`` does it).
* its VIN answer rotates through three VINs, one per request, none beginning
  with 0/1/2; ``set_vin`` replaces the list with one VIN (the scenario's answer
  dict is shared with the running emulator, so the change is live).
* ``ATZ`` and ``ATDPN`` take 0.5 s, the first ``0100`` 1.5 s ("SEARCHING...");
  ``ATCP`` is refused (``?``); a bare CR is answered with CR and no prompt;
  with a 29-bit header (``ATSH DB33F1``) the car's ECU does not answer.
* SIGTERM takes about 2 s to end it; ``kill()`` uses SIGKILL.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest


def elm_executable() -> Path | None:
    """The emulator's console script beside this interpreter, or None."""
    path = Path(sys.executable).parent / "elm"
    if path.exists():
        return path
    found = shutil.which("elm")
    return Path(found) if found else None


class ElmEmulator:
    """One elm327-emulator process; ``start``, ``send``, ``kill``, ``restart``, ``stop``."""

    def __init__(self, workdir: Path, *, scenario: str = "car",
                 startup_timeout: float = 15.0) -> None:
        exe = elm_executable()
        if exe is None:
            pytest.skip("elm327-emulator's 'elm' executable is not installed")
        self.exe = exe
        self.workdir = workdir
        self.scenario = scenario
        self.startup_timeout = startup_timeout
        self.link = workdir / "elm-pty"
        self.pty = ""
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0
        self._setup: list[str] = []  # statements replayed after every (re)start

    def start(self) -> str:
        """Start the emulator, wait for its pty; returns the stable symlink's path."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        out = self.workdir / f"elm-out-{self.starts}.txt"
        log = (self.workdir / f"elm-stdout-{self.starts}.txt").open("w")
        self.process = subprocess.Popen(
            [str(self.exe), "-s", self.scenario, "-b", str(out)], cwd=self.workdir,
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().strip():
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"elm exited with {self.process.returncode}: "
                                   f"{self.output()}")
            time.sleep(0.05)
        else:
            self.kill()
            raise RuntimeError(f"elm gave no pty within {self.startup_timeout} s")
        self.pty = out.read_text().splitlines()[0].strip()
        tmp = self.workdir / "elm-pty.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.pty)
        tmp.replace(self.link)  # atomic: a reader sees the old pty or the new one
        for statement in self._setup:
            self._write(statement)
        return str(self.link)

    def output(self) -> str:
        """What the emulator printed (its answers to ``send`` too)."""
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.workdir.glob("elm-stdout-*.txt")))

    def _write(self, statement: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(statement + "\n")
        self.process.stdin.flush()

    def send(self, statement: str, *, keep: bool = True, settle: float = 0.2) -> None:
        """Run one Python statement inside the emulator (``emulator`` in scope).
        ``keep``: replay it after a restart too. ``settle``: the emulator reads its
        stdin in its own thread; give it that long to run the statement."""
        if keep:
            self._setup.append(statement)
        self._write(statement)
        time.sleep(settle)

    def set_vin(self, vin: str) -> None:
        """Make mode 09 PID 02 answer ``vin`` (17 characters, any of them 0/1/2)."""
        payload = " ".join(f"{b:02X}" for b in vin.encode("ascii"))
        self.send("import elm.obd_message as m; "
                  f"m.ObdMessage['car']['VIN']['Response'] = m.PA('01 {payload}')")

    def set_dtcs(self, stored: list[str] | None = None, pending: list[str] | None = None,
                 permanent: list[str] | None = None, *, count_byte: bool = False) -> None:
        """Replace the emulated DTCs (two bytes of SAE J2012 each: '0143' is P0143) and
        undo an earlier mode 04. ``count_byte``: put the ISO 15765-4 count first."""
        parts = []
        for name, codes in (("DTC_STORED", stored), ("DTC_PENDING", pending),
                            ("DTC_PERMANENT", permanent)):
            if codes is None:
                continue
            entries = ([f"{len(codes):02X}"] if count_byte else []) + list(codes)
            parts.append(f"m.{name}[:] = {entries!r}")
        self.send("import elm.obd_message as m; " + "; ".join(parts)
                  + "; emulator.counters['cmd_dtc_cleared'] = 0")

    def kill(self) -> None:
        """SIGKILL: the adapter vanishes at once (the pty goes with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def restart(self) -> str:
        """Kill and start again (statements sent with ``keep`` are replayed); the
        symlink now points at the new pty."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self.kill()

    def __enter__(self) -> ElmEmulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@pytest.fixture
def elm_emulator(tmp_path: Path) -> Iterator[ElmEmulator]:
    """A running emulator in a directory of the test's own (skips without ``elm``)."""
    emulator = ElmEmulator(tmp_path / "elm")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()

