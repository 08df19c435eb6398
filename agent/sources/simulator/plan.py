"""The drive plan: the steps of one drive cycle, placed on its timeline.

Holds marked ``stretch`` grow or shrink so that the cycle lasts ``cycle_length``
seconds; ramps keep their acceleration. Steering manoeuvres start with their step.
What happens when in the default cycle: the package docstring.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_CYCLE_LENGTH = 300.0  # seconds of vehicle time in one drive cycle

# GearLever, IgnitionState, TurnSignal values (as in dbc/demo_vehicle.dbc)
P, R, N, D = 0, 1, 2, 3
OFF, CRANK, RUN = 0, 1, 2  # engine
IGN_OFF, IGN_RUN, IGN_CRANK = 0, 2, 3
LEFT, RIGHT, HAZARD = 1, 2, 3


class _Step(NamedTuple):
    """One step of the drive plan: a hold at constant speed or a smooth ramp."""

    label: str
    v: float  # km/h at the end of the step
    hold: float = 0.0  # seconds at constant speed; 0 = a ramp
    accel: float = 0.0  # mean |acceleration| of a ramp, m/s^2 (peak is 1.5x)
    stretch: bool = False  # holds that grow or shrink with the cycle length
    lever: int = D
    engine: int = RUN
    ignition: int = IGN_RUN
    steer: float = 0.0  # steering manoeuvre from the step's start, deg (+ = left)
    steer_time: float = 0.0  # its length; 0 = the step's length
    lane_change: bool = False  # an S-shaped manoeuvre instead of a single turn
    indicator: int = 0  # TurnSignal during the step (or the manoeuvre)
    stuck_thermostat: bool = False  # the coolant is not cooled: it overheats under load


_STEPS = (
    _Step("off", 0, hold=1.5, lever=P, engine=OFF),
    _Step("crank", 0, hold=0.8, lever=P, engine=CRANK, ignition=IGN_CRANK),
    _Step("idle", 0, hold=14, stretch=True, lever=P),
    _Step("idle", 0, hold=2.0),
    _Step("city", 45, accel=1.5, steer=110, steer_time=5, indicator=LEFT),
    _Step("city", 45, hold=6, stretch=True),
    _Step("city", 0, accel=1.7),
    _Step("city", 0, hold=4, stretch=True, indicator=RIGHT),
    _Step("city", 50, accel=1.6, steer=-140, steer_time=5, indicator=RIGHT),
    _Step("city", 50, hold=5, stretch=True),
    _Step("city", 0, accel=1.7),
    _Step("city", 0, hold=4, stretch=True),
    _Step("harsh_accel", 50, accel=3.0),  # away from the lights, foot down
    _Step("city", 50, hold=4, stretch=True),
    _Step("city", 0, accel=1.7),
    _Step("city", 0, hold=3, stretch=True, indicator=LEFT),
    _Step("highway", 80, accel=1.7, steer=60, steer_time=6, indicator=LEFT),
    _Step("highway", 120, accel=0.8),
    _Step("highway", 120, hold=18, stretch=True),
    # overtaking too fast, while the thermostat sticks shut
    _Step("overtake", 120, hold=5, steer=6, lane_change=True, indicator=LEFT),
    _Step("speeding", 138, accel=0.8, stuck_thermostat=True),
    _Step("speeding", 138, hold=12, stuck_thermostat=True),
    _Step("speeding", 120, accel=0.8, stuck_thermostat=True),
    _Step("overtake", 120, hold=5, steer=-6, lane_change=True, indicator=RIGHT),
    _Step("highway", 120, hold=18, stretch=True),
    _Step("harsh_brake", 30, accel=5.6),
    _Step("city", 30, hold=5, indicator=HAZARD),
    _Step("city", 0, accel=1.5, steer=-70, steer_time=6, indicator=RIGHT),
    _Step("stop", 0, hold=2.0),
    _Step("reverse", 6, accel=0.8, lever=R, steer=-300, steer_time=6),
    _Step("reverse", 6, hold=2.0, lever=R),
    _Step("reverse", 0, accel=0.8, lever=R),
    _Step("park", 0, hold=3.0, lever=P),
    # key out; the battery settles to its resting voltage
    _Step("off", 0, hold=70.0, lever=P, engine=OFF, ignition=IGN_OFF),
)


class Phase(NamedTuple):
    """One step of the drive plan placed on the cycle's timeline (seconds, km/h)."""

    start: float
    end: float
    v0: float
    v1: float
    label: str
    lever: int
    engine: int
    ignition: int
    indicator: int  # TurnSignal value
    indicator_end: float  # the indicator is on from start to here
    stuck_thermostat: bool = False


class Manoeuvre(NamedTuple):
    start: float
    length: float
    amplitude: float  # steering wheel angle, deg
    lane_change: bool


def _ramp_time(v0: float, v1: float, accel: float) -> float:
    return abs(v1 - v0) / 3.6 / accel


def drive_plan(cycle_length: float = DEFAULT_CYCLE_LENGTH) -> tuple[list[Phase], list[Manoeuvre]]:
    """The drive cycle's phases and steering manoeuvres, stretched to ``cycle_length`` s."""
    fixed = stretchable = 0.0
    v = 0.0
    for step in _STEPS:
        length = step.hold or _ramp_time(v, step.v, step.accel)
        if step.stretch:
            stretchable += length
        else:
            fixed += length
        v = step.v
    factor = (cycle_length - fixed) / stretchable
    if factor < 0.25:
        raise ValueError(f"cycle_length must be at least {fixed + stretchable / 4:.0f} s")
    phases, manoeuvres = [], []
    t = v = 0.0
    for step in _STEPS:
        length = step.hold * (factor if step.stretch else 1.0) or _ramp_time(v, step.v, step.accel)
        steer_time = step.steer_time or length
        phases.append(Phase(t, t + length, v, step.v, step.label, step.lever, step.engine,
                            step.ignition, step.indicator,
                            t + (steer_time if step.steer else length), step.stuck_thermostat))
        if step.steer:
            manoeuvres.append(Manoeuvre(t, steer_time, step.steer, step.lane_change))
        t += length
        v = step.v
    return phases, manoeuvres
