"""What one check of ``bavard doctor`` found: pass, warn, fail or skip, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Result:
    """``name``: what was checked ("CAN link can0"); ``detail``: what was found;
    ``fix``: one line saying what to do, for a warn or a fail."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: one of {', '.join(STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def passed(name: str, detail: str) -> Result:
    return Result(name, PASS, detail)


def warned(name: str, detail: str, fix: str) -> Result:
    return Result(name, WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> Result:
    return Result(name, FAIL, detail, fix)


def skipped(name: str, detail: str) -> Result:
    return Result(name, SKIP, detail)


def age(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
