#!/usr/bin/env python3
"""Start-up time of the real daemon: exec of ``bavard run`` -> ``READY=1``, cold and warm.

What is measured, in interleaved rounds (so that the drift of a shared machine
hits every figure alike), medians printed:

- **bavard cold**: ``bavard run --config F`` exec'd with ``NOTIFY_SOCKET`` set to
  an AF_UNIX datagram socket of ours and ``CACHE_DIRECTORY`` to an *empty* DBC
  cache: the time from just before the exec to the ``READY=1`` datagram
  (systemd's notion of "started": the store is open and the sources too).
  Then SIGTERM, and the time until the process has exited (status 0 expected).
- **bavard warm**: the same with the DBC cache filled by an earlier run.
- **cantools alone**: ``python -c "import cantools; cantools.database.load_file(F)"``
  exec'd the same way, to its exit: the floor of any agent that parses the DBC.
- **python alone**: ``python -c pass``, the interpreter's own start.

The configuration: one channel on a python-can ``virtual`` bus decoding with
the largest DBC of ``../shared/corpus/`` (or ``--dbc``), every signal selected,
the store in a temporary state directory (kept across rounds: a restart opens
an existing buffer), no upload. A first, unmeasured run creates the buffer and
warms the OS page cache.

``--breakdown`` adds where the time goes, measured stage by stage in fresh
child processes (imports, configuration, DBC load cold and warm, decoder
generation, store open).

Usage: scripts/bench_startup.py [--rounds N] [--dbc FILE] [--breakdown]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def largest_dbc(corpus: Path = CORPUS) -> Path:
    """The largest ``*.dbc`` (any case) under ``corpus``."""
    files = [p for p in corpus.rglob("*") if p.suffix.lower() == ".dbc" and p.is_file()]
    if not files:
        sys.exit(f"no DBC under {corpus}: pass --dbc FILE")
    return max(files, key=lambda p: p.stat().st_size)


def bavard_command() -> list[str]:
    """The installed ``bavard`` console script beside this interpreter, else ``python -m agent``."""
    script = Path(sys.executable).parent / "bavard"
    if script.exists():
        return [str(script)]
    found = shutil.which("bavard")
    return [found] if found else [sys.executable, "-m", "agent"]


def write_config(directory: Path, channels: str) -> Path:
    """A configuration with ``channels`` (TOML tables), the store in ``directory/state``."""
    config = directory / "bavard.toml"
    config.write_text(f'{channels}\n[store]\nstate_dir = "{directory / "state"}"\n')
    return config


def virtual_channel(dbc: Path) -> str:
    return (f'[[channels]]\nname = "bench"\ninterface = "virtual"\n'
            f'channel = "bench-{os.getpid()}"\ndbc = ["{dbc}"]\n')


@dataclass
class Daemon:
    """A running ``bavard run``, with its notify socket."""

    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the exec
    ready: float | None = None
    messages: list[str] = field(default_factory=list)


@contextlib.contextmanager
def notify_socket(directory: Path) -> Iterator[socket.socket]:
    """An AF_UNIX datagram socket bound in ``directory``, as systemd's NOTIFY_SOCKET."""
    path = directory / "notify.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def start_daemon(config: Path, sock: socket.socket, cache_dir: Path, log: Path,
                 extra_env: dict[str, str] | None = None) -> Daemon:
    """Exec ``bavard run --config config`` and wait for its ``READY=1``."""
    env = dict(os.environ, NOTIFY_SOCKET=sock.getsockname(), CACHE_DIRECTORY=str(cache_dir))
    env.pop("WATCHDOG_USEC", None)
    env.update(extra_env or {})
    with log.open("ab") as out:
        started = time.monotonic()
        process = subprocess.Popen([*bavard_command(), "run", "--config", str(config)],
                                   env=env, stdout=out, stderr=out, cwd=config.parent)
    daemon = Daemon(process, started)
    deadline = started + READY_TIMEOUT
    while daemon.ready is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            stop_daemon(daemon)
            raise RuntimeError(f"no READY=1 from bavard run (exit {process.poll()}); "
                               f"its log:\n{tail(log)}")
        sock.settimeout(min(remaining, 0.2))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        now = time.monotonic()
        text = data.decode("utf-8", "replace")
        daemon.messages.append(text)
        if "READY=1" in text.split("\n"):
            daemon.ready = now
    return daemon


def stop_daemon(daemon: Daemon) -> tuple[float, int]:
    """SIGTERM, then the seconds until the process exited and its status."""
    process = daemon.process
    sent = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        status = process.wait()
    return time.monotonic() - sent, status


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def exec_seconds(argv: Sequence[str]) -> float:
    """From just before the exec of ``argv`` to its exit (status 0 expected)."""
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def fmt(values: Sequence[float]) -> str:
    return (f"median {statistics.median(values):6.3f} s  (min {min(values):.3f}, "
            f"max {max(values):.3f}, n={len(values)})")


