"""/v1/pipelines: start, list, read, cancel, add items (DESIGN §12).

Writes go to the pipelines' command side (domain/pipeline/application.py); reads come
from the pipelines view (projections/views/pipelines.py). A write answers with the view's
pipeline as its stored events make it (folded as the view folds them, ``position`` then
null), so a client reads its own write whether or not the view has caught up; the
conductor moves the pipeline on meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import anyio
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import HeaderParameter, Parameter
from litestar.response import Stream

from api.http.auth import operators
from api.http.errors import BadRequest
from api.http.streams import HEARTBEAT_SECONDS, LastEventId
from domain.pipeline.errors import InvalidPipeline, PipelineNotFound
from infra.bootstrap import Container
from infra.keys import Principal
from projections.engine.listener import PIPELINE_EVENTS_CHANNEL
from projections.views import pipelines as view

STATUSES = ("pending", "running", "completed", "failed", "cancelled")

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, max_length=255,
                    description="repeat a request safely: the same key returns the first outcome"),
]  # fmt: skip

_tables_made: set[str] = set()


async def _database(request: Request[Principal, Any, State]) -> str:
    container: Container = request.app.state.container
    url = container.database_url
    if url not in _tables_made:
        await anyio.to_thread.run_sync(view.create_tables, url)
        _tables_made.add(url)
    return url


def _actor(request: Request[Principal, Any, State]) -> dict[str, str]:
    return {"kind": "user", "id": f"key:{request.user.key_id}"}


def _as_written(container: Container, pipeline_id: UUID) -> dict[str, Any]:
    """The pipeline as its stored events make it, in the view's shape."""
    state: dict[str, Any] | None = None
    for event in container.pipelines.events.get(pipeline_id):
        state = view.fold(state, type(event).__name__, event)
    if state is None:
        raise PipelineNotFound(pipeline_id)
    return {**view.render(state, 0), "position": None}


