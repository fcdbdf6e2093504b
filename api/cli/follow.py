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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from api.cli.client import EXIT_REFUSED, ApiClient, fail
from api.cli.format import duration

if TYPE_CHECKING:
    from tenacity import RetryCallState

RECONNECT_FOR_SECONDS = 60.0
RECONNECT_EVERY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    id: int | None
    data: dict[str, Any]


class StreamBroke(Exception):
    """A stream that was established ended before the execution did."""


def follow(
    api: ApiClient, execution_id: str, *, answer_questions: bool, as_json: bool = False
) -> str:
    """Print the execution's events until it ends; its final status. A server that cannot be
    reached at first is exit 2 at once; a stream that broke is reconnected for a minute."""
    from tenacity import Retrying, retry_if_exception_type, wait_fixed  # noqa: PLC0415 - slow

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    show = _print_json if as_json else _Shown(err).show
    ask = (lambda: _ask(api, execution_id, err)) if answer_questions else None
    stream = _Stream(api, execution_id, show, ask)

    def lost(state: RetryCallState) -> str:
        fail(f"lost the stream from {api.url} ({_problem(state)})", EXIT_REFUSED)

    reconnecting = Retrying(
        retry=retry_if_exception_type(StreamBroke),
        wait=wait_fixed(RECONNECT_EVERY_SECONDS),
        stop=stream.broken_too_long,
        before_sleep=lambda state: err.print(f"[dim]reconnecting ({_problem(state)})…[/]"),
        retry_error_callback=lost,
    )
    return reconnecting(stream.read_to_end)


class _Stream:
    """``GET /v1/executions/{id}/logs?follow=true``, resumed after the last event seen."""

    def __init__(
        self, api: ApiClient, execution_id: str, show: Callable[[Event], None],
        ask: Callable[[], None] | None,
    ) -> None:  # fmt: skip
        self.api = api
        self.path = f"/v1/executions/{execution_id}/logs"
        self.show = show
        self.ask = ask
        self.last: int | None = None
        self.connected = False
        self.broken_since: float | None = None

    def read_to_end(self) -> str:
        """The final status; ``StreamBroke`` when the stream ends before it."""
        from httpx_sse import connect_sse  # noqa: PLC0415 - only --follow needs it

        headers = {"Last-Event-ID": str(self.last)} if self.last is not None else {}
        timeout = httpx.Timeout(30, read=60)  # the server sends a comment every 15 s
        try:
            with connect_sse(
                self.api.http, "GET", self.path, params={"follow": "true"}, headers=headers,
                timeout=timeout,
            ) as source:  # fmt: skip
                if source.response.status_code >= 400:
                    source.response.read()
                    self.api.refused(source.response)
                self.connected, self.broken_since = True, None
                for sse in source.iter_sse():
                    if not sse.data:  # `retry:`, or a keepalive (httpx-sse yields those too)
                        continue
                    event = Event(sse.event, int(sse.id) if sse.id else None, sse.json())
                    self.show(event)
                    if event.type == "end":
                        return str(event.data["status"])
                    self.last = event.id if event.id is not None else self.last
                    if event.type == "InputRequested" and self.ask is not None:
                        self.ask()
            problem = "the server closed the stream"
        except httpx.HTTPError as error:
            if not self.connected:
                self.api.unreachable(error)
            problem = str(error) or type(error).__name__
        self.broken_since = self.broken_since or time.monotonic()
        raise StreamBroke(problem)

    def broken_too_long(self, state: RetryCallState) -> bool:
        return time.monotonic() - (self.broken_since or 0) > RECONNECT_FOR_SECONDS


def _problem(state: RetryCallState) -> str:
    return str(state.outcome.exception()) if state.outcome is not None else "?"


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
