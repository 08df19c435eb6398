"""The simulated demo vehicle: a drive cycle, a light vehicle model, and its CAN bus.

A petrol car with a 6-speed automatic goes through one drive cycle: cold start,
idle, city stop-and-go, highway with a lane change, a harsh brake, a short
reverse into a parking space, engine off. The model runs in steps of
:data:`STEP_US` on a simulated timeline; every message of the DBC that has a
``GenMsgCycleTime`` attribute is sent on its own cycle, its signals taken from
the model by name, its ``*Counter*`` signal rolled and its ``*Checksum*``
signal set to the sum of the other bytes modulo 256 (8 bits, byte aligned).

Only seeded ``random.Random(seed).random()`` noise and IEEE arithmetic
(no libm functions) go into the values, so a seed gives byte-identical frames
on any machine. Timestamps are ``start_time`` plus simulated time, to the
microsecond; ``speed`` paces them (0 = as fast as possible, 1 = real time).
"""

from agent.sources.simulator.codec import _Codec as _Codec  # private; the tests use it
from agent.sources.simulator.codec import checksum_ok
from agent.sources.simulator.output import (
    LOG_SUFFIXES,
    candump_line,
    output_format,
    send_to_bus,
    write_candump,
    write_log,
)
from agent.sources.simulator.plan import DEFAULT_CYCLE_LENGTH, Manoeuvre, Phase, drive_plan
from agent.sources.simulator.source import (
    DEFAULT_CHANNEL,
    DEFAULT_START_TIME,
    SimulatorSource,
    drive_cycle_frames,
)
from agent.sources.simulator.vehicle import SLOW_STEPS, STEP_US, VehicleModel

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_CYCLE_LENGTH",
    "DEFAULT_START_TIME",
    "LOG_SUFFIXES",
    "SLOW_STEPS",
    "STEP_US",
    "Manoeuvre",
    "Phase",
    "SimulatorSource",
    "VehicleModel",
    "candump_line",
    "checksum_ok",
    "drive_cycle_frames",
    "drive_plan",
    "output_format",
    "send_to_bus",
    "write_candump",
    "write_log",
]
