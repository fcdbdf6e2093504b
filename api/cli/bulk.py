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

from api.cli.client import EXIT_REFUSED, EXIT_USAGE, ApiClient, KeyOption, UrlOption, fail
from api.cli.executions import (
    OlderOption,
    Output,
    OutputOption,
    StatusOption,
    act,
    api_for,
    checked_filter,
)

CHUNK = 100
SHOWN = 50  # rows of the listing; --output json has them all

IdArgument = Annotated[str | None, typer.Argument(help="one execution; or use the filters")]
AgentOption = Annotated[str | None, typer.Option("--agent")]
TeamOption = Annotated[str | None, typer.Option("--team")]
TypeOption = Annotated[str | None, typer.Option("--type", help="agent or team")]
QueueOption = Annotated[str | None, typer.Option("--queue")]
LabelOption = Annotated[str | None, typer.Option("--label", help="key=value or key")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="list what matches; change nothing")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


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
    from rich.console import Console  # noqa: PLC0415 - rich, only when acting in bulk
    from rich.progress import Progress  # noqa: PLC0415

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
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.text import Text  # noqa: PLC0415

    from api.cli.format import first_line, fitted_table, status_text  # noqa: PLC0415

    rows = [
        [Text(item["id"]), status_text(item["status"] or "?"),
         Text(item["outcome"].replace("_", " ")), Text(first_line(item["prompt"]))]
        for item in items[:SHOWN]
    ]  # fmt: skip
    console = Console()
    console.print(fitted_table(console, ["id", "status", "outcome", "prompt"], rows))
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
    """Cancel one execution or all that match.

    One by id (or short id), or every one that matches the filters (listed first, then
    confirmed). Pending work is cancelled at once; running work is asked to stop.

    \b
    Examples:
      agentboard execution cancel 3f2a9c0d
      agentboard execution cancel --status pending --older-than 7d
    """
    where = checked_filter(status, older_than, agent, team, type_, queue, label)
    if one_or_many("cancel", execution_id, where, dry_run):
        act(api_for(url, api_key), str(execution_id), "cancel",
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
    """Retry one execution or all that match.

    One by id (or short id), or every one that matches the filters (listed first, then
    confirmed), each as a new attempt.

    \b
    Examples:
      agentboard execution retry 3f2a9c0d
      agentboard execution retry --status failed --agent shell --yes
    """
    where = checked_filter(status, older_than, agent, team, type_, queue, label)
    if one_or_many("retry", execution_id, where, dry_run):
        act(api_for(url, api_key), str(execution_id), "retry", None)
        return
    run_bulk(api_for(url, api_key), "retry", where, dry_run, yes, output)


def complete(
    status: StatusOption = None, older_than: OlderOption = None, agent: AgentOption = None,
    team: TeamOption = None, type_: TypeOption = None, queue: QueueOption = None,
    label: LabelOption = None, dry_run: DryRunOption = False, yes: YesOption = False,
    output: OutputOption = Output.TABLE, url: UrlOption = None, api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Complete matching executions that began.

    Every one that began (running, requires_input, blocked) and matches the filters, listed
    first, then confirmed.

    \b
    Example:
      agentboard execution complete --status running --older-than 7d --dry-run
    """
    where = checked_filter(status, older_than, agent, team, type_, queue, label)
    one_or_many("complete", None, where, dry_run)
    run_bulk(api_for(url, api_key), "complete", where, dry_run, yes, output)


def add_bulk_commands(execution_cli: typer.Typer) -> None:
    for name, command in (("cancel", cancel), ("retry", retry), ("complete", complete)):
        execution_cli.command(name)(command)
