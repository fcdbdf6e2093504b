"""The Pipeline aggregate and the conductor's decisions, as stories: given these step
results, the conductor dispatches these (domain/pipeline/conduct.py over a fake of the
executions)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.execution.errors import InvalidCommand
from domain.pipeline.aggregate import Pipeline
from domain.pipeline.conduct import StepEnd, StepOrigin, conduct
from domain.pipeline.decide import StepRequest
from domain.pipeline.errors import InvalidPipeline, PipelineEnded
from domain.pipeline.spec import PipelineSpec
from domain.pipeline.values import PipelineStatus, StepKey, StepStatus

USER = {"kind": "user", "id": "ada"}


class FakeSteps:
    """The executions, as the conductor sees them: created once per id, ended by the test."""

    def __init__(self, refuse: bool = False) -> None:
        self.created: dict[UUID, tuple[StepOrigin, StepRequest]] = {}
        self.creates = 0
        self.ends: dict[UUID, StepEnd] = {}
        self.cancelled: set[UUID] = set()
        self.refuse = refuse

    def end_of(self, execution_id: UUID) -> StepEnd | None:
        return self.ends.get(execution_id)

    def create(
        self, execution_id: UUID, key: str, tenant: str, origin: StepOrigin, request: StepRequest
    ) -> None:
        if self.refuse:
            raise InvalidCommand("prompt must not be empty")
        self.creates += 1
        self.created.setdefault(execution_id, (origin, request))

    def cancel(self, execution_id: UUID, pipeline_id: UUID) -> None:
        self.cancelled.add(execution_id)


def spec(**fields: Any) -> PipelineSpec:
    columns = fields.pop("columns", None) or [
        {"name": "triage", "agent_id": "script", "worker_queue": "default"},
        {"name": "work", "agent_id": "script", "worker_queue": "default"},
    ]
    items = fields.pop("items", [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    return PipelineSpec.parse({"name": "board", "columns": columns, "items": items, **fields})


def start(**fields: Any) -> Pipeline:
    return Pipeline.start(uuid4(), tenant="default", spec=spec(**fields), created_by=USER)


def running(pipeline: Pipeline) -> list[tuple[str, str]]:
    return sorted((key.column, key.item_id) for key, _ in pipeline.running_steps())


def end(
    pipeline: Pipeline, steps: FakeSteps, column: str, item: str, output: Any = None,
    status: StepStatus = StepStatus.COMPLETED, iteration: int | None = None,
) -> None:  # fmt: skip
    key = StepKey(iteration or pipeline.iteration, column, item)
    steps.ends[pipeline.steps[key].execution_id] = StepEnd(status, output, "boom", 1)


def test_barrier_no_item_enters_the_next_column_before_every_item_ended_this_one() -> None:
    pipeline, steps = start(), FakeSteps()
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "a"), ("triage", "b"), ("triage", "c")]
    assert pipeline.status is PipelineStatus.RUNNING
    end(pipeline, steps, "triage", "a")
    end(pipeline, steps, "triage", "b")
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "c")]
    end(pipeline, steps, "triage", "c")
    conduct(pipeline, steps)
    assert running(pipeline) == [("work", "a"), ("work", "b"), ("work", "c")]
    for item in "abc":
        end(pipeline, steps, "work", item, {"done": item})
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.COMPLETED
    assert pipeline.reason == "done"
    assert len(steps.created) == 6


def test_stream_each_item_moves_on_as_soon_as_it_ends_its_column() -> None:
    pipeline, steps = start(flow="stream"), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "b")
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "a"), ("triage", "c"), ("work", "b")]


def test_a_column_never_runs_more_than_its_max_concurrency() -> None:
    pipeline, steps = start(max_concurrency=2, flow="stream"), FakeSteps()
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "a"), ("triage", "b")]
    end(pipeline, steps, "triage", "a")
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "b"), ("triage", "c"), ("work", "a")]


def test_a_repeated_pass_creates_nothing_twice_and_records_nothing_new() -> None:
    pipeline, steps = start(), FakeSteps()
    conduct(pipeline, steps)
    events = len(pipeline.pending_events)
    conduct(pipeline, steps)
    assert len(pipeline.pending_events) == events
    assert steps.creates == 3
    # a conductor that died after creating and before recording decides the same again
    replayed = start()
    replayed_steps = FakeSteps()
    first = Pipeline.start(replayed.id, tenant="default", spec=spec(), created_by=USER)
    conduct(first, replayed_steps)
    conduct(replayed, replayed_steps)
    assert set(replayed_steps.created) == {s.execution_id for _, s in replayed.running_steps()}


def test_prompts_see_the_item_its_earlier_outputs_and_the_last_iteration() -> None:
    columns = [
        {"name": "triage", "agent_id": "script", "worker_queue": "default"},
        {
            "name": "work", "agent_id": "script", "worker_queue": "default",
            "prompt": "{{ item.title }} {{ outputs.triage.size }} "
            "{{ previous.work | default('-') }}",
        },
    ]  # fmt: skip
    pipeline, steps = start(columns=columns, items=[{"id": 1, "title": "Fix"}]), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "1", {"size": "S"})
    conduct(pipeline, steps)
    [(_, step)] = pipeline.running_steps()
    origin, request = steps.created[step.execution_id]
    assert request.prompt == "Fix S -"
    assert origin.as_dict()["item_id"] == "1"
    assert request.retries == 1  # the default task policy


def test_until_loops_until_it_holds() -> None:
    until = "length(items[?outputs.work.ok]) == length(items)"
    pipeline, steps = start(until=until, items=[{"id": "a"}]), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a")
    conduct(pipeline, steps)
    end(pipeline, steps, "work", "a", {"ok": False})
    conduct(pipeline, steps)
    assert pipeline.iteration == 2
    assert running(pipeline) == [("triage", "a")]
    end(pipeline, steps, "triage", "a")
    conduct(pipeline, steps)
    end(pipeline, steps, "work", "a", {"ok": True})
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.COMPLETED
    assert pipeline.reason == "until"


def test_when_until_holds_what_runs_finishes_and_what_waits_is_skipped() -> None:
    until = "items[?outputs.triage.stop] | length(@) > `0`"
    pipeline, steps = start(until=until, max_concurrency=2), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a", {"stop": True})
    conduct(pipeline, steps)
    assert running(pipeline) == [("triage", "b")]  # c waits, and is skipped
    end(pipeline, steps, "triage", "b")
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.COMPLETED
    assert ("triage", "c") not in [(k.column, k.item_id) for k in pipeline.steps]


@pytest.mark.parametrize(("on_max", "status"), [("fail", "failed"), ("return_last", "completed")])
def test_at_max_iterations(on_max: str, status: str) -> None:
    pipeline = start(
        until="`false`", max_iterations=2, on_max_iterations=on_max, items=[{"id": "a"}],
        columns=[{"name": "only", "agent_id": "script", "worker_queue": "default"}],
    )  # fmt: skip
    steps = FakeSteps()
    for _ in range(2):
        conduct(pipeline, steps)
        end(pipeline, steps, "only", "a")
    conduct(pipeline, steps)
    assert pipeline.status == status
    assert pipeline.iteration == 2


def test_a_failed_item_goes_on_with_continue_on_fail_and_is_listed_failed() -> None:
    pipeline, steps = start(items=[{"id": "a"}]), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a", status=StepStatus.FAILED)
    conduct(pipeline, steps)
    assert running(pipeline) == [("work", "a")]


def test_without_continue_on_fail_a_failed_step_fails_the_pipeline() -> None:
    columns = [
        {"name": "triage", "agent_id": "script", "worker_queue": "default",
         "task": {"continue_on_fail": False}},
    ]  # fmt: skip
    pipeline, steps = start(columns=columns), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a", status=StepStatus.FAILED)
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.FAILED
    assert "item a failed in column triage" in (pipeline.error or "")
    # what still runs is asked to stop
    assert steps.cancelled == {s.execution_id for _, s in pipeline.running_steps()}


def test_on_complete_runs_once_after_the_loop_and_its_result_is_the_summary() -> None:
    on_complete = {
        "agent_id": "script", "worker_queue": "default",
        "prompt": "{% for i in items %}{{ i.id }}={{ i.outputs.only }};{% endfor %}",
    }  # fmt: skip
    columns = [{"name": "only", "agent_id": "script", "worker_queue": "default"}]
    pipeline = start(columns=columns, on_complete=on_complete, items=[{"id": "a"}])
    steps = FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "only", "a", 7)
    conduct(pipeline, steps)
    summary_id = pipeline.summary_execution_id
    assert summary_id is not None
    assert steps.created[summary_id][1].prompt == "a=7;"
    steps.ends[summary_id] = StepEnd(StepStatus.COMPLETED, {"text": "all good"}, None, 1)
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.COMPLETED
    assert pipeline.summary == {"text": "all good"}


def test_skip_if_completes_at_once_running_nothing() -> None:
    pipeline, steps = start(skip_if=True), FakeSteps()
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.COMPLETED
    assert steps.created == {}


def test_cancel_stops_what_runs_and_dispatches_nothing_more() -> None:
    pipeline, steps = start(), FakeSteps()
    conduct(pipeline, steps)
    pipeline.cancel("enough", USER)
    pipeline.cancel("enough", USER)  # a repeat changes nothing
    end(pipeline, steps, "triage", "a")
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.CANCELLED
    assert len(steps.cancelled) == 2  # b and c; a had ended
    assert len(steps.created) == 3
    with pytest.raises(PipelineEnded):
        pipeline.add_items([{"id": "d"}], USER)


def test_added_items_enter_at_once_in_stream_and_next_iteration_in_barrier() -> None:
    stream, steps = start(flow="stream"), FakeSteps()
    conduct(stream, steps)
    stream.add_items([{"id": "d"}], USER)
    conduct(stream, steps)
    assert ("triage", "d") in running(stream)
    barrier = start(until="`false`", max_iterations=2)
    conduct(barrier, steps)
    barrier.add_items([{"id": "d"}], USER)
    conduct(barrier, steps)
    assert ("triage", "d") not in running(barrier)
    with pytest.raises(InvalidPipeline, match="'a' is not unique"):
        barrier.add_items([{"id": "a"}], USER)


def test_a_step_the_executions_refuse_fails_the_pipeline_with_the_reason() -> None:
    pipeline, steps = start(), FakeSteps(refuse=True)
    conduct(pipeline, steps)
    assert pipeline.status is PipelineStatus.FAILED
    assert "prompt must not be empty" in (pipeline.error or "")


def test_the_recorded_events_replay_to_the_same_pipeline() -> None:
    pipeline, steps = start(), FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a", {"x": 1})
    conduct(pipeline, steps)
    replayed = None
    for event in pipeline.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Pipeline)
    assert replayed.steps == pipeline.steps
    assert replayed.status is pipeline.status


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"columns": []}, "columns: List should have at least 1 item"),
        ({"items": [{"id": "a"}, {"id": "a"}]}, "items[1].id: 'a' is not unique"),
        ({"columns": [{"name": "x", "worker_queue": "q"}]}, "columns[0].agent_id: required"),
        ({"until": "items[?"}, "until: not a JMESPath expression"),
        ({"name": "no spaces"}, "name: String should match pattern"),
        (
            {"columns": [{"name": "x", "agent_id": "s", "worker_queue": "q", "prompt": "{{"}]},
            "columns[0].prompt: not a template",
        ),
        (
            {"columns": [{"name": "x", "agent_id": "s", "worker_queue": "q",
                          "output_schema": {"type": "nope"}}]},
            "columns[0].output_schema: not a JSON Schema",
        ),
        ({"colums": []}, "colums: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_spec_that_cannot_run_is_refused_naming_the_field(
    change: dict[str, Any], says: str
) -> None:
    data = {
        "name": "board",
        "columns": [{"name": "x", "agent_id": "s", "worker_queue": "q"}],
        **change,
    }
    with pytest.raises(InvalidPipeline) as refused:
        PipelineSpec.parse(data)
    assert says in str(refused.value)


def test_defaults_follow_the_design() -> None:
    parsed = spec()
    assert parsed.flow == "barrier"
    assert parsed.max_iterations == 5
    assert parsed.on_max_iterations == "return_last"
    assert parsed.columns[0].task.retries == 1
    assert parsed.columns[0].task.continue_on_fail is True
    assert parsed.columns[0].prompt == 'Process item {{ item.id }} in column "{{ column }}".'
