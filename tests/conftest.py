"""Shared fixtures: the project root, the third-party corpus beside it, tiny DBCs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.broker import broker  # noqa: F401  (the Mosquitto fixture)
from helpers.netns import net  # noqa: F401  (two network namespaces of a test's own)
from helpers.vin_scan import known_vins, scan

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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every batch any test uploaded, to any destination, is scanned for a raw VIN
    (tests/helpers/vin_scan.py): one found fails the whole session."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # no test made a temporary directory: nothing was received
    databases = sorted(Path(factory.getbasetemp()).rglob("receiver.sqlite"))
    found = scan(databases, known_vins(ROOT / "tests", ROOT / "agent"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"VIN scan: {len(databases)} receiver databases, "
                            f"{len(found)} raw VINs found")
    if found:
        if reporter is not None:
            for line in found[:50]:
                reporter.write_line(f"  raw VIN uploaded: {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
