"""A board card: what the board shows of one execution, folded from its events.

Pure (no I/O): the board projection folds pages of events into cards with it, and
time travel folds an execution's events up to a past position with the very same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from domain.execution.aggregate import Execution
from domain.execution.values import Status


@dataclass(slots=True)
class Card:
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
    not_before: datetime | None
    result: Any
    error: str | None
    failure_reason: str | None
    completion_notes: str | None
    question: str | None
    cancel_requested: bool
    last_tool: str | None
    last_tool_call_id: str | None
    last_tool_outcome: str | None
    status_entered_at: datetime
    version: int
    position: int
    blocked: dict[str, Any] | None = None  # reason, by (actor), at: while a person blocks it

    @classmethod
    def created(cls, event: Execution.Created, position: int) -> Card:
        return cls(
            id=event.originator_id,
            tenant=event.tenant,
            type=event.type,
            agent_id=event.agent_id,
            team_id=event.team_id,
            worker_queue=event.worker_queue,
            prompt=event.prompt,
            parameters=event.parameters,
            priority=event.priority,
            labels=event.labels,
            status=PENDING,
            attempt=1,
            worker_id=None,
            created_by=event.created_by,
            created_at=event.timestamp,
            updated_at=event.timestamp,
            deadline=event.deadline,
            not_before=None,
            result=None,
            error=None,
            failure_reason=None,
            completion_notes=None,
            question=None,
            cancel_requested=False,
            last_tool=None,
            last_tool_call_id=None,
            last_tool_outcome=None,
            status_entered_at=event.timestamp,
            version=event.originator_version,
            position=position,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Card:
        return cls(**{name: row[name] for name in COLUMNS})

    def as_row(self) -> tuple[Any, ...]:
        """Values in ``COLUMNS`` order, JSON columns wrapped for PostgreSQL."""
        values = list(_values(self))
        for index in JSON_COLUMN_INDEXES:
            if values[index] is not None:
                values[index] = Jsonb(values[index])
        return tuple(values)

    def changes(self) -> tuple[Any, ...]:
        """``id`` and the ``CHANGING_COLUMNS``, for updating a card already stored."""
        values = list(_changing_values(self))
        for index in CHANGING_JSON_INDEXES:
            if values[index] is not None:
                values[index] = Jsonb(values[index])
        return tuple(values)

    def apply(self, event: Any, position: int) -> None:
        evolve = EVOLVE.get(type(event))
        if evolve is not None:  # output chunks and artifacts move only the clock
            evolve(self, event)
        self.updated_at = event.timestamp
        self.version = event.originator_version
        self.position = position

    def enter(self, status: str, at: datetime) -> None:
        if self.status != status:
            self.status = status
            self.status_entered_at = at

    def picked_up(self, event: Execution.PickedUp) -> None:
        self.enter(RUNNING, event.timestamp)
        self.worker_id = event.worker_id
        self.attempt = event.attempt

    def tool_called(self, event: Execution.ToolCalled) -> None:
        self.last_tool = event.tool
        self.last_tool_call_id = event.call_id
        self.last_tool_outcome = None

    def tool_call_finished(self, event: Execution.ToolCallFinished) -> None:
        if event.call_id == self.last_tool_call_id:
            self.last_tool_outcome = event.outcome

    def input_requested(self, event: Execution.InputRequested) -> None:
        self.enter(REQUIRES_INPUT, event.timestamp)
        self.question = event.question

    def input_provided(self, event: Execution.InputProvided) -> None:
        self.enter(RUNNING, event.timestamp)
        self.question = None

    def was_blocked(self, event: Execution.Blocked) -> None:
        self.enter(BLOCKED, event.timestamp)
        at = event.timestamp.isoformat()
        self.blocked = {"reason": event.reason, "by": event.actor, "at": at}

    def unblocked(self, event: Execution.Unblocked) -> None:
        self.enter(RUNNING, event.timestamp)
        self.blocked = None

    def cancellation_requested(self, event: Execution.CancelRequested) -> None:
        self.cancel_requested = True

    def cancelled(self, event: Execution.Cancelled) -> None:
        self.enter(CANCELLED, event.timestamp)
        self.blocked = None  # the worker that ran it stays named

    def completed(self, event: Execution.Completed) -> None:
        self.enter(COMPLETED, event.timestamp)
        self.result = event.result
        self.completion_notes = event.completion_notes
        self.blocked = None

    def failed(self, event: Execution.Failed) -> None:
        self.enter(FAILED, event.timestamp)
        self.error = event.error
        self.failure_reason = event.reason
        self.blocked = None

    def lease_expired(self, event: Execution.LeaseExpired) -> None:
        pass  # the lost worker stays named until a new attempt (or a person) moves it on

    def retry_scheduled(self, event: Execution.RetryScheduled) -> None:
        self.enter(PENDING, event.timestamp)
        self.worker_id = None
        self.blocked = None
        self.attempt = event.attempt
        self.not_before = event.not_before
        self.cancel_requested = False
        self.question = None
        self.error = None
        self.failure_reason = None
        self.last_tool = self.last_tool_call_id = self.last_tool_outcome = None


PENDING, RUNNING, REQUIRES_INPUT, BLOCKED = (
    Status.PENDING.value, Status.RUNNING.value, Status.REQUIRES_INPUT.value, Status.BLOCKED.value,
)  # fmt: skip
COMPLETED, FAILED, CANCELLED = (
    Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value,
)  # fmt: skip
EVOLVE: dict[type[Any], Callable[[Card, Any], None]] = {
    Execution.PickedUp: Card.picked_up,
    Execution.ToolCalled: Card.tool_called,
    Execution.ToolCallFinished: Card.tool_call_finished,
    Execution.InputRequested: Card.input_requested,
    Execution.InputProvided: Card.input_provided,
    Execution.Blocked: Card.was_blocked,
    Execution.Unblocked: Card.unblocked,
    Execution.CancelRequested: Card.cancellation_requested,
    Execution.Cancelled: Card.cancelled,
    Execution.Completed: Card.completed,
    Execution.Failed: Card.failed,
    Execution.LeaseExpired: Card.lease_expired,
    Execution.RetryScheduled: Card.retry_scheduled,
}
"""How each event changes a card (one method per event; a dict, not singledispatch,
because a rebuild calls it for every stored event)."""

COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(Card))
_values = attrgetter(*COLUMNS)
CHANGING_COLUMNS = (
    "status", "attempt", "worker_id", "updated_at", "not_before", "result", "error",
    "failure_reason", "completion_notes", "question", "blocked", "cancel_requested", "last_tool",
    "last_tool_call_id", "last_tool_outcome", "status_entered_at", "version", "position",
)  # fmt: skip
"""What events after Created change; the rest of a card is fixed when it is created."""
_changing_values = attrgetter("id", *CHANGING_COLUMNS)
CHANGING_JSON_INDEXES = tuple(1 + CHANGING_COLUMNS.index(name) for name in ("result", "blocked"))
COLUMN_TYPES = {
    "id": "uuid", "tenant": "text", "type": "text", "agent_id": "text", "team_id": "text",
    "worker_queue": "text", "prompt": "text", "parameters": "jsonb", "priority": "int4",
    "labels": "jsonb", "status": "text", "attempt": "int4", "worker_id": "text",
    "created_by": "jsonb", "created_at": "timestamptz", "updated_at": "timestamptz",
    "deadline": "timestamptz", "not_before": "timestamptz", "result": "jsonb", "error": "text",
    "failure_reason": "text", "completion_notes": "text", "question": "text",
    "cancel_requested": "bool", "last_tool": "text", "last_tool_call_id": "text",
    "last_tool_outcome": "text", "status_entered_at": "timestamptz", "version": "int4",
    "position": "int8", "blocked": "jsonb",
}  # fmt: skip
"""PostgreSQL types of the card's columns, in ``COLUMNS`` order (binary COPY needs them)."""
CHANGE_TYPES = {name: COLUMN_TYPES[name] for name in ("id", *CHANGING_COLUMNS)}
JSON_COLUMNS = ("parameters", "labels", "created_by", "result", "blocked")
JSON_COLUMN_INDEXES = tuple(COLUMNS.index(name) for name in JSON_COLUMNS)


def fold(events: list[tuple[int, Any]]) -> Card | None:
    """One execution's card after its ``(position, event)`` pairs, in order."""
    card: Card | None = None
    for position, event in events:
        if isinstance(event, Execution.Created):
            card = Card.created(event, position)
        elif card is not None:
            card.apply(event, position)
    return card
