"""``agentboard execution cancel|retry|complete``: one execution by its id, or every execution
a filter matches (DESIGN §7's bulk verbs), through ``POST /v1/executions/bulk``.

In bulk, a dry run lists what matches first; then, after a confirmation (asked on a terminal,
``--yes`` otherwise), the actions go by id, a hundred per request, under a progress bar.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from uuid import uuid4

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from api.cli_executions import (
    STATUSES,
    Output,
    OutputOption,
    api_for,
    status_text,
)
from api.client import EXIT_REFUSED, EXIT_USAGE, ApiClient, KeyOption, UrlOption, fail
from projections import InvalidQuery, parse_age

CHUNK = 100
SHOWN = 50  # rows of the listing; --output json has them all

IdArgument = Annotated[str | None, typer.Argument(help="one execution; or use the filters")]
StatusOption = Annotated[
    list[str] | None, typer.Option("--status", help="a status (repeatable, or comma-separated)")
]
OlderOption = Annotated[str | None, typer.Option("--older-than", help="e.g. 30m, 12h, 7d")]
AgentOption = Annotated[str | None, typer.Option("--agent")]
TeamOption = Annotated[str | None, typer.Option("--team")]
TypeOption = Annotated[str | None, typer.Option("--type", help="agent or team")]
QueueOption = Annotated[str | None, typer.Option("--queue")]
LabelOption = Annotated[str | None, typer.Option("--label", help="key=value or key")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="list what matches; change nothing")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def bulk_filter(
    status: list[str] | None, older_than: str | None, agent: str | None, team: str | None,
    type_: str | None, queue: str | None, label: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The request's filter, checked here so a typo costs no round trip."""
    statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
    unknown = [value for value in statuses if value not in STATUSES]
    if unknown:
        fail(f"unknown status {unknown[0]!r}; choose among {', '.join(STATUSES)}", EXIT_USAGE)
    if older_than is not None:
        try:
            parse_age(older_than)
        except InvalidQuery as error:
            fail(f"--older-than: {error}", EXIT_USAGE)
    if type_ is not None and type_ not in ("agent", "team"):
        fail(f"--type is agent or team (got {type_!r})", EXIT_USAGE)
    given = {"status": statuses or None, "older_than": older_than, "agent": agent,
             "team": team, "type": type_, "queue": queue, "label": label}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


def one_or_many(
    action: str, execution_id: str | None, where: dict[str, Any], dry_run: bool
) -> bool:
    """True for one execution by id, False for bulk; a usage error for both or neither."""
    if execution_id is not None and (where or dry_run):
        fail(f"{action} takes an execution id or filters (--status ...), not both", EXIT_USAGE)
    if execution_id is None and "status" not in where:
        fail(f"{action} needs an execution id, or --status (and other filters) to act on "
             "many", EXIT_USAGE)  # fmt: skip
    return execution_id is not None


def act_on_one(api: ApiClient, execution_id: str, action: str, body: dict[str, Any] | None) -> None:
    result = api.call("POST", f"/v1/executions/{execution_id}/{action}", json=body)
    typer.echo(f"{result['id']} {result['status']}")


def run_bulk(api: ApiClient, action: str, where: dict[str, Any], dry_run: bool, yes: bool,
             output: Output) -> None:  # fmt: skip
    preview = api.call("POST", "/v1/executions/bulk",
                       json={"action": action, "filter": where, "dry_run": True})  # fmt: skip
    items: list[dict[str, Any]] = preview["items"]
    if preview["truncated"]:
        verb = "lists" if dry_run else "acts on"
        typer.echo(f"agentboard: more than {len(items):,} match; this {verb} the first "
                   f"{len(items):,} (run it again for the rest)", err=True)  # fmt: skip
    if dry_run or not items:
        show_preview(preview, output)
        return
    if output is Output.TABLE:
        show_preview(preview, output)
    to_change = [item["id"] for item in items if item["outcome"] == "would_change"]
    refused = [item for item in items if item["outcome"] == "refused"]
    changed = 0
    if to_change:
        confirm(action, len(to_change), yes)
        for item in send(api, action, to_change):
            if item["outcome"] == "changed":
                changed += 1
            else:
                refused.append(item)
    report(action, changed, refused, output)


def confirm(action: str, count: int, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"not a terminal to confirm on: pass --yes to {action} {count} executions",
             EXIT_USAGE)  # fmt: skip
    if not typer.confirm(f"{action} {count} executions?", err=True):
        fail("nothing changed", EXIT_REFUSED)


