"""The agent's configuration: one TOML file read into frozen dataclasses.

Every problem in a file is collected and reported at once, each line led by
its key path (``channels[0].dbc: file not found: x.dbc``). Unknown keys are
errors. Relative paths are relative to the directory of the file.
See ``docs/config.md`` for the reference and a commented example.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import ConfigError
from agent.store.settings import StoreConfig
from agent.upload.settings import UploadConfig, VehicleConfig

T = TypeVar("T")

DEFAULT_PATH = Path("/etc/bavard/bavard.toml")
MODES = ("decoded", "raw")

# Counters and checksums change on every frame; they are left out of the
# "did this frame change?" test unless the configuration says otherwise.
DEFAULT_VOLATILE = ("*Counter*", "*counter*", "*Checksum*", "*checksum*", "*CRC*", "*Crc*")


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
    # log replay
    log: Path | None = None
    # simulated vehicle
    simulate: bool = False
    seed: int = 1
    # replay and simulator pace: 0 = as fast as possible, 1 = real time, N = xN
    speed: float = 1.0
    # "decoded": samples through the DBCs; "raw": the frames themselves are stored
    # (decoded later, off the vehicle)
    mode: str = "decoded"

    @property
    def kind(self) -> str:
        """The source registry key for this channel."""
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


@dataclass(frozen=True)
class SelectionConfig:
    """Which signals are decoded at all. Globs match ``Message.Signal``;
    a glob without a dot matches the signal name alone."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    volatile: tuple[str, ...] = DEFAULT_VOLATILE


@dataclass(frozen=True)
class Config:
    channels: tuple[ChannelConfig, ...]
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rules: tuple[SignalRule, ...] = ()
    store: StoreConfig = field(default_factory=StoreConfig)
    upload: UploadConfig | None = None  # None: buffer only, nothing leaves the box
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)


# ---------------------------------------------------------------------------
# loading


def load_config(path: str | Path) -> Config:
    """Read and check ``path``; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read file: {exc.strerror or exc}"], source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text: {exc}"], source=str(path)) from None
    return parse_config(text, base_dir=path.parent, source=str(path))


def parse_config(text: str, base_dir: Path, source: str = "<config>") -> Config:
    """Parse TOML text; relative paths are resolved against ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax: {exc}"], source=source) from None
    reader = _Reader(base_dir)
    config = reader.config(raw)
    if reader.problems:
        raise ConfigError(reader.problems, source=source)
    return config


