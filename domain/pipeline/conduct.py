"""Moving one pipeline on: record the ends of its steps, decide (domain/pipeline/decide.py),
act, and again, until it waits for a step. Pure apart from ``Steps``, the port to the
executions that the conductor (infra/conductor.py) gives, and a fake in the unit tests.

Every step's execution is named by the step (``step_execution_id``), and created before
the pipeline records its dispatch: a conductor that dies in between creates nothing twice
on its next pass (the create finds the execution the key names), and skips nothing (the
rules decide the same dispatch again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from domain.execution.commands import idempotent_execution_id
from domain.execution.errors import DomainError
from domain.pipeline import decide as d
from domain.pipeline.aggregate import Pipeline
from domain.pipeline.values import StepKey, StepStatus, step_key_text, summary_key_text

MAX_ROUNDS = 10_000  # a pass that keeps acting this long is a bug in the rules, not work


class RulesLoop(RuntimeError):
    """The rules kept deciding without ever waiting (a bug)."""


@dataclass(frozen=True)
class StepEnd:
    status: StepStatus
    output: Any
    error: str | None
    attempt: int


@dataclass(frozen=True)
class StepOrigin:
    """What a step's execution carries of its pipeline (``pipeline`` on the execution)."""

    pipeline_id: UUID
    column: str
    item_id: str | None
    iteration: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.pipeline_id),
            "column": self.column,
            "item_id": self.item_id,
            "iteration": self.iteration,
        }


class Steps(Protocol):
    def end_of(self, execution_id: UUID) -> StepEnd | None:
        """How the execution ended for good (None: it has not, or may still be retried)."""

    def create(
        self,
        execution_id: UUID,
        idempotency_key: str,
        tenant: str,
        origin: StepOrigin,
        request: d.StepRequest,
    ) -> None:
        """Create the execution (a repeat finds it); raises a DomainError if refused."""

    def cancel(self, execution_id: UUID, pipeline_id: UUID) -> None:
        """Ask the execution to stop (a repeat, or one already ended, changes nothing)."""


def step_execution_id(pipeline: Pipeline, key: StepKey) -> tuple[UUID, str]:
    text = step_key_text(pipeline.id, key)
    return idempotent_execution_id(pipeline.tenant, text), text


def summary_execution_id(pipeline: Pipeline) -> tuple[UUID, str]:
    text = summary_key_text(pipeline.id)
    return idempotent_execution_id(pipeline.tenant, text), text


def conduct(pipeline: Pipeline, steps: Steps) -> None:
    """Move ``pipeline`` on as far as it goes now (its new events are pending on it)."""
    for _ in range(MAX_ROUNDS):
        before = len(pipeline.pending_events)
        _record_ends(pipeline, steps)
        summary = _summary_end(pipeline, steps)
        for action in d.decide(pipeline, summary):
            if pipeline.status.is_terminal and not isinstance(action, d.CancelStep):
                break  # an action ended it (a refused step): the rest were decided before
            _act(pipeline, steps, action)
        if len(pipeline.pending_events) == before:
            return
    raise RulesLoop(f"pipeline {pipeline.id} did not settle")


def _record_ends(pipeline: Pipeline, steps: Steps) -> None:
    for key, step in pipeline.running_steps():
        end = steps.end_of(step.execution_id)
        if end is not None:
            pipeline.end_step(key, end.status, end.output, end.error, end.attempt)


def _summary_end(pipeline: Pipeline, steps: Steps) -> d.SummaryEnd | None:
    if pipeline.summary_execution_id is None:
        return None
    end = steps.end_of(pipeline.summary_execution_id)
    return None if end is None else d.SummaryEnd(end.status, end.output, end.error)


def _act(pipeline: Pipeline, steps: Steps, action: d.Action) -> None:
    if isinstance(action, d.Dispatch):
        execution_id, key_text = step_execution_id(pipeline, action.key)
        origin = StepOrigin(
            pipeline.id, action.key.column, action.key.item_id, action.key.iteration
        )
        try:
            steps.create(execution_id, key_text, pipeline.tenant, origin, action.request)
        except DomainError as error:
            pipeline.fail("step_refused", f"column {action.key.column}: {error}")
            return
        pipeline.dispatch(action.key, execution_id)
    elif isinstance(action, d.DispatchSummary):
        execution_id, key_text = summary_execution_id(pipeline)
        origin = StepOrigin(pipeline.id, "on_complete", None, pipeline.iteration)
        try:
            steps.create(execution_id, key_text, pipeline.tenant, origin, action.request)
        except DomainError as error:
            pipeline.fail("step_refused", f"on_complete: {error}")
            return
        pipeline.dispatch_summary(execution_id)
    elif isinstance(action, d.HoldUntil):
        pipeline.hold_until()
    elif isinstance(action, d.EndIteration):
        pipeline.end_iteration()
    elif isinstance(action, d.Complete):
        pipeline.complete(action.summary, action.reason)
    elif isinstance(action, d.Fail):
        pipeline.fail(action.reason, action.error)
    elif isinstance(action, d.CancelStep):
        steps.cancel(action.execution_id, pipeline.id)
