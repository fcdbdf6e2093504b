"""Properties of the conductor's rules, for random specs and random step outcomes: each
step runs once per iteration, no column ever has more steps running than its
``max_concurrency``, barrier order holds, and every pipeline ends."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.pipeline.aggregate import Pipeline
from domain.pipeline.conduct import StepEnd, conduct
from domain.pipeline.spec import PipelineSpec, item_id
from domain.pipeline.values import StepKey, StepStatus
from tests.unit.test_pipeline import USER, FakeSteps

OUTCOMES = st.sampled_from([StepStatus.COMPLETED, StepStatus.COMPLETED, StepStatus.FAILED])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    columns = [
        {
            "name": f"c{index}", "agent_id": "script", "worker_queue": "default",
            "max_concurrency": draw(st.none() | st.integers(1, 3)),
            "task": {"continue_on_fail": draw(st.booleans())},
        }
        for index in range(draw(st.integers(1, 3)))
    ]  # fmt: skip
    until = draw(st.none() | st.just("length(items[?outputs.c0]) > `1`"))
    return {
        "name": "prop",
        "columns": columns,
        "items": [{"id": f"i{n}"} for n in range(draw(st.integers(0, 5)))],
        "flow": draw(st.sampled_from(["barrier", "stream"])),
        "until": until,
        "max_iterations": draw(st.integers(1, 3)),
        "on_max_iterations": draw(st.sampled_from(["return_last", "fail"])),
    }


@settings(max_examples=150, deadline=None)
@given(spec=specs(), data=st.data())
def test_steps_run_once_within_their_limits_in_barrier_order_and_the_pipeline_ends(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    parsed = PipelineSpec.parse(spec)
    pipeline = Pipeline.start(uuid4(), tenant="default", spec=parsed, created_by=USER)
    steps = FakeSteps()
    names = [column.name for column in parsed.columns]
    for _ in range(200):
        conduct(pipeline, steps)
        running = pipeline.running_steps()
        for column in parsed.columns:
            limit = parsed.concurrency_of(column.name)
            in_column = sum(1 for key, _ in running if key.column == column.name)
            assert limit is None or in_column <= limit
        if parsed.flow == "barrier":
            for key, _ in running:  # nothing runs in a column while an earlier one waits
                index = names.index(key.column)
                for earlier in names[:index]:
                    for item in pipeline.items_in(key.iteration):
                        before = pipeline.steps.get(StepKey(key.iteration, earlier, item_id(item)))
                        assert before is not None
                        assert before.status.ended
        if pipeline.status.is_terminal or not running:
            break
        key, step = data.draw(st.sampled_from(running))
        steps.ends[step.execution_id] = StepEnd(data.draw(OUTCOMES), {"k": key.item_id}, "e", 1)
    assert pipeline.status.is_terminal
    assert steps.creates == len(steps.created) == len(pipeline.steps)  # each step once
    assert len({(k.iteration, k.column, k.item_id) for k in pipeline.steps}) == len(steps.created)
