"""The events of the Execution aggregate, and how each one changes it.

Every event carries an explicit, versioned topic, never a module path, so code can move
without breaking stored history; a stored event's fields never change (a new field means a
new event version). ``apply`` methods hold no rules: replaying the log never re-decides
anything (the rules live in the aggregate's commands, domain/execution/aggregate.py).

The events subclass ``ExecutionEvent``, which the aggregate names as its ``Event``, so
eventsourcing takes them as they are instead of redefining them inside the aggregate:
``Execution.PickedUp is PickedUp``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.execution.values import FailureReason, Status, ToolOutcome

if TYPE_CHECKING:
    from domain.execution.aggregate import Execution

TOPIC = "agentboard.execution"


class ExecutionEvent(Aggregate.Event):
    """The base of every event of an execution (never stored itself)."""


class Created(ExecutionEvent, Aggregate.Created):
    TOPIC = f"{TOPIC}.Created.v1"
    tenant: str
    type: str
    agent_id: str
    team_id: str | None
    worker_queue: str
    prompt: str
    parameters: dict[str, Any]
    priority: int
    labels: dict[str, str]
    deadline: datetime | None
    retry: dict[str, Any]
    timeout_seconds: float | None
    heartbeat_timeout_seconds: float | None
    parent_execution_id: UUID | None
    created_by: dict[str, str]
    idempotency_key: str | None
    # Added later, so with defaults: events stored before them load without them.
    traceparent: str | None = None
    """The W3C trace context its creator sent: its trace continues into the run."""
    pipeline: dict[str, Any] | None = None
    """Its place in a pipeline (DESIGN §12): ``{id, column, item_id, iteration}``."""
    output_schema: dict[str, Any] | None = None
    """The JSON Schema its result must satisfy (a pipeline column's)."""


class PickedUp(ExecutionEvent):
    TOPIC = f"{TOPIC}.PickedUp.v1"
    worker_id: str
    attempt: int
    lease: int
    claim_token: str

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.RUNNING, self.timestamp)
        execution.worker_id = self.worker_id
        execution.lease = self.lease
        execution.claim_token = self.claim_token
        execution.picked_up_at = self.timestamp
        execution.lease_expired = False
        execution.output_sequence = 0  # each lease numbers its output chunks afresh


class ToolCalled(ExecutionEvent):
    TOPIC = f"{TOPIC}.ToolCalled.v1"
    call_id: str
    tool: str
    arguments: dict[str, Any]
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.tool_calls[self.call_id] = None
        execution.tool_calls_started[self.call_id] = self.timestamp
        execution.last_tool = self.tool
        execution.last_tool_call_id = self.call_id
        execution.last_tool_outcome = None


class ToolCallFinished(ExecutionEvent):
    TOPIC = f"{TOPIC}.ToolCallFinished.v1"
    call_id: str
    outcome: str
    result_summary: str
    duration_seconds: float
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.tool_calls[self.call_id] = ToolOutcome(self.outcome)
        if self.call_id == execution.last_tool_call_id:
            execution.last_tool_outcome = self.outcome


class OutputAppended(ExecutionEvent):
    TOPIC = f"{TOPIC}.OutputAppended.v1"
    text: str
    sequence: int
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.output_sequence = self.sequence
        execution.output_chars += len(self.text)


class ArtifactAdded(ExecutionEvent):
    TOPIC = f"{TOPIC}.ArtifactAdded.v1"
    name: str
    media_type: str
    size: int
    sha256: str
    object_key: str
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.artifacts[self.name] = self.sha256


class InputRequested(ExecutionEvent):
    TOPIC = f"{TOPIC}.InputRequested.v1"
    question: str
    kind: str
    answer_schema: dict[str, Any] | None
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.REQUIRES_INPUT, self.timestamp)
        execution.question = self.question
        execution.pending_input = {
            "question": self.question, "kind": self.kind, "schema": self.answer_schema,
        }  # fmt: skip
        execution.answer = None


class InputProvided(ExecutionEvent):
    TOPIC = f"{TOPIC}.InputProvided.v1"
    answer: Any
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.RUNNING, self.timestamp)
        execution.question = None
        execution.pending_input = None
        execution.answer = self.answer
        execution.remember_key(self.idempotency_key, "provide_input")


