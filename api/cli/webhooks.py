"""`agentboard webhooks`: register endpoints told when executions enter statuses, list
them, see their deliveries, delete them, enable one again (an admin key's work)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from api.cli.client import EXIT_USAGE, KeyOption, UrlOption, fail
from api.cli.executions import STATUSES, Output, OutputOption, api_for

webhooks_cli = typer.Typer(help="Webhooks: be told when executions change.", no_args_is_help=True)

IdArgument = Annotated[str, typer.Argument(help="the webhook's id (wh_...)")]


def filter_of(pairs: list[str]) -> dict[str, Any]:
    """``--filter k=v`` options as the list's filters: ``status`` may repeat, ``overdue``
    is true or false, the rest are text."""
    where: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--filter takes key=value (got {pair!r})", EXIT_USAGE)
        if key == "status":
            where.setdefault("status", []).extend(s for s in value.split(",") if s)
        elif key == "overdue":
            where["overdue"] = value.lower() in ("1", "true", "yes")
        else:
            where[key] = value
    return where


@webhooks_cli.command("create")
def webhooks_create(
    url: Annotated[str, typer.Argument(help="where to POST (http or https)")],
    event: Annotated[list[str], typer.Option(
        "--event", "-e", help=f"a status to announce (repeatable): {', '.join(STATUSES)}, or *"
    )],
    filter_: Annotated[list[str] | None, typer.Option(
        "--filter", help="only executions matching key=value (the list's filters; repeatable)"
    )] = None,
    output: OutputOption = Output.TABLE,
    url_: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Register an endpoint. Its secret (whsec_...), which verifies the signatures, is
    printed this once; registering the same URL, events and filter again shows the
    endpoint already registered.

    Example: agentboard webhooks create https://example.com/hooks --event requires_input
    --event failed --filter agent=coder"""
    body = {"url": url, "events": event, "filter": filter_of(filter_ or [])}
    created = api_for(url_, api_key).call("POST", "/v1/webhooks", json=body)
    if output is Output.JSON:
        typer.echo(json.dumps(created, indent=2))
        return
    typer.echo(f"{created['id']} {created['url']} ({', '.join(created['events'])})")
    if "secret" in created:
        typer.echo(f"secret: {created['secret']}  (shown only now: keep it)")
    else:
        typer.echo("already registered; its secret was shown when it was made")


@webhooks_cli.command("list")
def webhooks_list(
    output: OutputOption = Output.TABLE, url: UrlOption = None, api_key: KeyOption = None
) -> None:
    """The tenant's endpoints, enabled or not (never their secrets).

    Example: agentboard webhooks list"""
    from rich.console import Console  # noqa: PLC0415 - the CLI starts fast without it
    from rich.table import Table  # noqa: PLC0415

    from api.cli.format import ago  # noqa: PLC0415

    items = api_for(url, api_key).call("GET", "/v1/webhooks")["items"]
    if output is Output.JSON:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "url", "events", "filter", "state", "made")
    for item in items:
        state = (
            "[green]enabled[/]"
            if item["enabled"]
            else f"[red]disabled[/] {ago(item['disabled_at'])}"
        )
        if item["enabled"] and item["failing_since"]:
            state = f"[yellow]failing since {ago(item['failing_since'])}[/]"
        where = " ".join(f"{k}={v}" for k, v in item["filter"].items())
        table.add_row(item["id"], item["url"], ", ".join(item["events"]), where, state,
                      ago(item["created_at"]))  # fmt: skip
    Console().print(table)


@webhooks_cli.command("deliveries")
def webhooks_deliveries(
    webhook_id: IdArgument,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Every delivery attempt to an endpoint, newest first: when, the answer's status
    code, what went wrong, how long it took.

    Example: agentboard webhooks deliveries wh_3f2a9c0d1e2b4a5c"""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from api.cli.format import ago  # noqa: PLC0415

    path = f"/v1/webhooks/{webhook_id}/deliveries"
    items = api_for(url, api_key).call("GET", path, params={"limit": limit})["items"]
    if output is Output.JSON:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("when", "type", "execution", "try", "status", "ms", "error")
    for item in items:
        status = str(item["status_code"] or "-")
        colour = "green" if item["delivered"] else "red"
        table.add_row(
            ago(item["attempted_at"]), item["type"], item["execution_id"][:8],
            str(item["attempt"]), f"[{colour}]{status}[/]",
            f"{item['duration_ms']:.0f}", item["error"] or "",
        )  # fmt: skip
    Console().print(table)


@webhooks_cli.command("delete")
def webhooks_delete(
    webhook_id: IdArgument, url: UrlOption = None, api_key: KeyOption = None
) -> None:
    """Delete an endpoint (and what it still had to be delivered).

    Example: agentboard webhooks delete wh_3f2a9c0d1e2b4a5c"""
    api_for(url, api_key).call("DELETE", f"/v1/webhooks/{webhook_id}")
    typer.echo(f"deleted {webhook_id}")


@webhooks_cli.command("enable")
def webhooks_enable(
    webhook_id: IdArgument, url: UrlOption = None, api_key: KeyOption = None
) -> None:
    """Enable an endpoint that was disabled after a day of failed deliveries.

    Example: agentboard webhooks enable wh_3f2a9c0d1e2b4a5c"""
    api_for(url, api_key).call("POST", f"/v1/webhooks/{webhook_id}/enable")
    typer.echo(f"enabled {webhook_id}")
