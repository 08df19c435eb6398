"""The receiver processes of scripts/bench_receive.py: ``python -m agent receive
--listen 127.0.0.1:0`` started together, writing one shared lake (``--lake DIR``) or
each its own SQLite database (``--dir DIR/rN``), stopped with SIGTERM; each one's
closing line on stderr says how many batches it stored.

Every wait is bounded (READY_TIMEOUT, STOP_TIMEOUT), and a receiver still running
when the ``with`` block ends, however it ends, is killed.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 30.0  # seconds for a receiver to print its address
STOP_TIMEOUT = 60.0  # seconds for a receiver to stop after SIGTERM
STOPPED = re.compile(r"bavard receive: stopped; (\d+) received: (\d+) stored, "
                     r"(\d+) duplicates, (\d+) invalid")


class BenchError(Exception):
    """The bench could not run (a receiver that did not start, a refused send)."""


@dataclass
class Receiver:
    """One receiver process, its address once it said it, the file of its stderr."""

    process: subprocess.Popen[str]
    url: str = ""
    stderr: Path = field(default_factory=Path)


class Receivers:
    """``count`` receiver processes, started together (``with``: killed if still there).

    ``lake``: all write that lake; else each its own SQLite database under ``dbdir``.
    """

    def __init__(self, count: int, scratch: Path, lake: Path | None,
                 dbdir: Path | None = None) -> None:
        self.count = count
        self.scratch = scratch
        self.lake = lake
        self.dbdir = dbdir
        self.running: list[Receiver] = []

    def command(self, index: int) -> list[str]:
        cmd = [sys.executable, "-m", "agent", "receive", "--listen", "127.0.0.1:0"]
        if self.lake is not None:
            return [*cmd, "--lake", str(self.lake)]
        assert self.dbdir is not None
        return [*cmd, "--dir", str(self.dbdir / f"r{index}")]

    def __enter__(self) -> Receivers:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        try:
            for i in range(self.count):
                err = self.scratch / f"receiver-{i}.stderr"
                with err.open("w") as sink:
                    process = subprocess.Popen(self.command(i), cwd=self.scratch, env=env,
                                               stdout=subprocess.PIPE, stderr=sink, text=True)
                self.running.append(Receiver(process, stderr=err))
            for receiver in self.running:
                receiver.url = self._address(receiver)
        except BaseException:
            self.kill()
            raise
        return self

    def _address(self, receiver: Receiver) -> str:
        """The URL from the first line of its stdout, within READY_TIMEOUT."""
        out = receiver.process.stdout
        assert out is not None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            if not sel.select(READY_TIMEOUT):
                raise BenchError(f"a receiver printed no address in {READY_TIMEOUT:g} s: "
                                 f"{receiver.stderr.read_text()[-2000:]}")
        line = out.readline().strip()
        prefix = "receiving on "
        if not line.startswith(prefix):
            receiver.process.wait(5.0)
            raise BenchError(f"a receiver did not start ({receiver.process.args!r}): "
                             f"{line!r} {receiver.stderr.read_text()[-2000:]}")
        return line[len(prefix):]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.running]

    def cpu_seconds(self) -> float | None:
        """The CPU time (user + system) the receivers have used so far; None where
        /proc cannot tell (not Linux)."""
        total = 0.0
        for receiver in self.running:
            try:
                stat = Path(f"/proc/{receiver.process.pid}/stat").read_text()
            except OSError:
                return None
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> list[int]:
        """SIGTERM each; the batches each says it stored (BenchError if it says
        anything invalid or does not stop)."""
        for receiver in self.running:
            receiver.process.send_signal(signal.SIGTERM)
        stored = []
        for receiver in self.running:
            try:
                receiver.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BenchError(f"a receiver did not stop within {STOP_TIMEOUT:g} s "
                                 "of SIGTERM") from None
            err = receiver.stderr.read_text()
            found = STOPPED.findall(err)
            if receiver.process.returncode != 0 or not found:
                raise BenchError(f"a receiver ended with status {receiver.process.returncode}:"
                                 f" {err[-2000:]}")
            _received, ok, _dups, invalid = map(int, found[-1])
            if invalid:
                raise BenchError(f"a receiver refused {invalid} batches: {err[-2000:]}")
            stored.append(ok)
        return stored

    def kill(self) -> None:
        for receiver in self.running:
            if receiver.process.poll() is None:
                receiver.process.kill()
                receiver.process.wait(10.0)
            if receiver.process.stdout is not None:
                receiver.process.stdout.close()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
