"""PIDs per second through an ELM327: bavard's OBD source against python-obd's ``Async``.

Both ask the same ELM327 (elm327-emulator, "car" scenario, on a pseudo-terminal,
protocol 6: ISO 15765-4 CAN 11-bit) for the same PIDs, as fast as each can,
for ``--seconds`` each, in ``--rounds`` interleaved rounds; the best round of
each is printed. Counted: PID values delivered to the caller per second, from
the first value on (the connection, bavard's VIN and trouble-code reads are
left out of the time). Each contender meets an emulator just started.

* python-obd 0.7.3 ``obd.Async`` watching the PIDs, ``delay_cmds=0`` (its
  default, 0.25 s, sleeps after each loop over the PIDs: that is printed too,
  for what a user gets without changing it), ``fast=False`` (``fast=True``
  repeats a command with a bare CR, which this emulator does not answer);
* bavard's ``ObdSource`` (agent.sources.obd, the service's own source)
  through its decoder (agent.decode.obd): several PIDs per request (``01 0C
  0D 05 ...``), the engine ECU's header and the reply count;
* bavard's source limited to one PID per request, to show where the gain
  comes from.

Checked, outside the timing: for every PID, the set of distinct values each
contender received is the same (the emulator cycles through a fixed list of
answers per PID, and every round goes through all of them many times);
a difference fails the run (status 1).

On a real adapter the round trip is tens of milliseconds and the ELM327 waits
out its timeout for other ECUs unless told the reply count: what this
emulator, which answers in under a millisecond and never waits, cannot show.

Needs the test extras (elm327-emulator, python-obd):
    .venv/bin/python scripts/bench_obd.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib

from tests.helpers.elm_emulator import ElmEmulator

# the same PIDs for everyone: python-obd's command name -> bavard's PID number
PIDS = {"RPM": 0x0C, "SPEED": 0x0D, "COOLANT_TEMP": 0x05, "ENGINE_LOAD": 0x04,
        "THROTTLE_POS": 0x11, "FUEL_LEVEL": 0x2F}
Seen = dict[int, set[float]]  # PID -> distinct values received


def python_obd(port: str, seconds: float, delay: float) -> tuple[int, float, Seen]:
    """PID values delivered by obd.Async in ``seconds``, from the first one on."""
    import obd

    seen: Seen = defaultdict(set)
    count = 0
    first: list[float] = []
    lock = threading.Lock()
    connection = obd.Async(port, baudrate=38400, protocol="6", fast=False, timeout=2,
                           delay_cmds=delay)
    if not connection.is_connected():
        raise SystemExit(f"python-obd could not connect to {port}: {connection.status()}")

    def callback(number: int) -> Any:
        def got(response: Any) -> None:
            nonlocal count
            if response.value is None:
                return
            with lock:
                if not first:
                    first.append(time.perf_counter())
                count += 1
                seen[number].add(round(float(response.value.magnitude), 9))
        return got

    for name, number in PIDS.items():
        connection.watch(obd.commands[name], callback=callback(number), force=True)
    connection.start()
    time.sleep(seconds)
    connection.stop()
    end = time.perf_counter()
    connection.close()
    return count, end - first[0] if first else seconds, seen


def bavard(port: str, seconds: float, per_request: int) -> tuple[int, float, Seen]:
    """PID values the OBD source and its decoder delivered in ``seconds``."""
    from agent.decode.obd import ObdDecoder
    from agent.obd.settings import ObdSettings
    from agent.sources.obd import ObdSource

    settings = ObdSettings(port=port, protocol="6", pids=tuple((n, 0.0) for n in PIDS.values()),
                           dtc_interval=86_400.0)
    source = ObdSource("bench", settings)
    decoder = ObdDecoder("bench")
    seen: Seen = defaultdict(set)
    names = _field_numbers()
    stop = threading.Event()
    count = 0
    first = end = 0.0
    try:
        for frame in source.frames(stop):
            if frame.data[:2] == b"\x41\x01":  # the readiness read at the start
                continue
            if source.scheduler is not None and source.scheduler.per_request > per_request:
                source.scheduler.fewer_per_request(per_request)
            decoded = decoder.decode(frame)
            if decoded is None:
                continue
            now = time.perf_counter()
            if not first:
                first = now
            for info, value in zip(decoded.signals, decoded.values, strict=True):
                count += 1
                seen[names[info.name]].add(round(float(value), 9))
            end = now
            if now - first >= seconds:
                stop.set()
    finally:
        source.close()
    return count, max(end - first, 1e-9), seen


def _field_numbers() -> dict[str, int]:
    from agent.obd import pids as table

    return {f.name: n for n in PIDS.values() for f in table.PIDS[n].fields}


def check(results: dict[str, Seen], wrong: tuple[str, str] | None) -> None:
    if wrong is not None:
        name, kind = wrong
        seen = results[name]
        if kind == "skip":
            seen.pop(next(iter(seen)))
        else:
            number = next(iter(seen))
            seen[number] = {v + 1 for v in seen[number]}
    reference_name = "python-obd"
    reference = results[reference_name]
    for name, seen in results.items():
        for number in PIDS.values():
            if seen.get(number, set()) != reference.get(number, set()):
                print(f"CHECK FAILED: PID {number:02X}: {name} received "
                      f"{sorted(seen.get(number, set()))}, {reference_name} "
                      f"{sorted(reference.get(number, set()))}", file=sys.stderr)
                raise SystemExit(1)
    print(f"checked: for each of the {len(PIDS)} PIDs every contender received the same "
          f"distinct values ({sum(len(v) for v in reference.values())} in all)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    names = ("bavard", "python-obd")
    benchlib.add_wrong_argument(parser, names)
    args = parser.parse_args()
    wrong = benchlib.parse_wrong(args.wrong, names)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("obd").setLevel(logging.CRITICAL)

    contenders = {
        "bavard": lambda port: bavard(port, args.seconds, 6),
        "bavard, one PID per request": lambda port: bavard(port, args.seconds, 1),
        "python-obd": lambda port: python_obd(port, args.seconds, 0.0),
        "python-obd, default delay_cmds": lambda port: python_obd(port, args.seconds, 0.25),
    }
    best: dict[str, float] = {}
    seen: dict[str, Seen] = {}
    with tempfile.TemporaryDirectory() as tmp, ElmEmulator(Path(tmp) / "elm") as emulator:
        for _ in range(args.rounds):
            for name, run in contenders.items():
                port = emulator.restart()  # each contender meets an adapter fresh from reset
                count, elapsed, values = run(port)
                best[name] = max(best.get(name, 0.0), count / elapsed)
                if name in names:
                    for number, got in values.items():
                        seen.setdefault(name, defaultdict(set))[number].update(got)
    print(f"PIDs: {', '.join(f'{n:02X}' for n in PIDS.values())}; {args.seconds:g} s a round, "
          f"best of {args.rounds} interleaved rounds; elm327-emulator, protocol 6")
    width = max(len(n) for n in contenders)
    for name in contenders:
        print(f"{name + ':':{width + 1}s} {best[name]:>9,.0f} PIDs/s")
    print(f"{'ratio:':{width + 1}s} {best['bavard'] / best['python-obd']:>9.1f}x "
          "(bavard against python-obd with delay_cmds=0)")
    check(seen, wrong)


if __name__ == "__main__":
    main()
