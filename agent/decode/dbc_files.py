"""Loading DBC files with cantools, strictly when possible."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from agent.errors import DbcError

log = logging.getLogger(__name__)

_LINE = re.compile(r"line (\d+)")


def load_dbc(path: str | Path) -> Any:
    """Load one DBC into a cantools Database.

    A file that cantools rejects in strict mode (overlapping signals, a signal
    that does not fit its message) is loaded again with ``strict=False`` and a
    warning. One that cannot be loaded at all raises DbcError naming
    ``file:line`` when cantools says which line.
    """
    import cantools

    path = Path(path)
    try:
        return cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except OSError as exc:
        raise DbcError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as strict_exc:  # cantools raises several unrelated types
        try:
            db = cantools.database.load_file(str(path), database_format="dbc", strict=False)
        except Exception as exc:
            raise DbcError(_describe(path, exc)) from None
        log.warning("%s: loaded with strict=False: %s", path, _message(strict_exc))
        return db


def _message(exc: Exception) -> str:
    text = str(exc)
    if text.startswith('DBC: "') and text.endswith('"'):
        text = text[6:-1]
    return text


def _describe(path: Path, exc: Exception) -> str:
    text = _message(exc)
    match = _LINE.search(text)
    where = f"{path}:{match.group(1)}" if match else str(path)
    return f"{where}: not a loadable DBC: {text}"
