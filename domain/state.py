"""Read-only copies of an execution handed back to callers of the command side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.execution import Execution

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
    not_before: datetime | None
    question: str | None
    cancel_requested: bool
    result: Any
    error: str | None
    failure_reason: str | None
    completion_notes: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionState:
        return cls(
            id=execution.id,
            version=execution.version,
            tenant=execution.tenant,
            type=execution.type,
            agent_id=execution.agent_id,
            team_id=execution.team_id,
            worker_queue=execution.worker_queue,
            prompt=execution.prompt,
            parameters=execution.parameters,
            priority=execution.priority,
            labels=execution.labels,
            status=execution.status.value,
            attempt=execution.attempt,
            lease=execution.lease,
            worker_id=execution.worker_id,
            created_by=execution.created_by,
            created_at=execution.created_on,
            updated_at=execution.modified_on,
            deadline=execution.deadline,
            not_before=execution.not_before,
            question=execution.question,
            cancel_requested=execution.cancel_requested,
            result=execution.result,
            error=execution.error,
            failure_reason=execution.failure_reason.value if execution.failure_reason else None,
            completion_notes=execution.completion_notes,
        )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command produced: the execution as it left it, and where its last event
    stands in the log (``position``), so a query can wait for a view to catch up."""

    execution: ExecutionState
    position: int | None
    recorded: int

    @property
    def lease(self) -> int:
        return self.execution.lease
