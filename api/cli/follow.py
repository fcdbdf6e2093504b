"""Following one execution from the CLI: its output, tool calls and questions, live.

Reads ``GET /v1/executions/{id}/logs?follow=true`` (Server-Sent Events). A server that
cannot be reached at first is one line and exit 2, as for every verb; when a stream that was
established breaks, it reconnects with ``Last-Event-ID`` (for up to a minute), so nothing is
shown twice or missed. Under ``exec --follow`` a question from the agent is put to the
person, and the answer sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from api.cli.client import EXIT_REFUSED, ApiClient, fail
from api.cli.format import duration

RECONNECT_FOR_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    id: int | None
    data: dict[str, Any]


def follow(
    api: ApiClient, execution_id: str, *, answer_questions: bool, as_json: bool = False
) -> str:
    """Print the execution's events until it ends; its final status. A server that cannot be
    reached at first is exit 2 at once; a stream that broke is reconnected for a minute."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    show = _print_json if as_json else _Shown(err).show
    last: int | None = None
    connected = False
    broken_since: float | None = None
    while True:
        try:
            with _stream(api, execution_id, last) as response:
                connected, broken_since = True, None
                for event in _events(response):
                    show(event)
                    if event.type == "end":
                        return str(event.data["status"])
                    last = event.id if event.id is not None else last
                    if event.type == "InputRequested" and answer_questions:
                        _ask(api, execution_id, err)
            problem = "the server closed the stream"
        except httpx.HTTPError as error:
            if not connected:
                api.unreachable(error)
            problem = str(error) or type(error).__name__
        broken_since = broken_since or time.monotonic()
        if time.monotonic() - broken_since > RECONNECT_FOR_SECONDS:
            fail(f"lost the stream from {api.url} ({problem})", EXIT_REFUSED)
        err.print(f"[dim]reconnecting ({problem})…[/]")
        time.sleep(1)


@contextmanager
def _stream(api: ApiClient, execution_id: str, last: int | None) -> Iterator[httpx.Response]:
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
            api.refused(response)
        yield response


def _events(response: httpx.Response) -> Iterator[Event]:
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


def _print_json(event: Event) -> None:
    """One line of JSON per event (as an item of /events), then the end."""
    line = event.data if event.type != "end" else {"type": "end", **event.data}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class _Shown:
    """Output to stdout; tool calls (with their arguments and outcome), questions and
    changes of hands to stderr."""

    def __init__(self, err: Console) -> None:
        self.err = err
        self.tools: dict[str, str] = {}  # call id -> tool, to name a finished call

    def show(self, event: Event) -> None:
        data = event.data.get("data", {})
        if event.type == "OutputAppended":
            sys.stdout.write(data.get("text", ""))
            sys.stdout.flush()
        elif event.type == "ToolCalled":
            self.tools[data.get("call_id", "")] = data.get("tool", "")
            arguments = escape(json.dumps(data.get("arguments", {}))[:200])
            self.err.print(f"[cyan]→ {escape(data.get('tool', ''))}[/] {arguments} "
                           f"[dim]({escape(data.get('call_id', ''))})[/]")  # fmt: skip
        elif event.type == "ToolCallFinished":
            call_id = data.get("call_id", "")
            outcome = data.get("outcome", "")
            mark = "[green]✓[/]" if outcome == "success" else "[red]✗[/]"
            took = duration(data.get("duration_seconds") or 0)
            self.err.print(
                f"{mark} {escape(self.tools.get(call_id, ''))} {outcome} in {took} "
                f"[dim]({escape(call_id)})[/] {escape(data.get('result_summary') or '')}"
            )
        elif event.type == "InputRequested":
            self.err.print(f"[magenta]? {escape(data.get('question') or '')}[/]")
        elif event.type in ("PickedUp", "Blocked", "Unblocked", "RetryScheduled", "Failed",
                            "Cancelled", "CancelRequested", "LeaseExpired"):  # fmt: skip
            detail = " ".join(
                str(data[name]) for name in ("worker_id", "reason", "error") if data.get(name)
            )
            self.err.print(f"[dim]· {event.type} {escape(detail)}[/]")


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
