"""Files shipped with the agent: the demo vehicle's DBC and a sample drive.

In a wheel they live under ``agent/data/`` (pyproject force-includes them);
in a source checkout or an editable install they are read from the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from agent.errors import BavardError, DbcError

_REPO = Path(__file__).resolve().parent.parent


def _find(packaged: str, in_repo: str) -> Path | None:
    candidates = [Path(str(resources.files("agent").joinpath(packaged))), _REPO / in_repo]
    return next((path for path in candidates if path.is_file()), None)


def demo_dbc_path() -> Path:
    """The demo vehicle's DBC (``dbc/demo_vehicle.dbc``)."""
    found = _find("data/dbc/demo_vehicle.dbc", "dbc/demo_vehicle.dbc")
    if found is None:
        raise DbcError(
            "demo DBC not found: neither agent/data/dbc/demo_vehicle.dbc (installed) "
            f"nor {_REPO / 'dbc/demo_vehicle.dbc'} (source checkout) exists"
        )
    return found


def sample_drive_path() -> Path:
    """The shipped sample drive, a candump log of one simulated drive cycle."""
    found = _find("data/sample_drive.log", "tests/data/sample_drive.log")
    if found is None:
        raise BavardError(
            "sample drive not found: neither agent/data/sample_drive.log (installed) "
            f"nor {_REPO / 'tests/data/sample_drive.log'} (source checkout) exists"
        )
    return found
