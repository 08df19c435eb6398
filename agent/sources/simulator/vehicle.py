"""The simulated car: a light vehicle model following the drive plan."""

from __future__ import annotations

import random

from agent.sources.simulator.gnss import DEFAULT_ORIGIN, DeadReckoning
from agent.sources.simulator.plan import (
    CRANK,
    DEFAULT_CYCLE_LENGTH,
    IGN_OFF,
    RUN,
    D,
    N,
    P,
    Phase,
    R,
    drive_plan,
)

STEP_US = 10_000  # model step, microseconds
SLOW_STEPS = 10  # slow quantities move every 10 steps (100 ms)
_DT = STEP_US / 1e6


def _smoothstep(u: float) -> float:
    return u * u * (3.0 - 2.0 * u)


def _bump(u: float) -> float:
    """0 -> 1 -> 0 over u in [0, 1], smooth at both ends."""
    w = u * (1.0 - u)
    return 16.0 * w * w


# vehicle constants
_MASS = 1550.0  # kg
_WHEEL_R = 0.32  # m
_FINAL = 3.2
_RATIOS = (0.0, 4.2, 2.5, 1.6, 1.2, 0.95, 0.75)  # N, 1..6
_REVERSE_RATIO = 3.4
_RPM_PER_MPS = 60.0 * _FINAL / (2.0 * 3.141592653589793 * _WHEEL_R)
_MAX_TORQUE = 320.0  # Nm
_TANK_L = 55.0
_DEG_PER_RAD = 57.29577951308232
_STEER_RATIO = 15.0
_WHEELBASE = 2.7  # m
_TRACK = 1.55  # m
_CRANK_VOLTS = 9.4  # a tired battery under the starter's load
_REST_VOLTS = 12.1  # and at rest, engine off (about 40 % charged)
_SURFACE_CHARGE = 0.5  # V above rest just after a drive, fading in about a minute
_SURFACE_FADE = 20.0  # s, its time constant (hours on a real battery: sped up here)
DEFAULT_ODOMETER = 48_213.6  # km at the start of the first cycle
SERVICE_DUE_KM = 48_700.0  # the instrument cluster counts ServiceDistance down to this
_GNSS_NOISE = 1.5  # m, at most, either way, on each axis


