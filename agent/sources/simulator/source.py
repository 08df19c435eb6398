"""The simulator as a frame source: the model driven on each message's cycle."""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import DbcError
from agent.frames import Frame
from agent.sources.base import Source
from agent.sources.pacing import Pacer
from agent.sources.simulator.codec import _Codec
from agent.sources.simulator.gnss import DEFAULT_ORIGIN, DeadReckoning
from agent.sources.simulator.plan import DEFAULT_CYCLE_LENGTH, drive_plan
from agent.sources.simulator.vehicle import DEFAULT_ODOMETER, STEP_US, VehicleModel

DEFAULT_START_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so output is reproducible
DEFAULT_CHANNEL = "can0"


class SimulatorSource(Source):
    """Frames of the simulated vehicle, one drive cycle (or ``duration`` seconds) long."""

    def __init__(
        self,
        name: str,
        dbc_path: Path | str | None = None,
        *,
        seed: int = 1,
        speed: float = 1.0,
        duration: float | None = None,
        start_time: float = DEFAULT_START_TIME,
        channel: str | None = None,
        cycle_length: float = DEFAULT_CYCLE_LENGTH,
        origin: tuple[float, float] = DEFAULT_ORIGIN,
        odometer: float = DEFAULT_ODOMETER,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(name)
        from agent.decode.dbc_files import load_dbc

        if dbc_path is None:
            from agent.resources import demo_dbc_path

            dbc_path = demo_dbc_path()
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if duration is not None and duration < 0:
            raise ValueError("duration must be >= 0")
        drive_plan(cycle_length)  # validates the cycle length
        DeadReckoning(origin)  # and the start point
        self.dbc_path = Path(dbc_path)
        self.database: Any = load_dbc(self.dbc_path)
        self.messages = [m for m in self.database.messages if m.cycle_time]
        if not self.messages:
            raise DbcError(f"{self.dbc_path}: no message has a GenMsgCycleTime to simulate")
        for message in self.messages:
            _Codec(message)  # fail now on a checksum the simulator cannot compute
        self.seed = seed
        self.speed = speed
        self.cycle_length = cycle_length
        self.origin = origin  # (latitude, longitude) of the drive's start, degrees
        self.odometer = odometer  # km when the first cycle starts
        self.duration = cycle_length if duration is None else float(duration)
        self.start_time = start_time
        self.channel = channel if channel is not None else name
        self._clock = clock
        self._wait = wait

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        rng = random.Random(self.seed)
        model = VehicleModel(rng, self.cycle_length, origin=self.origin,
                             odometer=self.odometer)
        codecs = [_Codec(m) for m in self.messages]
        pacer = Pacer(self.speed, stop, self._clock, self._wait)
        channel, end_us = self.channel, round(self.duration * 1e6)
        start_us = round(self.start_time * 1e6)
        # stagger the messages so that they do not all start on the same microsecond
        heap = [(i * 731 % c.cycle_us, i) for i, c in enumerate(codecs)]
        heapq.heapify(heap)
        model_us, jitter = 0, rng.random
        while heap[0][0] < end_us:
            t_us, i = heap[0]
            codec = codecs[i]
            heapq.heapreplace(heap, (t_us + codec.cycle_us, i))
            while model_us + STEP_US <= t_us:
                model.step()
                model_us += STEP_US
            data = codec.encode(model.values)
            timestamp = (start_us + t_us + int(jitter() * 150)) / 1e6
            pacer.pace(timestamp)
            if stop.is_set():
                return
            yield Frame(timestamp, channel, codec.frame_id, codec.is_extended, codec.is_fd, data)


def drive_cycle_frames(
    dbc_path: Path | str | None = None,
    *,
    seed: int = 1,
    duration: float | None = None,
    start_time: float = DEFAULT_START_TIME,
    channel: str = DEFAULT_CHANNEL,
    cycle_length: float = DEFAULT_CYCLE_LENGTH,
) -> Iterator[Frame]:
    """The simulated vehicle's frames as fast as they can be made (no pacing)."""
    with SimulatorSource(channel, dbc_path, seed=seed, speed=0.0, duration=duration,
                         start_time=start_time, channel=channel,
                         cycle_length=cycle_length) as source:
        yield from source.frames()
