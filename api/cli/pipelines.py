"""``agentboard pipeline``: run a pipeline from a YAML or JSON file, list, get, cancel,
add items (DESIGN §12), all over the HTTP API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.client import EXIT_REFUSED, EXIT_USAGE, KeyOption, UrlOption, fail
from api.cli.executions import Output, OutputOption, api_for
from api.cli.group import verb_group

pipeline_cli = verb_group("Run pipelines: items through columns of agents.")

FileArgument = Annotated[Path, typer.Argument(help="a pipeline spec, YAML or JSON")]
IdArgument = Annotated[str, typer.Argument(help="the pipeline's id")]
ENDED = ("completed", "failed", "cancelled")


def read_spec(path: Path) -> Any:
    """The document in ``path``: JSON, else YAML; exit 2 naming the file otherwise."""
    try:
        text = path.read_text()
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}", EXIT_USAGE)
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml  # noqa: PLC0415 - only for a file that is not JSON

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        fail(f"{path} is neither JSON nor YAML: {error}", EXIT_USAGE)


@pipeline_cli.command("run")
def run(
    file: FileArgument,
    wait: Annotated[bool, typer.Option(help="wait for the end: exit 1 if not completed")] = False,
    follow_: Annotated[
        bool,
        typer.Option("--follow", help="print each item's moves until the end; exits as --wait"),
    ] = False,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Start the pipeline FILE describes (YAML or JSON); print its id.

    With --wait, then its columns once it ends: exit 0 if it completed, 1 if it failed or
    was cancelled. With --follow, each item's moves as they happen, then as --wait.

    \b
    Examples:
      agentboard pipeline run docs/examples/triage.yaml --wait
    """
    api = api_for(url, api_key)
    started = api.call("POST", "/v1/pipelines", json=read_spec(file))
    typer.echo(started["id"])
    if follow_:
        _follow(api, started["id"])
    elif not wait:
        return
    pipeline = started
    while pipeline["status"] not in ENDED:
        time.sleep(0.25)
        pipeline = api.call("GET", f"/v1/pipelines/{started['id']}")
    _show(pipeline, output)
    if pipeline["status"] != "completed":
        fail(f"{pipeline['status']}: {pipeline.get('error') or pipeline.get('reason')}",
             EXIT_REFUSED)  # fmt: skip


@pipeline_cli.command("list")
def list_pipelines(
    status: Annotated[str | None, typer.Option(help="only these: pending, running, ...")] = None,
    name: Annotated[str | None, typer.Option(help="only pipelines of this name")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List pipelines, newest first."""
    api = api_for(url, api_key)
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if name:
        params["name"] = name
    page = api.call("GET", "/v1/pipelines", params=params)
    if output is Output.JSON:
        typer.echo(json.dumps(page, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.table import Table  # noqa: PLC0415

    table = Table("id", "name", "status", "iteration", "created_at")
    for item in page["items"]:
        table.add_row(item["id"], item["name"], item["status"], str(item["iteration"]),
                      item["created_at"])  # fmt: skip
    Console().print(table)


@pipeline_cli.command("get")
def get(
    pipeline_id: IdArgument,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Show a pipeline: a table of columns by items, each cell a step's status."""
    api = api_for(url, api_key)
    _show(api.call("GET", f"/v1/pipelines/{pipeline_id}"), output)


@pipeline_cli.command("cancel")
def cancel(pipeline_id: IdArgument, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Cancel a pipeline: what runs is cancelled, what waits is skipped."""
    api = api_for(url, api_key)
    pipeline = api.call("POST", f"/v1/pipelines/{pipeline_id}/cancel")
    typer.echo(pipeline["status"])


@pipeline_cli.command("add-items")
def add_items(
    pipeline_id: IdArgument,
    file: Annotated[Path, typer.Argument(help="a list of items (or {items: [...]}), YAML/JSON")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Add items to a running pipeline."""
    data = read_spec(file)
    items = data.get("items") if isinstance(data, dict) else data
    api = api_for(url, api_key)
    pipeline = api.call("POST", f"/v1/pipelines/{pipeline_id}/items", json={"items": items})
    typer.echo(f"{len(pipeline['items'])} items")


def _follow(api: Any, pipeline_id: str) -> None:
    """Print the pipeline's moves from its stream (GET /v1/pipelines/{id}/stream) until it
    ends. A broken stream ends the following; the caller then waits as --wait does."""
    from httpx_sse import connect_sse  # noqa: PLC0415 - only when following

    with connect_sse(
        api.http, "GET", f"/v1/pipelines/{pipeline_id}/stream", timeout=None
    ) as source:
        for message in source.iter_sse():
            if not message.data:
                continue
            event = json.loads(message.data)
            line = _move(message.event, event)
            if line:
                typer.echo(line)
            if message.event in ENDED_EVENTS:
                return


ENDED_EVENTS = ("Completed", "Failed", "Cancelled")


def _move(name: str, event: dict[str, Any]) -> str | None:
    where = f"{event.get('column')} {event.get('item_id')} (iteration {event.get('iteration')})"
    if name == "StepDispatched":
        return f"-> {where}: execution {str(event['execution_id'])[:8]}"
    if name == "StepEnded":
        return f"<- {where}: {event['status']}"
    if name == "IterationEnded":
        return f"iteration {event['iteration']} ended"
    if name in ENDED_EVENTS:
        return f"pipeline {name.lower()}"
    return None


def _show(pipeline: dict[str, Any], output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps(pipeline, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415 - rich, only for a table
    from rich.table import Table  # noqa: PLC0415

    title = f"{pipeline['name']} {pipeline['id']}: {pipeline['status']}"
    table = Table("item", *(column["name"] for column in pipeline["columns"]), title=title)
    for index, item_id in enumerate(pipeline["items"]):
        cells = []
        for column in pipeline["columns"]:
            step = column["items"][index]
            attempt = f" (attempt {step['attempt']})" if step["attempt"] > 1 else ""
            cells.append(f"{step['status']}{attempt}")
        table.add_row(item_id, *cells)
    console = Console()
    console.print(table)
    if pipeline.get("summary") is not None:
        console.print(f"summary: {json.dumps(pipeline['summary'])}")
