"""``agentboard exec`` and ``agentboard execution ...``: the CLI side of /v1/executions."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from api.cli_follow import follow
from api.client import EXIT_REFUSED, EXIT_USAGE, ApiClient, KeyOption, UrlOption, fail
from infra.settings import Settings

execution_cli = typer.Typer(help="List, inspect and act on executions.", no_args_is_help=True)

STATUSES = ("pending", "running", "requires_input", "blocked", "completed", "failed", "cancelled")
COLOURS = {
    "pending": "yellow", "running": "cyan", "requires_input": "magenta", "blocked": "red",
    "completed": "green", "failed": "bold red", "cancelled": "dim",
}  # fmt: skip


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json")]


def api_for(url: str | None, api_key: str | None) -> ApiClient:
    return ApiClient(Settings(), url, api_key)


def parse_params(params: list[str]) -> dict[str, Any]:
    """``k=v``: ``v`` as JSON when it parses as JSON, else as a string."""
    parsed: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes key=value (got {item!r})", EXIT_USAGE)
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def ago(iso: str | None) -> str:
    if not iso:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(max(seconds, 0))}s ago"


def status_text(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{status}[/]"


@execution_cli.command("list")
def list_executions(
    status: Annotated[list[str] | None, typer.Option(help="a status (repeatable)")] = None,
    agent: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str | None, typer.Option("--type", help="agent or team")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    label: Annotated[str | None, typer.Option(help="key=value or key")] = None,
    overdue: Annotated[bool, typer.Option(help="past their deadline, not ended")] = False,
    older_than: Annotated[str | None, typer.Option(help="e.g. 30m, 12h, 7d")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="the next page: the cursor a previous page printed")
    ] = None,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Executions, filtered.  Example: agentboard execution list --status running --agent shell"""
    unknown = [value for value in status or [] if value not in STATUSES]
    if unknown:
        fail(f"unknown status {unknown[0]!r}; choose among {', '.join(STATUSES)}", EXIT_USAGE)
    params: dict[str, Any] = {"limit": limit, "overdue": overdue}
    filters = {"agent": agent, "team": team, "type": type_, "queue": queue, "label": label,
               "older_than": older_than}  # fmt: skip
    params.update({name: value for name, value in filters.items() if value is not None})
    if status:
        params["status"] = status
    if cursor:
        params["cursor"] = cursor
    page = api_for(url, api_key).call("GET", "/v1/executions", params=params)
    if output is Output.JSON:
        typer.echo(json.dumps(page, indent=2))
        return
    table = Table(Column("id", no_wrap=True), "status", "agent", "queue", "prio", "attempt",
                  "created", Column("prompt", overflow="ellipsis", no_wrap=True))  # fmt: skip
    for item in page["items"]:
        table.add_row(
            item["id"], status_text(item["status"]), item["agent_id"], item["worker_queue"],
            str(item["priority"]), str(item["attempt"]), ago(item["created_at"]),
            item["prompt"].splitlines()[0][:60] if item["prompt"] else "",
        )  # fmt: skip
    Console().print(table)
    if page.get("next_cursor"):
        typer.echo(f"more: the same command with --cursor {page['next_cursor']}", err=True)


@execution_cli.command("get")
def get_execution(
    execution_id: Annotated[str, typer.Argument(help="the execution's id")],
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """One execution: overview, time in each status, tool calls."""
    execution = api_for(url, api_key).call("GET", f"/v1/executions/{execution_id}")
    if output is Output.JSON:
        typer.echo(json.dumps(execution, indent=2))
        return
    console = Console()
    console.print(f"[bold]{execution['id']}[/]  {status_text(execution['status'])}")
    for name in ("agent_id", "type", "worker_queue", "worker_id", "attempt", "created_by",
                 "question", "error", "result"):  # fmt: skip
        if execution.get(name) not in (None, ""):
            console.print(f"  {name:14} {execution[name]}")
    console.print(f"  {'created':14} {ago(execution['created_at'])}")
    if execution.get("time_in_status"):
        spent = ", ".join(f"{k} {v:.1f}s" for k, v in execution["time_in_status"].items())
        console.print(f"  {'time in status':14} {spent}")
    calls = Table("tool", "outcome", "seconds", "summary", title="tool calls")
    for call in execution.get("tool_calls", []):
        calls.add_row(
            str(call.get("tool")), str(call.get("outcome") or "running"),
            f"{call.get('duration_seconds') or 0:.2f}", str(call.get("result_summary") or ""),
        )  # fmt: skip
    if execution.get("tool_calls"):
        console.print(calls)
    if execution.get("artifacts"):
        files = Table("artifact", "type", "bytes", "download", title="artifacts")
        for artifact in execution["artifacts"]:
            files.add_row(artifact["name"], artifact["media_type"], str(artifact["size"]),
                          artifact["url"])  # fmt: skip
        console.print(files)


@execution_cli.command("logs")
def logs(
    execution_id: str,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="stream output and tool calls until it ends")
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """The output an execution stored so far; with --follow, live until it ends.

    Example: agentboard execution logs 3f2a... --follow"""
    api = api_for(url, api_key)
    if follow_:
        follow(api, execution_id, answer_questions=False)
        return
    typer.echo(api.text(f"/v1/executions/{execution_id}/logs"), nl=False)


def _act(execution_id: str, action: str, body: dict[str, Any] | None, url: str | None,
         api_key: str | None) -> None:  # fmt: skip
    result = api_for(url, api_key).call("POST", f"/v1/executions/{execution_id}/{action}",
                                        json=body)  # fmt: skip
    typer.echo(f"{result['id']} {result['status']}")


# cancel, retry and complete (one execution, or in bulk) are in api/cli_bulk.py


@execution_cli.command("respond")
def respond(
    execution_id: str,
    answer: Annotated[str, typer.Argument(help="the answer (JSON if it parses, else text)")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Answer an execution that requires input."""
    try:
        value: Any = json.loads(answer)
    except ValueError:
        value = answer
    _act(execution_id, "input", {"answer": value}, url, api_key)


def exec_command(
    prompt: Annotated[str, typer.Argument(help="what the agent should do")],
    agent: Annotated[str, typer.Option(help="the agent")] = "shell",
    queue: Annotated[str, typer.Option(help="the worker queue")] = "default",
    param: Annotated[list[str] | None, typer.Option(help="k=v, v as JSON if it parses")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the end: exit 1 if not completed")] = False,
    follow_: Annotated[bool, typer.Option(
        "--follow", "-f",
        help="stream output and tool calls until the end, answer questions; exits as --wait",
    )] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Create an execution and print its id.

    Examples: agentboard exec "ls -la" --wait;
    agentboard exec "deploy" --agent script --param 'steps=[{"ask": "sure?"}]' --follow"""
    api = api_for(url, api_key)
    body = {"agent_id": agent, "worker_queue": queue, "prompt": prompt,
            "parameters": parse_params(param or [])}  # fmt: skip
    created = api.call("POST", "/v1/executions", json=body)
    typer.echo(created["id"])
    if follow_:
        follow(api, created["id"], answer_questions=True)
    elif not wait:
        return
    while True:
        execution = api.call("GET", f"/v1/executions/{created['id']}")
        if execution["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if execution["status"] != "completed":
        fail(f"{execution['status']}: {execution.get('error') or ''}".strip(), EXIT_REFUSED)
    typer.echo(json.dumps(execution["result"]))
