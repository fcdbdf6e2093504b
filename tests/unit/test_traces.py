"""Each execution as an OpenTelemetry trace: the spans the SDK's in-memory exporter gets."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, FailureReason, ToolOutcome
from infra.tracecontext import parse_traceparent
from infra.traces import ExportRefused, TracesProjection, TracesView, resource, run_spans
from infra.webhooks.payload import fold
from projections.engine.log import LoggedEvent, LogReader, topic_of

ALICE = Actor(ActorKind.USER, "alice")
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def service() -> ExecutionService:
    return ExecutionService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def a_run(service: ExecutionService, **options: Any) -> UUID:
    """Two tool calls (one failing), a question answered, then a failure."""
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="coder", worker_queue="gpu", prompt="fix the build",
        created_by=ALICE, **options,
    )).execution.id  # fmt: skip
    service.process_one(c.PickUp(execution_id, "w1", "claim"))
    service.process_one(c.RecordToolCall(execution_id, 1, "c1", "bash", {"cmd": "make"}))
    service.process_one(
        c.FinishToolCall(execution_id, 1, "c1", ToolOutcome.SUCCESS, "ok", duration_seconds=0.1)
    )
    service.process_one(c.RecordToolCall(execution_id, 1, "c2", "deploy", {}))
    service.process_one(
        c.FinishToolCall(execution_id, 1, "c2", ToolOutcome.FAILED, "denied", duration_seconds=0.2)
    )
    service.process_one(c.RequestInput(execution_id, 1, "Deploy anyway?"))
    service.process_one(c.ProvideInput(execution_id, "no", ALICE))
    service.process_one(c.Fail(execution_id, 1, "gave up", FailureReason.AGENT_ERROR))
    return execution_id


def named(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def nanoseconds(event: Any) -> int:
    return round(event.timestamp.timestamp() * 1_000_000) * 1000


def test_a_run_is_an_invoke_agent_span_with_its_tools_and_its_question(
    service: ExecutionService,
) -> None:
    execution_id = a_run(service)
    history = service.timeline(execution_id)

    spans = named(run_spans(history, resource()))

    assert set(spans) == {
        "invoke_agent coder", "execute_tool bash", "execute_tool deploy", "wait_for_input"
    }  # fmt: skip
    run = spans["invoke_agent coder"]
    assert run.parent is None
    assert run.context is not None
    assert run.context.trace_id == execution_id.int  # the trace is named by the execution
    assert dict(run.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "coder",
        "gen_ai.agent.id": "coder", "agentboard.execution.id": str(execution_id),
        "agentboard.tenant": "acme", "agentboard.queue": "gpu", "agentboard.attempt": 1,
        "agentboard.status": "failed", "agentboard.type": "agent",
        "agentboard.worker.id": "w1", "error.type": "agent_error",
    }  # fmt: skip
    assert (run.status.status_code, run.status.description) == (StatusCode.ERROR, "gave up")
    assert (run.start_time, run.end_time) == (nanoseconds(history[0]), nanoseconds(history[-1]))

    bash, deploy = spans["execute_tool bash"], spans["execute_tool deploy"]
    for child in (bash, deploy, spans["wait_for_input"]):
        assert child.parent == run.context
    assert (bash.attributes or {})["gen_ai.tool.name"] == "bash"
    assert (bash.attributes or {})["gen_ai.tool.call.id"] == "c1"
    assert (bash.attributes or {})["gen_ai.operation.name"] == "execute_tool"
    assert bash.status.status_code is StatusCode.UNSET
    assert (deploy.status.status_code, deploy.status.description) == (StatusCode.ERROR, "denied")
    assert (bash.start_time, bash.end_time) == (nanoseconds(history[2]), nanoseconds(history[3]))
    waited = spans["wait_for_input"]
    assert (waited.start_time, waited.end_time) == (
        nanoseconds(history[6]), nanoseconds(history[7])
    )  # fmt: skip
    assert (waited.attributes or {})["agentboard.input.question"] == "Deploy anyway?"
    assert (waited.resource.attributes)["service.name"] == "agentboard"


def test_the_callers_trace_continues_and_an_unsampled_one_is_not_exported(
    service: ExecutionService,
) -> None:
    followed = a_run(service, traceparent=CALLER)
    [run] = [s for s in run_spans(service.timeline(followed), resource()) if s.parent is None or
             s.parent.is_remote]  # fmt: skip
    caller = parse_traceparent(CALLER)
    assert caller is not None
    assert run.parent is not None
    assert (run.parent.trace_id, run.parent.span_id) == (caller.trace_id, caller.span_id)
    assert run.context is not None
    assert run.context.trace_id == caller.trace_id

    unsampled = a_run(service, traceparent=CALLER[:-2] + "00")
    assert run_spans(service.timeline(unsampled), resource()) == []


def test_the_same_run_gets_the_same_span_ids(service: ExecutionService) -> None:
    history = service.timeline(a_run(service))
    first, again = run_spans(history, resource()), run_spans(history, resource())
    assert [s.context for s in first] == [s.context for s in again]


def test_a_person_retrying_an_ended_run_starts_a_second_run(service: ExecutionService) -> None:
    execution_id = a_run(service)
    service.process_one(c.Retry(execution_id, ALICE))
    service.process_one(c.PickUp(execution_id, "w2", "claim-2"))
    service.process_one(c.Complete(execution_id, 2, {"ok": True}))
    history = service.timeline(execution_id)

    spans = named(run_spans(history, resource()))

    assert set(spans) == {"invoke_agent coder"}  # its tools were in the first run
    run = spans["invoke_agent coder"]
    assert (run.attributes or {})["agentboard.attempt"] == 2
    assert (run.attributes or {})["agentboard.status"] == "completed"
    assert run.status.status_code is StatusCode.UNSET
    assert run.start_time == nanoseconds(history[-3])  # the RetryScheduled


class Refusing(InMemorySpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_the_projection_exports_each_ended_run_and_fails_the_page_when_refused(
    service: ExecutionService,
) -> None:
    execution_id = a_run(service)
    history = service.timeline(execution_id)
    datastore = PostgresDatastore("db", "127.0.0.1", 1, "u", "")  # never connects here
    exporter = InMemorySpanExporter()
    projection = TracesProjection(
        TracesView(datastore), lambda i, v: list(service.events.get(i, lte=v)), exporter
    )
    ended = [LoggedEvent(len(history), topic_of(type(history[-1])), history[-1])]

    projection.apply(None, ended)  # type: ignore[arg-type] - it writes no table

    assert len(exporter.get_finished_spans()) == 4
    projection.exporter = Refusing()
    with pytest.raises(ExportRefused):
        projection.apply(None, ended)  # type: ignore[arg-type]


def test_a_created_event_stored_before_traceparent_existed_still_loads(
    service: ExecutionService,
) -> None:
    execution_id = service.process_one(
        c.CreateExecution.new(
            tenant="acme", agent_id="coder", worker_queue="gpu", prompt="p", created_by=ALICE
        )
    ).execution.id
    stored = service.mapper.to_stored_event(service.timeline(execution_id)[0])
    state = json.loads(stored.state)
    del state["traceparent"]
    old = json.dumps(state).encode()
    notification = Notification(
        id=1, originator_id=execution_id, originator_version=1, topic=stored.topic, state=old
    )

    class OneEvent:
        def select_notifications(self, start: Any, limit: int, **_: Any) -> list[Notification]:
            return [notification] if (start or 0) < 1 else []

    [entry] = LogReader(OneEvent(), service.mapper, None).read(0, 10).entries  # type: ignore[arg-type]
    assert isinstance(entry, LoggedEvent)
    assert entry.event.traceparent is None
    by_mapper = service.mapper.to_domain_event(notification)
    assert fold([by_mapper]).traceparent is None


def test_a_run_s_token_usage_is_on_its_span_as_the_genai_conventions_name_it(
    service: ExecutionService,
) -> None:
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="coder", worker_queue="gpu", prompt="p", created_by=ALICE,
    )).execution.id  # fmt: skip
    service.process_one(c.PickUp(execution_id, "w1", "claim"))
    service.process_one(c.RecordUsage(execution_id, 1, "gpt-x", 1200, 300, "u1"))
    service.process_one(c.RecordUsage(execution_id, 1, "gpt-x", 800, 100, "u2"))
    service.process_one(c.Complete(execution_id, 1, {"ok": True}))

    [run] = run_spans(service.timeline(execution_id), resource())

    attributes = dict(run.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 2000
    assert attributes["gen_ai.usage.output_tokens"] == 400
    assert attributes["gen_ai.request.model"] == "gpt-x"
