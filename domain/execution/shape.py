"""The execution as every reader sees it, declared once.

``ExecutionFields`` is the one list of an execution's fields outside its stored events.
The other shapes build on it and add only their own: the command side's
``ExecutionState`` (domain/execution/state.py) the lease and what a worker needs, the
board's ``Card`` (projections/views/card.py) its log position, the HTTP API's
``Execution`` (api/http/schemas.py) the position and the parts a list leaves out.

The ``Created`` event is not derived from it on purpose: a stored event's fields never
change, whereas this shape may grow. ``CREATED_FIELDS`` names what the shape takes from
``Created`` as it is (a test checks that they agree), and ``created`` gives the shape of
an execution just created.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.execution.events import Created
from domain.execution.values import Status


@dataclass(slots=True)
class ExecutionFields:
    id: UUID
    tenant: str
    type: str
    agent_id: str
    team_id: str | None
    worker_queue: str
    prompt: str
    parameters: dict[str, Any]
    priority: int
    labels: dict[str, str]
    status: str
    attempt: int
    worker_id: str | None
    created_by: dict[str, str]
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None
    parent_execution_id: UUID | None
    not_before: datetime | None
    result: Any
    error: str | None
    failure_reason: str | None
    completion_notes: str | None
    question: str | None
    pending_input: dict[str, Any] | None
    """While it requires input: the question, its kind and its answer's JSON Schema."""
    cancel_requested: bool
    blocked: dict[str, Any] | None
    """While a person blocks it: the reason, who blocked it (an actor) and when."""
    last_tool: str | None
    last_tool_call_id: str | None
    last_tool_outcome: str | None
    status_entered_at: datetime
    version: int
    pipeline: dict[str, Any] | None
    """A pipeline's step: ``{id, column, item_id, iteration}`` (DESIGN §12); else None."""


FIELDS: tuple[str, ...] = tuple(field.name for field in fields(ExecutionFields))
CREATED_FIELDS: tuple[str, ...] = tuple(
    name for name in FIELDS if name in Created.__dataclass_fields__
)
"""The fields an execution keeps as its ``Created`` event recorded them."""


def created(event: Created) -> dict[str, Any]:
    """The fields of an execution that ``event`` has just created: what it asked for, and
    the state every execution starts in."""
    at = event.timestamp
    return {
        "id": event.originator_id,
        **{name: getattr(event, name) for name in CREATED_FIELDS},
        "status": Status.PENDING.value,
        "attempt": 1,
        "worker_id": None,
        "created_at": at,
        "updated_at": at,
        "not_before": None,
        "result": None,
        "error": None,
        "failure_reason": None,
        "completion_notes": None,
        "question": None,
        "pending_input": None,
        "cancel_requested": False,
        "blocked": None,
        "last_tool": None,
        "last_tool_call_id": None,
        "last_tool_outcome": None,
        "status_entered_at": at,
        "version": event.originator_version,
    }


def shape_of(execution: ExecutionFields) -> dict[str, Any]:
    """The ``ExecutionFields`` of any shape built on it (a card, a state), by name."""
    return {name: getattr(execution, name) for name in FIELDS}
