"""Short descriptions of the generic (SAE J2012 / ISO 15031-6) trouble codes a garage
meets most, written for bavard.

Only generic codes are here: their meaning is the same on every vehicle. A code
absent from this table may still be a valid generic one; manufacturer-specific codes
(P1xxx, C1xxx...) mean what each manufacturer says and are never described.

Abbreviations: ECT engine coolant temperature, IAT intake air temperature, MAF mass
air flow, MAP manifold absolute pressure, HO2S heated oxygen sensor, EGR exhaust gas
recirculation, EVAP evaporative emission system, TCC torque converter clutch,
B1S2 bank 1 sensor 2 (bank 1 holds cylinder 1; sensor 1 is before the catalyst).
"""

from __future__ import annotations


def _o2_sensor_codes(first: int, where: str) -> dict[str, str]:
    """The six codes of one oxygen sensor position, which J2012 numbers in a run.

    ``first`` is the code's number read as decimal digits: 130 for P0130.
    """
    faults = ("circuit", "circuit low voltage", "circuit high voltage",
              "circuit slow response", "circuit no activity detected", "heater circuit")
    return {f"P{first + i:04d}": f"O2 sensor {fault} ({where})"
            for i, fault in enumerate(faults)}


def _numbered(first: int, count: int, text: str) -> dict[str, str]:
    """A run of codes numbered per cylinder, gear...: ``text`` holds ``{n}``; ``first``
    is the first code's number read as decimal digits (301 for P0301)."""
    return {f"P{first + i:04d}": text.format(n=i + 1) for i in range(count)}


