"""``agentboard exec`` and ``agentboard execution ...``: the CLI side of /v1/executions."""

from __future__ import annotations

import json
import re
import time
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import typer

from api.cli.arguments import key_values, parse_deadline, parse_params
from api.cli.client import EXIT_REFUSED, EXIT_USAGE, ApiClient, KeyOption, UrlOption, fail
from api.cli.group import verb_group
from infra.client_settings import ClientSettings

execution_cli = verb_group("List, inspect and act on executions.")

STATUSES = ("pending", "running", "requires_input", "blocked", "completed", "failed", "cancelled")
SHORT_ID_PATTERN = re.compile(r"[0-9a-f][0-9a-f-]{3,35}")
SHORT_ID_SEARCH = 10_000  # executions a short id is looked up among


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
IdArgument = Annotated[
    str, typer.Argument(help="the execution's id, or its first 8 characters (a short id)")
]
StatusOption = Annotated[
    list[str] | None, typer.Option("--status", help="a status (repeatable, or comma-separated)")
]
OlderOption = Annotated[str | None, typer.Option("--older-than", help="e.g. 30m, 12h, 7d")]


def api_for(url: str | None, api_key: str | None) -> ApiClient:
    return ApiClient(ClientSettings.from_environment(), url, api_key)


def execution_id_of(api: ApiClient, text: str) -> str:
    """The execution id ``text`` is, or starts (a short id, as a narrow `list` shows it),
    looked up in the list; or one line and exit 2 (not an id, or ambiguous) or 1 (no such
    execution), where the server would only say 404."""
    try:
        return str(UUID(text))
    except ValueError:
        pass
    prefix = text.strip().lower()
    if not SHORT_ID_PATTERN.fullmatch(prefix):
        fail(f"{text[:60]!r} is not a valid execution id: a UUID, or its first 4 or more "
             "characters, as `agentboard execution list` shows them", EXIT_USAGE)  # fmt: skip
    found: list[str] = []
    params: dict[str, Any] = {"limit": 500}
    for _ in range(SHORT_ID_SEARCH // 500):
        page = api.call("GET", "/v1/executions", params=params)
        found += [item["id"] for item in page["items"] if item["id"].startswith(prefix)]
        params["cursor"] = page.get("next_cursor")
        if len(found) > 1 or not params["cursor"]:
            break
    else:
        fail(f"more than {SHORT_ID_SEARCH:,} executions to look for {text!r} among: give "
             "the whole id (`execution list -o json` shows it)", EXIT_USAGE)  # fmt: skip
    if not found:
        fail(f"no execution's id starts with {text!r}", EXIT_REFUSED)
    if len(found) > 1:
        fail(f"{text!r} starts more than one execution's id ({found[0]}, {found[1]}): give "
             "more of it", EXIT_USAGE)  # fmt: skip
    return found[0]


def checked_filter(
    status: list[str] | None, older_than: str | None, agent: str | None, team: str | None,
    type_: str | None, queue: str | None, label: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The list filters of a request, checked here so a typo costs no round trip and the
    message names the flag."""
    statuses = [s.strip() for value in status or [] for s in value.split(",") if s.strip()]
    unknown = [value for value in statuses if value not in STATUSES]
    if unknown:
        fail(f"unknown status {unknown[0]!r}; choose among {', '.join(STATUSES)}", EXIT_USAGE)
    if older_than is not None:
        # the server's own parser, so the two agree; it brings psycopg, so only when needed
        from projections.engine.errors import InvalidQuery  # noqa: PLC0415
        from projections.views.filters import parse_age  # noqa: PLC0415

        try:
            parse_age(older_than)
        except InvalidQuery as error:
            fail(f"--older-than: {error}", EXIT_USAGE)
    if type_ is not None and type_ not in ("agent", "team"):
        fail(f"--type is agent or team (got {type_!r})", EXIT_USAGE)
    given = {"status": statuses or None, "older_than": older_than, "agent": agent,
             "team": team, "type": type_, "queue": queue, "label": label}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


@execution_cli.command("list")
def list_executions(
    status: StatusOption = None,
    agent: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str | None, typer.Option("--type", help="agent or team")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    label: Annotated[str | None, typer.Option(help="key=value or key")] = None,
    overdue: Annotated[bool, typer.Option(help="past their deadline, not ended")] = False,
    older_than: OlderOption = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="the next page: the cursor a previous page printed")
    ] = None,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List executions, a page at a time.

    Filtered, highest priority then oldest first; the next page's --cursor is printed on
    stderr. On a narrow terminal the prompt is cut first, then ids are shortened to their
    first 8 characters, which the other verbs take.

    \b
    Examples:
      agentboard execution list --status pending,running --agent shell
      agentboard execution list --older-than 1h -o json | jq -r '.items[].id'
    """
    params: dict[str, Any] = {"limit": limit, "overdue": overdue}
    params.update(checked_filter(status, older_than, agent, team, type_, queue, label))
    if cursor:
        params["cursor"] = cursor
    page = api_for(url, api_key).call("GET", "/v1/executions", params=params)
    if output is Output.JSON:
        typer.echo(json.dumps(page, indent=2))
        return
    if page["items"]:
        from api.cli.format import show_list  # noqa: PLC0415 - rich, only for a table

        show_list(page["items"])
    else:
        typer.echo("no executions match")
    if page.get("next_cursor"):
        typer.echo(f"more: the same command with --cursor {page['next_cursor']}", err=True)


@execution_cli.command("get")
def get_execution(
    execution_id: IdArgument,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Show one execution.

    What it was asked, where it stands, the time it spent in each status, its tool calls and
    artifacts.

    \b
    Examples:
      agentboard execution get 3f2a9c0d
      agentboard execution get 3f2a9c0d -o json | jq .result
    """
    api = api_for(url, api_key)
    execution = api.call("GET", f"/v1/executions/{execution_id_of(api, execution_id)}")
    if output is Output.JSON:
        typer.echo(json.dumps(execution, indent=2))
        return
    from api.cli.format import show_execution  # noqa: PLC0415 - rich, only for a table

    show_execution(execution)


@execution_cli.command("logs")
def logs(
    execution_id: IdArgument,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="stream output and tool calls until it ends")
    ] = False,
    output: OutputOption = Output.TABLE,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Print an execution's output.

    The output it stored so far; with --follow, live until it ends (tool calls, questions and
    changes of worker on stderr; a dropped stream is reconnected). With --output json: its
    events as a JSON list, or with --follow one JSON object a line, the last {"type": "end",
    "status": ...}.

    \b
    Examples:
      agentboard execution logs 3f2a9c0d --follow
      agentboard execution logs 3f2a9c0d -o json | jq -r '.[].type'
    """
    api = api_for(url, api_key)
    execution_id = execution_id_of(api, execution_id)
    if follow_:
        from api.cli.follow import follow  # noqa: PLC0415 - rich, only when following

        follow(api, execution_id, answer_questions=False, as_json=output is Output.JSON)
    elif output is Output.JSON:
        typer.echo(json.dumps(api.call("GET", f"/v1/executions/{execution_id}/events"), indent=2))
    else:
        typer.echo(api.text(f"/v1/executions/{execution_id}/logs"), nl=False)


def act(api: ApiClient, execution_id: str, action: str, body: dict[str, Any] | None) -> None:
    """One action on one execution; prints its id and its status after it."""
    execution_id = execution_id_of(api, execution_id)
    result = api.call("POST", f"/v1/executions/{execution_id}/{action}", json=body)
    typer.echo(f"{result['id']} {result['status']}")


# cancel, retry and complete (one execution, or in bulk) are in api/cli/bulk.py


@execution_cli.command("respond")
def respond(
    execution_id: IdArgument,
    answer: Annotated[str, typer.Argument(help="the answer (JSON if it parses, else text)")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Answer an execution that requires input.

    Its question shows on `execution get`; with the answer it goes back to running. Prints
    the id and the new status.

    \b
    Examples:
      agentboard execution respond 3f2a9c0d main
      agentboard execution respond 3f2a9c0d '{"approve": true}'
    """
    try:
        value: Any = json.loads(answer)
    except ValueError:
        value = answer
    act(api_for(url, api_key), execution_id, "input", {"answer": value})


@execution_cli.command("block")
def block(
    execution_id: IdArgument,
    reason: Annotated[str, typer.Option("--reason", help="why: shown on the card")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Block a running execution: what it is doing finishes and is recorded, but it starts
    no new tool call or question until it is unblocked (a run that ends meanwhile ends the
    block). Prints the id and the new status.

    \b
    Example:
      agentboard execution block 3f2a9c0d --reason 'waiting for the change freeze'
    """
    act(api_for(url, api_key), execution_id, "block", {"reason": reason})


@execution_cli.command("unblock")
def unblock(
    execution_id: IdArgument,
    reason: Annotated[str, typer.Option("--reason", help="why (optional)")] = "",
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Let a blocked execution go on. Prints the id and the new status.

    \b
    Example:
      agentboard execution unblock 3f2a9c0d
    """
    act(api_for(url, api_key), execution_id, "unblock", {"reason": reason})


def exec_command(
    prompt: Annotated[str, typer.Argument(help="what the agent should do")],
    agent: Annotated[str, typer.Option(help="the agent")] = "shell",
    queue: Annotated[str, typer.Option(help="the worker queue")] = "default",
    param: Annotated[list[str] | None, typer.Option(help="k=v, v as JSON if it parses")] = None,
    priority: Annotated[int, typer.Option(min=-100, max=100, help="higher runs first")] = 0,
    label: Annotated[list[str] | None, typer.Option(help="k=v (repeatable)")] = None,
    deadline: Annotated[str | None, typer.Option(
        help="an ISO 8601 time, or from now: 30m, 12h, 7d")] = None,
    type_: Annotated[str, typer.Option("--type", help="agent or team")] = "agent",
    team: Annotated[str | None, typer.Option(help="the team (with --type team)")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the end: exit 1 if not completed")] = False,
    follow_: Annotated[bool, typer.Option(
        "--follow", "-f",
        help="stream output and tool calls until the end, answer questions; exits as --wait",
    )] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:  # fmt: skip
    """Create an execution and print its id.

    With --wait, then its result (JSON) once it completes, or exit 1 when it fails or is
    cancelled; with --follow, its output as it comes.

    \b
    Examples:
      agentboard exec "ls -la" --wait
      agentboard exec deploy --agent script --param 'steps=[{"ask": "sure?"}]' -f
      agentboard exec "run the suite" --priority 10 --label team=search --deadline 2h
      agentboard exec "review the release" --type team --team release-crew
    """
    if type_ not in ("agent", "team"):
        fail(f"--type is agent or team (got {type_!r})", EXIT_USAGE)
    if (type_ == "team") != (team is not None):
        fail("a team execution names its team: --type team --team T", EXIT_USAGE)
    body: dict[str, Any] = {
        "agent_id": agent, "worker_queue": queue, "prompt": prompt,
        "parameters": parse_params(param or []), "priority": priority,
        "labels": dict(key_values("--label", label or [])), "type": type_, "team_id": team,
    }  # fmt: skip
    if deadline is not None:
        body["deadline"] = parse_deadline(deadline)
    api = api_for(url, api_key)
    created = api.call("POST", "/v1/executions", json=body)
    typer.echo(created["id"])
    if follow_:
        from api.cli.follow import follow  # noqa: PLC0415 - rich, only when following

        follow(api, created["id"], answer_questions=True)
    elif not wait:
        return
    while True:
        execution = api.call("GET", f"/v1/executions/{created['id']}")
        if execution["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if execution["status"] != "completed":
        error = execution.get("error")
        fail(f"{execution['status']}: {error}" if error else execution["status"], EXIT_REFUSED)
    typer.echo(json.dumps(execution["result"]))
