"""Value types of the Pipeline aggregate: its statuses, a step and its key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import NAMESPACE_URL, UUID, uuid5


class PipelineStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (PipelineStatus.COMPLETED, PipelineStatus.FAILED, PipelineStatus.CANCELLED)


class StepStatus(StrEnum):
    """A step's state as the pipeline records it; ``running`` from dispatch to its end
    (the execution itself may be pending, running, waiting for input, ...)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self is not StepStatus.RUNNING


class StepKey(NamedTuple):
    iteration: int
    column: str
    item_id: str


@dataclass(slots=True)
class Step:
    execution_id: UUID
    status: StepStatus = StepStatus.RUNNING
    output: Any = None
    error: str | None = None
    attempt: int = 1


def step_key_text(pipeline_id: UUID, key: StepKey) -> str:
    """The idempotency key of a step's execution: the same step always names the same
    execution, so a conductor that repeats a dispatch finds the first one."""
    return f"pipeline:{pipeline_id}:{key.iteration}:{key.column}:{key.item_id}"


def summary_key_text(pipeline_id: UUID) -> str:
    return f"pipeline:{pipeline_id}:summary"


_PIPELINE_IDS = uuid5(NAMESPACE_URL, "agentboard:pipeline-idempotency-key")


def idempotent_pipeline_id(tenant: str, idempotency_key: str) -> UUID:
    return uuid5(_PIPELINE_IDS, f"{tenant}\x00{idempotency_key}")