DESCRIPTIONS: dict[str, str] = {
    # -- P00xx: camshaft timing, O2 heaters, fuel pressure ----------------------------------
    "P0010": "Intake (A) camshaft position actuator circuit (bank 1)",
    "P0011": "Intake (A) camshaft timing over-advanced or system performance (bank 1)",
    "P0012": "Intake (A) camshaft timing over-retarded (bank 1)",
    "P0013": "Exhaust (B) camshaft position actuator circuit (bank 1)",
    "P0014": "Exhaust (B) camshaft timing over-advanced or system performance (bank 1)",
    "P0016": "Crankshaft / camshaft position correlation (bank 1 sensor A)",
    "P0017": "Crankshaft / camshaft position correlation (bank 1 sensor B)",
    "P0020": "Intake (A) camshaft position actuator circuit (bank 2)",
    "P0021": "Intake (A) camshaft timing over-advanced or system performance (bank 2)",
    "P0030": "HO2S heater control circuit (B1S1)",
    "P0036": "HO2S heater control circuit (B1S2)",
    "P0068": "MAP / MAF and throttle position correlation",
    "P0087": "Fuel rail / system pressure too low",
    "P0088": "Fuel rail / system pressure too high",
    "P0089": "Fuel pressure regulator 1 performance",
    "P0093": "Fuel system leak detected, large leak",
    # -- P01xx: air and fuel metering sensors -------------------------------------------------
    "P0100": "MAF or volume air flow sensor A circuit",
    "P0101": "MAF sensor A circuit range / performance",
    "P0102": "MAF sensor A circuit low",
    "P0103": "MAF sensor A circuit high",
    "P0104": "MAF sensor A circuit intermittent",
    "P0105": "MAP / barometric pressure sensor circuit",
    "P0106": "MAP / barometric pressure sensor circuit range / performance",
    "P0107": "MAP / barometric pressure sensor circuit low",
    "P0108": "MAP / barometric pressure sensor circuit high",
    "P0110": "IAT sensor 1 circuit (bank 1)",
    "P0111": "IAT sensor 1 circuit range / performance (bank 1)",
    "P0112": "IAT sensor 1 circuit low (bank 1)",
    "P0113": "IAT sensor 1 circuit high (bank 1)",
    "P0115": "ECT sensor 1 circuit",
    "P0116": "ECT sensor 1 circuit range / performance",
    "P0117": "ECT sensor 1 circuit low",
    "P0118": "ECT sensor 1 circuit high",
    "P0120": "Throttle / pedal position sensor A circuit",
    "P0121": "Throttle / pedal position sensor A circuit range / performance",
    "P0122": "Throttle / pedal position sensor A circuit low",
    "P0123": "Throttle / pedal position sensor A circuit high",
    "P0125": "Coolant temperature too low for closed loop fuel control",
    "P0128": "Coolant thermostat: coolant below thermostat regulating temperature",
    **_o2_sensor_codes(130, "B1S1"),
    **_o2_sensor_codes(136, "B1S2"),
    **_o2_sensor_codes(142, "B1S3"),
    **_o2_sensor_codes(150, "B2S1"),
    **_o2_sensor_codes(156, "B2S2"),
    "P0170": "Fuel trim (bank 1)",
    "P0171": "System too lean (bank 1)",
    "P0172": "System too rich (bank 1)",
    "P0173": "Fuel trim (bank 2)",
    "P0174": "System too lean (bank 2)",
    "P0175": "System too rich (bank 2)",
    "P0190": "Fuel rail pressure sensor A circuit",
    "P0191": "Fuel rail pressure sensor A circuit range / performance",
    "P0192": "Fuel rail pressure sensor A circuit low",
    "P0193": "Fuel rail pressure sensor A circuit high",
    "P0196": "Engine oil temperature sensor range / performance",
    "P0197": "Engine oil temperature sensor low",
    "P0198": "Engine oil temperature sensor high",
    # -- P02xx: injectors, throttle B, boost ----------------------------------------------------
    "P0200": "Injector circuit / open",
    **_numbered(201, 8, "Injector circuit / open, cylinder {n}"),
    "P0217": "Engine coolant over temperature condition",
    "P0219": "Engine overspeed condition",
    "P0220": "Throttle / pedal position sensor B circuit",
    "P0221": "Throttle / pedal position sensor B circuit range / performance",
    "P0222": "Throttle / pedal position sensor B circuit low",
    "P0223": "Throttle / pedal position sensor B circuit high",
    "P0230": "Fuel pump primary circuit",
    "P0234": "Turbocharger / supercharger A overboost condition",
    "P0299": "Turbocharger / supercharger A underboost condition",
    # -- P03xx: ignition and misfire -----------------------------------------------------------
    "P0300": "Random / multiple cylinder misfire detected",
    **_numbered(301, 8, "Cylinder {n} misfire detected"),
    "P0325": "Knock sensor 1 circuit (bank 1 or single sensor)",
    "P0326": "Knock sensor 1 circuit range / performance (bank 1 or single sensor)",
    "P0327": "Knock sensor 1 circuit low (bank 1 or single sensor)",
    "P0328": "Knock sensor 1 circuit high (bank 1 or single sensor)",
    "P0335": "Crankshaft position sensor A circuit",
    "P0336": "Crankshaft position sensor A circuit range / performance",
    "P0340": "Camshaft position sensor A circuit (bank 1 or single sensor)",
    "P0341": "Camshaft position sensor A circuit range / performance (bank 1 or single sensor)",
    "P0351": "Ignition coil A primary / secondary circuit",
    "P0352": "Ignition coil B primary / secondary circuit",
    "P0353": "Ignition coil C primary / secondary circuit",
    "P0354": "Ignition coil D primary / secondary circuit",
    "P0380": "Glow plug / heater circuit A",
    # -- P04xx: EGR, secondary air, catalyst, EVAP ---------------------------------------------
    "P0400": "EGR A flow",
    "P0401": "EGR A flow insufficient detected",
    "P0402": "EGR A flow excessive detected",
    "P0403": "EGR A control circuit",
    "P0404": "EGR A control circuit range / performance",
    "P0405": "EGR sensor A circuit low",
    "P0406": "EGR sensor A circuit high",
    "P0410": "Secondary air injection system",
    "P0411": "Secondary air injection system incorrect flow detected",
    "P0420": "Catalyst system efficiency below threshold (bank 1)",
    "P0421": "Warm-up catalyst efficiency below threshold (bank 1)",
    "P0430": "Catalyst system efficiency below threshold (bank 2)",
    "P0440": "EVAP system",
    "P0441": "EVAP system incorrect purge flow",
    "P0442": "EVAP system leak detected (small leak)",
    "P0443": "EVAP purge control valve circuit",
    "P0446": "EVAP vent control circuit",
    "P0449": "EVAP vent valve / solenoid circuit",
    "P0451": "EVAP pressure sensor range / performance",
    "P0452": "EVAP pressure sensor low",
    "P0453": "EVAP pressure sensor high",
    "P0455": "EVAP system leak detected (large leak or no flow)",
    "P0456": "EVAP system leak detected (very small leak)",
    "P0457": "EVAP system leak detected (fuel cap loose or off)",
    "P0461": "Fuel level sensor A circuit range / performance",
    "P0462": "Fuel level sensor A circuit low",
    "P0463": "Fuel level sensor A circuit high",
    "P0480": "Cooling fan 1 control circuit",
    # -- P05xx: vehicle speed, idle, auxiliary inputs ------------------------------------------
    "P0500": "Vehicle speed sensor A",
    "P0501": "Vehicle speed sensor A range / performance",
    "P0505": "Idle air control system",
    "P0506": "Idle air control system: RPM lower than expected",
    "P0507": "Idle air control system: RPM higher than expected",
    "P0520": "Engine oil pressure sensor / switch circuit",
    "P0521": "Engine oil pressure sensor / switch range / performance",
    "P0524": "Engine oil pressure too low",
    "P0530": "A/C refrigerant pressure sensor A circuit",
    "P0562": "System voltage low",
    "P0563": "System voltage high",
    "P0571": "Brake switch A circuit",
    # -- P06xx: control module and outputs -----------------------------------------------------
    "P0600": "Serial communication link",
    "P0601": "Internal control module memory checksum error",
    "P0602": "Control module programming error",
    "P0603": "Internal control module keep-alive memory (KAM) error",
    "P0604": "Internal control module random access memory (RAM) error",
    "P0605": "Internal control module read only memory (ROM) error",
    "P0606": "Control module processor",
    "P0607": "Control module performance",
    "P0620": "Generator control circuit",
    "P0627": "Fuel pump A control circuit / open",
    "P0641": "Sensor reference voltage A circuit / open",
    "P0650": "Malfunction indicator lamp (MIL) control circuit",
    # -- P07xx: transmission -------------------------------------------------------------------
    "P0700": "Transmission control system (MIL request): read the transmission module's codes",
    "P0705": "Transmission range sensor A circuit (PRNDL input)",
    "P0710": "Transmission fluid temperature sensor A circuit",
    "P0715": "Input / turbine speed sensor A circuit",
    "P0717": "Input / turbine speed sensor A circuit no signal",
    "P0720": "Output speed sensor circuit",
    "P0725": "Engine speed input circuit",
    "P0730": "Incorrect gear ratio",
    **_numbered(731, 4, "Gear {n} incorrect ratio"),
    "P0740": "Torque converter clutch (TCC) solenoid circuit / open",
    "P0741": "TCC solenoid circuit performance or stuck off",
    "P0750": "Shift solenoid A",
    "P0755": "Shift solenoid B",
    "P0760": "Shift solenoid C",
    "P0765": "Shift solenoid D",
    # -- P2xxx ---------------------------------------------------------------------------------
    "P2002": "Diesel particulate filter efficiency below threshold (bank 1)",
    "P2096": "Post-catalyst fuel trim system too lean (bank 1)",
    "P2097": "Post-catalyst fuel trim system too rich (bank 1)",
    "P2135": "Throttle / pedal position sensor A / B voltage correlation",
    "P2138": "Throttle / pedal position sensor D / E voltage correlation",
    "P2187": "System too lean at idle (bank 1)",
    "P2188": "System too rich at idle (bank 1)",
    "P2195": "O2 sensor signal biased / stuck lean (B1S1)",
    "P2196": "O2 sensor signal biased / stuck rich (B1S1)",
    "P2270": "O2 sensor signal biased / stuck lean (B1S2)",
    "P2271": "O2 sensor signal biased / stuck rich (B1S2)",
    # -- C0xxx: chassis ------------------------------------------------------------------------
    "C0035": "Left front wheel speed sensor circuit",
    "C0040": "Right front wheel speed sensor circuit",
    "C0045": "Left rear wheel speed sensor circuit",
    "C0050": "Right rear wheel speed sensor circuit",
    # -- B0xxx: body ---------------------------------------------------------------------------
    "B0001": "Driver frontal airbag stage 1 deployment control",
    "B0002": "Driver frontal airbag stage 2 deployment control",
    # -- U0xxx: network ------------------------------------------------------------------------
    "U0001": "High speed CAN communication bus",
    "U0073": "Control module communication bus A off",
    "U0100": "Lost communication with ECM / PCM A",
    "U0101": "Lost communication with transmission control module (TCM)",
    "U0121": "Lost communication with anti-lock brake system (ABS) control module",
    "U0131": "Lost communication with power steering control module",
    "U0140": "Lost communication with body control module (BCM)",
    "U0151": "Lost communication with restraints control module",
    "U0155": "Lost communication with instrument panel cluster (IPC) control module",
    "U0164": "Lost communication with HVAC control module",
}
