"""The conductor's rules: given a pipeline as recorded, what to do next. Pure: the
conductor (infra/conductor.py) applies the actions, and a conductor that replays after a
crash decides the same again (every dispatch names its execution by the step, so a repeat
creates nothing twice).

Semantics (DESIGN §12, after Smithers' ``<Kanban>``):
- ``barrier`` flow: no item enters column N+1 before every item has ended column N;
  ``stream``: each item moves on as soon as it ends its column.
- a column never has more than its ``max_concurrency`` steps running at once;
- a step that fails for good: with ``continue_on_fail`` the item counts as ended and goes
  on (``failed`` lists the column); without it the pipeline fails;
- ``until`` is checked whenever a step of the iteration has ended and at each iteration's
  end; once truthy, what runs finishes and what waits is skipped. Without ``until`` the
  board runs once; with it, at most ``max_iterations`` times, then ``on_max_iterations``;
- after the loop, ``on_complete`` runs one execution whose result is the ``summary``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.pipeline import rules
from domain.pipeline.aggregate import Pipeline
from domain.pipeline.spec import ColumnSpec, item_id
from domain.pipeline.values import PipelineStatus, StepKey, StepStatus


@dataclass(frozen=True)
class StepRequest:
    """What a step's execution is asked to do."""

    agent_id: str
    worker_queue: str
    prompt: str
    parameters: dict[str, Any]
    output_schema: dict[str, Any] | None
    retries: int = 0
    timeout_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dispatch:
    key: StepKey
    request: StepRequest


@dataclass(frozen=True)
class DispatchSummary:
    request: StepRequest


@dataclass(frozen=True)
class HoldUntil:
    pass


@dataclass(frozen=True)
class EndIteration:
    pass


@dataclass(frozen=True)
class Complete:
    summary: Any
    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str
    error: str


@dataclass(frozen=True)
class CancelStep:
    execution_id: UUID


Action = Dispatch | DispatchSummary | HoldUntil | EndIteration | Complete | Fail | CancelStep


@dataclass(frozen=True)
class SummaryEnd:
    """How the ``on_complete`` execution ended."""

    status: StepStatus
    output: Any
    error: str | None


def decide(pipeline: Pipeline, summary: SummaryEnd | None = None) -> list[Action]:
    """The next actions for ``pipeline``; none when it waits for a step to end."""
    if pipeline.status.is_terminal:
        if pipeline.status is PipelineStatus.COMPLETED:
            return []
        return [CancelStep(step.execution_id) for _, step in pipeline.running_steps()]
    spec = pipeline.spec
    if spec.skip_if:
        return [Complete(None, "skipped")]
    if pipeline.summary_execution_id is not None:
        return _after_summary(summary)
    try:
        return _next(pipeline)
    except rules.RuleError as error:  # a prompt or ``until`` that fails on these values
        return [Fail("rule_error", str(error))]


def _next(pipeline: Pipeline) -> list[Action]:
    spec = pipeline.spec
    iteration = pipeline.iteration
    failed_hard = _failed_hard(pipeline, iteration)
    if failed_hard is not None:
        return [Fail("step_failed", failed_hard)]
    actions: list[Action] = []
    stopping = pipeline.stopping
    check_until = not stopping and spec.until and _any_ended(pipeline, iteration)
    if check_until and rules.holds(spec.until or "", loop_context(pipeline, iteration)):
        actions.append(HoldUntil())
        stopping = True
    if not stopping:
        actions.extend(_dispatches(pipeline, iteration))
    if any(isinstance(action, Dispatch) for action in actions):
        return actions
    if _iteration_over(pipeline, iteration, stopping):
        actions.extend(_after_iteration(pipeline, iteration, stopping))
    return actions


def _after_summary(summary: SummaryEnd | None) -> list[Action]:
    if summary is None:
        return []
    if summary.status is StepStatus.COMPLETED:
        return [Complete(summary.output, "summary")]
    return [Fail("summary_failed", summary.error or f"the summary {summary.status.value}")]


def _failed_hard(pipeline: Pipeline, iteration: int) -> str | None:
    for key, step in pipeline.steps.items():
        if key.iteration != iteration or step.status in (StepStatus.RUNNING, StepStatus.COMPLETED):
            continue
        if not pipeline.spec.column(key.column).task.continue_on_fail:
            return f"item {key.item_id} {step.status.value} in column {key.column}: {step.error}"
    return None


def _any_ended(pipeline: Pipeline, iteration: int) -> bool:
    return any(k.iteration == iteration and s.status.ended for k, s in pipeline.steps.items())


def _dispatches(pipeline: Pipeline, iteration: int) -> list[Action]:
    spec = pipeline.spec
    items = pipeline.items_in(iteration)
    actions: list[Action] = []
    for index, column in enumerate(spec.columns):
        limit = spec.concurrency_of(column.name)
        running = sum(1 for key, _ in pipeline.running_steps() if key.column == column.name)
        for item in items:
            key = StepKey(iteration, column.name, item_id(item))
            if key in pipeline.steps or not _ready(pipeline, iteration, index, item):
                continue
            if limit is not None and running >= limit:
                break
            actions.append(Dispatch(key, _step_request(pipeline, column, key, item)))
            running += 1
    return actions


