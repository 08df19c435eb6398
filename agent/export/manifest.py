"""``manifest.json`` and ``README.txt`` of an export bundle (docs/export.md).

The manifest is what makes the bundle checkable and readable by someone who
has neither bavard nor the vehicle's DBC files: where the data comes from
(the vehicle's pseudonym, the DBC files and their fingerprints), what it holds
(time range, channels, every signal with its unit, range and value labels,
counts), and each data file's size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__
from agent.batch.model import SignalKey
from agent.export.context import Context
from agent.export.times import When, iso_utc
from agent.export.writers import COLUMNS
from agent.store import Kind

FORMAT = "bavard-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
README = "README.txt"
CHECKSUMS = "SHA256SUMS"


@dataclass
class SignalCount:
    unit: str
    samples: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    labels: dict[Any, str] = field(default_factory=dict)  # value -> label seen


@dataclass
class Tally:
    """Counts of what was exported, per class, channel and signal."""

    classes: Counter[str] = field(default_factory=Counter)
    channels: dict[str, Counter[str]] = field(default_factory=dict)
    signals: dict[SignalKey, SignalCount] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None

    def add(self, kind: Kind, items: list[Any]) -> None:
        label = kind.label
        self.classes[label] += len(items)
        stamps = [it[0] for it in items]
        lo, hi = min(stamps), max(stamps)
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        for channel, n in Counter(it[1] for it in items).items():
            self.channels.setdefault(channel, Counter())[label] += n
        if kind != Kind.SAMPLE:
            return
        signals = self.signals
        for s in items:
            key = (s[1], s[2], s[3])
            entry = signals.get(key)
            if entry is None:
                entry = signals[key] = SignalCount(s[5])
            entry.samples += 1
            entry.first = min(entry.first, s[0])
            entry.last = max(entry.last, s[0])
            if s[6] is not None:
                entry.labels[s[4]] = s[6]

    @property
    def total(self) -> int:
        return sum(self.classes.values())


def file_entry(path: Path, kind: Kind | None, rows: int | None,
               columns: tuple[str, ...] | None) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return {"name": path.name, "class": kind.label if kind is not None else None,
            "rows": rows, "columns": list(columns) if columns else None,
            "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _number(value: Any) -> Any:
    return value if not isinstance(value, float) or value == value else None


def signal_entries(tally: Tally, context: Context) -> list[dict[str, Any]]:
    out = []
    for key in sorted(tally.signals):
        count = tally.signals[key]
        meta = context.metadata.get(key)
        choices: dict[Any, str] | None = None
        if meta is not None and meta.choices:
            choices = dict(meta.choices)
        elif count.labels:
            choices = dict(count.labels)
        out.append({
            "channel": key[0], "message": key[1], "signal": key[2],
            "unit": meta.unit if meta is not None and meta.unit else count.unit,
            "minimum": _number(meta.minimum) if meta is not None else None,
            "maximum": _number(meta.maximum) if meta is not None else None,
            "scale": meta.scale if meta is not None else None,
            "offset": meta.offset if meta is not None else None,
            "choices": ({str(k): v for k, v in sorted(choices.items(), key=lambda kv: kv[0])}
                        if choices else None),
            "described_by": "dbc" if meta is not None else "samples",
            "samples": count.samples, "first": iso_utc(count.first), "last": iso_utc(count.last),
        })
    return out


def build(*, context: Context, since: When, until: When, filters: dict[str, Any],
          fmt: str, tally: Tally, files: list[dict[str, Any]], created_at: float,
          span: tuple[float, float] | None, warnings: list[str]) -> dict[str, Any]:
    """The manifest's content (docs/export.md describes every key)."""
    configured = {c["name"]: c for c in context.channels}
    names = sorted(set(configured) | set(tally.channels))
    channels = [{"name": name, "kind": configured.get(name, {}).get("kind"),
                 "mode": configured.get(name, {}).get("mode"),
                 "dbc_files": configured.get(name, {}).get("dbc_files", []),
                 "counts": {k.label: tally.channels.get(name, Counter())[k.label]
                            for k in (Kind.SAMPLE, Kind.EVENT, Kind.FRAME)}}
                for name in names]
    found = None
    if tally.first is not None and tally.last is not None:
        found = {"first": {"epoch": tally.first, "iso": iso_utc(tally.first)},
                 "last": {"epoch": tally.last, "iso": iso_utc(tally.last)}}
    held = None if span is None else {"first": {"epoch": span[0], "iso": iso_utc(span[0])},
                                      "last": {"epoch": span[1], "iso": iso_utc(span[1])}}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bavard_version": __version__,
        "created_at": iso_utc(created_at),
        "vehicle": context.vehicle,
        "source": {"configuration": context.config_path, "state_dir": str(context.state_dir)},
        "time_range": {"asked": {"since": since.to_dict(), "until": until.to_dict(),
                                 "rule": "since <= timestamp < until"},
                       "found": found, "buffer_held": held},
        "filters": filters,
        "data_format": fmt,
        "channels": channels,
        "dbc_fingerprint": context.dbc_fingerprint,
        "dbc_files": context.dbc_files,
        "signals": signal_entries(tally, context),
        "counts": {k.label: tally.classes[k.label] for k in (Kind.SAMPLE, Kind.EVENT, Kind.FRAME)},
        "files": files,
        "warnings": warnings,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_checksums(directory: Path, files: list[dict[str, Any]]) -> Path:
    """``SHA256SUMS`` in the format ``sha256sum -c`` checks."""
    path = directory / CHECKSUMS
    path.write_text("".join(f"{f['sha256']}  {f['name']}\n" for f in files), encoding="utf-8")
    return path


def readme(manifest: dict[str, Any]) -> str:
    """README.txt: the bundle in plain words, for someone without bavard."""
    from agent.export.readme import render

    return render(manifest, COLUMNS)
