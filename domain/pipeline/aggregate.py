"""The Pipeline aggregate: one run of a spec (DESIGN §12), its items, and each step
(iteration, column, item) from dispatch to end.

Commands check their guards and then trigger events; a refused command raises a named
error (domain/pipeline/errors.py) and leaves the aggregate unchanged. What to do next is
not decided here but by the conductor's pure rules (domain/pipeline/decide.py), which the
conductor (infra/conductor.py) applies through these commands.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.pipeline import events
from domain.pipeline.errors import InvalidPipeline, PipelineEnded, StepNotDispatched
from domain.pipeline.spec import PipelineSpec, check_items, item_id
from domain.pipeline.values import PipelineStatus, Step, StepKey, StepStatus


class Pipeline(Aggregate):
    TOPIC = f"{events.TOPIC}.Pipeline.v1"

    Event = events.PipelineEvent
    Created = events.Started  # eventsourcing looks for "Created"
    Started = events.Started
    ItemsAdded = events.ItemsAdded
    StepDispatched = events.StepDispatched
    StepEnded = events.StepEnded
    UntilHeld = events.UntilHeld
    IterationEnded = events.IterationEnded
    SummaryDispatched = events.SummaryDispatched
    Completed = events.Completed
    Failed = events.Failed
    Cancelled = events.Cancelled

    def __init__(
        self,
        tenant: str,
        spec: dict[str, Any],
        created_by: dict[str, str],
        idempotency_key: str | None,
    ) -> None:
        self.tenant = tenant
        self.spec = PipelineSpec.model_validate(spec)
        self.created_by = created_by
        self.idempotency_key = idempotency_key
        self.status = PipelineStatus.PENDING
        self.iteration = 1
        self.items: list[dict[str, Any]] = list(self.spec.items)
        self.joined: dict[str, int] = {item_id(item): 1 for item in self.items}
        self.steps: dict[StepKey, Step] = {}
        self.stopping = False
        self.summary_execution_id: UUID | None = None
        self.summary: Any = None
        self.reason: str | None = None
        self.error: str | None = None

    @classmethod
    def start(
        cls,
        pipeline_id: UUID,
        *,
        tenant: str,
        spec: PipelineSpec,
        created_by: dict[str, str],
        idempotency_key: str | None = None,
    ) -> Pipeline:
        return cls._create(
            cls.Started,
            id=pipeline_id,
            tenant=tenant,
            spec=spec.model_dump(mode="json"),
            created_by=created_by,
            idempotency_key=idempotency_key,
        )

    # -- guards ---------------------------------------------------------------------

    def check_not_ended(self) -> None:
        if self.status.is_terminal:
            raise PipelineEnded(self.id, self.status.value)

    # -- commands -------------------------------------------------------------------

    def add_items(self, items: list[Any], actor: dict[str, str]) -> None:
        """More tickets: in ``stream`` flow they enter the current iteration at once, in
        ``barrier`` flow the next one (the current one's columns may have moved on)."""
        self.check_not_ended()
        if not items:
            raise InvalidPipeline("items: at least one item")
        try:
            check_items(items, [item_id(item) for item in self.items])
        except ValueError as error:
            raise InvalidPipeline(str(error)) from None
        barrier = self.spec.flow == "barrier" and self.status is not PipelineStatus.PENDING
        joins = self.iteration + 1 if barrier else self.iteration
        self.trigger_event(self.ItemsAdded, items=items, iteration=joins, actor=actor)

    def dispatch(self, key: StepKey, execution_id: UUID) -> None:
        self.check_not_ended()
        if key in self.steps:
            return  # a repeat of a dispatch already recorded: nothing new
        self.trigger_event(
            self.StepDispatched,
            iteration=key.iteration,
            column=key.column,
            item_id=key.item_id,
            execution_id=execution_id,
        )

    def end_step(
        self, key: StepKey, status: StepStatus, output: Any, error: str | None, attempt: int
    ) -> None:
        """Record how a step's execution ended (also after the pipeline ended: a cancelled
        pipeline's running steps end later, and the board shows how)."""
        step = self.steps.get(key)
        if step is None:
            raise StepNotDispatched(f"step {key} of pipeline {self.id} was never dispatched")
        if step.status.ended or not status.ended:
            return
        self.trigger_event(
            self.StepEnded,
            iteration=key.iteration,
            column=key.column,
            item_id=key.item_id,
            status=status.value,
            output=output,
            error=error,
            attempt=attempt,
        )

    def hold_until(self) -> None:
        self.check_not_ended()
        if not self.stopping:
            self.trigger_event(self.UntilHeld, iteration=self.iteration)

    def end_iteration(self) -> None:
        self.check_not_ended()
        self.trigger_event(self.IterationEnded, iteration=self.iteration)

    def dispatch_summary(self, execution_id: UUID) -> None:
        self.check_not_ended()
        if self.summary_execution_id is None:
            self.trigger_event(self.SummaryDispatched, execution_id=execution_id)

    def complete(self, summary: Any, reason: str) -> None:
        self.check_not_ended()
        self.trigger_event(self.Completed, summary=summary, reason=reason)

    def fail(self, reason: str, error: str) -> None:
        self.check_not_ended()
        self.trigger_event(self.Failed, reason=reason, error=error)

    def cancel(self, reason: str, actor: dict[str, str]) -> None:
        """Cancel a pipeline that has not ended; a repeat (or a cancel after it ended)
        changes nothing: what the caller wanted already holds."""
        if self.status.is_terminal:
            if self.status is PipelineStatus.CANCELLED:
                return
            raise PipelineEnded(self.id, self.status.value)
        self.trigger_event(self.Cancelled, reason=reason, actor=actor)

    # -- what the rules read --------------------------------------------------------

    def items_in(self, iteration: int) -> list[dict[str, Any]]:
        return [item for item in self.items if self.joined[item_id(item)] <= iteration]

    def running_steps(self) -> list[tuple[StepKey, Step]]:
        return [(key, step) for key, step in self.steps.items() if not step.status.ended]
