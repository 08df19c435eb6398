"""Shared fixtures: the project root, the third-party corpus beside it, tiny DBCs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.broker import broker  # noqa: F401  (the Mosquitto fixture)
from helpers.netns import net  # noqa: F401  (two network namespaces of a test's own)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def corpus(*parts: str) -> Path:
    """A file of ../shared/corpus, or skip the test when it is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"third-party corpus not present: {path}")
    return path


@pytest.fixture
def root() -> Path:
    return ROOT
