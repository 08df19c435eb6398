"""The agent's configuration: one TOML file read into frozen dataclasses.

Every problem in a file is collected and reported at once, each line led by
its key path (``channels[0].dbc: file not found: x.dbc``). Unknown keys are
errors (with the closest known key as a hint). Relative paths are relative to
the directory of the file. Every number has a range (:mod:`agent.ranges`).
See ``docs/config.md`` for the reference and a commented example.

This module checks the file alone. That the DBCs it names load, that the
upload endpoint and its TLS files are usable, and which globs match no signal
is :func:`agent.validation.load_usable_config`, what ``bavard run`` and
``bavard config check`` both use.

The file is read only when it is a regular file of at most
:data:`MAX_CONFIG_BYTES` (a FIFO, ``/dev/zero`` or a huge file is refused
without reading it), and every failure to read or parse it, whatever the
parser raised, is a :class:`~agent.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.control.settings import RANGES as CONTROL_RANGES
from agent.control.settings import ControlConfig
from agent.errors import ConfigError
from agent.insights.settings import RANGES as INSIGHTS_RANGES
from agent.insights.settings import InsightsConfig, read_insights
from agent.obd.settings import (
    BAUDRATE,
    DTC_INTERVAL,
    PERIOD,
    PROTOCOLS,
    TIMEOUT,
    ObdSettings,
    parse_pids,
)
from agent.privacy.purposes import BUILTIN as BUILTIN_PURPOSES
from agent.privacy.purposes import GEOHASH, LOCAL_ONLY, MAX_PURPOSES, ZONE, Purpose
from agent.privacy.purposes import KEYS as PURPOSE_KEYS
from agent.privacy.purposes import NAME as PURPOSE_NAME
from agent.privacy.purposes import merge as merge_purpose
from agent.ranges import DAY, MiB, Range, show
from agent.sources.gps_settings import GpsSettings, read_gps_keys
from agent.store.settings import RANGES as STORE_RANGES
from agent.store.settings import StoreConfig
from agent.upload.settings import PORTS, UploadConfig, VehicleConfig
from agent.upload.settings import RANGES as UPLOAD_RANGES

T = TypeVar("T")

DEFAULT_PATH = Path("/etc/bavard/bavard.toml")
MODES = ("decoded", "raw")
READERS = ("auto", "bcm", "raw", "python-can")  # channels[].reader
# the keys of an OBD-II channel (agent.obd.settings)
OBD_KEYS = frozenset({"obd", "port", "baudrate", "protocol", "pids", "dtc_interval",
                      "extended", "timeout"})

MAX_CONFIG_BYTES = MiB  # a configuration file is refused above this size
MAX_CHANNELS = 64
MAX_DBCS = 64  # per channel
MAX_RULES = 10_000  # [[signals]] tables
MAX_GLOBS = 10_000  # per list: selection.include, .exclude, .volatile
MAX_INTERFACES = 1_000  # upload.interfaces entries
MAX_DESTINATIONS = 16
DESTINATION_NAME = PURPOSE_NAME
RESERVED_DESTINATIONS = frozenset({"main", "local"})  # [upload]'s, the local buffer's

# The ranges of the numbers read here ([store] and [upload] keep theirs beside
# their dataclasses); docs/config.md lists every one.
BITRATE = Range(1_000, 1_000_000)
DATA_BITRATE = Range(1_000, 16_000_000)
SEED = Range(0, 2**32 - 1)
SPEED = Range(0, 1_000)
CHANNEL_NUMBER = Range(0, 65_535)
MIN_PERIOD = Range(0, DAY)
MAX_PERIOD = Range(0, DAY, open_low=True)
DEADBAND = Range(0, 1e12)


def number_ranges() -> dict[str, Range]:
    """Every number of the configuration with its range, by key (``channels[].speed``);
    docs/config.md lists each one."""
    return {
        "channels[].bitrate": BITRATE,
        "channels[].data_bitrate": DATA_BITRATE,
        "channels[].seed": SEED,
        "channels[].speed": SPEED,
        "channels[].channel": CHANNEL_NUMBER,
        "channels[].baudrate": BAUDRATE,
        "channels[].dtc_interval": DTC_INTERVAL,
        "channels[].timeout": TIMEOUT,
        "channels[].pids.*": PERIOD,
        "signals[].min_period": MIN_PERIOD,
        "signals[].max_period": MAX_PERIOD,
        "signals[].deadband": DEADBAND,
        **{f"store.{name}": allowed for name, allowed in STORE_RANGES.items()},
        **{f"upload.{name}": allowed for name, allowed in UPLOAD_RANGES.items()},
        **{f"control.{name}": allowed for name, allowed in CONTROL_RANGES.items()},
        "upload.url (port)": PORTS,
        "purposes.*.geohash": GEOHASH,
        "purposes.*.zone_min_m": ZONE,
        "purposes.*.zone_max_m": ZONE,
        **{f"insights.{name}": allowed for name, allowed in INSIGHTS_RANGES.items()},
    }


@dataclass(frozen=True)
class ChannelConfig:
    """One CAN channel: a live python-can bus, a log to replay, or the simulator."""

    name: str
    dbc: tuple[Path, ...] = ()
    # live bus (python-can)
    interface: str | None = None
    channel: str | None = None
    bitrate: int | None = None
    fd: bool = False
    data_bitrate: int | None = None
    # how a live bus is read: "auto" (SocketCAN: CAN_BCM content filtering for a decoded
    # channel, else a raw CAN_RAW socket; any other interface: python-can), or one of
    # "bcm", "raw", "python-can" (see agent.sources.can_bus)
    reader: str = "auto"
    # log replay
    log: Path | None = None
    # simulated vehicle
    simulate: bool = False
    seed: int = 1
    # the simulator's first frame, seconds since the epoch (None: the service's start)
    start: float | None = None
    # replay and simulator pace: 0 = as fast as possible, 1 = real time, N = xN
    speed: float = 1.0
    # "decoded": samples through the DBCs; "raw": the frames themselves are stored
    # (decoded later, off the vehicle)
    mode: str = "decoded"
    # OBD-II (``obd = true``): its adapter and what it asks for
    obd: ObdSettings | None = None
    # a GPS (``gpsd = ...`` or ``nmea = ...``): where its fixes come from
    gps: GpsSettings | None = None

    @property
    def kind(self) -> str:
        """The source registry key for this channel."""
        if self.obd is not None:
            return "obd"
        if self.gps is not None:
            return self.gps.kind
        if self.log is not None:
            return "replay"
        if self.simulate:
            return "simulator"
        return "can"


@dataclass(frozen=True)
class SignalRule:
    """How often and when to keep a signal; the first rule whose glob matches wins."""

    match: str
    min_period: float = 0.0  # seconds between kept samples; 0 = keep every one
    on_change: bool = False  # keep a sample only when the value moved
    deadband: float = 0.0  # with on_change: how far it must move (absolute)
    max_period: float | None = None  # with on_change: keep one at least this often
    purposes: tuple[str, ...] | None = None  # who may receive it (None: each purpose's globs)


@dataclass(frozen=True)
class SelectionConfig:
    """Which signals are decoded at all. Globs match ``Message.Signal``;
    a glob without a dot matches the signal name alone.

    ``volatile``: patterns that add (``glob``) or remove (``!glob``) counters and
    checksums, on top of the DBC attribute and the names (:mod:`agent.volatile`).
    Counters and checksums are left out of the selection unless ``include_volatile``
    or an ``include`` entry names one without wildcards."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    volatile: tuple[str, ...] = ()
    include_volatile: bool = False


