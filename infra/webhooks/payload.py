"""What a webhook announces: an execution as it was when it entered a status.

``data`` is the execution JSON of ``GET /v1/executions/{id}`` (the same fields, a test
holds them equal), folded from the execution's own events up to the one announced, so a
delivery sent late, or retried hours later, still says what happened then: the status
entered, its question, its error, the time spent in each status up to that moment, the
tool calls and artifacts so far. ``position`` is the log position of that event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

from pydantic_core import to_jsonable_python

from domain.execution.aggregate import Execution
from domain.execution.shape import shape_of
from domain.execution.state import ExecutionState

# The event that puts an execution in each status (DESIGN §2).
ENTERS: dict[type[Any], str] = {
    Execution.Created: "pending",
    Execution.PickedUp: "running",
    Execution.InputRequested: "requires_input",
    Execution.InputProvided: "running",
    Execution.Blocked: "blocked",
    Execution.Unblocked: "running",
    Execution.Completed: "completed",
    Execution.Failed: "failed",
    Execution.Cancelled: "cancelled",
    Execution.RetryScheduled: "pending",
}


def status_entered(event: Any) -> str | None:
    """The status ``event`` puts its execution in, if it moves it."""
    return ENTERS.get(type(event))


def fold(events: Sequence[Any]) -> Execution:
    """The execution after ``events`` (its history from ``Created`` on, in order)."""
    execution: Any = None
    for event in events:
        execution = event.mutate(execution)
    if execution is None:
        raise ValueError("an execution's history starts with its Created event")
    return execution  # type: ignore[no-any-return]


def execution_document(
    events: Sequence[Any], position: int | None, state: ExecutionState | None = None
) -> dict[str, Any]:
    """The execution JSON after ``events``, its last event at log ``position`` (``state``:
    the execution after them, when the caller has folded it already)."""
    state = state or ExecutionState.of(fold(events))
    document = shape_of(state)  # the execution's one shape (domain/execution/shape.py)
    document["position"] = position
    document["time_in_status"] = time_in_status(events)
    document["tool_calls"] = tool_calls(events)
    document["artifacts"] = artifacts(state.id, events)
    return document


def time_in_status(events: Sequence[Any]) -> dict[str, float]:
    """Seconds spent in each status, the last one counted up to the last event."""
    seconds: dict[str, float] = {}
    status, since = None, None
    for event in events:
        entered = status_entered(event)
        if entered is None:
            continue
        if status is not None and since is not None:
            seconds[status] = seconds.get(status, 0.0) + _between(since, event.timestamp)
        status, since = entered, event.timestamp
    if status is not None and since is not None:
        seconds.setdefault(status, 0.0)
        seconds[status] += _between(since, events[-1].timestamp)
    return seconds


def tool_calls(events: Sequence[Any]) -> list[dict[str, Any]]:
    """Each tool call so far, as the tool calls view lists it: by attempt, in order."""
    calls: dict[tuple[int, str], dict[str, Any]] = {}
    attempt = 1
    execution_id: UUID | None = None
    for event in events:
        execution_id = event.originator_id
        if isinstance(event, Execution.PickedUp):
            attempt = event.attempt
        elif isinstance(event, Execution.ToolCalled):
            calls[(attempt, event.call_id)] = {
                "execution_id": execution_id, "attempt": attempt, "call_id": event.call_id,
                "tool": event.tool, "arguments": event.arguments, "outcome": None,
                "result_summary": None, "duration_seconds": None,
                "called_at": event.timestamp, "finished_at": None,
            }  # fmt: skip
        elif isinstance(event, Execution.ToolCallFinished):
            call = calls.get((attempt, event.call_id))
            if call is not None:
                call.update(
                    outcome=event.outcome, result_summary=event.result_summary,
                    duration_seconds=float(event.duration_seconds), finished_at=event.timestamp,
                )  # fmt: skip
    return list(calls.values())


def artifacts(execution_id: UUID, events: Sequence[Any]) -> list[dict[str, Any]]:
    """The artifacts so far, the latest of each name, as ``GET`` lists them."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, Execution.ArtifactAdded):
            found[event.name] = {
                "name": event.name, "media_type": event.media_type, "size": event.size,
                "sha256": event.sha256, "object_key": event.object_key,
                "url": f"/v1/executions/{execution_id}/artifacts/{quote(event.name)}",
            }  # fmt: skip
    return list(found.values())


def message_body(event_type: str, timestamp: datetime, data: dict[str, Any]) -> bytes:
    """The body POSTed: ``{type, timestamp, data}`` as compact JSON (signed byte for byte)."""
    message = {"type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(to_jsonable_python(message), separators=(",", ":")).encode()


def _between(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
