"""Commands: what callers ask of an execution, imperative and immutable.

Worker reports carry the lease they hold; operator actions carry their actor and,
when the caller may repeat them, an idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from domain.execution.errors import ExecutionNotFound, InvalidCommand, QueueNotAllowed
from domain.execution.values import (
    Actor,
    ExecutionType,
    FailureReason,
    InputKind,
    RetryPolicy,
    ToolOutcome,
)


def _coerce(command: object, name: str, enum: type[Any]) -> None:
    """Accept an enum member or its value; refuse anything else with a clear message."""
    value = getattr(command, name)
    if isinstance(value, enum):
        return
    try:
        object.__setattr__(command, name, enum(value))
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidCommand(f"{name} must be one of {allowed} (got {value!r})") from None


_IDEMPOTENT_NAMESPACE = uuid5(NAMESPACE_URL, "agentboard:execution-idempotency-key")


def idempotent_execution_id(tenant: str, idempotency_key: str) -> UUID:
    """The same key, in the same tenant, always names the same execution, so a
    repeated create finds the first one instead of recording a second."""
    return uuid5(_IDEMPOTENT_NAMESPACE, f"{tenant}\x00{idempotency_key}")


@dataclass(frozen=True, slots=True)
class Command:
    execution_id: UUID


@dataclass(frozen=True, slots=True)
class CreateExecution(Command):
    tenant: str
    agent_id: str
    worker_queue: str
    prompt: str
    created_by: Actor
    type: ExecutionType = ExecutionType.AGENT
    team_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    deadline: datetime | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    parent_execution_id: UUID | None = None
    idempotency_key: str | None = None
    traceparent: str | None = None  # W3C trace context of the caller, if it sent one

    def __post_init__(self) -> None:
        _coerce(self, "type", ExecutionType)
        if isinstance(self.retry, dict):
            object.__setattr__(self, "retry", _retry_policy(self.retry))
        key = self.idempotency_key
        if key is not None and self.execution_id != idempotent_execution_id(self.tenant, key):
            raise InvalidCommand("an idempotent create names its execution by its key: use new()")

    @classmethod
    def new(
        cls,
        *,
        tenant: str,
        agent_id: str,
        worker_queue: str,
        prompt: str,
        created_by: Actor,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> CreateExecution:
        """A create of a new execution, or, with an idempotency key, of the one execution
        that key names (a repeat finds the first instead of recording a second)."""
        execution_id = (
            idempotent_execution_id(tenant, idempotency_key) if idempotency_key else uuid4()
        )
        return cls(
            execution_id, tenant=tenant, agent_id=agent_id, worker_queue=worker_queue,
            prompt=prompt, created_by=created_by, idempotency_key=idempotency_key, **options,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PickUp(Command):
    worker_id: str
    claim_token: str


@dataclass(frozen=True, slots=True)
class RecordToolCall(Command):
    lease: int
    call_id: str
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FinishToolCall(Command):
    lease: int
    call_id: str
    outcome: ToolOutcome
    result_summary: str = ""
    duration_seconds: float = 0.0

    def __post_init__(self) -> None:
        _coerce(self, "outcome", ToolOutcome)


@dataclass(frozen=True, slots=True)
class AppendOutput(Command):
    lease: int
    text: str
    sequence: int


@dataclass(frozen=True, slots=True)
class AddArtifact(Command):
    lease: int
    name: str
    media_type: str
    size: int
    sha256: str
    object_key: str


@dataclass(frozen=True, slots=True)
class RequestInput(Command):
    lease: int
    question: str
    kind: InputKind = InputKind.CLARIFICATION
    answer_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _coerce(self, "kind", InputKind)


@dataclass(frozen=True, slots=True)
class ProvideInput(Command):
    answer: Any
    actor: Actor
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Block(Command):
    reason: str
    actor: Actor
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Unblock(Command):
    reason: str
    actor: Actor
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RequestCancel(Command):
    reason: str
    actor: Actor
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmCancel(Command):
    lease: int


@dataclass(frozen=True, slots=True)
class Complete(Command):
    lease: int
    result: Any = None
    completion_notes: str | None = None


@dataclass(frozen=True, slots=True)
class ForceComplete(Command):
    actor: Actor
    result: Any = None
    completion_notes: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Fail(Command):
    lease: int
    error: str
    reason: FailureReason = FailureReason.AGENT_ERROR

    def __post_init__(self) -> None:
        _coerce(self, "reason", FailureReason)


@dataclass(frozen=True, slots=True)
class ExpireLease(Command):
    lease: int


@dataclass(frozen=True, slots=True)
class Retry(Command):
    actor: Actor
    idempotency_key: str | None = None


def _retry_policy(data: dict[str, Any]) -> RetryPolicy:
    known = {"max_attempts", "backoff_seconds", "max_backoff_seconds", "retry_on"}
    unknown = set(data) - known
    if unknown:
        raise InvalidCommand(f"retry has unknown fields: {', '.join(sorted(unknown))}")
    fields = dict(data)
    if "retry_on" in fields:
        try:
            fields["retry_on"] = tuple(FailureReason(reason) for reason in fields["retry_on"])
        except (ValueError, TypeError):
            allowed = ", ".join(reason.value for reason in FailureReason)
            raise InvalidCommand(f"retry.retry_on takes reasons among {allowed}") from None
    return RetryPolicy(**fields)


@dataclass(frozen=True, slots=True)
class Within(Command):
    """``command``, allowed only on an execution of ``tenant`` (None: any tenant) and, when
    ``queues`` is given, on one of those queues. Another tenant's execution is refused as
    not existing, so the refusal reveals nothing; another queue's with ``QueueNotAllowed``.
    """

    tenant: str | None
    command: Command
    queues: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls, command: Command, tenant: str | None, queues: tuple[str, ...] | None = None
    ) -> Within:
        return cls(command.execution_id, tenant, command, queues)

    def check(self, tenant: str, queue: str) -> None:
        """Refuse an execution of ``tenant`` on ``queue`` that lies outside this scope."""
        check_within(self.execution_id, tenant, queue, self.tenant, self.queues)


def check_within(
    execution_id: UUID,
    tenant: str,
    queue: str,
    within_tenant: str | None,
    within_queues: tuple[str, ...] | None,
) -> None:
    """The one rule of scopes: another tenant's execution does not exist (the refusal
    reveals nothing); another queue's is named as such."""
    if within_tenant is not None and tenant != within_tenant:
        raise ExecutionNotFound(execution_id)
    if within_queues is not None and queue not in within_queues:
        raise QueueNotAllowed(execution_id, queue, within_queues)
