"""Value types of the Execution aggregate: statuses, actors, reasons, the retry policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.execution.errors import InvalidCommand


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    REQUIRES_INPUT = "requires_input"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def holds_lease(self) -> bool:
        """A worker holds the execution (it was picked up and has not ended)."""
        return self in LEASED


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
LEASED = frozenset({Status.RUNNING, Status.REQUIRES_INPUT, Status.BLOCKED})


class ExecutionType(StrEnum):
    AGENT = "agent"
    TEAM = "team"


class ActorKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    HEARTBEAT = "heartbeat"
    SCHEDULE = "schedule"
    PIPELINE = "pipeline"
    API = "api"
    WORKER = "worker"
    POLICY = "policy"
    SYSTEM = "system"


class FailureReason(StrEnum):
    TOOL_ERROR = "tool_error"
    POLICY_VIOLATION = "policy_violation"
    MISSING_PREREQUISITE = "missing_prerequisite"
    WORKER_LOST = "worker_lost"
    TIMEOUT = "timeout"
    AGENT_ERROR = "agent_error"
    INVALID_OUTPUT = "invalid_output"  # a result its output_schema refuses (pipelines)


class InputKind(StrEnum):
    CLARIFICATION = "clarification"
    APPROVAL = "approval"


class ToolOutcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a person, an agent, a schedule, the retry policy, ...; and,
    when the caller named that actor itself, the credential it came ``via`` (the API key
    that said "created by schedule nightly"), so a claim is never anonymous."""

    kind: ActorKind
    id: str
    via: str | None = None

    def as_dict(self) -> dict[str, str]:
        if self.via is None:
            return {"kind": self.kind.value, "id": self.id}
        return {"kind": self.kind.value, "id": self.id, "via": self.via}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Actor:
        via = data.get("via")
        return cls(ActorKind(data["kind"]), str(data["id"]), None if via is None else str(via))


POLICY = Actor(ActorKind.POLICY, "retry-policy")
SYSTEM = Actor(ActorKind.SYSTEM, "agentboard")

# By default only the failures that say nothing about the work itself are retried:
# a lost worker or a timeout. An agent's or a tool's own failure usually repeats
# (and costs tokens), so it is retried only when the policy names it.
DEFAULT_RETRY_ON = (FailureReason.WORKER_LOST, FailureReason.TIMEOUT)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts an execution gets, and how long to wait between them.

    The delay before attempt n+1 is ``backoff_seconds * 2 ** (n - 1)``, capped at
    ``max_backoff_seconds``.
    """

    max_attempts: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0
    retry_on: tuple[FailureReason, ...] = field(default=DEFAULT_RETRY_ON)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 100:
            raise InvalidCommand("retry.max_attempts must be between 1 and 100")
        if not 0 <= self.backoff_seconds <= 86_400:
            raise InvalidCommand("retry.backoff_seconds must be between 0 and 86400")
        if not 0 <= self.max_backoff_seconds <= 86_400:
            raise InvalidCommand("retry.max_backoff_seconds must be between 0 and 86400")

    def allows_retry(self, attempt: int, reason: FailureReason) -> bool:
        return reason in self.retry_on and attempt < self.max_attempts

    def delay_after(self, attempt: int) -> float:
        return float(min(self.backoff_seconds * 2 ** max(attempt - 1, 0), self.max_backoff_seconds))

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff_seconds": self.backoff_seconds,
            "max_backoff_seconds": self.max_backoff_seconds,
            "retry_on": [reason.value for reason in self.retry_on],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=int(data["max_attempts"]),
            backoff_seconds=float(data["backoff_seconds"]),
            max_backoff_seconds=float(data["max_backoff_seconds"]),
            retry_on=tuple(FailureReason(reason) for reason in data["retry_on"]),
        )
