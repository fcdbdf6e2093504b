"""Every execution as an OpenTelemetry trace (DESIGN §14), made by a tracked projection
of the log and exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

When an execution ends (Completed, Failed, Cancelled), its run is read back from its
events and exported at once, as spans that carry the events' own times:

- ``invoke_agent {agent_id}``, the run, from Created (or, for a run a person retried
  after it ended, from its RetryScheduled) to the end, with the GenAI semantic
  conventions' attributes and agentboard's; an error status when it failed;
- ``execute_tool {tool}`` per tool call, from ToolCalled to ToolCallFinished (an error
  status when the tool failed);
- ``wait_for_input`` per question, from InputRequested to InputProvided.

The trace is the one the creator's ``traceparent`` named (the run's span is then a child
of the caller's span), else one named by the execution id. Span ids are derived from the
events, so an export repeated after a crash (between the collector's answer and the
tracking record's commit) sends the same spans again, not new ones. Each run is exported
once: the tracking record commits after the collector accepted the spans; a collector
that refuses fails the page, which is tried again after the supervisor's backoff.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.execution.aggregate import Execution
from infra.tracecontext import execution_trace_id, parse_traceparent
from infra.webhooks.payload import fold
from projections.engine.exporter import ExporterRecorder
from projections.engine.log import LoggedEvent, by_execution, topic_of
from projections.engine.projection import PageProjection

log = logging.getLogger(__name__)

ENDS = (Execution.Completed, Execution.Failed, Execution.Cancelled)
SCOPE = InstrumentationScope("agentboard")
SERVICE_NAME = "agentboard"  # OTEL_SERVICE_NAME overrides it (the SDK reads it)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TEXT = 1024  # characters of a question or an error in an attribute

History = Callable[[UUID, int], Sequence[Any]]


class ExportRefused(Exception):
    """The collector did not accept the spans."""


def resource() -> Resource:
    """``service.name`` agentboard, with what ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` say (read by the SDK)."""
    detected = Resource.create()  # given attributes would win over the variables'
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        return detected.merge(Resource({"service.name": SERVICE_NAME}))
    return detected


def run_spans(history: Sequence[Any], owner: Resource) -> list[ReadableSpan]:
    """The spans of the run that ``history``'s last event ended (none when the creator's
    trace context said not to sample)."""
    execution: Any = fold(history)
    parent = parse_traceparent(execution.traceparent)
    if parent is not None and not parent.sampled:
        return []
    start = _run_start(history)
    run, end = history[start:], history[-1]
    trace_id = execution_trace_id(execution.id, execution.traceparent)
    root = _context(trace_id, execution.id, run[0].originator_version, "run")
    caller = (
        SpanContext(trace_id, parent.span_id, is_remote=True,
                    trace_flags=TraceFlags(parent.flags))
        if parent is not None else None
    )  # fmt: skip
    spans = [
        _span(f"invoke_agent {execution.agent_id}", root, caller, owner,
              _run_attributes(execution, run), run[0].timestamp, end.timestamp,
              _run_status(end))
    ]  # fmt: skip
    spans += _children(execution, run, root, owner)
    return spans


def _run_start(history: Sequence[Any]) -> int:
    """Where the last run begins: after the end before it (a person's retry), else 0."""
    for index in range(len(history) - 2, -1, -1):
        if isinstance(history[index], ENDS):
            return index + 1
    return 0


def _run_attributes(execution: Any, run: Sequence[Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": execution.agent_id,
        "gen_ai.agent.id": execution.agent_id,
        "agentboard.execution.id": str(execution.id),
        "agentboard.tenant": execution.tenant,
        "agentboard.queue": execution.worker_queue,
        "agentboard.attempt": execution.attempt,
        "agentboard.status": execution.status.value,
        "agentboard.type": execution.type,
    }
    if execution.team_id:
        attributes["agentboard.team.id"] = execution.team_id
    workers = [event.worker_id for event in run if isinstance(event, Execution.PickedUp)]
    if workers:
        attributes["agentboard.worker.id"] = workers[-1]
    if execution.failure_reason is not None:
        attributes["error.type"] = execution.failure_reason.value
    return attributes | _usage_attributes(run)


def _usage_attributes(run: Sequence[Any]) -> dict[str, Any]:
    """The tokens this run's model calls used, as the GenAI conventions name them (the
    model too, when the run used one)."""
    reports = [event for event in run if isinstance(event, Execution.UsageRecorded)]
    if not reports:
        return {}
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": sum(report.input_tokens for report in reports),
        "gen_ai.usage.output_tokens": sum(report.output_tokens for report in reports),
    }
    models = {report.model for report in reports}
    if len(models) == 1:
        attributes["gen_ai.request.model"] = models.pop()
    return attributes


def _run_status(end: Any) -> Status:
    if isinstance(end, Execution.Failed):
        return Status(StatusCode.ERROR, end.error[:MAX_TEXT])
    return Status(StatusCode.UNSET)


def _children(
    execution: Any, run: Sequence[Any], root: SpanContext, owner: Resource
) -> list[ReadableSpan]:
    """A span per tool call and per question of the run, each ended by what ended it (a
    call never finished, or a question never answered, ends with the run)."""
    ended_at = run[-1].timestamp
    spans: list[ReadableSpan] = []
    attempt = run[0].attempt if isinstance(run[0], Execution.RetryScheduled) else 1
    calls: dict[tuple[int, str], tuple[int, Any]] = {}
    finished: dict[tuple[int, str], Any] = {}
    questions: list[list[Any]] = []  # [InputRequested, InputProvided or None]
    for event in run:
        if isinstance(event, Execution.PickedUp):
            attempt = event.attempt
        elif isinstance(event, Execution.ToolCalled):
            calls[(attempt, event.call_id)] = (attempt, event)
        elif isinstance(event, Execution.ToolCallFinished):
            finished[(attempt, event.call_id)] = event
        elif isinstance(event, Execution.InputRequested):
            questions.append([event, None])
        elif isinstance(event, Execution.InputProvided) and questions:
            questions[-1][1] = event
    common = {"agentboard.execution.id": str(execution.id)}
    for key, (call_attempt, called) in calls.items():
        done = finished.get(key)
        status = Status(StatusCode.UNSET)
        if done is not None and done.outcome == "failed":
            status = Status(StatusCode.ERROR, done.result_summary[:MAX_TEXT])
        attributes = {
            **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": called.tool,
            "gen_ai.tool.call.id": called.call_id, "agentboard.attempt": call_attempt,
        }  # fmt: skip
        context = _context(root.trace_id, execution.id, called.originator_version, "tool")
        ended = done.timestamp if done else ended_at
        name = f"execute_tool {called.tool}"
        spans.append(_span(name, context, root, owner, attributes, called.timestamp, ended, status))
    for asked, answered in questions:
        attributes = {
            **common, "agentboard.input.kind": asked.kind,
            "agentboard.input.question": asked.question[:MAX_TEXT],
            "agentboard.input.answered": answered is not None,
        }  # fmt: skip
        if answered is not None:
            attributes["agentboard.input.actor"] = answered.actor.get("id", "")
        context = _context(root.trace_id, execution.id, asked.originator_version, "input")
        ended = answered.timestamp if answered else ended_at
        unset = Status(StatusCode.UNSET)
        spans.append(_span("wait_for_input", context, root, owner, attributes, asked.timestamp,
                           ended, unset))  # fmt: skip
    return spans


def _context(trace_id: int, execution_id: UUID, version: int, kind: str) -> SpanContext:
    """A span id derived from the event that opens the span: the same on every export."""
    digest = hashlib.sha256(f"{execution_id}:{version}:{kind}".encode()).digest()
    span_id = int.from_bytes(digest[:8], "big") or 1
    return SpanContext(
        trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _span(
    name: str, context: SpanContext, parent: SpanContext | None, owner: Resource,
    attributes: dict[str, Any], start: datetime, end: datetime, status: Status,
) -> ReadableSpan:  # fmt: skip
    return ReadableSpan(
        name=name, context=context, parent=parent, resource=owner, attributes=attributes,
        kind=SpanKind.INTERNAL, instrumentation_scope=SCOPE, status=status,
        start_time=_nanoseconds(start), end_time=max(_nanoseconds(end), _nanoseconds(start)),
    )  # fmt: skip


def _nanoseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def traces_factory(
    history: History, exporter: SpanExporter
) -> Callable[[str, PostgresDatastore, str], TracesProjection]:
    """What the projections role's supervisor builds the ``traces`` runner with."""

    def build(_name: str, datastore: PostgresDatastore, suffix: str) -> TracesProjection:
        return TracesProjection(TracesView(datastore, suffix=suffix), history, exporter)

    return build


def otlp_exporter() -> SpanExporter:
    """OTLP over HTTP (protobuf), configured by the standard ``OTEL_EXPORTER_OTLP_*``
    variables, which the exporter reads itself (endpoint, headers, timeout, compression,
    certificates)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


class TracesView(ExporterRecorder):
    name = "traces"  # infra/roles.py TRACES


class TracesProjection(PageProjection[TracesView]):
    name = "traces"
    decoded: ClassVar[frozenset[str] | None] = frozenset(topic_of(cls) for cls in ENDS)

    def __init__(self, view: TracesView, history: History, exporter: SpanExporter) -> None:
        super().__init__(view)
        self.history = history
        self.exporter = exporter
        self.resource = resource()

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        spans: list[ReadableSpan] = []
        for execution_id, ends in by_execution(events).items():
            history = self.history(execution_id, ends[-1].event.originator_version)
            for end in ends:
                spans += run_spans(history[: end.event.originator_version], self.resource)
        if not spans:
            return
        if self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise ExportRefused(f"the collector did not take {len(spans)} spans")
        for span in spans:
            if span.parent is None or span.parent.is_remote:
                log.debug("exported the trace of a run", extra={
                    "trace_id": f"{span.context.trace_id:032x}",
                    "execution_id": (span.attributes or {}).get("agentboard.execution.id"),
                })  # fmt: skip
