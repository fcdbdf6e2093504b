"""Named domain errors. Each leaves the aggregate, and the log, unchanged."""

from __future__ import annotations

from uuid import UUID


class DomainError(Exception):
    """A command the domain refuses. Carries a message a person can act on."""


class InvalidTransition(DomainError):
    def __init__(self, execution_id: UUID, status: str, action: str) -> None:
        self.execution_id = execution_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} execution {execution_id}: it is {status}")


class LeaseLost(DomainError):
    """A worker reported with a lease that is no longer current (fencing token)."""

    def __init__(self, execution_id: UUID, presented: int, current: int, why: str = "") -> None:
        self.execution_id = execution_id
        self.presented = presented
        self.current = current
        why = why or f"the current lease is {current}"
        super().__init__(f"lease {presented} on execution {execution_id} is no longer held: {why}")


class ExecutionNotFound(DomainError):
    def __init__(self, execution_id: UUID) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id} does not exist")


class QueueNotAllowed(DomainError):
    """A command allowed on some queues only, for an execution on another."""

    def __init__(self, execution_id: UUID, queue: str, allowed: tuple[str, ...]) -> None:
        self.execution_id = execution_id
        self.queue = queue
        self.allowed = allowed
        super().__init__(
            f"execution {execution_id} is on queue {queue!r}; this key serves only "
            f"{', '.join(map(repr, allowed))}"
        )


class IdempotencyKeyReused(DomainError):
    """The same idempotency key came back with a different request."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )


class UnknownToolCall(DomainError):
    def __init__(self, execution_id: UUID, call_id: str) -> None:
        self.execution_id = execution_id
        self.call_id = call_id
        super().__init__(f"execution {execution_id} has no tool call {call_id!r}")


class InvalidCommand(DomainError):
    """A command whose own values are wrong (empty prompt, negative priority, ...)."""


class ExecutionBlocked(InvalidTransition):
    """A worker tried to start something new (a tool call, a question) on an execution a
    person blocked: its run waits until the execution is unblocked, then tries again."""

    def __init__(self, execution_id: UUID, action: str, reason: str) -> None:
        super().__init__(execution_id, "blocked", action)
        self.reason = reason
        self.args = (
            f"cannot {action} execution {execution_id}: it is blocked ({reason}); "
            "it goes on once a person unblocks it",
        )


class InvalidAnswer(DomainError):
    """An answer that does not satisfy the JSON Schema its question carries."""

    def __init__(self, execution_id: UUID, problem: str) -> None:
        self.execution_id = execution_id
        self.problem = problem
        super().__init__(
            f"the answer does not fit the question of execution {execution_id}: {problem}; "
            "the execution still waits for an answer"
        )