class VehicleModel:
    """State of the simulated car, advanced one :data:`STEP_US` at a time.

    ``values`` maps DBC signal names to physical values (choice signals as ints)
    and is updated in place by :meth:`step`. Dynamics (speed, engine, brakes,
    steering) move every step; slow quantities (temperatures, electrics, body)
    every :data:`SLOW_STEPS` steps (100 ms).
    """

    def __init__(self, rng: random.Random, cycle_length: float = DEFAULT_CYCLE_LENGTH, *,
                 origin: tuple[float, float] = DEFAULT_ORIGIN,
                 odometer: float = DEFAULT_ODOMETER) -> None:
        self._rnd = rng.random
        self.cycle_length = cycle_length
        self.phases, self.manoeuvres = drive_plan(cycle_length)
        self.phase = self.phases[0]
        self.t = 0.0  # simulated seconds since the start
        self._steps = 0
        self._phase_i = 0
        self._knots = (self._rnd() * 2 - 1, self._rnd() * 2 - 1)
        self._knot_t = 0.0
        self.ambient = 9.0 + (self._rnd() - 0.5) * 3.0
        self.speed = 0.0  # km/h
        self.rpm = 0.0
        self.gear = 0
        self.power_kw = 0.0
        self._shift_timer = 9.0
        self._run_time = 0.0  # seconds since the engine started
        self.coolant = self.oil = self.trans_oil = self.ambient + 1.0
        self.cabin = self.ambient + 1.5
        self.fuel_l = _TANK_L * (0.62 + self._rnd() * 0.02)
        self.odometer = odometer
        self.trip = 0.0
        self.soc = 82.0
        self.volts = 12.05
        self._surface = 0.0  # surface charge above the resting voltage, V
        self.where = DeadReckoning(origin)
        self.locked = 0
        self._steer = 0.0
        self.values: dict[str, float] = {}
        self._fast(0.0)
        self._slow(0.0)

    def step(self) -> None:
        """Advance the model by one step and refresh ``values``."""
        self._steps += 1
        self.t = self._steps * STEP_US / 1e6
        self._fast(_DT)
        if self._steps % SLOW_STEPS == 0:
            self._slow(_DT * SLOW_STEPS)

    def _find_phase(self, tc: float) -> Phase:
        phases = self.phases
        if tc < phases[self._phase_i].start:
            self._phase_i = 0
        while self._phase_i < len(phases) - 1 and tc >= phases[self._phase_i].end:
            self._phase_i += 1
        return phases[self._phase_i]

    def _steering(self, tc: float) -> float:
        angle = 0.0
        for m in self.manoeuvres:
            u = (tc - m.start) / m.length
            if 0.0 < u < 1.0:
                if m.lane_change:
                    angle += m.amplitude * (_bump(2 * u) if u < 0.5 else -_bump(2 * u - 1))
                else:
                    angle += m.amplitude * _bump(u)
        return angle

    def _gear(self, lever: int, mps: float, force: float, running: bool) -> tuple[int, float]:
        """The automatic gearbox: (CurrentGear, ratio); shifts up early unless under load."""
        if not running or lever in (P, N):
            return 0, 0.0
        if lever == R:
            return 7, _REVERSE_RATIO
        gear = self.gear if 1 <= self.gear <= 6 else 1
        if mps < 0.8:
            return 1, _RATIOS[1]
        if self._shift_timer > 0.8:
            wheel_torque = force * _WHEEL_R / (_FINAL * 0.92)
            if gear < 6 and mps * _RPM_PER_MPS * _RATIOS[gear] > 1750.0 and (
                wheel_torque / _RATIOS[gear + 1] < 0.6 * _MAX_TORQUE
                or mps * _RPM_PER_MPS * _RATIOS[gear] > 3300.0
            ):
                gear += 1
            elif gear > 1 and (
                mps * _RPM_PER_MPS * _RATIOS[gear] < 1100.0
                or wheel_torque / _RATIOS[gear] > 0.95 * _MAX_TORQUE
            ):
                gear -= 1
        return gear, _RATIOS[gear]

    def _fast(self, dt: float) -> None:
        rnd, values = self._rnd, self.values
        tc = self.t % self.cycle_length
        ph = self.phase = self._find_phase(tc)
        # speed: the plan's smooth ramps, plus a driver wandering by 1.5 % (2 s knots)
        u = min(1.0, max(0.0, (tc - ph.start) / (ph.end - ph.start)))
        v = ph.v0 + (ph.v1 - ph.v0) * _smoothstep(u)
        while self.t - self._knot_t >= 2.0:
            self._knots = (self._knots[1], rnd() * 2 - 1)
            self._knot_t += 2.0
        k0, k1 = self._knots
        v *= 1.0 + 0.015 * (k0 + (k1 - k0) * _smoothstep((self.t - self._knot_t) / 2.0))
        mps = v / 3.6
        accel = (mps - self.speed / 3.6) / dt if dt else 0.0
        self.speed = v
        self.odometer += mps * dt / 1000.0
        self.trip += mps * dt / 1000.0

        # engine and gearbox
        running = ph.engine == RUN
        self._run_time = self._run_time + dt if running else 0.0
        lever = ph.lever
        self._shift_timer += dt
        # inertia, air drag, rolling resistance
        force = _MASS * accel + 0.41 * mps * mps + (182.0 if v > 0.0 else 0.0)
        gear, ratio = self._gear(lever, mps, force, running)
        if gear != self.gear:
            self._shift_timer = 0.0
        self.gear = gear
        torque = force * _WHEEL_R / (ratio * _FINAL * 0.92) if ratio else 0.0
        drag = -(25.0 + self.rpm * 0.008)
        brake_decel = 0.0
        if not running:
            torque, brake_decel = 0.0, max(0.0, -force / _MASS)
        elif torque < drag:
            brake_decel = (drag - torque) * ratio * _FINAL * 0.92 / _WHEEL_R / _MASS
            torque = drag
        if running and (not gear or v < 0.5):
            torque = (18.0 if gear else 12.0) + (rnd() - 0.5) * 4.0  # idling, or creeping
        pedal = 0.0 if torque <= 0.0 or v < 0.5 else min(100.0, torque / _MAX_TORQUE * 110.0 + 3.0)
        if ph.engine == CRANK:
            rpm_target = 230.0 + (rnd() - 0.5) * 60.0
        elif running:
            idle = 780.0 + max(0.0, 60.0 - self.coolant) * 6.0
            if self._run_time < 1.5:
                idle += 450.0 * (1.0 - self._run_time / 1.5)  # start-up flare
            rpm_mech = mps * _RPM_PER_MPS * ratio
            slip = (pedal * 14.0 + 150.0) * max(0.0, 1.0 - rpm_mech / 1800.0) if gear else 0.0
            rpm_target = max(idle, rpm_mech + slip)
        else:
            rpm_target = 0.0
        self.rpm += (rpm_target - self.rpm) * dt / ((0.12 if running else 0.25) + dt)
        if not running and self.rpm < 40.0:
            self.rpm = 0.0
        self.power_kw = max(0.0, torque) * self.rpm / 9549.0
        if running:
            self.fuel_l -= (0.75 + 0.34 * self.power_kw) / 3600.0 * dt

        # brakes: held at standstill in D or R, else whatever the engine does not brake
        if running and lever in (D, R) and (v < 0.5 or ph.label == "idle"):
            pressure = 18.0 + (rnd() - 0.5) * 0.6
        elif brake_decel > 0.15:
            pressure = brake_decel * 11.0 + (rnd() - 0.5) * 0.6
        else:
            pressure = 0.0
        abs_active = 1 if accel < -7.0 and v > 10.0 else 0

        # steering and lateral dynamics
        steer = self._steering(tc)
        curvature = steer / (_STEER_RATIO * _DEG_PER_RAD * _WHEELBASE)
        if lever == R:
            curvature = -curvature
        self.where.move(-mps if lever == R else mps, mps * curvature, dt)
        spread = _TRACK * curvature / 2.0
        slip_abs = (0.04 + 0.08 * rnd()) if abs_active else 0.0
        values["SteeringWheelRate"] = (steer - self._steer) / dt if dt else 0.0
        self._steer = steer
        values["SteeringWheelAngle"] = steer + (rnd() - 0.5) * 0.6
        values["VehicleSpeed"] = v
        values["LongitudinalAccel"] = accel + (rnd() - 0.5) * 0.1
        values["LateralAccel"] = mps * mps * curvature + (rnd() - 0.5) * 0.06
        values["YawRate"] = mps * curvature * _DEG_PER_RAD + (rnd() - 0.5) * 0.2
        if v > 0.0:
            values["WheelSpeedFL"] = v * (1 - spread) * (1 - slip_abs) + (rnd() - 0.5) * 0.1
            values["WheelSpeedFR"] = v * (1 + spread) * (1 - slip_abs * 0.8) + (rnd() - 0.5) * 0.1
            values["WheelSpeedRL"] = v * (1 - spread) * (1 - slip_abs * 0.6) + (rnd() - 0.5) * 0.1
            values["WheelSpeedRR"] = v * (1 + spread) * (1 - slip_abs * 0.7) + (rnd() - 0.5) * 0.1
        else:
            values["WheelSpeedFL"] = values["WheelSpeedFR"] = 0.0
            values["WheelSpeedRL"] = values["WheelSpeedRR"] = 0.0
        values["BrakePedalSwitch"] = 1 if pressure > 2.0 else 0
        values["ABSActive"] = abs_active
        values["ParkingBrake"] = 1 if lever == P else 0
        values["BrakePressure"] = max(0.0, pressure)
        values["EngineSpeed"] = self.rpm + (rnd() - 0.5) * 8.0 if self.rpm else 0.0
        values["AccelPedalPosition"] = pedal
        values["EngineLoad"] = (torque + 25.0) / _MAX_TORQUE * 100.0 if running else 0.0
        values["EngineTorque"] = torque
        values["GearLever"] = lever
        values["CurrentGear"] = gear
        values["TorqueConverterLocked"] = 1 if 3 <= gear <= 6 and self.rpm > 1300.0 else 0
        values["ShiftInProgress"] = 1 if running and self._shift_timer < 0.4 else 0
        values["FuelLevel"] = self.fuel_l / _TANK_L * 100.0 - accel * 0.05  # sloshing
        values["Odometer"] = self.odometer
        values["TripDistance"] = self.trip
        values["ServiceDistance"] = SERVICE_DUE_KM - self.odometer
        indicator = ph.indicator if tc < ph.indicator_end else 0
        values["TurnSignal"] = indicator

    def _slow(self, dt: float) -> None:
        rnd, values, ph = self._rnd, self.values, self.phase
        tc = self.t % self.cycle_length
        running = ph.engine == RUN
        ambient = self.ambient
        if running:  # warms up in a few minutes; the thermostat holds about 90 degC
            heat = 0.35 + 0.025 * self.power_kw
            cooling = 0.0 if ph.stuck_thermostat else max(0.0, self.coolant - 88.0) * 0.4
            self.coolant += (heat - cooling) * dt
            self.oil += (self.coolant - self.oil) * dt / 60.0
            self.trans_oil += (self.coolant * 0.9 - self.trans_oil) * dt / 90.0
        else:
            self.coolant -= (self.coolant - ambient) * 0.002 * dt
            self.oil -= (self.oil - ambient) * 0.002 * dt
        if self.coolant > 45.0:
            self.cabin += (21.0 - self.cabin) * dt / 90.0
        if ph.engine == CRANK:
            volts, current = _CRANK_VOLTS, -185.0
        elif running:
            volts = 14.2
            current = 3.0 + 20.0 * max(0.0, 1.0 - self._run_time / 60.0)
            self.soc = min(100.0, self.soc + current * dt / 3600.0 / 60.0 * 100.0)
            self._surface = _SURFACE_CHARGE
        else:
            self._surface -= self._surface * dt / _SURFACE_FADE
            # the key-on loads (pumps, lamps, modules) draw it down a little
            volts = _REST_VOLTS + self._surface - (0.05 if ph.ignition else 0.0)
            current = -4.0 if ph.ignition else -0.8
        self.volts += (volts - self.volts) * (1.0 if ph.engine else dt / (dt + 0.8))
        # key out: unlocked, the driver gets out (door open 2 s to 4.5 s) and locks it at 10 s;
        # unlocked again when the next cycle starts (door open for its first 1.2 s)
        parked = tc - ph.start if ph.label == "off" and ph.ignition == IGN_OFF else -1.0
        if tc < 1.2 or 0.0 <= parked < 10.0:
            self.locked = 0
        elif self.speed > 15.0 or parked >= 10.0:
            self.locked = 1
        ign_on = ph.ignition != IGN_OFF
        belt = 1 if tc > 3.0 and ign_on else 0
        intake = ambient + 4.0 + (self.coolant - ambient) * 0.15
        values["TransOilTemp"] = self.trans_oil
        values["IgnitionState"] = ph.ignition
        values["EngineRunning"] = 1 if running else 0
        values["DriverSeatbelt"] = belt
        values["BatteryVoltage"] = self.volts + (rnd() - 0.5) * 0.04
        values["BatteryCurrent"] = current + (rnd() - 0.5) * 1.0
        values["BatteryStateOfCharge"] = self.soc
        values["CoolantTemp"] = self.coolant
        values["EngineOilTemp"] = self.oil
        values["IntakeAirTemp"] = values["AirInletTemp"] = intake
        oil_pressure = 120.0 + self.rpm * 0.09 + max(0.0, 60.0 - self.oil) * 2.0
        values["OilPressure"] = oil_pressure if self.rpm > 300.0 else 0.0
        values["FuelRate"] = 0.75 + 0.34 * self.power_kw if running else 0.0
        values["FuelRange"] = self.fuel_l / 7.0 * 100.0
        values["DoorFL"] = 1 if tc < 1.2 or 2.0 <= parked < 4.5 else 0
        values["CentralLock"] = self.locked
        values["Headlights"] = 2 if running else 0
        values["CabinTemp"] = values["CabInteriorTemp"] = self.cabin
        values["OutsideTemp"] = values["AmbientAirTemp"] = ambient
        values["RoadSurfaceTemp"] = ambient - 1.5
        values["ClimateSetpoint"] = 21.0
        values["CheckEngineLamp"] = 1 if ign_on and not running and tc < 4.0 else 0  # bulb check
        values["OilPressureWarning"] = 1 if ign_on and self.rpm < 300.0 else 0
        values["BatteryWarning"] = 1 if ign_on and not running else 0
        values["LowFuelWarning"] = 1 if self.fuel_l < _TANK_L * 0.1 else 0
        values["SeatbeltWarning"] = 1 if not belt and self.speed > 10.0 else 0
        values["BarometricPressure"] = 101.3 + (rnd() - 0.5) * 0.4
        north_error = (rnd() - 0.5) * 2.0 * _GNSS_NOISE
        east_error = (rnd() - 0.5) * 2.0 * _GNSS_NOISE
        values["Latitude"], values["Longitude"] = self.where.position(east_error, north_error)
