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

from psycopg.types.json import Jsonb

from domain.execution import events
from domain.execution.shape import ExecutionFields, created
from domain.execution.values import Status


@dataclass(slots=True)
class Card(ExecutionFields):
    """The execution's fields (domain/execution/shape.py), and where in the log the card
    stands."""

    position: int

    @classmethod
    def created(cls, event: events.Created, position: int) -> Card:
        return cls(**created(event), position=position)

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
        if evolve is not None:  # the others (CLOCK_ONLY) move only the clock
            evolve(self, event)
        self.updated_at = event.timestamp
        self.version = event.originator_version
        self.position = position

    def enter(self, status: str, at: datetime) -> None:
        if self.status != status:
            self.status = status
            self.status_entered_at = at

    def ended(self) -> None:
        """A final status: no block and no question remain open."""
        self.blocked = None
        self.pending_input = None

    def picked_up(self, event: events.PickedUp) -> None:
        self.enter(RUNNING, event.timestamp)
        self.worker_id = event.worker_id
        self.attempt = event.attempt

    def tool_called(self, event: events.ToolCalled) -> None:
        self.last_tool = event.tool
        self.last_tool_call_id = event.call_id
        self.last_tool_outcome = None

    def tool_call_finished(self, event: events.ToolCallFinished) -> None:
        if event.call_id == self.last_tool_call_id:
            self.last_tool_outcome = event.outcome

    def input_requested(self, event: events.InputRequested) -> None:
        self.enter(REQUIRES_INPUT, event.timestamp)
        self.question = event.question
        self.pending_input = {
            "question": event.question, "kind": event.kind, "schema": event.answer_schema,
        }  # fmt: skip

    def input_provided(self, event: events.InputProvided) -> None:
        self.enter(RUNNING, event.timestamp)
        self.question = None
        self.pending_input = None

    def was_blocked(self, event: events.Blocked) -> None:
        self.enter(BLOCKED, event.timestamp)
        at = event.timestamp.isoformat()
        self.blocked = {"reason": event.reason, "by": event.actor, "at": at}

    def unblocked(self, event: events.Unblocked) -> None:
        self.enter(RUNNING, event.timestamp)
        self.blocked = None

    def cancellation_requested(self, event: events.CancelRequested) -> None:
        self.cancel_requested = True

    def cancelled(self, event: events.Cancelled) -> None:
        self.enter(CANCELLED, event.timestamp)
        self.ended()  # the worker that ran it stays named

    def completed(self, event: events.Completed) -> None:
        self.enter(COMPLETED, event.timestamp)
        self.result = event.result
        self.completion_notes = event.completion_notes
        self.ended()

    def failed(self, event: events.Failed) -> None:
        self.enter(FAILED, event.timestamp)
        self.error = event.error
        self.failure_reason = event.reason
        self.ended()

    def retry_scheduled(self, event: events.RetryScheduled) -> None:
        self.enter(PENDING, event.timestamp)
        self.worker_id = None
        self.blocked = None
        self.attempt = event.attempt
        self.not_before = event.not_before
        self.cancel_requested = False
        self.question = None
        self.pending_input = None
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
    events.PickedUp: Card.picked_up,
    events.ToolCalled: Card.tool_called,
    events.ToolCallFinished: Card.tool_call_finished,
    events.InputRequested: Card.input_requested,
    events.InputProvided: Card.input_provided,
    events.Blocked: Card.was_blocked,
    events.Unblocked: Card.unblocked,
    events.CancelRequested: Card.cancellation_requested,
    events.Cancelled: Card.cancelled,
    events.Completed: Card.completed,
    events.Failed: Card.failed,
    events.RetryScheduled: Card.retry_scheduled,
}
"""How each event changes a card (one method per event; a dict, not singledispatch,
because a rebuild calls it for every stored event). ``Created`` makes the card."""
CLOCK_ONLY: frozenset[type[Any]] = frozenset(
    {events.OutputAppended, events.ArtifactAdded, events.UsageRecorded, events.LeaseExpired}
)
"""Events that change nothing a card shows but its clock (updated_at, version, position):
a lost worker stays named until a new attempt (or a person) moves the execution on."""

COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(Card))
_values = attrgetter(*COLUMNS)
CHANGING_COLUMNS = (
    "status", "attempt", "worker_id", "updated_at", "not_before", "result", "error",
    "failure_reason", "completion_notes", "question", "pending_input", "cancel_requested",
    "blocked", "last_tool", "last_tool_call_id", "last_tool_outcome", "status_entered_at",
    "version", "position",
)  # fmt: skip
"""What events after Created change; the rest of a card is fixed when it is created."""
_changing_values = attrgetter("id", *CHANGING_COLUMNS)
CHANGING_JSON_INDEXES = tuple(
    1 + CHANGING_COLUMNS.index(name) for name in ("result", "pending_input", "blocked")
)
COLUMN_TYPES = {
    "id": "uuid", "tenant": "text", "type": "text", "agent_id": "text", "team_id": "text",
    "worker_queue": "text", "prompt": "text", "parameters": "jsonb", "priority": "int4",
    "labels": "jsonb", "status": "text", "attempt": "int4", "worker_id": "text",
    "created_by": "jsonb", "created_at": "timestamptz", "updated_at": "timestamptz",
    "deadline": "timestamptz", "parent_execution_id": "uuid", "not_before": "timestamptz",
    "result": "jsonb", "error": "text", "failure_reason": "text", "completion_notes": "text",
    "question": "text", "pending_input": "jsonb", "cancel_requested": "bool",
    "blocked": "jsonb", "last_tool": "text", "last_tool_call_id": "text",
    "last_tool_outcome": "text", "status_entered_at": "timestamptz", "version": "int4",
    "pipeline": "jsonb", "position": "int8",
}  # fmt: skip
"""PostgreSQL types of the card's columns, in ``COLUMNS`` order (binary COPY needs them)."""
CHANGE_TYPES = {name: COLUMN_TYPES[name] for name in ("id", *CHANGING_COLUMNS)}
JSON_COLUMNS = (
    "parameters",
    "labels",
    "created_by",
    "result",
    "pending_input",
    "blocked",
    "pipeline",
)
JSON_COLUMN_INDEXES = tuple(COLUMNS.index(name) for name in JSON_COLUMNS)


def fold(history: list[tuple[int, Any]]) -> Card | None:
    """One execution's card after its ``(position, event)`` pairs, in order."""
    card: Card | None = None
    for position, event in history:
        if isinstance(event, events.Created):
            card = Card.created(event, position)
        elif card is not None:
            card.apply(event, position)
    return card
