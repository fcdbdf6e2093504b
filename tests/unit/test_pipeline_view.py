"""The pipelines view's fold (pure): the shape GET /v1/pipelines/{id} answers with, from a
pipeline's events; and every pipeline event is folded or named as ignored."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from domain.pipeline import events
from domain.pipeline.aggregate import Pipeline
from domain.pipeline.conduct import conduct
from domain.pipeline.values import StepStatus
from projections.views import pipelines as view
from tests.unit.test_pipeline import USER, FakeSteps, end, spec


def shown(pipeline: Pipeline) -> dict[str, Any]:
    state: dict[str, Any] | None = None
    for event in pipeline.collect_events():
        state = view.fold(state, type(event).__name__, event)
    assert state is not None
    return view.render(state, 7)


def test_columns_show_each_item_with_its_step_and_counts() -> None:
    pipeline = Pipeline.start(uuid4(), tenant="default", spec=spec(), created_by=USER)
    steps = FakeSteps()
    conduct(pipeline, steps)
    end(pipeline, steps, "triage", "a", {"size": "S"})
    end(pipeline, steps, "triage", "b", status=StepStatus.FAILED)
    conduct(pipeline, steps)
    pipeline.cancel("enough", USER)
    shown_now = shown(pipeline)
    assert shown_now["status"] == "cancelled"
    triage, work = shown_now["columns"]
    assert triage["counts"] == {"completed": 1, "failed": 1, "running": 1}
    assert triage["items"][0]["output"] == {"size": "S"}
    assert triage["items"][0]["execution_id"] is not None
    assert work["counts"] == {"skipped": 3}  # the pipeline ended before they started
    assert shown_now["items"] == ["a", "b", "c"]
    assert shown_now["position"] == 7


def test_every_pipeline_event_is_folded_or_named_as_ignored() -> None:
    names = {
        cls.__name__
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, events.PipelineEvent)
        and cls is not events.PipelineEvent
    }  # fmt: skip
    assert names == view.FOLDED | view.IGNORED
    assert not view.FOLDED & view.IGNORED
