"""The configuration file, checked as ``bavard config check`` checks it
(agent.validation): each problem a failure, each warning a warning.

The other checks need the configuration's channels, store and upload: when the
file has problems but could still be parsed, they get that parsed
configuration (a DBC that does not load should not hide a bus that is down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config, read_config
from agent.doctor.result import Result, failed, passed, warned
from agent.errors import ConfigError


@dataclass
class Checked:
    config: Config | None  # None: not even parsed (missing, not TOML)
    databases: dict[Path, Any] = field(default_factory=dict)  # DBCs loaded, by path
    results: list[Result] = field(default_factory=list)


def config_checks(path: Path) -> Checked:
    from agent.validation import load_usable_config

    name = "configuration"
    fix = f"edit {path} (bavard config check {path} lists every problem)"
    try:
        usable = load_usable_config(path)
    except ConfigError as exc:
        reading = read_config(path)
        if reading.config is None:
            fix = ("give the service's configuration with --config FILE"
                   if not path.exists() else fix)
        return Checked(reading.config, {},
                       [failed(name, f"{exc.source or path}: {problem}", fix)
                        for problem in exc.problems])
    config = usable.config
    channels = ", ".join(f"{c.name} ({c.kind})" for c in config.channels)
    results = [passed(name, f"{path}: ok; {len(config.channels)} channel(s): {channels}")]
    results.extend(warned(name, warning, fix) for warning in usable.warnings)
    return Checked(config, dict(usable.databases), results)
