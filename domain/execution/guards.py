"""The Execution aggregate's guards: what a command checks before it records anything.

``ExecutionGuards`` is a mixin of the aggregate (domain/execution/aggregate.py): each guard
raises a named error and changes nothing. ``check_request`` checks a create's own values.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.execution.errors import (
    ExecutionBlocked,
    IdempotencyKeyReused,
    InvalidCommand,
    InvalidTransition,
    LeaseLost,
)
from domain.execution.values import LEASED, ExecutionType, Status

# Names that travel in NATS subjects (agentboard.work.<queue>, ...) must be one token.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(field: str, value: str) -> None:
    if not _NAME.match(value):
        raise InvalidCommand(
            f"{field} must be 1-64 letters, digits, '-' or '_' (got {value[:80]!r})"
        )


def check_request(
    *, tenant: str, worker_queue: str, agent_id: str, prompt: str, type: ExecutionType,
    team_id: str | None, timeout_seconds: float | None, heartbeat_timeout_seconds: float | None,
) -> None:  # fmt: skip
    """A create's own values, before anything is recorded."""
    check_name("tenant", tenant)
    check_name("worker_queue", worker_queue)
    if not 0 < len(agent_id) <= 128:
        raise InvalidCommand("agent_id must be 1-128 characters")
    if not prompt.strip():
        raise InvalidCommand("prompt must not be empty")
    if type is ExecutionType.TEAM and not team_id:
        raise InvalidCommand("a team execution needs a team_id")
    for name, seconds in (
        ("timeout_seconds", timeout_seconds),
        ("heartbeat_timeout_seconds", heartbeat_timeout_seconds),
    ):
        if seconds is not None and seconds <= 0:
            raise InvalidCommand(f"{name} must be positive")


class ExecutionGuards:
    """The checks the aggregate's commands make, over the attributes it keeps."""

    if TYPE_CHECKING:  # the aggregate's own attributes (domain/execution/aggregate.py)
        id: UUID
        status: Status
        lease: int
        lease_expired: bool
        blocked: dict[str, Any] | None
        idempotency_keys: dict[str, str]

    def check_status(self, action: str, *allowed: Status) -> None:
        if self.status not in allowed:
            raise InvalidTransition(self.id, self.status.value, action)

    def check_lease(self, lease: int, action: str) -> None:
        """A report must carry the current lease: a worker presumed dead cannot finish
        an execution that someone else now holds (fencing token)."""
        if lease != self.lease:
            raise LeaseLost(self.id, lease, self.lease)
        if self.status is Status.PENDING and lease > 0:
            raise LeaseLost(self.id, lease, self.lease, "it expired and the execution was requeued")
        self.check_status(action, *LEASED)
        if self.lease_expired:  # lost while blocked: it waits for a person, not for it
            raise LeaseLost(self.id, lease, self.lease, "its worker was presumed lost")

    def nobody_holds_it(self) -> bool:
        """Blocked, and its worker was lost meanwhile: it waits for a person alone."""
        return self.status is Status.BLOCKED and self.lease_expired

    def check_not_blocked(self, action: str) -> None:
        """Nothing new starts while a person holds the execution blocked."""
        if self.status is Status.BLOCKED:
            reason = self.blocked["reason"] if self.blocked else "blocked"
            raise ExecutionBlocked(self.id, action, reason)

    def already_done(self, key: str | None, action: str) -> bool:
        """True when this idempotency key already recorded this action."""
        if key is None or key not in self.idempotency_keys:
            return False
        if self.idempotency_keys[key] != action:
            raise IdempotencyKeyReused(key)
        return True

    def remember_key(self, key: str | None, action: str) -> None:
        if key is not None:
            self.idempotency_keys[key] = action
