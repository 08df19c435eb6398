"""Mode 01 (current data) and mode 02 (freeze frame) PIDs of SAE J1979.

A mode 01 request is ``01 PID [PID ...]`` (up to six PIDs in one request on CAN);
the reply is ``41`` followed, for each PID, by the PID byte and its data bytes
``A B C D ...``. The number of data bytes is fixed per PID, which is what lets
:func:`split_mode01` cut a reply holding several PIDs. A mode 02 reply is the
same with a frame number after each PID byte: ``42 PID FRAME A B ...``.

Each :class:`Pid` carries its formula (written here from the published scalings
of SAE J1979 / ISO 15031-5) and the :class:`Field` values it yields; a sample of
field ``ENGINE_RPM`` is named ``OBD.ENGINE_RPM``. Formulas that are integral
(``A``, ``A - 40``, ``256A + B``) give ``int``; every other gives ``float``,
unrounded (``100 * A / 255``).

PIDs 0x00, 0x20, ... 0xE0 are the "supported PIDs" bitmaps: their four bytes
tell which of the next 32 PIDs the ECU answers (:func:`supported_pids`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Value = int | float
Decoder = Callable[[bytes], tuple[Value, ...]]

#: PIDs whose four data bytes are the bitmap of the 32 PIDs after them
BITMAP_PIDS = tuple(range(0x00, 0x100, 0x20))
#: the most PIDs one mode 01 request may carry (ISO 15765-4)
MAX_PIDS_PER_REQUEST = 6


@dataclass(frozen=True)
class Field:
    """One value a PID carries: its signal name, unit and the range of its formula."""

    name: str
    unit: str
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True)
class Pid:
    """A mode 01 PID: its number, name, data size and how its bytes become values."""

    number: int
    name: str
    description: str
    size: int
    fields: tuple[Field, ...]
    #: the formula: data bytes -> values (checked for length by :meth:`decode` first)
    decoder: Decoder = field(repr=False, compare=False, default=lambda data: ())

    def decode(self, data: bytes) -> tuple[Value, ...]:
        """The values of ``data`` (the bytes after the PID byte), one per field."""
        if len(data) != self.size:
            raise ValueError(
                f"PID 0x{self.number:02X} ({self.name}) carries {self.size} data byte(s), "
                f"got {len(data)}: {data.hex(' ') or '(none)'}"
            )
        return self.decoder(data)


# -- formulas ------------------------------------------------------------------------------


def _u16(data: bytes, at: int = 0) -> int:
    return (data[at] << 8) | data[at + 1]


def _s16(data: bytes, at: int = 0) -> int:
    value = _u16(data, at)
    return value - 0x10000 if value & 0x8000 else value


def _percent(byte: int) -> float:
    """A as a share of 255, in percent: 0x00 -> 0.0, 0xFF -> 100.0."""
    return 100 * byte / 255


def _trim(byte: int) -> float:
    """A fuel trim: 0x80 is 0 %, 0x00 is -100 % (richer needed: leaner), 0xFF is +99.2 %."""
    return (byte - 128) * 100 / 128


def _ratio(raw: int) -> float:
    """An equivalence ratio (lambda) on 16 bits: 2 / 65536 per bit."""
    return raw * 2 / 65536


# -- the table -----------------------------------------------------------------------------

PIDS: dict[int, Pid] = {}


def _add(number: int, description: str, size: int, fields: Sequence[Field],
         decoder: Decoder | None = None, name: str | None = None) -> None:
    if number in PIDS:
        raise AssertionError(f"PID 0x{number:02X} defined twice")
    if decoder is None:
        decoder = _no_values
    pid_name = name if name is not None else fields[0].name
    PIDS[number] = Pid(number, pid_name, description, size, tuple(fields), decoder)


def _no_values(data: bytes) -> tuple[Value, ...]:
    return ()


def _one(name: str, unit: str, lo: float | None, hi: float | None,
         formula: Callable[[bytes], Value]) -> tuple[list[Field], Decoder]:
    """One field, one formula."""
    return [Field(name, unit, lo, hi)], lambda data: (formula(data),)


def _simple(number: int, description: str, size: int, name: str, unit: str,
            lo: float | None, hi: float | None, formula: Callable[[bytes], Value]) -> None:
    fields, decoder = _one(name, unit, lo, hi, formula)
    _add(number, description, size, fields, decoder)


def _percent_pid(number: int, name: str, description: str) -> None:
    _simple(number, description, 1, name, "%", 0.0, 100.0, lambda d: _percent(d[0]))


def _temperature_pid(number: int, name: str, description: str) -> None:
    _simple(number, description, 1, name, "degC", -40, 215, lambda d: d[0] - 40)


def _trim_pid(number: int, name: str, description: str) -> None:
    _simple(number, description, 1, name, "%", -100.0, 99.21875, lambda d: _trim(d[0]))


def _raw_pid(number: int, name: str, description: str, size: int = 1) -> None:
    """A PID whose first byte is an enumeration or a bit field, given as is."""
    _simple(number, description, size, name, "", 0, 255, lambda d: d[0])


for _base in BITMAP_PIDS:
    _first, _last = _base + 1, _base + 0x20
    _add(_base, f"PIDs supported in [{_first:02X}-{_last:02X}] (bitmap)", 4, [],
         name=f"PIDS_SUPPORTED_{_first:02X}_{_last:02X}")

_add(0x01, "Monitor status since DTCs cleared: MIL and number of stored DTCs "
     "(readiness monitors: agent.obd.readiness)", 4,
     [Field("MIL", "", 0, 1), Field("DTC_COUNT", "", 0, 127)],
     lambda d: (d[0] >> 7, d[0] & 0x7F), name="MONITOR_STATUS")
_add(0x02, "DTC that stored the freeze frame (mode 02; agent.obd.dtc.decode_dtc)", 2, [],
     name="FREEZE_DTC")
_add(0x03, "Fuel system status, systems 1 and 2 (bit field: open/closed loop)", 2,
     [Field("FUEL_SYSTEM_STATUS", "", 0, 255), Field("FUEL_SYSTEM_2_STATUS", "", 0, 255)],
     lambda d: (d[0], d[1]))
_percent_pid(0x04, "ENGINE_LOAD", "Calculated engine load")
_temperature_pid(0x05, "COOLANT_TEMPERATURE", "Engine coolant temperature")
_trim_pid(0x06, "SHORT_FUEL_TRIM_1", "Short term fuel trim, bank 1")
_trim_pid(0x07, "LONG_FUEL_TRIM_1", "Long term fuel trim, bank 1")
_trim_pid(0x08, "SHORT_FUEL_TRIM_2", "Short term fuel trim, bank 2")
_trim_pid(0x09, "LONG_FUEL_TRIM_2", "Long term fuel trim, bank 2")
_simple(0x0A, "Fuel pressure (gauge)", 1, "FUEL_PRESSURE", "kPa", 0, 765, lambda d: 3 * d[0])
_simple(0x0B, "Intake manifold absolute pressure", 1, "INTAKE_MANIFOLD_PRESSURE", "kPa",
        0, 255, lambda d: d[0])
_simple(0x0C, "Engine speed", 2, "ENGINE_RPM", "rpm", 0.0, 16383.75, lambda d: _u16(d) / 4)
_simple(0x0D, "Vehicle speed", 1, "VEHICLE_SPEED", "km/h", 0, 255, lambda d: d[0])
_simple(0x0E, "Ignition timing advance for cylinder 1 (before TDC)", 1, "TIMING_ADVANCE",
        "deg", -64.0, 63.5, lambda d: d[0] / 2 - 64)
_temperature_pid(0x0F, "INTAKE_AIR_TEMPERATURE", "Intake air temperature")
_simple(0x10, "Mass air flow sensor air flow rate", 2, "MASS_AIR_FLOW", "g/s", 0.0, 655.35,
        lambda d: _u16(d) / 100)
_percent_pid(0x11, "THROTTLE_POSITION", "Absolute throttle position")
_raw_pid(0x12, "SECONDARY_AIR_STATUS", "Commanded secondary air status (bit field)")
_raw_pid(0x13, "O2_SENSORS_PRESENT", "Oxygen sensors present, 2 banks (bitmap)")

# 0x14-0x1B: narrow band O2 sensors, bank 1 sensors 1-4 then bank 2 sensors 1-4 (the layout
# of PID 0x13; with PID 0x1D the same PIDs cover 4 banks of 2 sensors). A: voltage, 5 mV a bit;
# B: the short term fuel trim this sensor drives (0xFF: the sensor is not used for trim).
for _index in range(8):
    _bank, _sensor = _index // 4 + 1, _index % 4 + 1
    _tag = f"O2_B{_bank}S{_sensor}"
    _add(0x14 + _index, f"Oxygen sensor bank {_bank} sensor {_sensor}: voltage and "
         "short term fuel trim", 2,
         [Field(f"{_tag}_VOLTAGE", "V", 0.0, 1.275),
          Field(f"{_tag}_FUEL_TRIM", "%", -100.0, 99.21875)],
         lambda d: (d[0] / 200, _trim(d[1])))

_raw_pid(0x1C, "OBD_STANDARD", "OBD standards this vehicle conforms to (enumeration)")
_raw_pid(0x1D, "O2_SENSORS_PRESENT_4_BANKS", "Oxygen sensors present, 4 banks (bitmap)")
_simple(0x1E, "Auxiliary input status: power take-off active", 1, "POWER_TAKE_OFF", "",
        0, 1, lambda d: d[0] & 1)
_simple(0x1F, "Run time since engine start", 2, "RUN_TIME", "s", 0, 65535, _u16)
_simple(0x21, "Distance travelled with the MIL on", 2, "DISTANCE_WITH_MIL", "km",
        0, 65535, _u16)
_simple(0x22, "Fuel rail pressure, relative to manifold vacuum", 2,
        "FUEL_RAIL_PRESSURE_VACUUM", "kPa", 0.0, 5177.265, lambda d: _u16(d) * 0.079)
_simple(0x23, "Fuel rail gauge pressure (diesel, or gasoline direct injection)", 2,
        "FUEL_RAIL_GAUGE_PRESSURE", "kPa", 0, 655350, lambda d: 10 * _u16(d))

# 0x24-0x2B: wide range O2 sensors 1-8: AB equivalence ratio, CD voltage (8 V full scale)
for _index in range(8):
    _tag = f"O2_S{_index + 1}_WR_VOLTAGE"
    _add(0x24 + _index, f"Wide range oxygen sensor {_index + 1}: equivalence ratio and voltage",
         4, [Field(f"{_tag}_LAMBDA", "", 0.0, 65535 * 2 / 65536),
             Field(_tag, "V", 0.0, 65535 * 8 / 65536)],
         lambda d: (_ratio(_u16(d)), _u16(d, 2) * 8 / 65536), name=_tag)

_percent_pid(0x2C, "COMMANDED_EGR", "Commanded EGR")
_trim_pid(0x2D, "EGR_ERROR", "EGR error: actual versus commanded")
_percent_pid(0x2E, "COMMANDED_EVAPORATIVE_PURGE", "Commanded evaporative purge")
_percent_pid(0x2F, "FUEL_LEVEL", "Fuel tank level input")
_simple(0x30, "Warm-ups since DTCs cleared", 1, "WARMUPS_SINCE_CLEAR", "", 0, 255,
        lambda d: d[0])
_simple(0x31, "Distance travelled since DTCs cleared", 2, "DISTANCE_SINCE_CLEAR", "km",
        0, 65535, _u16)
_simple(0x32, "Evaporative system vapour pressure (signed)", 2, "EVAP_VAPOR_PRESSURE", "Pa",
        -8192.0, 8191.75, lambda d: _s16(d) / 4)
_simple(0x33, "Absolute barometric pressure", 1, "BAROMETRIC_PRESSURE", "kPa", 0, 255,
        lambda d: d[0])

# 0x34-0x3B: wide range O2 sensors 1-8: AB equivalence ratio, CD current (1/256 mA, offset -128)
for _index in range(8):
    _tag = f"O2_S{_index + 1}_WR_CURRENT"
    _add(0x34 + _index, f"Wide range oxygen sensor {_index + 1}: equivalence ratio and current",
         4, [Field(f"{_tag}_LAMBDA", "", 0.0, 65535 * 2 / 65536),
             Field(_tag, "mA", -128.0, 65535 / 256 - 128)],
         lambda d: (_ratio(_u16(d)), _u16(d, 2) / 256 - 128), name=_tag)

for _number, _where in ((0x3C, "B1S1"), (0x3D, "B2S1"), (0x3E, "B1S2"), (0x3F, "B2S2")):
    _simple(_number, f"Catalyst temperature, bank {_where[1]} sensor {_where[3]}", 2,
            f"CATALYST_TEMPERATURE_{_where}", "degC", -40.0, 6513.5,
            lambda d: _u16(d) / 10 - 40)

_add(0x41, "Monitor status this drive cycle (bit layout of PID 01 bytes B-D)", 4, [],
     name="MONITOR_STATUS_THIS_DRIVE_CYCLE")
_simple(0x42, "Control module voltage", 2, "CONTROL_MODULE_VOLTAGE", "V", 0.0, 65.535,
        lambda d: _u16(d) / 1000)
_simple(0x43, "Absolute load value", 2, "ABSOLUTE_LOAD", "%", 0.0, 65535 * 100 / 255,
        lambda d: _u16(d) * 100 / 255)
_simple(0x44, "Commanded equivalence ratio (lambda)", 2, "COMMANDED_EQUIVALENCE_RATIO", "",
        0.0, 65535 * 2 / 65536, lambda d: _ratio(_u16(d)))
_percent_pid(0x45, "RELATIVE_THROTTLE_POSITION", "Relative throttle position")
_temperature_pid(0x46, "AMBIENT_AIR_TEMPERATURE", "Ambient air temperature")
_percent_pid(0x47, "THROTTLE_POSITION_B", "Absolute throttle position B")
_percent_pid(0x48, "THROTTLE_POSITION_C", "Absolute throttle position C")
_percent_pid(0x49, "ACCELERATOR_POSITION_D", "Accelerator pedal position D")
_percent_pid(0x4A, "ACCELERATOR_POSITION_E", "Accelerator pedal position E")
_percent_pid(0x4B, "ACCELERATOR_POSITION_F", "Accelerator pedal position F")
_percent_pid(0x4C, "COMMANDED_THROTTLE_ACTUATOR", "Commanded throttle actuator")
_simple(0x4D, "Time run with the MIL on", 2, "TIME_WITH_MIL", "min", 0, 65535, _u16)
_simple(0x4E, "Time since DTCs cleared", 2, "TIME_SINCE_CLEAR", "min", 0, 65535, _u16)
_raw_pid(0x51, "FUEL_TYPE", "Fuel type (enumeration: 1 gasoline, 4 diesel, 8 electric...)")
_percent_pid(0x52, "ETHANOL_PERCENT", "Ethanol fuel share")
_simple(0x53, "Absolute evaporative system vapour pressure", 2, "EVAP_VAPOR_PRESSURE_ABSOLUTE",
        "kPa", 0.0, 327.675, lambda d: _u16(d) / 200)
_simple(0x54, "Evaporative system vapour pressure, wide range (signed)", 2,
        "EVAP_VAPOR_PRESSURE_WIDE", "Pa", -32768, 32767, _s16)

# 0x55-0x58: secondary (post-catalyst) O2 sensor fuel trims, A for one bank, B for another
for _number, _term, _banks in ((0x55, "SHORT", (1, 3)), (0x56, "LONG", (1, 3)),
                               (0x57, "SHORT", (2, 4)), (0x58, "LONG", (2, 4))):
    _add(_number, f"{_term.capitalize()} term secondary oxygen sensor trim, banks "
         f"{_banks[0]} and {_banks[1]}", 2,
         [Field(f"{_term}_O2_TRIM_B{_bank}", "%", -100.0, 99.21875) for _bank in _banks],
         lambda d: (_trim(d[0]), _trim(d[1])))

_simple(0x59, "Fuel rail absolute pressure", 2, "FUEL_RAIL_ABSOLUTE_PRESSURE", "kPa",
        0, 655350, lambda d: 10 * _u16(d))
_percent_pid(0x5A, "RELATIVE_ACCELERATOR_POSITION", "Relative accelerator pedal position")
_percent_pid(0x5B, "HYBRID_BATTERY_REMAINING", "Hybrid battery pack remaining life")
_temperature_pid(0x5C, "OIL_TEMPERATURE", "Engine oil temperature")
_simple(0x5D, "Fuel injection timing", 2, "FUEL_INJECTION_TIMING", "deg",
        -210.0, 65535 / 128 - 210, lambda d: _u16(d) / 128 - 210)
_simple(0x5E, "Engine fuel rate", 2, "ENGINE_FUEL_RATE", "L/h", 0.0, 3276.75,
        lambda d: _u16(d) / 20)
_raw_pid(0x5F, "EMISSION_REQUIREMENTS", "Emission requirements the vehicle is designed to")
_simple(0x61, "Driver's demand engine percent torque", 1, "DRIVER_DEMAND_TORQUE", "%",
        -125, 130, lambda d: d[0] - 125)
_simple(0x62, "Actual engine percent torque", 1, "ACTUAL_ENGINE_TORQUE", "%",
        -125, 130, lambda d: d[0] - 125)
_simple(0x63, "Engine reference torque", 2, "ENGINE_REFERENCE_TORQUE", "Nm", 0, 65535, _u16)
_add(0x64, "Engine percent torque at idle and at engine points 1 to 4", 5,
     [Field(f"ENGINE_TORQUE_{_point}", "%", -125, 130)
      for _point in ("IDLE", "POINT_1", "POINT_2", "POINT_3", "POINT_4")],
     lambda d: tuple(byte - 125 for byte in d), name="ENGINE_TORQUE_IDLE")
_simple(0xA6, "Odometer", 4, "ODOMETER", "km", 0.0, 0xFFFFFFFF / 10,
        lambda d: ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) / 10)

PIDS = dict(sorted(PIDS.items()))
BY_NAME: dict[str, Pid] = {pid.name: pid for pid in PIDS.values()}
if len(BY_NAME) != len(PIDS):
    raise AssertionError("two PIDs share a name")
#: every field's name -> its PID (field names are sample names: they must be unique)
BY_FIELD: dict[str, Pid] = {f.name: pid for pid in PIDS.values() for f in pid.fields}
if len(BY_FIELD) != sum(len(pid.fields) for pid in PIDS.values()):
    raise AssertionError("two fields share a name")

#: other names people type for a few PIDs (python-obd's and the usual short ones)
ALIASES: dict[str, str] = {
    "RPM": "ENGINE_RPM",
    "SPEED": "VEHICLE_SPEED",
    "COOLANT_TEMP": "COOLANT_TEMPERATURE",
    "LOAD": "ENGINE_LOAD",
    "MAF": "MASS_AIR_FLOW",
    "MAP": "INTAKE_MANIFOLD_PRESSURE",
    "INTAKE_PRESSURE": "INTAKE_MANIFOLD_PRESSURE",
    "INTAKE_TEMP": "INTAKE_AIR_TEMPERATURE",
    "AMBIANT_AIR_TEMP": "AMBIENT_AIR_TEMPERATURE",
    "AMBIENT_AIR_TEMP": "AMBIENT_AIR_TEMPERATURE",
    "OIL_TEMP": "OIL_TEMPERATURE",
    "THROTTLE_POS": "THROTTLE_POSITION",
    "FUEL_RATE": "ENGINE_FUEL_RATE",
    "STATUS": "MONITOR_STATUS",
    "FUEL_STATUS": "FUEL_SYSTEM_STATUS",
    "RUN_TIME_MIL": "TIME_WITH_MIL",
    "ELM_VOLTAGE": "CONTROL_MODULE_VOLTAGE",
    "VOLTAGE": "CONTROL_MODULE_VOLTAGE",
    "BAROMETRIC": "BAROMETRIC_PRESSURE",
}
if not set(ALIASES.values()) <= set(BY_NAME):
    raise AssertionError("an alias names no PID")


def _hex_number(text: str) -> int | None:
    """The PID number in ``0x0C``, ``0C`` or ``010C`` (mode 01 and PID), else None."""
    digits = text[2:] if text.startswith("0X") else text
    if not digits or any(c not in "0123456789ABCDEF" for c in digits):
        return None
    if text.startswith("0X") and len(digits) <= 2:
        return int(digits, 16)
    if len(digits) == 2:
        return int(digits, 16)
    if len(digits) == 4 and digits.startswith("01"):
        return int(digits[2:], 16)
    return None


def lookup(spec: str) -> Pid:
    """The PID a person or a configuration names.

    Accepts its name in any case (``ENGINE_RPM``, ``engine_rpm``), an alias
    (``RPM``, ``SPEED``, ``COOLANT_TEMP``...), the name of one of its other fields
    (``DTC_COUNT``: PID 01), or its number in hex: ``0x0C``, ``0C``, or with the mode
    ``010C``. Raises KeyError naming the close matches.
    """
    text = spec.strip().upper().replace("-", "_").replace(" ", "_")
    if text in BY_NAME:
        return BY_NAME[text]
    if text in ALIASES:
        return BY_NAME[ALIASES[text]]
    if text in BY_FIELD:
        return BY_FIELD[text]
    number = _hex_number(text)
    if number is not None:
        if number in PIDS:
            return PIDS[number]
        raise KeyError(f"PID 0x{number:02X} ({spec!r}) is not one bavard knows how to decode")
    close = difflib.get_close_matches(text, [*BY_NAME, *ALIASES], n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown PID {spec!r}{hint}")


def supported_pids(base: int, data: bytes) -> set[int]:
    """The PIDs set in the 4-byte bitmap ``data`` that PID ``base`` (0x00, 0x20...) answered.

    The most significant bit of the first byte is PID base+1, the least significant
    bit of the last byte is PID base+32 (itself the next bitmap when set).
    """
    if base not in BITMAP_PIDS:
        raise ValueError(f"PID 0x{base:02X} is not a supported-PIDs bitmap (0x00, 0x20, ... 0xE0)")
    if len(data) != 4:
        raise ValueError(f"supported-PIDs bitmap of PID 0x{base:02X} must be 4 bytes, "
                         f"got {len(data)}: {data.hex(' ') or '(none)'}")
    bits = int.from_bytes(data, "big")
    return {base + 1 + i for i in range(32) if bits & (1 << (31 - i))}


def _size(pid: int, offset: int, payload: bytes) -> int:
    known = PIDS.get(pid)
    if known is None:
        raise ValueError(f"unknown PID 0x{pid:02X} at byte {offset} of reply "
                         f"{payload.hex(' ')}: its length is unknown, cannot split the reply")
    return known.size


def split_mode01(payload: bytes) -> list[tuple[int, bytes]]:
    """Cut a whole mode 01 reply into ``(pid, data)`` pairs, in reply order.

    ``41 0C 1A F8 0D 32`` -> ``[(0x0C, b"\\x1a\\xf8"), (0x0D, b"\\x32")]``. The sizes come
    from :data:`PIDS`. ValueError when the first byte is not 0x41, a PID is unknown
    (the rest cannot be cut), or the data of a PID is cut short.
    """
    if not payload or payload[0] != 0x41:
        raise ValueError(f"not a mode 01 reply (first byte must be 41): "
                         f"{payload.hex(' ') or '(empty)'}")
    if len(payload) < 2:
        raise ValueError("mode 01 reply holds no PID: 41")
    parts: list[tuple[int, bytes]] = []
    offset = 1
    while offset < len(payload):
        pid = payload[offset]
        size = _size(pid, offset, payload)
        data = payload[offset + 1:offset + 1 + size]
        if len(data) != size:
            raise ValueError(f"PID 0x{pid:02X} truncated in reply {payload.hex(' ')}: "
                             f"{size} data byte(s) expected, {len(data)} left")
        parts.append((pid, data))
        offset += 1 + size
    return parts


def split_mode02(payload: bytes) -> list[tuple[int, int, bytes]]:
    """Cut a whole mode 02 (freeze frame) reply into ``(pid, frame, data)`` triples.

    ``42 02 00 01 43 0C 00 1A F8`` -> ``[(0x02, 0, b"\\x01\\x43"), (0x0C, 0, b"\\x1a\\xf8")]``:
    PID 0x02 is the DTC that stored the frame (two bytes, see ``dtc.decode_dtc``).
    Same errors as :func:`split_mode01`, for a first byte other than 0x42.
    """
    if not payload or payload[0] != 0x42:
        raise ValueError(f"not a mode 02 reply (first byte must be 42): "
                         f"{payload.hex(' ') or '(empty)'}")
    if len(payload) < 2:
        raise ValueError("mode 02 reply holds no PID: 42")
    parts: list[tuple[int, int, bytes]] = []
    offset = 1
    while offset < len(payload):
        pid = payload[offset]
        size = _size(pid, offset, payload)
        if offset + 1 >= len(payload):
            raise ValueError(f"PID 0x{pid:02X} without its frame number in reply "
                             f"{payload.hex(' ')}")
        frame = payload[offset + 1]
        data = payload[offset + 2:offset + 2 + size]
        if len(data) != size:
            raise ValueError(f"PID 0x{pid:02X} truncated in reply {payload.hex(' ')}: "
                             f"{size} data byte(s) expected, {len(data)} left")
        parts.append((pid, frame, data))
        offset += 2 + size
    return parts


def mode01_request(pids: Sequence[int]) -> bytes:
    """The payload asking for ``pids`` in one mode 01 request: ``01 0C 0D``."""
    if not pids:
        raise ValueError("a mode 01 request needs at least one PID")
    if len(pids) > MAX_PIDS_PER_REQUEST:
        raise ValueError(f"a mode 01 request carries at most {MAX_PIDS_PER_REQUEST} PIDs, "
                         f"got {len(pids)}")
    for pid in pids:
        if not 0 <= pid <= 0xFF:
            raise ValueError(f"PID {pid} is not a byte (0x00-0xFF)")
    return bytes([0x01, *pids])
