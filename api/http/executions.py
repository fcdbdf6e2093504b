"""/v1/executions: create, read, and the operator actions (DESIGN §6)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import anyio
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response

from api.http.artifacts import artifacts_of
from api.http.auth import operators
from api.http.consistency import caught_up, note_written
from api.http.queries import FILTERS, Text, read_models
from api.http.schemas import Execution, ExecutionCreate, ExecutionPage, InputAnswer, Reason
from api.http.streams import LastEventId, follow_execution
from domain.execution import commands as c
from domain.execution.aggregate import Execution as ExecutionAggregate
from domain.execution.errors import ExecutionNotFound
from domain.execution.state import CommandResult, ExecutionState
from domain.execution.values import Actor, ActorKind, ExecutionType, RetryPolicy
from infra.bootstrap import Container
from infra.keys import Principal
from infra.tracecontext import parse_traceparent
from projections.engine.errors import NotFound as ReadNotFound
from projections.views.filters import ExecutionFilter
from projections.views.read_models import ReadModels

OutputAppended = ExecutionAggregate.OutputAppended

TraceParentHeader = Annotated[
    str | None,
    HeaderParameter(name="traceparent", required=False, max_length=512,
                    description="W3C trace context: the execution's trace continues yours"),
]  # fmt: skip
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, max_length=255,
                    description="repeat a request safely: the same key returns the first outcome"),
]  # fmt: skip


def actor_of(request: Request[Principal, Any, State]) -> Actor:
    return Actor(ActorKind.USER, f"key:{request.user.key_id}")


def reason_or(data: Reason | None, default: str) -> str:
    return (data.reason if data else "") or default


async def state_in_tenant(container: Container, tenant: str, execution_id: UUID) -> ExecutionState:
    """The execution, if it belongs to the caller's tenant; another tenant's is not found."""
    state = await anyio.to_thread.run_sync(container.service.state, execution_id)
    if state.tenant != tenant:
        raise ExecutionNotFound(execution_id)
    return state


class ExecutionController(Controller):
    path = "/v1/executions"
    tags = ["executions"]

    @post("/", operation_id="createExecution", guards=[operators], status_code=201)
    async def create(
        self, request: Request[Principal, Any, State], data: JSONBody[ExecutionCreate],
        idempotency_key: IdempotencyKey = None, traceparent: TraceParentHeader = None,
    ) -> Execution:  # fmt: skip
        """Create an execution; it waits in `pending` until a worker of its queue takes it.
        With a `traceparent` header, its trace (OpenTelemetry) continues the caller's."""
        container: Container = request.app.state.container
        tenant = request.user.tenant
        key = f"key:{request.user.key_id}"
        created_by = (  # a creator the caller names is recorded with the key that named it
            Actor(ActorKind(data.created_by.kind), data.created_by.id, via=key)
            if data.created_by
            else Actor(ActorKind.API, key)
        )
        retry = RetryPolicy(**data.retry.model_dump()) if data.retry else RetryPolicy()
        result = await container.writer.send(
            c.CreateExecution.new(
                tenant=tenant, agent_id=data.agent_id, worker_queue=data.worker_queue,
                prompt=data.prompt, created_by=created_by, idempotency_key=idempotency_key,
                type=ExecutionType(data.type), team_id=data.team_id,
                parameters=data.parameters, priority=data.priority, labels=data.labels,
                deadline=data.deadline, retry=retry, timeout_seconds=data.timeout_seconds,
                heartbeat_timeout_seconds=data.heartbeat_timeout_seconds,
                parent_execution_id=data.parent_execution_id,
                traceparent=_trace_context(traceparent),
            )
        )  # fmt: skip
        note_written(request, result.position)
        return Execution.of(result.execution, result.position)

    @get("/", operation_id="listExecutions", dependencies=FILTERS)
    async def list_executions(
        self, request: Request[Principal, Any, State], where: NamedDependency[ExecutionFilter],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50, cursor: Text = None,
    ) -> ExecutionPage:  # fmt: skip
        """Executions, highest priority first then oldest, filtered; page with `cursor`. Each
        item is an Execution without its heavy parts (`time_in_status`, `tool_calls` and
        `artifacts` are null): `GET /v1/executions/{id}` has them."""
        models = read_models(request)
        await caught_up(request)
        page = await anyio.to_thread.run_sync(
            lambda: models.board.list(request.user.tenant, where, limit=limit, cursor=cursor)
        )
        items = [Execution.of(card, card.position) for card in page.items]
        return ExecutionPage(items, page.next_cursor)

    @get("/{execution_id:uuid}", operation_id="getExecution")
    async def get_one(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID]
    ) -> Execution:
        """One execution, as stored now, with the time it spent in each status, its tool
        calls and its artifacts."""
        container: Container = request.app.state.container
        state = await state_in_tenant(container, request.user.tenant, execution_id)
        execution = Execution.of(state, None)
        await caught_up(request, "status_intervals", "tool_calls")
        models, tenant = container.read_models, request.user.tenant
        execution.time_in_status = await anyio.to_thread.run_sync(
            _time_in_status, models, tenant, execution_id
        )
        execution.tool_calls = await anyio.to_thread.run_sync(
            models.tool_calls, tenant, execution_id
        )
        execution.artifacts = await anyio.to_thread.run_sync(artifacts_of, container, execution_id)
        return execution

    @get("/{execution_id:uuid}/events", operation_id="getExecutionEvents")
    async def events(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID]
    ) -> list[dict[str, Any]]:
        """Its full event timeline, in order, with who did what."""
        container: Container = request.app.state.container
        await state_in_tenant(container, request.user.tenant, execution_id)
        models = read_models(request)
        return await anyio.to_thread.run_sync(
            models.timeline.timeline, request.user.tenant, execution_id
        )

    @get("/{execution_id:uuid}/logs", operation_id="getExecutionLogs")
    async def logs(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        follow: Annotated[bool, QueryParameter(
            description="stream its events as SSE (text/event-stream) until it ends")] = False,
        last_event_id: LastEventId = None,
    ) -> Response[Any]:  # fmt: skip
        """Its stored output so far, as text; with `follow=true`, its events as Server-Sent
        Events from the start (or after `Last-Event-ID`) until it ends: `event:` the event
        type (OutputAppended carries `data.text`), `id:` the log position, `data:` as an item
        of /events; last, `event: end` with its final status."""
        if follow:
            return await follow_execution(request, execution_id, last_event_id)
        container: Container = request.app.state.container
        await state_in_tenant(container, request.user.tenant, execution_id)
        events = await anyio.to_thread.run_sync(container.service.timeline, execution_id)
        text = "".join(event.text for event in events if isinstance(event, OutputAppended))
        return Response(text, media_type=MediaType.TEXT)

    async def _act(
        self, request: Request[Principal, Any, State], execution_id: UUID, command: c.Command
    ) -> Execution:
        container: Container = request.app.state.container
        # the writer checks the tenant on the execution it loads anyway: another tenant's
        # is refused as not existing, without a read of its own here
        scoped = c.Within.of(command, request.user.tenant)
        result: CommandResult = await container.writer.send(scoped)
        note_written(request, result.position)
        return Execution.of(result.execution, result.position)

    @post("/{execution_id:uuid}/cancel", operation_id="cancelExecution", guards=[operators],
          status_code=200)  # fmt: skip
    async def cancel(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        data: JSONBody[Reason | None] = None, idempotency_key: IdempotencyKey = None,
    ) -> Execution:  # fmt: skip
        """Cancel: pending work at once; running work is asked to stop."""
        reason = reason_or(data, "cancelled")
        command = c.RequestCancel(execution_id, reason, actor_of(request), idempotency_key)
        return await self._act(request, execution_id, command)

    @post("/{execution_id:uuid}/retry", operation_id="retryExecution", guards=[operators],
          status_code=200)  # fmt: skip
    async def retry(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        idempotency_key: IdempotencyKey = None,
    ) -> Execution:  # fmt: skip
        """Retry a failed execution as a new attempt."""
        command = c.Retry(execution_id, actor_of(request), idempotency_key)
        return await self._act(request, execution_id, command)

    @post("/{execution_id:uuid}/input", operation_id="answerExecution", guards=[operators],
          status_code=200)  # fmt: skip
    async def answer(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        data: JSONBody[InputAnswer],
        idempotency_key: IdempotencyKey = None,
    ) -> Execution:  # fmt: skip
        """Answer the question of an execution that requires input."""
        command = c.ProvideInput(execution_id, data.answer, actor_of(request), idempotency_key)
        return await self._act(request, execution_id, command)

    @post("/{execution_id:uuid}/block", operation_id="blockExecution", guards=[operators],
          status_code=200)  # fmt: skip
    async def block(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        data: JSONBody[Reason | None] = None, idempotency_key: IdempotencyKey = None,
    ) -> Execution:  # fmt: skip
        """Mark running work blocked (waiting on something outside it)."""
        reason = reason_or(data, "blocked")
        command = c.Block(execution_id, reason, actor_of(request), idempotency_key)
        return await self._act(request, execution_id, command)

    @post("/{execution_id:uuid}/unblock", operation_id="unblockExecution", guards=[operators],
          status_code=200)  # fmt: skip
    async def unblock(
        self, request: Request[Principal, Any, State], execution_id: FromPath[UUID],
        data: JSONBody[Reason | None] = None, idempotency_key: IdempotencyKey = None,
    ) -> Execution:  # fmt: skip
        """Let blocked work run again."""
        reason = reason_or(data, "unblocked")
        command = c.Unblock(execution_id, reason, actor_of(request), idempotency_key)
        return await self._act(request, execution_id, command)


def _trace_context(header: str | None) -> str | None:
    """The caller's trace context, normalised; one that is not valid is ignored (W3C)."""
    parent = parse_traceparent(header)
    return parent.header() if parent is not None else None


def _time_in_status(models: ReadModels, tenant: str, execution_id: UUID) -> dict[str, float]:
    try:
        return models.durations.time_in_status(tenant, execution_id)
    except ReadNotFound:  # the view has not caught up with a brand-new execution yet
        return {}