@dataclass(frozen=True)
class Config:
    channels: tuple[ChannelConfig, ...]
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rules: tuple[SignalRule, ...] = ()
    store: StoreConfig = field(default_factory=StoreConfig)
    upload: UploadConfig | None = None  # None: buffer only, nothing leaves the box
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    control: ControlConfig = field(default_factory=ControlConfig)  # the control socket
    purposes: tuple[Purpose, ...] = ()  # [purposes.NAME]: built-in ones changed, new ones
    destinations: tuple[DestinationConfig, ...] = ()  # [destinations.NAME], beside [upload]
    insights: InsightsConfig = field(default_factory=InsightsConfig)  # what the box works out


# ---------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class DestinationConfig:
    """``[destinations.NAME]``: one more place batches go, with its own buffer and
    pseudonym; the keys of ``[upload]``, ``purpose`` required."""

    name: str
    upload: UploadConfig


@dataclass(frozen=True)
class ConfigReading:
    """What reading a file gave: the configuration (None when the file could not be
    read or parsed as TOML), every problem, and the DBC files its decoded channels
    name, each with its key (``channels[0].dbc[1]``; None for the simulator's
    built-in DBC) for :mod:`agent.validation`."""

    source: str
    config: Config | None
    problems: tuple[str, ...]
    dbc_files: tuple[tuple[str, Path | None], ...] = ()


def load_config(path: str | Path) -> Config:
    """Read and check ``path``; raise ConfigError listing every problem."""
    reading = read_config(path)
    if reading.problems or reading.config is None:
        raise ConfigError(list(reading.problems), source=reading.source)
    return reading.config