class Blocked(ExecutionEvent):
    TOPIC = f"{TOPIC}.Blocked.v1"
    reason: str
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.BLOCKED, self.timestamp)
        execution.blocked = {
            "reason": self.reason, "by": self.actor, "at": self.timestamp.isoformat(),
        }  # fmt: skip
        execution.remember_key(self.idempotency_key, "block")


class Unblocked(ExecutionEvent):
    TOPIC = f"{TOPIC}.Unblocked.v1"
    reason: str
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.RUNNING, self.timestamp)
        execution.blocked = None
        execution.remember_key(self.idempotency_key, "unblock")


class CancelRequested(ExecutionEvent):
    TOPIC = f"{TOPIC}.CancelRequested.v1"
    reason: str
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.cancel_requested = True
        execution.remember_key(self.idempotency_key, "cancel")


class Cancelled(ExecutionEvent):
    TOPIC = f"{TOPIC}.Cancelled.v1"
    reason: str
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.CANCELLED, self.timestamp)
        execution.ended()
        execution.remember_key(self.idempotency_key, "cancel")


class Completed(ExecutionEvent):
    TOPIC = f"{TOPIC}.Completed.v1"
    result: Any
    completion_notes: str | None
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.COMPLETED, self.timestamp)
        execution.result = self.result
        execution.completion_notes = self.completion_notes
        execution.ended()
        execution.remember_key(self.idempotency_key, "complete")


class Failed(ExecutionEvent):
    TOPIC = f"{TOPIC}.Failed.v1"
    error: str
    reason: str
    actor: dict[str, str]

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.FAILED, self.timestamp)
        execution.error = self.error
        execution.failure_reason = FailureReason(self.reason)
        execution.ended()


class UsageRecorded(ExecutionEvent):
    """Tokens an agent's model used (and what they cost, when the agent knows): one report
    of usage, added to the execution's totals (``usage``)."""

    TOPIC = f"{TOPIC}.UsageRecorded.v1"
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    usage_id: str
    lease: int

    def apply(self, execution: Execution) -> None:
        execution.usage_ids.add(self.usage_id)
        execution.usage = added_usage(execution.usage, self)


def added_usage(totals: dict[str, Any], usage: UsageRecorded) -> dict[str, Any]:
    """``totals`` with ``usage`` added: a new dict (a snapshot of the state may hold the old)."""
    cost = totals.get("cost_usd")
    if usage.cost_usd is not None:
        cost = (cost or 0.0) + usage.cost_usd
    return {
        "input_tokens": totals.get("input_tokens", 0) + usage.input_tokens,
        "output_tokens": totals.get("output_tokens", 0) + usage.output_tokens,
        "cost_usd": cost,
        "reports": totals.get("reports", 0) + 1,
    }


NO_USAGE: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cost_usd": None, "reports": 0}
"""The usage totals of an execution that reported none."""


class LeaseExpired(ExecutionEvent):
    TOPIC = f"{TOPIC}.LeaseExpired.v1"
    lease: int
    worker_id: str | None

    def apply(self, execution: Execution) -> None:
        execution.lease_expired = True  # the lost worker stays named until a new attempt


class RetryScheduled(ExecutionEvent):
    TOPIC = f"{TOPIC}.RetryScheduled.v1"
    attempt: int
    not_before: datetime
    actor: dict[str, str]
    idempotency_key: str | None

    def apply(self, execution: Execution) -> None:
        execution.enter(Status.PENDING, self.timestamp)
        execution.attempt = self.attempt
        execution.not_before = self.not_before
        execution.cancel_requested = False
        execution.worker_id = None
        execution.lease_expired = False
        execution.blocked = None
        execution.tool_calls = {}
        execution.tool_calls_started = {}
        execution.last_tool = execution.last_tool_call_id = execution.last_tool_outcome = None
        execution.question = None
        execution.pending_input = None
        execution.error = None
        execution.failure_reason = None
        execution.remember_key(self.idempotency_key, "retry")