def send(api: ApiClient, action: str, ids: list[str]) -> list[dict[str, Any]]:
    """The actions by id, a chunk per request, under one idempotency key (a repeated chunk
    changes nothing twice)."""
    headers = {"Idempotency-Key": f"cli-bulk-{uuid4()}"}
    done: list[dict[str, Any]] = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task(action, total=len(ids))
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            result = api.call("POST", "/v1/executions/bulk", headers=headers,
                              json={"action": action, "filter": {"ids": chunk}})  # fmt: skip
            done.extend(result["items"])
            progress.advance(task, len(chunk))
    return done


def show_preview(preview: dict[str, Any], output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps(preview, indent=2))
        return
    items = preview["items"]
    if not items:
        typer.echo("no executions match")
        return
    table = Table("id", "status", "outcome", "prompt")
    for item in items[:SHOWN]:
        outcome = "would change" if item["outcome"] == "would_change" else item["outcome"]
        prompt = (item["prompt"] or "").splitlines()[0][:60] if item["prompt"] else ""
        table.add_row(item["id"], status_text(item["status"] or "?"), outcome, prompt)
    console = Console()
    console.print(table)
    if len(items) > SHOWN:
        console.print(f"… and {len(items) - SHOWN} more (--output json lists them all)")


def report(action: str, changed: int, refused: list[dict[str, Any]], output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps({"action": action, "changed": changed, "refused": refused}, indent=2))
    else:
        typer.echo(f"{action}: changed {changed}, refused {len(refused)}")
        for item in refused[:SHOWN]:
            typer.echo(f"  {item['id']}: {item.get('detail') or 'refused'}")
    if refused:
        fail(f"{len(refused)} of {changed + len(refused)} refused", EXIT_REFUSED)


def cancel(
    execution_id: IdArgument = None, status: StatusOption = None, older_than: OlderOption = None,
    agent: AgentOption = None, team: TeamOption = None, type_: TypeOption = None,
    queue: QueueOption = None, label: LabelOption = None, dry_run: DryRunOption = False,
    yes: YesOption = False, output: OutputOption = Output.TABLE, url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Cancel one execution by id, or every one that matches.

    Pending work is cancelled at once; running work is asked to stop.
    Example: agentboard execution cancel --status pending --older-than 7d"""
    where = bulk_filter(status, older_than, agent, team, type_, queue, label)
    if one_or_many("cancel", execution_id, where, dry_run):
        act_on_one(api_for(url, api_key), str(execution_id), "cancel",
                   {"reason": "cancelled from the CLI"})  # fmt: skip
        return
    run_bulk(api_for(url, api_key), "cancel", where, dry_run, yes, output)


def retry(
    execution_id: IdArgument = None, status: StatusOption = None, older_than: OlderOption = None,
    agent: AgentOption = None, team: TeamOption = None, type_: TypeOption = None,
    queue: QueueOption = None, label: LabelOption = None, dry_run: DryRunOption = False,
    yes: YesOption = False, output: OutputOption = Output.TABLE, url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Retry one failed execution by id, or every one that matches, as a new attempt.

    Example: agentboard execution retry --status failed --agent shell --yes"""
    where = bulk_filter(status, older_than, agent, team, type_, queue, label)
    if one_or_many("retry", execution_id, where, dry_run):
        act_on_one(api_for(url, api_key), str(execution_id), "retry", None)
        return
    run_bulk(api_for(url, api_key), "retry", where, dry_run, yes, output)


def complete(
    status: StatusOption = None, older_than: OlderOption = None, agent: AgentOption = None,
    team: TeamOption = None, type_: TypeOption = None, queue: QueueOption = None,
    label: LabelOption = None, dry_run: DryRunOption = False, yes: YesOption = False,
    output: OutputOption = Output.TABLE, url: UrlOption = None, api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Complete every matching execution that began (running, requires_input, blocked).

    Example: agentboard execution complete --status running --older-than 7d --dry-run"""
    where = bulk_filter(status, older_than, agent, team, type_, queue, label)
    one_or_many("complete", None, where, dry_run)
    run_bulk(api_for(url, api_key), "complete", where, dry_run, yes, output)


def add_bulk_commands(execution_cli: typer.Typer) -> None:
    for name, command in (("cancel", cancel), ("retry", retry), ("complete", complete)):
        execution_cli.command(name)(command)
