"""How the CLI shows things: status colours, ages and durations, tables that fit the terminal,
and an execution as ``execution list`` and ``execution get`` show it.

The verb modules import this one (and with it rich) only when they print a table, so that
``--help`` and ``--output json`` do without it (docs/cli.md, "Start time").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from api.cli.executions import STATUSES

COLOURS = {
    "pending": "yellow", "running": "cyan", "requires_input": "magenta", "blocked": "red",
    "completed": "green", "failed": "bold red", "cancelled": "dim",
}  # fmt: skip
SIZES = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
GAP = 3  # between two columns of a SIMPLE_HEAD table without edges
PROMPT_ROOM = 20  # optional columns are left out before the prompt gets fewer columns
PROMPT_LEAST = 8  # below this, ids are shortened, then the prompt is left out
SHORT_ID = 8  # characters of an id on a narrow terminal, as git shortens commits
PROMPT_LINES = 10  # of a prompt, on `get`; --output json has it all


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


def first_line(prompt: str | None) -> str:
    return prompt.strip().splitlines()[0] if prompt and prompt.strip() else ""


def show_list(items: list[dict[str, Any]]) -> None:
    """A page of ``execution list``: one row an execution, fitted to the terminal."""
    console = Console()
    rows = [
        [Text(item["id"]), status_text(item["status"]), Text(item["agent_id"]),
         Text(item["worker_queue"]), Text(str(item["priority"])), Text(str(item["attempt"])),
         Text(ago(item["created_at"])), Text(first_line(item["prompt"]))]
        for item in items
    ]  # fmt: skip
    headers = ["id", "status", "agent", "queue", "prio", "attempt", "created", "prompt"]
    console.print(fitted_table(console, headers, rows, optional=("prio", "attempt")))


def show_execution(execution: dict[str, Any]) -> None:
    """``execution get``: the id and status, an overview, the tool calls, the artifacts."""
    console = Console()
    console.print(Text.assemble((execution["id"], "bold"), "  ", status_text(execution["status"])))
    console.print(_overview(execution))
    if execution.get("tool_calls"):
        calls = Table("tool", "arguments", "outcome", "took", "summary", title="tool calls",
                      box=box.SIMPLE_HEAD)  # fmt: skip
        for call in execution["tool_calls"]:
            outcome = call.get("outcome") or "running"
            calls.add_row(
                Text(str(call.get("tool"))), Text(json.dumps(call.get("arguments") or {})),
                Text(outcome, style="green" if outcome == "success" else "red"),
                duration(call.get("duration_seconds") or 0),
                Text(str(call.get("result_summary") or "")),
            )  # fmt: skip
        console.print(calls)
    if execution.get("artifacts"):
        files = Table("artifact", "type", "bytes", Column("download", overflow="fold"),
                      title="artifacts",
                      box=box.SIMPLE_HEAD)  # fmt: skip
        for artifact in execution["artifacts"]:
            files.add_row(Text(artifact["name"]), artifact["media_type"],
                          f"{artifact['size']:,}", Text(artifact["url"]))  # fmt: skip
        console.print(files)


def _overview(execution: dict[str, Any]) -> Table:
    """Label and value, one a line, leaving out what is not set."""
    prompt_lines = execution["prompt"].splitlines() or [""]
    prompt = "\n".join(prompt_lines[:PROMPT_LINES])
    if len(prompt_lines) > PROMPT_LINES:
        prompt += f"\n… {len(prompt_lines) - PROMPT_LINES} more lines (-o json has them all)"
    by = execution.get("created_by") or {}
    spent = execution.get("time_in_status") or {}
    deadline = execution.get("deadline")
    fields = {
        "prompt": prompt,
        "agent": execution["agent_id"] if execution["type"] == "agent"
        else f"{execution['agent_id']} (team {execution.get('team_id')})",
        "queue": execution["worker_queue"],
        "priority": str(execution["priority"]),
        "labels": ", ".join(f"{k}={v}" for k, v in execution.get("labels", {}).items()),
        "deadline": f"{deadline} ({ago(deadline)})" if deadline else "",
        "attempt": str(execution["attempt"]),
        "worker": execution.get("worker_id") or "",
        "created by": f"{by.get('kind')}:{by.get('id')}"
        + (f" (via {by['via']})" if by.get("via") else "") if by else "",
        "created": f"{execution['created_at']} ({ago(execution['created_at'])})",
        "parent": execution.get("parent_execution_id") or "",
        "blocked": _blocked(execution.get("blocked")),
        "cancel": "requested" if execution.get("cancel_requested") else "",
        "question": execution.get("question") or "",
        "error": " ".join(filter(None, [execution.get("failure_reason"),
                                        execution.get("error")])),
        "notes": execution.get("completion_notes") or "",
        "result": json.dumps(execution["result"]) if execution.get("result") is not None else "",
        "time in status": ", ".join(f"{name} {duration(spent[name])}"
                                    for name in STATUSES if name in spent),
        "usage": usage_text(execution.get("usage")),
    }  # fmt: skip
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for name, value in fields.items():
        if value:
            grid.add_row(f"  {name}", Text(value))
    return grid


def usage_text(usage: dict[str, Any] | None) -> str:
    """``1,200 in + 300 out tokens, $0.0066 (2 reports)``; empty when none was reported."""
    if not usage or not usage.get("reports"):
        return ""
    cost = usage.get("cost_usd")
    money = f", ${cost:,.4f}" if cost is not None else ""
    reports = usage["reports"]
    return (f"{usage['input_tokens']:,} in + {usage['output_tokens']:,} out tokens{money} "
            f"({reports} report{'s' if reports != 1 else ''})")  # fmt: skip


def _blocked(blocked: dict[str, Any] | None) -> str:
    if not blocked:
        return ""
    by = blocked.get("by") or {}
    return f"{blocked.get('reason')} (by {by.get('kind')}:{by.get('id')}, {blocked.get('at')})"
