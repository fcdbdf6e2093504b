"""Following one execution from the CLI: its output, tool calls and questions, live.

Reads ``GET /v1/executions/{id}/logs?follow=true`` (Server-Sent Events); when the stream
breaks it reconnects with ``Last-Event-ID``, so nothing is shown twice or missed. Under
``exec --follow`` a question from the agent is put to the person, and the answer sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console

from api.client import EXIT_REFUSED, ApiClient, fail

RECONNECT_FOR_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    id: int | None
    data: dict[str, Any]


def follow(api: ApiClient, execution_id: str, *, answer_questions: bool) -> str:
    """Print the execution's events until it ends; its final status."""
    err = Console(stderr=True, highlight=False)
    last: int | None = None
    broken_since: float | None = None
    while True:
        try:
            for event in _events(api, execution_id, last):
                broken_since = None
                if event.type == "end":
                    return str(event.data["status"])
                last = event.id if event.id is not None else last
                _show(event, err)
                if event.type == "InputRequested" and answer_questions:
                    _ask(api, execution_id, err)
            problem = "the server closed the stream"
        except httpx.HTTPError as error:
            problem = str(error) or type(error).__name__
        broken_since = broken_since or time.monotonic()
        if time.monotonic() - broken_since > RECONNECT_FOR_SECONDS:
            fail(f"lost the stream from {api.url} ({problem})", EXIT_REFUSED)
        err.print(f"[dim]reconnecting ({problem})…[/]")
        time.sleep(1)


def _events(api: ApiClient, execution_id: str, last: int | None) -> Iterator[Event]:
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    path = f"/v1/executions/{execution_id}/logs"
    timeout = httpx.Timeout(30, read=60)  # the server sends a comment every 15 s
    with api.http.stream(
        "GET", path, params={"follow": "true"}, headers=headers, timeout=timeout
    ) as response:
        if response.status_code >= 400:
            response.read()
            api.request("GET", path)  # the same refusal, said once and exiting
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    yield Event(
                        fields.get("event", "message"),
                        int(fields["id"]) if fields.get("id") else None,
                        json.loads(fields["data"]),
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")


def _show(event: Event, err: Console) -> None:
    data = event.data.get("data", {})
    if event.type == "OutputAppended":
        sys.stdout.write(data.get("text", ""))
        sys.stdout.flush()
    elif event.type == "ToolCalled":
        args = json.dumps(data.get("args", {}))
        err.print(f"[cyan]→ {data.get('tool')}[/] [dim]{args[:120]}[/]")
    elif event.type == "ToolCallFinished":
        outcome = data.get("outcome", "")
        mark = "[green]✓[/]" if outcome == "success" else "[red]✗[/]"
        summary = data.get("result_summary") or data.get("error") or ""
        err.print(f"{mark} {data.get('tool_call_id', '')} {outcome} [dim]{summary}[/]")
    elif event.type == "InputRequested":
        err.print(f"[magenta]? {data.get('question')}[/]")
    elif event.type in ("PickedUp", "Blocked", "Unblocked", "RetryScheduled", "Failed",
                        "Cancelled", "CancelRequested", "LeaseExpired"):  # fmt: skip
        detail = data.get("worker_id") or data.get("reason") or data.get("error") or ""
        err.print(f"[dim]· {event.type} {detail}[/]")


def _ask(api: ApiClient, execution_id: str, err: Console) -> None:
    try:
        answer = typer.prompt("answer", err=True)
    except (EOFError, typer.Abort):
        err.print(
            f"[dim]no answer given here; answer with: agentboard execution respond "
            f"{execution_id} ANSWER[/]"
        )
        return
    try:
        value: Any = json.loads(answer)
    except ValueError:
        value = answer
    api.call("POST", f"/v1/executions/{execution_id}/input", json={"answer": value})