def _ready(pipeline: Pipeline, iteration: int, index: int, item: dict[str, Any]) -> bool:
    """Whether ``item`` may enter column ``index``: the first column at once; a later one
    when the item (``stream``) or every item (``barrier``) has ended the column before."""
    if index == 0:
        return True
    before = pipeline.spec.columns[index - 1].name
    waiting_on = [item] if pipeline.spec.flow == "stream" else pipeline.items_in(iteration)
    return all(_ended(pipeline, StepKey(iteration, before, item_id(i))) for i in waiting_on)


def _ended(pipeline: Pipeline, key: StepKey) -> bool:
    step = pipeline.steps.get(key)
    return step is not None and step.status.ended


def _iteration_over(pipeline: Pipeline, iteration: int, stopping: bool) -> bool:
    running = any(key.iteration == iteration for key, _ in pipeline.running_steps())
    if stopping:
        return not running
    return all(
        _ended(pipeline, StepKey(iteration, column.name, item_id(item)))
        for column in pipeline.spec.columns
        for item in pipeline.items_in(iteration)
    )


def _after_iteration(pipeline: Pipeline, iteration: int, stopping: bool) -> list[Action]:
    spec = pipeline.spec
    actions: list[Action] = []
    if not stopping and spec.until and rules.holds(spec.until, loop_context(pipeline, iteration)):
        actions.append(HoldUntil())
        stopping = True
    if stopping or spec.until is None:
        return [*actions, _finish(pipeline, "until" if stopping else "done")]
    if iteration < spec.max_iterations:
        return [EndIteration()]
    if spec.on_max_iterations == "fail":
        return [Fail("max_iterations", f"until did not hold after {iteration} iterations")]
    return [_finish(pipeline, "max_iterations")]


def _finish(pipeline: Pipeline, reason: str) -> Action:
    on_complete = pipeline.spec.on_complete
    if on_complete is None:
        return Complete(None, reason)
    context = loop_context(pipeline, pipeline.iteration)
    try:
        prompt = rules.render(on_complete.prompt, context)
    except rules.RuleError as error:
        raise rules.RuleError(f"on_complete.prompt: {error}") from None
    return DispatchSummary(
        StepRequest(
            agent_id=on_complete.agent_id,
            worker_queue=on_complete.worker_queue,
            prompt=prompt,
            parameters=on_complete.parameters,
            output_schema=on_complete.output_schema,
            labels={"pipeline": pipeline.spec.name, "pipeline_column": "on_complete"},
        )
    )


# -- what templates and ``until`` see ----------------------------------------------------


def outputs_of(pipeline: Pipeline, iteration: int, item: str) -> dict[str, Any]:
    """An item's outputs in ``iteration``, by column, of the steps that completed."""
    return {
        key.column: step.output
        for key, step in pipeline.steps.items()
        if key.iteration == iteration and key.item_id == item
        and step.status is StepStatus.COMPLETED
    }  # fmt: skip


def failed_of(pipeline: Pipeline, iteration: int, item: str) -> list[str]:
    return [
        key.column
        for key, step in pipeline.steps.items()
        if key.iteration == iteration and key.item_id == item
        and step.status in (StepStatus.FAILED, StepStatus.CANCELLED)
    ]  # fmt: skip


def loop_context(pipeline: Pipeline, iteration: int) -> dict[str, Any]:
    """``{iteration, items: [{id, item, outputs, failed}]}``: what ``until`` and the
    ``on_complete`` prompt see."""
    return {
        "iteration": iteration,
        "items": [
            {
                "id": item_id(item),
                "item": item,
                "outputs": outputs_of(pipeline, iteration, item_id(item)),
                "failed": failed_of(pipeline, iteration, item_id(item)),
            }
            for item in pipeline.items_in(iteration)
        ],
    }


def _step_request(
    pipeline: Pipeline, column: ColumnSpec, key: StepKey, item: dict[str, Any]
) -> StepRequest:
    earlier = {c.name for c in pipeline.spec.columns[: pipeline.spec.columns.index(column)]}
    outputs = outputs_of(pipeline, key.iteration, key.item_id)
    context = {
        "item": item,
        "column": column.name,
        "iteration": key.iteration,
        "outputs": {name: output for name, output in outputs.items() if name in earlier},
        "previous": outputs_of(pipeline, key.iteration - 1, key.item_id),
    }
    try:
        prompt = rules.render(column.prompt, context)
    except rules.RuleError as error:
        raise rules.RuleError(
            f"columns.{column.name}.prompt for item {key.item_id}: {error}"
        ) from None
    return StepRequest(
        agent_id=pipeline.spec.agent_of(column.name),
        worker_queue=column.worker_queue,
        prompt=prompt,
        parameters=column.parameters,
        output_schema=column.output_schema,
        retries=column.task.retries,
        timeout_seconds=column.task.timeout_seconds,
        heartbeat_timeout_seconds=column.task.heartbeat_timeout_seconds,
        labels={"pipeline": pipeline.spec.name, "pipeline_column": column.name},
    )