def measure(dbc: Path, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in (
        "cold", "warm", "stop_cold", "stop_warm", "cantools", "python")}
    baseline = [sys.executable, "-c",
                f"import cantools; cantools.database.load_file({str(dbc)!r})"]
    with tempfile.TemporaryDirectory(prefix="bavard-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work, virtual_channel(dbc))
        log = work / "daemon.log"
        cold_cache, warm_cache = work / "cold-cache", work / "warm-cache"
        with notify_socket(work) as sock:
            # unmeasured: creates the buffer and the warm cache, warms the page cache
            stop_daemon(start_daemon(config, sock, warm_cache, log))
            exec_seconds(baseline)
            cache_used = any(warm_cache.glob("dbc-*"))
            for i in range(rounds):
                for mode in (("cold", "warm") if i % 2 == 0 else ("warm", "cold")):
                    cache = warm_cache if mode == "warm" else cold_cache
                    shutil.rmtree(cold_cache, ignore_errors=True)
                    daemon = start_daemon(config, sock, cache, log)
                    assert daemon.ready is not None
                    results[mode].append(daemon.ready - daemon.started)
                    seconds, status = stop_daemon(daemon)
                    if status != 0:
                        raise RuntimeError(f"bavard run exited {status} after SIGTERM:\n"
                                           f"{tail(log)}")
                    results[f"stop_{mode}"].append(seconds)
                results["cantools"].append(exec_seconds(baseline))
                results["python"].append(exec_seconds([sys.executable, "-c", "pass"]))
                print(f"  round {i + 1}/{rounds}: cold {results['cold'][-1]:.3f} s, "
                      f"warm {results['warm'][-1]:.3f} s, cantools {results['cantools'][-1]:.3f}"
                      f" s", flush=True)
    if not cache_used:
        print("note: the daemon wrote nothing to $CACHE_DIRECTORY: the warm figures are cold")
    return results


# -- where the time goes ---------------------------------------------------------------------

STAGES = r'''
import json, sys, time
t = [("start", time.perf_counter())]
def mark(name): t.append((name, time.perf_counter()))
from pathlib import Path
import agent.cli.main, agent.service.daemon
mark("import bavard (daemon modules)")
import cantools
mark("import cantools (+ python-can)")
from agent.config import load_config
config = load_config(sys.argv[1])
mark("load the configuration")
from agent.decode.dbc_cache import DbcCache
from agent.decode.dbc_files import load_dbc
dbc = config.channels[0].dbc[0]
if sys.argv[3] == "warm":
    db = load_dbc(dbc, cache=DbcCache(sys.argv[2]))
    mark("load the DBC: warm cache (hash, read, unpickle)")
else:
    db = load_dbc(dbc, cache=None)
    mark("load the DBC: parse (no cache)")
from agent.decode.decoder import ChannelDecoder
from agent.policy.selection import Selector
ChannelDecoder("bench", [db], Selector(config.selection.include, config.selection.exclude))
mark("generate + compile the decoders")
from agent.store.buffer import Store
store = Store(config.store).start()
mark("open the store (SQLite)")
store.close()
print(json.dumps([(b[0], b[1] - a[1]) for a, b in zip(t, t[1:])]))
'''


def breakdown(dbc: Path, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bavard-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work, virtual_channel(dbc))
        cache = work / "cache"
        from agent.decode.dbc_cache import DbcCache
        from agent.decode.dbc_files import load_dbc
        load_dbc(dbc, cache=DbcCache(cache))  # fill the cache
        stages: dict[str, list[float]] = {}
        for _ in range(rounds):
            for mode in ("cold", "warm"):
                out = subprocess.run([sys.executable, "-c", STAGES, str(config), str(cache), mode],
                                     check=True, capture_output=True, text=True, cwd=ROOT)
                for name, seconds in json.loads(out.stdout.strip().splitlines()[-1]):
                    stages.setdefault(name, []).append(seconds)
    print("\nwhere the time goes (in-process, medians of fresh processes):")
    for name, values in stages.items():
        print(f"  {name:50s} {statistics.median(values):6.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--dbc", type=Path, help="DBC file (default: the corpus' largest)")
    parser.add_argument("--breakdown", action="store_true", help="also time each stage")
    args = parser.parse_args()
    dbc = (args.dbc or largest_dbc()).resolve()
    sys.path.insert(0, str(ROOT))
    import cantools

    from agent import __version__

    print(f"bavard {__version__}, cantools {cantools.__version__}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"DBC: {dbc} ({dbc.stat().st_size / 1024:,.0f} KiB)")
    print(f"command: {' '.join(bavard_command())} run --config ...")
    results = measure(dbc, args.rounds)
    cold, warm, base = (statistics.median(results[k]) for k in ("cold", "warm", "cantools"))
    print("\nexec -> READY=1")
    print(f"  bavard, cold DBC cache   {fmt(results['cold'])}")
    print(f"  bavard, warm DBC cache   {fmt(results['warm'])}")
    print("exec -> exit")
    print(f"  cantools import + load   {fmt(results['cantools'])}")
    print(f"  python -c pass           {fmt(results['python'])}")
    print("SIGTERM -> exit")
    print(f"  bavard (cold runs)       {fmt(results['stop_cold'])}")
    print(f"  bavard (warm runs)       {fmt(results['stop_warm'])}")
    print(f"\nratio to cantools alone: cold {cold / base:.2f}x, warm {warm / base:.2f}x; "
          f"warm is {cold / warm:.1f}x faster than cold; target <= 1.5 s: "
          f"{'met' if warm <= 1.5 else 'NOT met'} warm, {'met' if cold <= 1.5 else 'not met'} cold")
    if args.breakdown:
        breakdown(dbc, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
