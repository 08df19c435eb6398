"""The simulated demo vehicle: a drive cycle, a light vehicle model, and its CAN bus.

A petrol car with a 6-speed automatic goes through one drive cycle: cold start,
idle, city stop-and-go with a harsh start from the lights, a motorway with an
overtaking too fast while the thermostat sticks, a harsh brake, a short reverse
into a parking space, the key out and a minute parked. The model runs in steps of
:data:`STEP_US` on a simulated timeline; every message of the DBC that has a
``GenMsgCycleTime`` attribute is sent on its own cycle, its signals taken from
the model by name, its ``*Counter*`` signal rolled and its ``*Checksum*``
signal set to the sum of the other bytes modulo 256 (8 bits, byte aligned).

Only seeded ``random.Random(seed).random()`` noise and IEEE arithmetic
(no libm functions; ``sqrt`` is exact in IEEE 754) go into the values, so a seed
gives byte-identical frames on any machine. Timestamps are ``start_time`` plus
simulated time, to the microsecond; ``speed`` paces them (0 = as fast as possible,
1 = real time). A channel's ``start`` key sets ``start_time`` in the service.

The default cycle (300 s), what each step does and what the decoded frames show
(seconds from the cycle's start; the edges measured with seed 1, other seeds move
them by a few hundredths of a second, by 0.1 s for the 100 ms messages)::

    0.0    key on (IgnitionState 2, Run), engine off: BatteryVoltage about 12.05 V
    1.5    crank (IgnitionState 3) for 0.8 s: BatteryVoltage 9.4 V (9.38 to 9.42)
    2.3    engine running (IgnitionState 2): idle in P, then D
    21.4   city: turn left to 45 km/h, stop, turn right to 50 km/h, stop
    77.1   harsh acceleration from the lights, 0 to 50 km/h in 4.6 s (mean 3.0 m/s^2):
           LongitudinalAccel >= 3.13 m/s^2 above 10 km/h from 78.42 to 80.64 s,
           peak about 4.5 m/s^2 (every other ramp stays within +-2.7 m/s^2)
    86.6   stop; 98.4 motorway slip road (left), 0 to 80 to 120 km/h
    147.4  overtaking: lane change left, 152.4 to 158.6 up to 138 km/h, held to 170.6,
           back to 120 km/h at 176.9, lane change right:
           VehicleSpeed > 130 km/h from 155.52 to 173.42 s (17.9 s; peak about 140)
    152.4  the thermostat sticks shut until 176.9: CoolantTemp > 110 degC from 164.0
           to 177.0 s (peak 121 degC), below 105 degC again from 179.0 s
    203.8  harsh brake, 120 to 30 km/h in 4.5 s (mean 5.6 m/s^2, ABS):
           LongitudinalAccel <= -3.13 m/s^2 from 204.30 to 207.82 s (peak about -8.4)
    208.3  hazard lights at 30 km/h, slow to a stop, reverse into a space, park
    230.0  key out (IgnitionState 0; the 100 ms frame shows it at 230.1): the trip ends;
           door open 232.0 to 234.5 s, locked from 240.0 s (the frames show both up to
           0.6 s later: the doors' page of BodyStatus comes every 0.6 s)
    261.6  BatteryVoltage below 12.2 V as the surface charge fades (for good, noise
           included, from 266.8 s); from 290.0 s (60 s off) 12.10 to 12.15 V
    300.0  the next cycle starts where this one parked

Distance and position: Odometer from 48,213.6 km (``odometer``), about 3.9 km a
cycle; the instrument cluster's ServiceDistance counts down to a service at
48,700 km (486 km at the start: a last service at 33,700 km with a 15,000 km
interval). GnssPosition (1 Hz, +-1.5 m of noise) is dead reckoning from speed and
yaw, starting at ``origin`` (45.7640 N, 4.8357 E) facing north: the car moves off
at 21.4 s, is more than 1 km from both the start and the parking place from 124 s
to 178 s, and parks about 3.9 km north-north-west of the start.
"""

from agent.sources.simulator.codec import _Codec as _Codec  # private; the tests use it
from agent.sources.simulator.codec import checksum_ok
from agent.sources.simulator.gnss import DEFAULT_ORIGIN
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
from agent.sources.simulator.vehicle import (
    DEFAULT_ODOMETER,
    SERVICE_DUE_KM,
    SLOW_STEPS,
    STEP_US,
    VehicleModel,
)

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_CYCLE_LENGTH",
    "DEFAULT_ODOMETER",
    "DEFAULT_ORIGIN",
    "DEFAULT_START_TIME",
    "LOG_SUFFIXES",
    "SERVICE_DUE_KM",
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
