"""How the CLI shows things: status colours, ages and durations, tables that fit the terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

COLOURS = {
    "pending": "yellow", "running": "cyan", "requires_input": "magenta", "blocked": "red",
    "completed": "green", "failed": "bold red", "cancelled": "dim",
}  # fmt: skip
SIZES = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
GAP = 3  # between two columns of a SIMPLE_HEAD table without edges
PROMPT_ROOM = 20  # optional columns are left out before the prompt gets fewer columns
PROMPT_LEAST = 8  # below this, ids are shortened, then the prompt is left out
SHORT_ID = 8  # characters of an id on a narrow terminal, as git shortens commits


def status_text(status: str) -> Text:
    return Text(status, style=COLOURS.get(status, "white"))


def _units(seconds: float, parts: int) -> str:
    """The largest one or two units: 294 s is "4m" or "4m 54s"."""
    whole = int(seconds)
    for index, (unit, size) in enumerate(SIZES):
        if whole >= size or unit == "s":
            shown = f"{whole // size}{unit}"
            if parts == 2 and unit != "s":
                smaller, small_size = SIZES[index + 1]
                shown += f" {whole % size // small_size}{smaller}"
            return shown
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """``"4m 54s"``, ``"2h 3m"``, ``"1d 4h"``; ``"12s"``, ``"1.5s"``, ``"35ms"`` when short."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return _units(seconds, 2)


def ago(iso: str | None) -> str:
    """``"3m ago"`` for a past time, ``"in 2h"`` for a future one (a deadline)."""
    if not iso:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < -1:
        return f"in {_units(-seconds, 1)}"
    return f"{_units(max(seconds, 0), 1)} ago"


def fitted_table(
    console: Console, headers: list[str], rows: list[list[Text]], optional: tuple[str, ...] = ()
) -> Table:
    """A table that fits the terminal. The first column is an id, the last a prompt; every
    column keeps its width except the prompt, which takes what is left, cut with "…". When
    the prompt would get under 20 characters, the ``optional`` columns are left out; under
    8, ids are shortened to their first 8 characters (which `get`, `cancel` and the other
    verbs take); still under 8, the prompt is left out."""
    widths = [max([len(header)] + [row[i].cell_len for row in rows]) for i, header in
              enumerate(headers)]  # fmt: skip
    shown = list(range(len(headers)))

    def room() -> int:
        return console.width - sum(widths[i] + GAP for i in shown[:-1])

    for name in reversed(optional):
        if room() < PROMPT_ROOM:
            shown.remove(headers.index(name))
    if room() < PROMPT_LEAST:
        widths[0] = min(widths[0], SHORT_ID)
        rows = [[row[0][:SHORT_ID], *row[1:]] for row in rows]
    columns = [Column(headers[i], no_wrap=True) for i in shown[:-1]]
    if room() >= PROMPT_LEAST:
        columns.append(Column(headers[-1], no_wrap=True, overflow="ellipsis", max_width=room()))
    else:
        shown.pop()
    table = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
