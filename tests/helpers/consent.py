"""The owner's consent for a test's service: nothing is stored without it."""

from __future__ import annotations

import os
from pathlib import Path

from agent.privacy.consent import ConsentBook

EVERY = ("maintenance", "insurance", "repair", "fleet", "diagnostics")


def grant(state_dir: Path, *purposes: str) -> Path:
    """Grant ``purposes`` (every built-in one by default) in ``state_dir``, as
    ``bavard consent grant`` does with no service running; the state directory."""
    state_dir.mkdir(parents=True, exist_ok=True)
    book = ConsentBook(state_dir)
    for purpose in purposes or EVERY:
        book.grant(purpose, None, os.getuid())
    return state_dir


def grant_for(config: Path, *purposes: str) -> Path:
    """Grant ``purposes`` in the state directory ``config`` names (a configuration that
    does not parse is left alone: the test is about that)."""
    import tomllib

    try:
        raw = tomllib.loads(Path(config).read_text())
        state = Path(raw["store"]["state_dir"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return Path(config).parent
    if not state.is_absolute():
        state = Path(config).parent / state
    return grant(state, *purposes)