async def _events_of(container: Container, pipeline_id: UUID, after: int) -> AsyncIterator[bytes]:
    """The pipeline's events after version ``after`` as SSE messages, then live ones, until
    it ends; a comment every ``HEARTBEAT_SECONDS`` keeps an idle connection open."""
    loop, stored = asyncio.get_running_loop(), asyncio.Event()
    unsubscribe = container.listener.subscribe(
        PIPELINE_EVENTS_CHANNEL, lambda _: loop.call_soon_threadsafe(stored.set)
    )
    try:
        while True:
            stored.clear()
            events = await anyio.to_thread.run_sync(_stored_after, container, pipeline_id, after)
            for event in events:
                after = event.originator_version
                name = type(event).__name__
                data = json.dumps(_event_json(event, name), default=str)
                yield f"id: {after}\nevent: {name}\ndata: {data}\n\n".encode()
                if name in ("Completed", "Failed", "Cancelled"):
                    return
            try:
                await asyncio.wait_for(stored.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": keepalive\n\n"
    finally:
        unsubscribe()


def _stored_after(container: Container, pipeline_id: UUID, after: int) -> list[Any]:
    return list(container.pipelines.events.get(pipeline_id, gt=after))


def _event_json(event: Any, name: str) -> dict[str, Any]:
    fields = {
        key: value
        for key, value in vars(event).items()
        if key not in ("originator_id", "originator_version", "timestamp", "originator_topic")
    }
    return {
        "pipeline_id": str(event.originator_id),
        "position": event.originator_version,
        "event": name,
        "at": event.timestamp.isoformat(),
        **fields,
    }


class PipelineController(Controller):
    path = "/v1/pipelines"
    tags = ["pipelines"]

    @post("/", operation_id="startPipeline", guards=[operators], status_code=201)
    async def start(
        self, request: Request[Principal, Any, State], idempotency_key: IdempotencyKey = None
    ) -> dict[str, Any]:
        """Start a pipeline from its spec (DESIGN §12); 422 names what is wrong in it."""
        container: Container = request.app.state.container
        data = await _json_body(request)
        pipeline = await anyio.to_thread.run_sync(
            lambda: container.pipelines.start(
                request.user.tenant, data, _actor(request), idempotency_key
            )
        )
        return await anyio.to_thread.run_sync(_as_written, container, pipeline.id)

    @get("/", operation_id="listPipelines")
    async def list_pipelines(
        self,
        request: Request[Principal, Any, State],
        status: str | None = None,
        name: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Pipelines, newest first; filters ``status`` and ``name``; ``next_cursor`` pages."""
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status: one of {', '.join(STATUSES)} (got {status!r})")
        url = await _database(request)
        after = _decode_cursor(cursor) if cursor else None
        items = await anyio.to_thread.run_sync(
            lambda: view.list_pipelines(
                url, request.user.tenant, status=status, name=name, limit=limit, cursor=after
            )
        )
        last = items[-1] if len(items) == limit else None
        next_cursor = _encode_cursor(last["created_at"], last["id"]) if last else None
        return {"items": items, "next_cursor": next_cursor}

    @get("/{pipeline_id:uuid}", operation_id="getPipeline")
    async def get_one(
        self, request: Request[Principal, Any, State], pipeline_id: UUID
    ) -> dict[str, Any]:
        """Status, iteration, columns with counts and items, summary."""
        url = await _database(request)
        found = await anyio.to_thread.run_sync(
            view.get_pipeline, url, request.user.tenant, pipeline_id
        )
        if found is None:
            raise PipelineNotFound(pipeline_id)
        return found

    @get("/{pipeline_id:uuid}/stream", operation_id="streamPipeline")
    async def stream(
        self, request: Request[Principal, Any, State], pipeline_id: UUID,
        last_event_id: LastEventId = None,
    ) -> Stream:  # fmt: skip
        """The pipeline's events as SSE (`id:` its version: resume with `Last-Event-ID`),
        one per item move (`StepDispatched`, `StepEnded`) and change, until it ends."""
        container: Container = request.app.state.container
        await anyio.to_thread.run_sync(container.pipelines.get, pipeline_id, request.user.tenant)
        return Stream(
            _events_of(container, pipeline_id, last_event_id or 0),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @post("/{pipeline_id:uuid}/cancel", operation_id="cancelPipeline", guards=[operators],
          status_code=200)  # fmt: skip
    async def cancel(
        self, request: Request[Principal, Any, State], pipeline_id: UUID
    ) -> dict[str, Any]:
        """Cancel: the conductor cancels what runs; what waits is skipped."""
        container: Container = request.app.state.container
        await anyio.to_thread.run_sync(
            lambda: container.pipelines.cancel(
                pipeline_id, request.user.tenant, "cancelled by request", _actor(request)
            )
        )
        return await anyio.to_thread.run_sync(_as_written, container, pipeline_id)

    @post("/{pipeline_id:uuid}/items", operation_id="addPipelineItems", guards=[operators],
          status_code=200)  # fmt: skip
    async def add_items(
        self, request: Request[Principal, Any, State], pipeline_id: UUID
    ) -> dict[str, Any]:
        """More tickets: ``{items: [...]}``."""
        container: Container = request.app.state.container
        data = await _json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise InvalidPipeline("items: a list of items, each an object with an id")
        await anyio.to_thread.run_sync(
            lambda: container.pipelines.add_items(
                pipeline_id, request.user.tenant, data["items"], _actor(request)
            )
        )
        return await anyio.to_thread.run_sync(_as_written, container, pipeline_id)


async def _json_body(request: Request[Principal, Any, State]) -> Any:
    try:
        return await request.json()
    except Exception as error:
        raise BadRequest(f"body: not JSON ({error})") from None


def _encode_cursor(created_at: str, pipeline_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{pipeline_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, _, pipeline_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), UUID(pipeline_id)
    except (ValueError, binascii.Error):
        raise BadRequest("cursor: not one this API gave") from None