class _Reader:
    """Walks the TOML document, building dataclasses and collecting problems."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    # -- typed getters: report and return the default on a wrong type --------

    def table(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a table, got {_kind(raw)}")
            return {}
        for name in sorted(set(raw) - allowed):
            self.problem(_join(key, name), "unknown key")
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
        return value

    def number(self, raw: dict[str, Any], key: str, name: str, default: float | None,
               minimum: float = 0.0) -> float | None:
        value = self.get(raw, key, name, (int, float), default, "a number")
        if value is None or value is default:
            return value
        if not math.isfinite(value) or value < minimum:
            self.problem(_join(key, name), f"must be a finite number >= {minimum:g}, got {value}")
            return default
        return float(value)

    def integer(self, raw: dict[str, Any], key: str, name: str, default: int | None,
                minimum: int = 0) -> int | None:
        value = self.get(raw, key, name, (int,), default, "an integer")
        if value is None or value is default:
            return value
        if value < minimum:
            self.problem(_join(key, name), f"must be >= {minimum}, got {value}")
            return default
        return int(value)

    def globs(self, raw: dict[str, Any], key: str, name: str,
              default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(raw, key, name, (list, str), default, "a list of globs")
        if isinstance(value, str):
            value = [value]
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(f"{_join(key, name)}[{i}]", f"expected a glob, got {item!r}")
            else:
                out.append(item)
        return tuple(out)

    def file(self, value: Any, key: str, what: str) -> Path | None:
        if not isinstance(value, str) or not value:
            self.problem(key, f"expected a file path, got {_kind(value)}")
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if not path.is_file():
            self.problem(key, f"{what} not found: {value}")
            return None
        return path

    # -- sections -------------------------------------------------------------

    def config(self, raw: dict[str, Any]) -> Config:
        top = self.table(raw, "", {"channels", "selection", "signals", "store", "upload",
                                  "vehicle"})
        channels_raw = top.get("channels")
        channels: list[ChannelConfig] = []
        if channels_raw is None:
            self.problem("channels", "at least one [[channels]] entry is required")
        elif not isinstance(channels_raw, list):
            self.problem("channels", f"expected an array of tables, got {_kind(channels_raw)}")
        else:
            if not channels_raw:
                self.problem("channels", "at least one [[channels]] entry is required")
            for i, item in enumerate(channels_raw):
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
            for i, item in enumerate(rules_raw):
                rule = self.rule(item, f"signals[{i}]")
                if rule is not None:
                    rules.append(rule)
        store = self.fields(top.get("store", {}), "store", StoreConfig)
        upload = self.upload(top.get("upload"), "upload")
        vehicle = self.fields(top.get("vehicle", {}), "vehicle", VehicleConfig)
        return Config(channels=tuple(channels), selection=selection, rules=tuple(rules),
                      store=store, upload=upload, vehicle=vehicle)

    def fields(self, raw: Any, key: str, cls: type[T], skip: tuple[str, ...] = ()) -> T:
        """A frozen settings dataclass from a table, each key typed by its field's
        annotation; ``false`` for an optional number means "no limit" (None). The
        dataclass's own ``problems()`` are reported under ``key``. Fields in ``skip``
        are left to the caller (they are allowed keys but not read here)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        t = self.table(raw, key, set(fields))
        values: dict[str, Any] = {}
        for name, value in t.items():
            if name not in fields or name in skip:
                continue
            kind = str(fields[name].type)
            here = _join(key, name)
            if kind == "Path":
                if not isinstance(value, str) or not value:
                    self.problem(here, f"expected a directory path, got {_kind(value)}")
                    continue
                path = Path(value).expanduser()
                values[name] = path if path.is_absolute() else self.base_dir / path
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
                checked = self.integer(t, key, name, None)
                if checked is not None:
                    values[name] = checked
            else:  # seconds
                checked = self.number(t, key, name, None)
                if checked is not None:
                    values[name] = checked
        config = cls(**values)
        for problem in config.problems():  # type: ignore[attr-defined]
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
        for glob, link_class in interfaces.items():
            if link_class not in ("metered", "unmetered"):
                self.problem(f"{ikey}.{glob!r}", f"expected \"metered\" or \"unmetered\", "
                                                 f"got {link_class!r}")
            else:
                pairs.append((glob, link_class))
        return dataclasses.replace(config, interfaces=tuple(pairs))

    def channel(self, raw: Any, key: str) -> ChannelConfig | None:
        allowed = {"name", "dbc", "interface", "channel", "bitrate", "fd", "data_bitrate",
                   "log", "simulate", "seed", "speed", "mode"}
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
        kinds = [k for k in ("interface", "log", "simulate") if k in t and t[k] is not False]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            self.problem(key, f"exactly one of interface, log, simulate = true is required "
                              f"(found: {found})")
        if interface is not None:
            self.check_interface(interface, _join(key, "interface"))
            if "channel" not in t:
                self.problem(_join(key, "channel"), "required with interface")
        elif "channel" in t or "bitrate" in t:
            for extra in ("channel", "bitrate"):
                if extra in t:
                    self.problem(_join(key, extra), "only valid with interface")
        mode = self.get(t, key, "mode", (str,), "decoded", "a string")
        if mode not in MODES:
            self.problem(_join(key, "mode"), f"must be one of {', '.join(MODES)}, got {mode!r}")
            mode = "decoded"
        if not dbc and "dbc" not in t and simulate is not True and mode != "raw":
            self.problem(_join(key, "dbc"), "at least one DBC file is required")

        return ChannelConfig(
            name=name,
            dbc=dbc,
            interface=interface,
            channel=self.get(t, key, "channel", (str, int), None, "a string"),
            bitrate=self.integer(t, key, "bitrate", None, minimum=1),
            fd=self.get(t, key, "fd", (bool,), False, "true or false"),
            data_bitrate=self.integer(t, key, "data_bitrate", None, minimum=1),
            log=log,
            simulate=simulate,
            seed=self.integer(t, key, "seed", 1) or 0,
            speed=self.number(t, key, "speed", 1.0) or 0.0,
            mode=mode,
        )

    def dbc_list(self, t: dict[str, Any], key: str) -> tuple[Path, ...]:
        if "dbc" not in t:
            return ()
        value = t["dbc"]
        dkey = _join(key, "dbc")
        if isinstance(value, str):
            path = self.file(value, dkey, "file")
            return (path,) if path else ()
        if not isinstance(value, list) or not value:
            self.problem(dkey, f"expected a file path or a list of them, got {_kind(value)}")
            return ()
        paths = [self.file(v, f"{dkey}[{i}]", "file") for i, v in enumerate(value)]
        return tuple(p for p in paths if p is not None)

    def check_interface(self, interface: str, key: str) -> None:
        import can  # python-can keeps its own lazy registry of interfaces

        if interface not in can.VALID_INTERFACES:
            known = ", ".join(sorted(can.VALID_INTERFACES))
            self.problem(key, f"unknown python-can interface {interface!r} (known: {known})")

    def selection(self, raw: Any, key: str) -> SelectionConfig:
        t = self.table(raw, key, {"include", "exclude", "volatile"})
        return SelectionConfig(
            include=self.globs(t, key, "include", ("*",)),
            exclude=self.globs(t, key, "exclude", ()),
            volatile=self.globs(t, key, "volatile", DEFAULT_VOLATILE),
        )

    def rule(self, raw: Any, key: str) -> SignalRule | None:
        t = self.table(raw, key, {"match", "min_period", "on_change", "deadband", "max_period"})
        if not isinstance(raw, dict):  # reported; an empty table is checked like any other
            return None
        match = self.get(t, key, "match", (str,), None, "a glob")
        if match is None and "match" not in t:
            self.problem(_join(key, "match"), "required")
        on_change = self.get(t, key, "on_change", (bool,), False, "true or false")
        deadband = self.number(t, key, "deadband", 0.0) or 0.0
        max_period = self.number(t, key, "max_period", None)
        if not on_change:
            for name in ("deadband", "max_period"):
                if name in t:
                    self.problem(_join(key, name), "only valid with on_change = true")
        if max_period is not None and max_period <= 0:
            self.problem(_join(key, "max_period"), "must be > 0")
            max_period = None
        min_period = self.number(t, key, "min_period", 0.0) or 0.0
        if match is None:
            return None
        return SignalRule(
            match=match,
            min_period=min_period,
            on_change=on_change,
            deadband=deadband,
            max_period=max_period,
        )


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)
