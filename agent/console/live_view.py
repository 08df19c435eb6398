"""Draw ``bavard live``'s screen with rich: a header line, the filter line, the table.

::

    bavard live  log sample_drive.log  23/78 signals (78 known)  2,530 samples/s  dropped 0
    filter: engine_     type to filter  Esc clears  Space pauses  Up/Down PgUp/PgDn scroll  q quits
     channel  message.signal          value    unit  rate     age   stored  history
     can0     EngineData.EngineSpeed  2143.5   rpm   100.0/s  0.0s  yes     ▃▄▅▆▇█▇▆

A value that changed less than a second ago is drawn reversed (bold on yellow). Only
the rows that fit are drawn, from the model's scroll offset on.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.cli.sparkline import sparkline
from agent.console.live_model import LiveModel, RowView

HEADER_LINES = 5  # header, filter line, table header, its rule; the footer
SPARK_WIDTH = 16
HELP = "type to filter  Esc clears  Space pauses  Up/Down PgUp/PgDn scroll  q quits"
CHANGED = "bold black on yellow"


def render(model: LiveModel, source: str, height: int) -> tuple[RenderableType, int]:
    """The screen for a terminal ``height`` lines high, and the number of rows that
    fit in it (a page, for scrolling)."""
    rows = model.view()
    page = max(1, height - HEADER_LINES)
    model.scroll(0, len(rows), page)  # keep the offset within the rows after a change
    shown = rows[model.offset:model.offset + page]
    parts: list[RenderableType] = [_header(model, source, len(rows)), _filter_line(model)]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False,
                  padding=(0, 1))
    for title, justify in (("channel", "left"), ("message.signal", "left"),
                           ("value", "right"), ("unit", "left"), ("rate", "right"),
                           ("age", "right"), ("stored", "left"), ("history", "left")):
        table.add_column(title, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for row in shown:
        table.add_row(*_cells(row))
    parts.append(table)
    if not rows:
        parts.append(Text(_empty(model), style="dim"))
    elif len(rows) > page:
        last = model.offset + len(shown)
        parts.append(Text(f"rows {model.offset + 1}-{last} of {len(rows)}", style="dim"))
    return Group(*parts), page


def _header(model: LiveModel, source: str, shown: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")  # one line, whatever the socket's path
    text.append("bavard live", style="bold")
    if model.paused:
        text.append("  PAUSED", style="bold reverse")
    if model.ended:  # first: a long source (a socket's path) must not hide it
        text.append(f"  ended: {model.ended}", style="bold yellow")
    text.append(f"  {source}")
    seen = len(model.rows)
    counts = f"  {shown}/{seen} signals" if shown != seen else f"  {seen} signals"
    if model.known is not None:
        counts += f" ({model.known} known" + (
            f", {model.selected} selected)" if model.selected is not None else ")")
    text.append(counts)
    text.append(f"  {model.rate():,.0f} samples/s")
    if model.dropped:
        text.append(f"  dropped {model.dropped:,}", style="bold red")
    else:
        text.append("  dropped 0")
    if model.unreadable:
        text.append(f"  unreadable {model.unreadable:,}", style="red")
    return text


def _filter_line(model: LiveModel) -> Text:
    text = Text("filter: ", no_wrap=True, overflow="ellipsis")
    text.append(model.filter + "_", style="bold cyan")
    text.append(f"    {HELP}", style="dim")
    return text


def _cells(row: RowView) -> tuple[Text | str, ...]:
    value = Text(row.value, style=CHANGED if row.highlighted else "")
    stored = "-" if row.kept is None else ("yes" if row.kept else "no")
    return (row.channel, row.name, value, row.unit, f"{row.rate:.1f}/s", format_age(row.age),
            stored, sparkline(row.history, SPARK_WIDTH))


def _empty(model: LiveModel) -> str:
    if model.rows:
        return f"no signal matches {model.filter!r} (Esc clears the filter)"
    if model.ended:
        return "no sample came"
    return "waiting for samples..."


def format_age(seconds: float) -> str:
    """``0.3s``, ``12s``, ``4m05s``, ``2h03m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
