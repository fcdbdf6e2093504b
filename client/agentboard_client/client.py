"""``Client`` and ``AsyncClient``: the HTTP API (DESIGN §6) as typed calls.

Every POST carries an ``Idempotency-Key`` (pass ``idempotency_key=`` to choose it, e.g. to
make a create safe to repeat from a job that may run twice); a refusal raises ``ApiError``
(``NotFound``, ``Conflict``, ``BadRequest``, ``Unauthorized``) with the problem's ``title``
and ``detail``; a server that does not answer raises ``Unreachable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from agentboard_client.errors import Unreachable
from agentboard_client.models import Event, Execution, ExecutionPage
from agentboard_client.transport import AsyncTransport, Transport

WAIT_POLL_SECONDS = (0.1, 2.0)  # first and longest pause between two looks
RECONNECT_FOR_SECONDS = 60.0
RECONNECT_EVERY_SECONDS = 1.0
STREAM_READ_TIMEOUT_SECONDS = 60.0  # the server sends a comment every 15 s


class WaitTimedOut(TimeoutError):
    """``wait`` gave up before the execution ended; ``execution`` is how it stood."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(f"execution {execution.id} is still {execution.status}")
        self.execution = execution


class StreamBroke(Exception):
    """``follow``'s stream ended before the execution did, and did not come back in time."""


def _create_body(agent_id: str, prompt: str, worker_queue: str, fields: dict[str, Any]) -> Any:
    body = {"agent_id": agent_id, "prompt": prompt, "worker_queue": worker_queue}
    body.update({name: value for name, value in fields.items() if value is not None})
    deadline = body.get("deadline")
    if isinstance(deadline, datetime):
        body["deadline"] = deadline.isoformat()
    if body.get("parent_execution_id") is not None:
        body["parent_execution_id"] = str(body["parent_execution_id"])
    return body


