"""`agentboard keys`: make, list and revoke API keys (an admin key's work)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from api.cli.client import KeyOption, UrlOption
from api.cli.executions import Output, OutputOption, api_for
from api.cli.group import verb_group
from infra.local_keys import Role

keys_cli = verb_group("API keys.")


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the tenant the key belongs to")],
    role: Annotated[Role, typer.Option(help="viewer, operator, worker or admin")],
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="a worker key only: a queue it serves (repeatable)"),
    ] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Make an API key.

    It takes an admin key. The new key is printed once; keep it.

    \b
    Example:
      agentboard keys create --tenant acme --role worker --queue gpu --queue cpu
    """
    body: dict[str, Any] = {"tenant": tenant, "role": role.value}
    if queue:
        body["queues"] = queue
    typer.echo(api_for(url, api_key).call("POST", "/v1/keys", json=body)["key"])


@keys_cli.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List the keys an admin may see.

    Revoked ones too; never their secrets.

    \b
    Example:
      agentboard keys list --tenant acme
    """
    params = {"tenant": tenant} if tenant else {}
    items = api_for(url, api_key).call("GET", "/v1/keys", params=params)["items"]
    if output is Output.JSON:
        typer.echo(json.dumps(items, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.table import Column, Table  # noqa: PLC0415

    from api.cli.format import ago  # noqa: PLC0415

    table = Table(Column("key id", no_wrap=True), "tenant", "role", "queues", "made",
                  "made by", "revoked")  # fmt: skip
    for item in items:
        table.add_row(
            item["key_id"], item["tenant"], item["role"], ", ".join(item["queues"] or ["all"]),
            ago(item["created_at"]), item["created_by"],
            f"[red]{ago(item['revoked_at'])}[/]" if item["revoked_at"] else "",
        )  # fmt: skip
    Console().print(table)


@keys_cli.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="the key id (as `keys list` shows it) or the key")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Revoke a key.

    It is refused at once by the API process that revoked it, within 30 s everywhere.

    \b
    Example:
      agentboard keys revoke 3f2a9c0d1e2b4a5c
    """
    key_id = key.split("_")[1] if key.startswith("ab_") and key.count("_") >= 2 else key
    revoked = api_for(url, api_key).call("DELETE", f"/v1/keys/{key_id}")
    typer.echo(f"revoked {revoked['key_id']} ({revoked['role']} of {revoked['tenant']})")
