"""The events of the Pipeline aggregate, and how each one changes it.

Topics are explicit and versioned (``agentboard.pipeline.<Event>.v1``), never module paths;
``apply`` holds no rules: the rules live in the aggregate's commands
(domain/pipeline/aggregate.py) and the conductor's decisions (domain/pipeline/decide.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.pipeline.values import PipelineStatus, Step, StepKey, StepStatus

if TYPE_CHECKING:
    from domain.pipeline.aggregate import Pipeline

TOPIC = "agentboard.pipeline"


class PipelineEvent(Aggregate.Event):
    """The base of every event of a pipeline (never stored itself)."""


class Started(PipelineEvent, Aggregate.Created):
    TOPIC = f"{TOPIC}.Started.v1"
    tenant: str
    spec: dict[str, Any]
    created_by: dict[str, str]
    idempotency_key: str | None


class ItemsAdded(PipelineEvent):
    """More tickets; they take part from ``iteration`` on."""

    TOPIC = f"{TOPIC}.ItemsAdded.v1"
    items: list[dict[str, Any]]
    iteration: int
    actor: dict[str, str]

    def apply(self, pipeline: Pipeline) -> None:
        for item in self.items:
            pipeline.items.append(item)
            pipeline.joined[str(item["id"])] = self.iteration


class StepDispatched(PipelineEvent):
    TOPIC = f"{TOPIC}.StepDispatched.v1"
    iteration: int
    column: str
    item_id: str
    execution_id: UUID

    def apply(self, pipeline: Pipeline) -> None:
        key = StepKey(self.iteration, self.column, self.item_id)
        pipeline.steps[key] = Step(self.execution_id)
        pipeline.status = PipelineStatus.RUNNING


class StepEnded(PipelineEvent):
    TOPIC = f"{TOPIC}.StepEnded.v1"
    iteration: int
    column: str
    item_id: str
    status: str
    output: Any
    error: str | None
    attempt: int

    def apply(self, pipeline: Pipeline) -> None:
        step = pipeline.steps[StepKey(self.iteration, self.column, self.item_id)]
        step.status = StepStatus(self.status)
        step.output = self.output
        step.error = self.error
        step.attempt = self.attempt


class UntilHeld(PipelineEvent):
    """``until`` turned truthy: what runs finishes, what waits is skipped."""

    TOPIC = f"{TOPIC}.UntilHeld.v1"
    iteration: int

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.stopping = True


class IterationEnded(PipelineEvent):
    TOPIC = f"{TOPIC}.IterationEnded.v1"
    iteration: int

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.iteration = self.iteration + 1


class SummaryDispatched(PipelineEvent):
    TOPIC = f"{TOPIC}.SummaryDispatched.v1"
    execution_id: UUID

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.summary_execution_id = self.execution_id


class Completed(PipelineEvent):
    TOPIC = f"{TOPIC}.Completed.v1"
    summary: Any
    reason: str

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.status = PipelineStatus.COMPLETED
        pipeline.summary = self.summary
        pipeline.reason = self.reason


class Failed(PipelineEvent):
    TOPIC = f"{TOPIC}.Failed.v1"
    reason: str
    error: str

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.status = PipelineStatus.FAILED
        pipeline.reason = self.reason
        pipeline.error = self.error


class Cancelled(PipelineEvent):
    TOPIC = f"{TOPIC}.Cancelled.v1"
    reason: str
    actor: dict[str, str]

    def apply(self, pipeline: Pipeline) -> None:
        pipeline.status = PipelineStatus.CANCELLED
        pipeline.reason = self.reason