def _list_params(limit: int, cursor: str | None, filters: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    for name, value in filters.items():
        if value is None or value is False:
            continue
        params[name] = list(value) if isinstance(value, list | tuple | set) else value
    return params


def _reason(reason: str | None) -> dict[str, str] | None:
    return {"reason": reason} if reason else None


class Executions:
    """``client.executions``: create, read, wait for, follow and act on executions."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self, *, agent_id: str, prompt: str, worker_queue: str = "default",
        idempotency_key: str | None = None, **fields: Any,
    ) -> Execution:  # fmt: skip
        """Create an execution (``POST /v1/executions``); ``fields`` as the API takes them:
        ``parameters``, ``priority``, ``labels``, ``deadline``, ``type``, ``team_id``,
        ``retry``, ``timeout_seconds``, ``heartbeat_timeout_seconds``,
        ``parent_execution_id``, ``created_by``."""
        body = _create_body(agent_id, prompt, worker_queue, fields)
        return Execution.model_validate(
            self._t.call("POST", "/v1/executions", json=body, idempotency_key=idempotency_key)
        )

    def get(self, execution_id: UUID | str) -> Execution:
        return Execution.model_validate(self._t.call("GET", f"/v1/executions/{execution_id}"))

    def list(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> ExecutionPage:
        """One page; filters as the API names them (``status`` a list, ``agent``, ``team``,
        ``type``, ``queue``, ``label``, ``overdue``, ``older_than``)."""
        params = _list_params(limit, cursor, filters)
        return ExecutionPage.model_validate(self._t.call("GET", "/v1/executions", params=params))

    def iterate(self, *, page_size: int = 200, **filters: Any) -> Iterator[Execution]:
        """Every execution that matches, page after page."""
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def wait(self, execution_id: UUID | str, *, timeout: float | None = None) -> Execution:
        """The execution once it has ended (completed, failed or cancelled); ``WaitTimedOut``
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = WAIT_POLL_SECONDS[0]
        while True:
            execution = self.get(execution_id)
            if execution.ended:
                return execution
            if deadline is not None and time.monotonic() + pause > deadline:
                raise WaitTimedOut(execution)
            time.sleep(pause)
            pause = min(pause * 1.5, WAIT_POLL_SECONDS[1])

    def follow(self, execution_id: UUID | str) -> Iterator[Event]:
        """Its events as they are stored, from the start until it ends (the last is ``end``,
        ``data["status"]`` its final status). A stream that breaks is resumed after the last
        event seen (``Last-Event-ID``) for up to a minute, so none is missed or repeated."""
        from httpx_sse import connect_sse  # noqa: PLC0415 - only following needs it

        httpx = self._t.httpx
        path = f"/v1/executions/{execution_id}/logs"
        last: int | None = None
        broken_since: float | None = None
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with connect_sse(
                    self._t.http, "GET", path, params={"follow": "true"}, headers=headers,
                    timeout=httpx.Timeout(30, read=STREAM_READ_TIMEOUT_SECONDS),
                ) as source:  # fmt: skip
                    from agentboard_client.transport import checked  # noqa: PLC0415

                    checked(source.response)
                    broken_since = None
                    for sse in source.iter_sse():
                        if not sse.data:  # `retry:`, or a keepalive
                            continue
                        event = Event(type=sse.event, id=int(sse.id) if sse.id else None,
                                      data=sse.json())  # fmt: skip
                        yield event
                        if event.type == "end":
                            return
                        last = event.id if event.id is not None else last
                problem: Exception = StreamBroke("the server closed the stream")
            except httpx.TransportError as error:
                if last is None and broken_since is None:
                    raise Unreachable(self._t.url, error) from error
                problem = error
            broken_since = broken_since or time.monotonic()
            if time.monotonic() - broken_since > RECONNECT_FOR_SECONDS:
                raise StreamBroke(f"lost the stream from {self._t.url} ({problem})")
            time.sleep(RECONNECT_EVERY_SECONDS)

    def _act(self, execution_id: UUID | str, action: str, body: Any,
             idempotency_key: str | None) -> Execution:  # fmt: skip
        path = f"/v1/executions/{execution_id}/{action}"
        return Execution.model_validate(
            self._t.call("POST", path, json=body, idempotency_key=idempotency_key)
        )

    def cancel(self, execution_id: UUID | str, reason: str | None = None, *,
               idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return self._act(execution_id, "cancel", _reason(reason), idempotency_key)

    def retry(self, execution_id: UUID | str, *, idempotency_key: str | None = None) -> Execution:
        return self._act(execution_id, "retry", None, idempotency_key)

    def respond(self, execution_id: UUID | str, answer: Any, *,
                idempotency_key: str | None = None) -> Execution:  # fmt: skip
        """Answer its question (it requires input); any JSON value."""
        return self._act(execution_id, "input", {"answer": answer}, idempotency_key)

    def start(self, execution_id: UUID | str, *, idempotency_key: str | None = None) -> Execution:
        """Move it from the backlog to pending (DESIGN §13); ``NotFound`` from a server
        without the backlog."""
        return self._act(execution_id, "start", None, idempotency_key)

    def block(self, execution_id: UUID | str, reason: str | None = None, *,
              idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return self._act(execution_id, "block", _reason(reason), idempotency_key)

    def unblock(self, execution_id: UUID | str, reason: str | None = None, *,
                idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return self._act(execution_id, "unblock", _reason(reason), idempotency_key)


class Stats:
    """``client.stats``: what the views sum up."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def usage(self, group_by: str = "agent") -> list[dict[str, Any]]:
        """Tokens and cost per ``agent``, ``model``, ``team`` or ``queue``
        (``GET /v1/stats/usage``): sums, and p50/p95 per execution."""
        rows: list[dict[str, Any]] = self._t.call(
            "GET", "/v1/stats/usage", params={"group_by": group_by}
        )
        return rows


class Client:
    """The API at ``url`` with ``api_key``; use it as a context manager, or ``close()`` it."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, retries: int = 2,
        http_transport: Any = None,
    ) -> None:  # fmt: skip
        self.transport = Transport(
            url, api_key, timeout=timeout, retries=retries, http_transport=http_transport
        )
        self.executions = Executions(self.transport)
        self.stats = Stats(self.transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()


class AsyncExecutions:
    """``client.executions`` of an ``AsyncClient``: as ``Executions``, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self, *, agent_id: str, prompt: str, worker_queue: str = "default",
        idempotency_key: str | None = None, **fields: Any,
    ) -> Execution:  # fmt: skip
        body = _create_body(agent_id, prompt, worker_queue, fields)
        answer = await self._t.call(
            "POST", "/v1/executions", json=body, idempotency_key=idempotency_key
        )
        return Execution.model_validate(answer)

    async def get(self, execution_id: UUID | str) -> Execution:
        answer = await self._t.call("GET", f"/v1/executions/{execution_id}")
        return Execution.model_validate(answer)

    async def list(self, *, limit: int = 50, cursor: str | None = None,
                   **filters: Any) -> ExecutionPage:  # fmt: skip
        params = _list_params(limit, cursor, filters)
        answer = await self._t.call("GET", "/v1/executions", params=params)
        return ExecutionPage.model_validate(answer)

    async def iterate(self, *, page_size: int = 200, **filters: Any) -> AsyncIterator[Execution]:
        cursor: str | None = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor, **filters)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def wait(self, execution_id: UUID | str, *, timeout: float | None = None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = WAIT_POLL_SECONDS[0]
        while True:
            execution = await self.get(execution_id)
            if execution.ended:
                return execution
            if deadline is not None and time.monotonic() + pause > deadline:
                raise WaitTimedOut(execution)
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, WAIT_POLL_SECONDS[1])

    async def follow(self, execution_id: UUID | str) -> AsyncIterator[Event]:
        from httpx_sse import aconnect_sse  # noqa: PLC0415 - only following needs it

        httpx = self._t.httpx
        path = f"/v1/executions/{execution_id}/logs"
        last: int | None = None
        broken_since: float | None = None
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                async with aconnect_sse(
                    self._t.http, "GET", path, params={"follow": "true"}, headers=headers,
                    timeout=httpx.Timeout(30, read=STREAM_READ_TIMEOUT_SECONDS),
                ) as source:  # fmt: skip
                    from agentboard_client.transport import checked  # noqa: PLC0415

                    if source.response.status_code >= 400:
                        await source.response.aread()
                    checked(source.response)
                    broken_since = None
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            continue
                        event = Event(type=sse.event, id=int(sse.id) if sse.id else None,
                                      data=sse.json())  # fmt: skip
                        yield event
                        if event.type == "end":
                            return
                        last = event.id if event.id is not None else last
                problem: Exception = StreamBroke("the server closed the stream")
            except httpx.TransportError as error:
                if last is None and broken_since is None:
                    raise Unreachable(self._t.url, error) from error
                problem = error
            broken_since = broken_since or time.monotonic()
            if time.monotonic() - broken_since > RECONNECT_FOR_SECONDS:
                raise StreamBroke(f"lost the stream from {self._t.url} ({problem})")
            await asyncio.sleep(RECONNECT_EVERY_SECONDS)

    async def _act(self, execution_id: UUID | str, action: str, body: Any,
                   idempotency_key: str | None) -> Execution:  # fmt: skip
        path = f"/v1/executions/{execution_id}/{action}"
        answer = await self._t.call("POST", path, json=body, idempotency_key=idempotency_key)
        return Execution.model_validate(answer)

    async def cancel(self, execution_id: UUID | str, reason: str | None = None, *,
                     idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "cancel", _reason(reason), idempotency_key)

    async def retry(self, execution_id: UUID | str, *,
                    idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "retry", None, idempotency_key)

    async def respond(self, execution_id: UUID | str, answer: Any, *,
                      idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "input", {"answer": answer}, idempotency_key)

    async def start(self, execution_id: UUID | str, *,
                    idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "start", None, idempotency_key)

    async def block(self, execution_id: UUID | str, reason: str | None = None, *,
                    idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "block", _reason(reason), idempotency_key)

    async def unblock(self, execution_id: UUID | str, reason: str | None = None, *,
                      idempotency_key: str | None = None) -> Execution:  # fmt: skip
        return await self._act(execution_id, "unblock", _reason(reason), idempotency_key)


class AsyncStats:
    """``client.stats`` of an ``AsyncClient``."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def usage(self, group_by: str = "agent") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._t.call(
            "GET", "/v1/stats/usage", params={"group_by": group_by}
        )
        return rows


class AsyncClient:
    """As ``Client``, for asyncio: ``async with AsyncClient(url, api_key) as client``."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, retries: int = 2,
        http_transport: Any = None,
    ) -> None:  # fmt: skip
        self.transport = AsyncTransport(
            url, api_key, timeout=timeout, retries=retries, http_transport=http_transport
        )
        self.executions = AsyncExecutions(self.transport)
        self.stats = AsyncStats(self.transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()
