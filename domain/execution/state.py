"""Read-only copies of an execution handed back to callers of the command side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.execution.aggregate import Execution

_IDEMPOTENT_NAMESPACE = uuid5(NAMESPACE_URL, "agentboard:execution-idempotency-key")


def idempotent_execution_id(tenant: str, idempotency_key: str) -> UUID:
    """The same key, in the same tenant, always names the same execution, so a
    repeated create finds the first one instead of recording a second."""
    return uuid5(_IDEMPOTENT_NAMESPACE, f"{tenant}\x00{idempotency_key}")


@dataclass(frozen=True, slots=True)
class ExecutionState:
    id: UUID
    version: int
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
    lease: int
    worker_id: str | None
    created_by: dict[str, str]
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None
    timeout_seconds: float | None
    heartbeat_timeout_seconds: float | None
    not_before: datetime | None
    question: str | None
    answer: Any
    cancel_requested: bool
    result: Any
    error: str | None
    failure_reason: str | None
    completion_notes: str | None
    pending_input: dict[str, Any] | None = None
    blocked: dict[str, Any] | None = None
    parent_execution_id: UUID | None = None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionState:
        return cls.from_snapshot(snapshot(execution))

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> ExecutionState:
        reason = state["failure_reason"]
        return cls(
            id=state["_id"],
            version=state["_version"],
            tenant=state["tenant"],
            type=state["type"],
            agent_id=state["agent_id"],
            team_id=state["team_id"],
            worker_queue=state["worker_queue"],
            prompt=state["prompt"],
            parameters=state["parameters"],
            priority=state["priority"],
            labels=state["labels"],
            status=state["status"].value,
            attempt=state["attempt"],
            lease=state["lease"],
            worker_id=state["worker_id"],
            created_by=state["created_by"],
            created_at=state["_created_on"],
            updated_at=state["_modified_on"],
            deadline=state["deadline"],
            timeout_seconds=state["timeout_seconds"],
            heartbeat_timeout_seconds=state["heartbeat_timeout_seconds"],
            not_before=state["not_before"],
            question=state["question"],
            answer=state["answer"],
            cancel_requested=state["cancel_requested"],
            result=state["result"],
            error=state["error"],
            failure_reason=reason.value if reason else None,
            completion_notes=state["completion_notes"],
            pending_input=state["pending_input"],
            blocked=state["blocked"],
            parent_execution_id=state["parent_execution_id"],
        )


def snapshot(execution: Execution) -> dict[str, Any]:
    """A shallow copy of the aggregate's attributes: cheap enough for the writer thread;
    the caller turns it into an ExecutionState in its own thread. Safe because the fields
    an ExecutionState exposes are replaced by events, never changed in place."""
    return dict(vars(execution))


class CommandResult:
    """What a command produced: the execution as it left it, and where its last event
    stands in the log (``position``), so a query can wait for a view to catch up."""

    __slots__ = ("_snapshot", "_state", "position", "recorded")

    def __init__(self, state: dict[str, Any], position: int | None, recorded: int) -> None:
        self._snapshot = state
        self._state: ExecutionState | None = None
        self.position = position
        self.recorded = recorded

    @property
    def execution(self) -> ExecutionState:
        if self._state is None:
            self._state = ExecutionState.from_snapshot(self._snapshot)
        return self._state

    @property
    def lease(self) -> int:
        lease: int = self._snapshot["lease"]
        return lease

    def brief(self) -> dict[str, Any]:
        """The few fields a worker's report needs back, without building the whole state."""
        state = self._snapshot
        return {
            "lease": state["lease"],
            "status": state["status"].value,
            "attempt": state["attempt"],
            "cancel_requested": state["cancel_requested"],
        }

    def __repr__(self) -> str:
        return f"CommandResult(position={self.position}, recorded={self.recorded})"