def read_config(path: str | Path) -> ConfigReading:
    """Read and check ``path``, returning the problems instead of raising."""
    path = Path(path)
    try:
        text = read_config_text(path)
    except ConfigError as exc:
        return ConfigReading(str(path), None, tuple(exc.problems))
    return _parse(text, path.parent, str(path))


def read_config_text(path: Path) -> str:
    """The text of a configuration file: a regular file of at most MAX_CONFIG_BYTES of
    UTF-8. Never blocks on a FIFO, never reads more than that (``/dev/zero``)."""
    source = str(path)
    where = _looked_for(path, path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"cannot read file: {_not_regular(st)}{where}"], source=source)
        _check_size(st.st_size, source)
        # O_NONBLOCK: a file swapped for a FIFO since the stat cannot hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}{where}"],
                          source=source) from None
    except ValueError:  # a NUL in the path
        raise ConfigError(["cannot read file: the path holds a NUL character"],
                          source=source) from None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError([f"cannot read file: {_not_regular(st)}{where}"],
                                  source=source)
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}{where}"],
                          source=source) from None
    _check_size(len(data), source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text: {exc}"], source=source) from None


def _check_size(size: int, source: str) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([f"cannot read file: over {show(MAX_CONFIG_BYTES)} bytes "
                           f"({show(size)}): not a configuration file"], source=source)


def _not_regular(st: os.stat_result) -> str:
    mode = st.st_mode
    what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a file")
    return f"not a regular file ({what})"


def _looked_for(path: Path, given: str | Path) -> str:
    """`` (looked for /abs/path)`` when ``given`` was relative, so the reader knows where
    ``path`` (``given`` as resolved) was looked for."""
    if Path(given).expanduser().is_absolute():
        return ""
    try:
        return f" (looked for {path.absolute()})"
    except OSError:  # the working directory was removed
        return ""


def parse_config(text: str, base_dir: Path, source: str = "<config>") -> Config:
    """Parse TOML text; relative paths are resolved against ``base_dir``."""
    reading = _parse(text, base_dir, source)
    if reading.problems or reading.config is None:
        raise ConfigError(list(reading.problems), source=source)
    return reading.config


def _parse(text: str, base_dir: Path, source: str) -> ConfigReading:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ConfigReading(source, None, (f"TOML syntax: {exc}",))
    except RecursionError:  # tomllib recurses once per nested array or inline table
        return ConfigReading(source, None, ("TOML syntax: arrays or tables nested too "
                                            "deeply",))
    except Exception as exc:  # whatever else the parser raises is a bad file too
        return ConfigReading(source, None, (f"TOML syntax: {type(exc).__name__}: {exc}",))
    reader = _Reader(base_dir)
    try:
        config = reader.config(raw)
    except RecursionError:  # a value nested too deeply to describe
        return ConfigReading(source, None, (*reader.problems, "a value is nested too deeply"))
    return ConfigReading(source, config, tuple(reader.problems), tuple(reader.dbc_files))


class _Reader:
    """Walks the TOML document, building dataclasses and collecting problems."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.dbc_files: list[tuple[str, Path | None]] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    # -- typed getters: report and return the default on a wrong type --------

    def table(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a table, got {_kind(raw)}")
            return {}
        for name in sorted(set(raw) - allowed):
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.problem(_join(key, _key_name(name)), f"unknown key{hint}")
        return raw

    def get(self, raw: dict[str, Any], key: str, name: str, types: tuple[type, ...],
            default: Any, what: str) -> Any:
        if name not in raw:
            return default
        value = raw[name]
        # bool is an int in Python; never accept it as a number
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            self.problem(_join(key, name), f"expected {what}, got {_kind(value)}")
            return default
        if isinstance(value, str) and "\x00" in value:
            self.problem(_join(key, name), "must not contain a NUL character")
            return default
        return value

    def number(self, raw: dict[str, Any], key: str, name: str, default: float | None,
               allowed: Range) -> float | None:
        value = self.get(raw, key, name, (int, float), default, "a number")
        if value is None or name not in raw or value is default:
            return value
        problem = allowed.problem(value)
        if problem is not None:
            self.problem(_join(key, name), problem)
            return default
        return float(value)

    def integer(self, raw: dict[str, Any], key: str, name: str, default: int | None,
                allowed: Range) -> int | None:
        value = self.get(raw, key, name, (int,), default, "an integer")
        if value is None or name not in raw or value is default:
            return value
        problem = allowed.problem(value)
        if problem is not None:
            self.problem(_join(key, name), problem)
            return default
        return int(value)

    def count(self, items: list[Any], key: str, limit: int) -> list[Any]:
        """``items``, or its first ``limit`` after a problem when there are more."""
        if len(items) > limit:
            self.problem(key, f"at most {show(limit)} entries, got {show(len(items))}")
            return items[:limit]
        return items

    def globs(self, raw: dict[str, Any], key: str, name: str, default: tuple[str, ...],
              negation: bool = False) -> tuple[str, ...]:
        value = self.get(raw, key, name, (list, str), default, "a list of globs")
        if isinstance(value, str):
            value = [value]
        out = []
        for i, item in enumerate(self.count(list(value), _join(key, name), MAX_GLOBS)):
            bare = item[1:] if negation and isinstance(item, str) else item
            if not isinstance(item, str) or not bare:
                shown = repr(item) if isinstance(item, str | int | float) else _kind(item)
                self.problem(f"{_join(key, name)}[{i}]", f"expected a glob, got {shown}")
            elif "\x00" in item:
                self.problem(f"{_join(key, name)}[{i}]", "must not contain a NUL character")
            else:
                out.append(item)
        return tuple(out)

    def path(self, value: Any, key: str, what: str) -> Path | None:
        """A path value: a non-empty string without NUL, resolved against the file's
        directory."""
        if not isinstance(value, str) or not value:
            shown = "an empty string" if value == "" else _kind(value)
            self.problem(key, f"expected {what} path, got {shown}")
            return None
        if "\x00" in value:
            self.problem(key, "must not contain a NUL character")
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def file(self, value: Any, key: str, what: str) -> Path | None:
        path = self.path(value, key, "a file")
        if path is None:
            return None
        where = _looked_for(path, value)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.problem(key, f"{what} not found: {value}{where}")
            return None
        except OSError as exc:
            self.problem(key, f"cannot use {value}{where}: {exc.strerror or exc}")
            return None
        if not stat.S_ISREG(st.st_mode):
            self.problem(key, f"{value}{where}: {_not_regular(st)}")
            return None
        return path

    # -- sections -------------------------------------------------------------

    def config(self, raw: dict[str, Any]) -> Config:
        top = self.table(raw, "", {"channels", "selection", "signals", "store", "upload",
                                  "vehicle", "control", "purposes", "destinations",
                                  "insights"})
        channels_raw = top.get("channels")
        channels: list[ChannelConfig] = []
        if channels_raw is None:
            self.problem("channels", "at least one [[channels]] entry is required")
        elif not isinstance(channels_raw, list):
            self.problem("channels", f"expected an array of tables, got {_kind(channels_raw)}")
        else:
            if not channels_raw:
                self.problem("channels", "at least one [[channels]] entry is required")
            for i, item in enumerate(self.count(channels_raw, "channels", MAX_CHANNELS)):
                channel = self.channel(item, f"channels[{i}]")
                if channel is not None:
                    channels.append(channel)
            names = [c.name for c in channels]
            for name in sorted({n for n in names if names.count(n) > 1}):
                self.problem("channels", f"duplicate channel name {name!r}")
        selection = self.selection(top.get("selection", {}), "selection")
        rules_raw = top.get("signals", [])
        rules: list[SignalRule] = []
        if not isinstance(rules_raw, list):
            self.problem("signals", f"expected an array of tables, got {_kind(rules_raw)}")
        else:
            for i, item in enumerate(self.count(rules_raw, "signals", MAX_RULES)):
                rule = self.rule(item, f"signals[{i}]")
                if rule is not None:
                    rules.append(rule)
        store = self.fields(top.get("store", {}), "store", StoreConfig)
        upload = self.upload(top.get("upload"), "upload")
        vehicle = self.fields(top.get("vehicle", {}), "vehicle", VehicleConfig)
        control = self.control(top.get("control", {}), "control")
        purposes = self.purposes(top.get("purposes", {}), "purposes")
        known = {**BUILTIN_PURPOSES, **{p.name: p for p in purposes}}
        destinations = self.destinations(top.get("destinations", {}), "destinations")
        if upload is not None:
            self.check_purpose(upload.purpose, "upload.purpose", known)
        for dest in destinations:
            self.check_purpose(dest.upload.purpose, f"destinations.{dest.name}.purpose", known)
        for i, rule in enumerate(rules):
            for j, name in enumerate(rule.purposes or ()):
                if name not in known:
                    self.problem(f"signals[{i}].purposes[{j}]", _unknown_purpose(name, known))
        insights = (read_insights(top["insights"], self.problem) if "insights" in top
                    else InsightsConfig())
        return Config(channels=tuple(channels), selection=selection, rules=tuple(rules),
                      store=store, upload=upload, vehicle=vehicle, control=control,
                      purposes=purposes, destinations=destinations, insights=insights)

    def purposes(self, raw: Any, key: str) -> tuple[Purpose, ...]:
        """``[purposes.NAME]`` tables: a built-in purpose changed, or a new one."""
        t = self.table(raw, key, set(raw) if isinstance(raw, dict) else set())
        out = []
        for name, value in self.count(list(t.items()), key, MAX_PURPOSES):
            here = _join(key, _key_name(name))
            if not PURPOSE_NAME.fullmatch(name):
                self.problem(here, "a purpose's name is 1 to 32 lower-case letters, digits, "
                                   "- or _, starting with a letter")
                continue
            p = self.table(value, here, set(PURPOSE_KEYS))
            values: dict[str, Any] = {}
            for glob_key in ("signals", "events"):
                if glob_key in p:
                    values[glob_key] = self.globs(p, here, glob_key, ())
            if "frames" in p:
                values["frames"] = self.get(p, here, "frames", (bool,), False, "true or false")
            if "description" in p:
                values["description"] = self.get(p, here, "description", (str,), "",
                                                 "a string")
            if "geohash" in p:
                values["geohash"] = self.integer(p, here, "geohash", 0, GEOHASH)
            for zone in ("zone_min_m", "zone_max_m"):
                if zone in p:
                    values[zone] = self.number(p, here, zone, 0.0, ZONE)
            purpose = merge_purpose(name, values)
            if purpose.zone_min_m > purpose.zone_max_m:
                self.problem(_join(here, "zone_min_m"), f"must be at most zone_max_m "
                                                        f"({show(purpose.zone_max_m)})")
            if name in LOCAL_ONLY and purpose.geohash:
                self.problem(_join(here, "geohash"), f"{name} is local only")
            out.append(purpose)
        return tuple(out)

    def destinations(self, raw: Any, key: str) -> tuple[DestinationConfig, ...]:
        """``[destinations.NAME]``: more upload destinations, each with a purpose."""
        t = self.table(raw, key, set(raw) if isinstance(raw, dict) else set())
        out = []
        for name, value in self.count(list(t.items()), key, MAX_DESTINATIONS):
            here = _join(key, _key_name(name))
            if not DESTINATION_NAME.fullmatch(name) or name in RESERVED_DESTINATIONS:
                reserved = f" ({name} is reserved)" if name in RESERVED_DESTINATIONS else ""
                self.problem(here, "a destination's name is 1 to 32 lower-case letters, "
                                   f"digits, - or _, starting with a letter{reserved}")
                continue
            upload = self.upload(value, here)
            if upload is None:
                continue
            if isinstance(value, dict) and "purpose" not in value:
                self.problem(_join(here, "purpose"), "required: what this destination may "
                                                     "receive (maintenance, insurance, ...)")
            out.append(DestinationConfig(name, upload))
        return tuple(out)

    def check_purpose(self, name: str, key: str, known: dict[str, Purpose]) -> None:
        if name not in known:
            self.problem(key, _unknown_purpose(name, known))
        elif name in LOCAL_ONLY:
            self.problem(key, f"{name} is local only: no destination may receive it")

    def fields(self, raw: Any, key: str, cls: type[T], skip: tuple[str, ...] = ()) -> T:
        """A frozen settings dataclass from a table, each key typed by its field's
        annotation; ``false`` for an optional number means "no limit" (None). The
        dataclass's own ``problems()`` (the ranges of its numbers) are reported under
        ``key``. Fields in ``skip`` are left to the caller (they are allowed keys but
        not read here)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        t = self.table(raw, key, set(fields))
        values: dict[str, Any] = {}
        for name, value in t.items():
            if name not in fields or name in skip:
                continue
            kind = str(fields[name].type)
            here = _join(key, name)
            if kind == "Path":
                path = self.path(value, here, "a directory")
                if path is not None:
                    values[name] = path
            elif kind == "Path | None":
                checked_path = self.file(value, here, "file")
                if checked_path is not None:
                    values[name] = checked_path
            elif kind in ("bool", "str"):
                what = "true or false" if kind == "bool" else "a string"
                checked = self.get(t, key, name, (bool,) if kind == "bool" else (str,), None,
                                   what)
                if checked is not None:
                    values[name] = checked
            elif value is False and kind.endswith("| None"):
                values[name] = None  # `max_age_samples = false`: no limit
            elif kind.startswith("int"):
                checked = self.get(t, key, name, (int,), None, "an integer")
                if checked is not None:
                    values[name] = checked
            else:  # seconds
                checked = self.get(t, key, name, (int, float), None, "a number")
                if checked is not None:
                    values[name] = checked
        config = cls(**values)
        for problem in config.problems():  # type: ignore[attr-defined]
            self.problems.append(f"{key}.{problem}")
        return config

    def control(self, raw: Any, key: str) -> ControlConfig:
        """``[control]``: its socket is a path that need not exist yet (the service
        makes it), relative to the file's directory like every path."""
        config = self.fields(raw, key, ControlConfig, skip=("socket",))
        if not isinstance(raw, dict) or "socket" not in raw:
            return config
        socket = self.path(raw["socket"], _join(key, "socket"), "a socket")
        if socket is None:
            return config
        config = dataclasses.replace(config, socket=socket)
        for problem in config.problems():
            if problem.startswith("socket:"):
                self.problems.append(f"{key}.{problem}")
        return config

    def upload(self, raw: Any, key: str) -> UploadConfig | None:
        if raw is None:
            return None
        config = self.fields(raw, key, UploadConfig, skip=("interfaces",))
        if not isinstance(raw, dict) or "interfaces" not in raw:
            return config
        interfaces = raw["interfaces"]
        ikey = _join(key, "interfaces")
        if not isinstance(interfaces, dict):
            self.problem(ikey, f"expected a table of glob = \"metered\"|\"unmetered\", "
                               f"got {_kind(interfaces)}")
            return config
        pairs = []
        for glob, link_class in self.count(list(interfaces.items()), ikey, MAX_INTERFACES):
            if link_class not in ("metered", "unmetered"):
                shown = repr(link_class) if isinstance(link_class, str) else _kind(link_class)
                self.problem(f"{ikey}.{glob!r}", f"expected \"metered\" or \"unmetered\", "
                                                 f"got {shown}")
            elif not glob or "\x00" in glob:
                self.problem(f"{ikey}.{glob!r}", "expected an interface name glob")
            else:
                pairs.append((glob, link_class))
        return dataclasses.replace(config, interfaces=tuple(pairs))

    def channel(self, raw: Any, key: str) -> ChannelConfig | None:
        allowed = {"name", "dbc", "interface", "channel", "bitrate", "fd", "data_bitrate",
                   "reader", "log", "simulate", "seed", "speed", "mode", "start", "gpsd", "nmea",
                   *OBD_KEYS}
        t = self.table(raw, key, allowed)
        if not isinstance(raw, dict):  # reported; an empty table is checked like any other
            return None
        name = self.get(t, key, "name", (str,), None, "a string")
        if name is None:
            if "name" not in t:
                self.problem(_join(key, "name"), "required")
            name = f"channel{key}"
        elif not name or any(c.isspace() for c in name):
            self.problem(_join(key, "name"), f"must be a non-empty word, got {name!r}")

        dbc = self.dbc_list(t, key)

        interface = self.get(t, key, "interface", (str,), None, "a string")
        log_value = t.get("log")
        log = self.file(log_value, _join(key, "log"), "log file") if "log" in t else None
        simulate = self.get(t, key, "simulate", (bool,), False, "true or false")
        obd = self.get(t, key, "obd", (bool,), False, "true or false")
        channel = self.get(t, key, "channel", (str, int), None, "a string")
        if isinstance(channel, int) and channel not in CHANNEL_NUMBER:
            self.problem(_join(key, "channel"), CHANNEL_NUMBER.problem(channel) or "")
            channel = None
        gps = read_gps_keys(t, key, self.problem)
        kinds = [k for k in ("interface", "log", "simulate", "gpsd", "nmea")
                 if k in t and t[k] is not False]
        if obd is True:
            obd_settings = self.obd(t, key, interface, channel)
        else:
            obd_settings = None
            gps_keys = {"baudrate"} if "gpsd" in kinds or "nmea" in kinds else set()
            for extra in sorted(OBD_KEYS - {"obd"} - gps_keys):
                if extra in t:
                    self.problem(_join(key, extra), "only valid with obd = true")
            if len(kinds) != 1:
                found = ", ".join(kinds) if kinds else "none"
                self.problem(key, f"exactly one of interface, log, simulate = true, obd = true, "
                                  f"gpsd, nmea is required (found: {found})")
        if interface is not None:
            self.check_interface(interface, _join(key, "interface"))
            if "channel" not in t:
                self.problem(_join(key, "channel"), "required with interface")
        elif "channel" in t or "bitrate" in t or "reader" in t:
            for extra in ("channel", "bitrate", "reader"):
                if extra in t:
                    self.problem(_join(key, extra), "only valid with interface")
        reader = self.get(t, key, "reader", (str,), "auto", "a string")
        if reader not in READERS:
            self.problem(_join(key, "reader"),
                         f"must be one of {', '.join(READERS)}, got {reader!r}")
            reader = "auto"
        elif reader in ("bcm", "raw") and interface not in (None, "socketcan"):
            self.problem(_join(key, "reader"),
                         f"{reader!r} reads SocketCAN only (interface = \"socketcan\"), "
                         f"not {interface!r}")
        mode = self.get(t, key, "mode", (str,), "decoded", "a string")
        if mode not in MODES:
            self.problem(_join(key, "mode"), f"must be one of {', '.join(MODES)}, got {mode!r}")
            mode = "decoded"
        if reader == "bcm" and (mode == "raw" or obd is True):
            self.problem(_join(key, "reader"), "\"bcm\" filters the frames of decoded "
                                               "messages: not for a raw or OBD channel")
        if obd_settings is not None:
            if "dbc" in t:
                self.problem(_join(key, "dbc"), "not used by an OBD channel (its PIDs are "
                                                "decoded per SAE J1979)")
                dbc = []
        elif "gpsd" in kinds or "nmea" in kinds:
            dbc = []  # a GPS needs none (read_gps_keys said so when one is given)
        elif not dbc and "dbc" not in t and simulate is not True and mode != "raw":
            self.problem(_join(key, "dbc"), "at least one DBC file is required")
        if mode != "raw":  # a raw channel's frames are stored as they are: no DBC is read
            if dbc:
                self.dbc_files.extend(dbc)
            elif simulate is True and "dbc" not in t:
                self.dbc_files.append((_join(key, "dbc"), None))  # the demo vehicle's

        seed = self.integer(t, key, "seed", 1, SEED)
        speed = self.number(t, key, "speed", 1.0, SPEED)
        start = _start_time(t["start"], _join(key, "start"), self.problem) if "start" in t else None
        if "start" in t and simulate is not True:
            self.problem(_join(key, "start"), "only valid with simulate = true")
        return ChannelConfig(
            name=name,
            dbc=tuple(path for _, path in dbc),
            interface=interface,
            channel=channel,
            bitrate=self.integer(t, key, "bitrate", None, BITRATE),
            fd=self.get(t, key, "fd", (bool,), False, "true or false"),
            data_bitrate=self.integer(t, key, "data_bitrate", None, DATA_BITRATE),
            reader=reader,
            log=log,
            simulate=simulate,
            seed=1 if seed is None else seed,
            speed=1.0 if speed is None else speed,
            start=start,
            mode=mode,
            obd=obd_settings,
            gps=gps,
        )

    def obd(self, t: dict[str, Any], key: str, interface: str | None,
            channel: str | int | None) -> ObdSettings:
        """The OBD keys of a channel with ``obd = true``: an ELM327 on ``port``, or native
        OBD on ``interface`` and ``channel`` (both read already)."""
        port = self.get(t, key, "port", (str,), None, "a serial device or a pyserial URL")
        others = [k for k in ("log", "simulate") if k in t and t[k] is not False]
        for other in others:
            self.problem(_join(key, other), "not valid with obd = true")
        if (port is None) == (interface is None):
            if "port" not in t and "interface" not in t:
                self.problem(key, "obd = true needs port (an ELM327) or interface and channel "
                                  "(native OBD on a CAN bus)")
            elif port is not None:
                self.problem(_join(key, "port"), "give port (an ELM327) or interface (native "
                                                 "CAN), not both")
        elif port == "":
            self.problem(_join(key, "port"), "must not be empty")
        if "extended" in t and port is not None:
            self.problem(_join(key, "extended"), "only valid with interface (native OBD)")
        for elm_only in ("baudrate", "protocol"):
            if elm_only in t and port is None:
                self.problem(_join(key, elm_only), "only valid with port (an ELM327)")
        protocol = self.get(t, key, "protocol", (str, int), "auto", "a string")
        protocol = str(protocol).upper() if str(protocol).lower() != "auto" else "auto"
        if protocol not in PROTOCOLS:
            self.problem(_join(key, "protocol"), f"must be one of {', '.join(PROTOCOLS)} (the "
                                                 f"ELM327's protocol numbers), got {protocol!r}")
            protocol = "auto"
        pids = parse_pids(t["pids"], _join(key, "pids"), self.problem) if "pids" in t else None
        interval = self.number(t, key, "dtc_interval", 300.0, DTC_INTERVAL)
        settings = ObdSettings(
            port=port,
            baudrate=self.integer(t, key, "baudrate", None, BAUDRATE),
            protocol=protocol,
            interface=interface,
            channel=None if channel is None else str(channel),
            extended=self.get(t, key, "extended", (bool,), False, "true or false"),
            dtc_interval=300.0 if interval is None else interval,
            timeout=self.number(t, key, "timeout", None, TIMEOUT),
        )
        return settings if pids is None else dataclasses.replace(settings, pids=pids)

    def dbc_list(self, t: dict[str, Any], key: str) -> list[tuple[str, Path]]:
        """The channel's DBC files that exist, each with its key."""
        if "dbc" not in t:
            return []
        value = t["dbc"]
        dkey = _join(key, "dbc")
        if isinstance(value, str):
            path = self.file(value, dkey, "file")
            return [(dkey, path)] if path else []
        if not isinstance(value, list) or not value:
            self.problem(dkey, f"expected a file path or a list of them, got {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(self.count(value, dkey, MAX_DBCS)):
            path = self.file(item, f"{dkey}[{i}]", "file")
            if path is not None:
                out.append((f"{dkey}[{i}]", path))
        return out

    def check_interface(self, interface: str, key: str) -> None:
        import can  # python-can keeps its own lazy registry of interfaces

        if interface not in can.VALID_INTERFACES:
            known = sorted(can.VALID_INTERFACES)
            close = difflib.get_close_matches(interface, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            self.problem(key, f"unknown python-can interface {interface!r}{hint} "
                              f"(known: {', '.join(known)})")

    def selection(self, raw: Any, key: str) -> SelectionConfig:
        t = self.table(raw, key, {"include", "exclude", "volatile", "include_volatile"})
        return SelectionConfig(
            include=self.globs(t, key, "include", ("*",)),
            exclude=self.globs(t, key, "exclude", ()),
            volatile=self.globs(t, key, "volatile", (), negation=True),
            include_volatile=self.get(t, key, "include_volatile", (bool,), False,
                                      "true or false"),
        )

    def rule(self, raw: Any, key: str) -> SignalRule | None:
        t = self.table(raw, key, {"match", "min_period", "on_change", "deadband", "max_period",
                                  "purposes"})
        if not isinstance(raw, dict):  # reported; an empty table is checked like any other
            return None
        match = self.get(t, key, "match", (str,), None, "a glob")
        if match is None and "match" not in t:
            self.problem(_join(key, "match"), "required")
        elif match == "":
            self.problem(_join(key, "match"), "expected a glob, got ''")
            match = None
        on_change = self.get(t, key, "on_change", (bool,), False, "true or false")
        deadband = self.number(t, key, "deadband", 0.0, DEADBAND)
        max_period = self.number(t, key, "max_period", None, MAX_PERIOD)
        if not on_change:
            for name in ("deadband", "max_period"):
                if name in t:
                    self.problem(_join(key, name), "only valid with on_change = true")
        min_period = self.number(t, key, "min_period", 0.0, MIN_PERIOD)
        if min_period is not None and max_period is not None and max_period < min_period:
            self.problem(_join(key, "max_period"), f"must be at least min_period "
                                                   f"({show(min_period)}), got {show(max_period)}")
            max_period = None
        purposes = None
        if "purposes" in t:
            names = self.get(t, key, "purposes", (list,), [], "a list of purposes")
            for i, name in enumerate(names):
                if not isinstance(name, str):
                    self.problem(f"{_join(key, 'purposes')}[{i}]",
                                 f"expected a purpose's name, got {_kind(name)}")
            purposes = tuple(n for n in names if isinstance(n, str))
        if match is None:
            return None
        return SignalRule(
            match=match,
            min_period=min_period or 0.0,
            on_change=on_change,
            deadband=deadband or 0.0,
            max_period=max_period,
            purposes=purposes,
        )


def _unknown_purpose(name: str, known: dict[str, Purpose]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"unknown purpose {name!r}{hint}; known: {', '.join(known)} (a new one is "
            f"declared with a [purposes.NAME] table)")


def _start_time(value: Any, key: str, problem: Any) -> float | None:
    """A simulator's ``start``: an ISO 8601 date and time (a string or a TOML date-time),
    local time unless it carries an offset; seconds since the epoch, or None after a
    problem."""
    example = '"2026-12-05T23:10:00" (local time) or "2026-12-05T23:10:00+01:00"'
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            problem(key, f"expected an ISO 8601 date and time such as {example}, "
                         f"got {value!r}")
            return None
    if not isinstance(value, datetime.datetime):
        problem(key, f"expected a date and time such as {example}, got {_kind(value)}")
        return None
    try:
        stamp = value.timestamp()
    except (OverflowError, OSError, ValueError):
        stamp = -1.0
    if stamp < 0:
        problem(key, f"must be 1970-01-01T00:00:00Z or later, got {value.isoformat()}")
        return None
    return stamp


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _key_name(name: str) -> str:
    """A TOML key as written in a message: bare when it can be, else quoted."""
    if name and all(c.isalnum() or c in "-_" for c in name) and name.isascii():
        return name
    return repr(name)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)
