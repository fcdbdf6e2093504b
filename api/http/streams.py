"""Server-Sent Events: the live board and one execution's live events.

Each message's ``id`` is a log position. A client that reconnects sends ``Last-Event-ID``:
what it missed is replayed from the board view (or the execution's stored events), then the
stream goes on live; messages at or before the last replayed position are not sent twice.
A comment every 15 s keeps idle connections (and proxies) open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

import anyio
from litestar import Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import Stream

from api.http.consistency import caught_up
from api.http.errors import Unavailable
from api.http.live import Client, LiveHub, Message, stream_filter
from api.http.queries import FILTERS, read_models
from domain.execution.values import TERMINAL, Status
from infra.bootstrap import Container
from infra.keys import Principal
from projections.views.card import Card
from projections.views.filters import ExecutionFilter

HEARTBEAT_SECONDS = 15.0
REPLAY_LIMIT = 10_000  # further behind than this, a board client is told to reload
CARD_WAIT_SECONDS = 5.0  # a board view further behind than this: send the card it has
ENDINGS = {"Completed", "Failed", "Cancelled"}

LastEventId = Annotated[
    int | None,
    HeaderParameter(
        name="Last-Event-ID", required=False, ge=0,
        description="the id of the last message received: resume after it",
    ),
]  # fmt: skip


def hub_of(request: Request[Principal, Any, State]) -> LiveHub:
    hub: LiveHub | None = request.app.state.get("hub")
    if hub is None:
        raise Unavailable("live streams need the read models, which do not run in this process")
    return hub


def live_hub(container: Container) -> LiveHub:
    """The process's hub; its cards come from the board view."""
    views, board = container.views, container.read_models.board

    def cards_at(position: int, ids: Sequence[UUID]) -> dict[UUID, Card]:
        views.wait_for("board", position, CARD_WAIT_SECONDS)
        return board.cards(ids)

    async def cards_at_async(position: int, ids: Sequence[UUID]) -> dict[UUID, Card]:
        return await anyio.to_thread.run_sync(cards_at, position, ids)

    return LiveHub(container.nats_url, cards_at_async, container.nats)


@get("/v1/board/stream", operation_id="streamBoard", dependencies=FILTERS, tags=["queries"])
async def board_stream(
    request: Request[Principal, Any, State], where: NamedDependency[ExecutionFilter],
    last_event_id: LastEventId = None,
) -> Stream:  # fmt: skip
    """Live board changes as SSE: `event: execution`, `id:` its log position, `data:`
    `{position, event, execution}` (the card as the board shows it). With `Last-Event-ID`
    the cards changed since are replayed first (`event` is null for those); too far behind,
    one `event: reset` says to reload the board."""
    models, tenant, lasting = read_models(request), request.user.tenant, stream_filter(where)
    client = hub_of(request).join(Client(tenant, where=None if lasting.is_empty else lasting))
    replay: list[Message] = []
    if last_event_id is not None:
        await caught_up(request)
        cards = await anyio.to_thread.run_sync(
            lambda: models.board.changed_since(tenant, lasting, last_event_id, limit=REPLAY_LIMIT)
        )
        if len(cards) >= REPLAY_LIMIT:
            position = request.app.state.container.views.position("board")
            replay = [Message.of("reset", position, {"position": position})]
        else:
            replay = [
                Message.of("execution", card.position,
                        {"position": card.position, "event": None, "execution": card})
                for card in cards
            ]  # fmt: skip
    return _event_stream(_messages(hub_of(request), client, replay))


async def follow_execution(
    request: Request[Principal, Any, State], execution_id: UUID, last_event_id: int | None
) -> Stream:
    """One execution's events as SSE (`event:` the event type, `id:` its log position,
    `data:` as an item of /events), from the start or after `Last-Event-ID`, until it ends:
    then one `event: end` with its final status."""
    container: Container = request.app.state.container
    models, tenant = read_models(request), request.user.tenant
    client = hub_of(request).join(Client(tenant, execution_id=execution_id))
    try:  # joined first, then read: nothing falls between the replay and the live part
        timeline = await anyio.to_thread.run_sync(models.timeline.timeline, tenant, execution_id)
        state = await anyio.to_thread.run_sync(container.service.state, execution_id)
    except Exception:
        hub_of(request).leave(client)
        raise
    after = last_event_id or 0
    replay = [
        Message.of(item["type"], item["position"], item)
        for item in timeline
        if (item["position"] or 0) > after
    ]
    last = max([after, *(item["position"] or 0 for item in timeline)])
    # The state is read after the timeline: if it ended with the timeline's last event, the
    # replay is the whole story; if it moved on since, what followed arrives live (and ends it).
    replayed_all = bool(timeline) and state.version == timeline[-1]["version"]
    ended_already = (
        _end(state.status, last) if replayed_all and Status(state.status) in TERMINAL else None
    )

    async def ended(message: Message) -> Message | None:
        if message.event not in ENDINGS:
            return None
        now = await anyio.to_thread.run_sync(container.service.state, execution_id)
        if Status(now.status) not in TERMINAL:
            return None  # e.g. failed, and a retry is scheduled
        return _end(now.status, message.id)

    return _event_stream(_messages(hub_of(request), client, replay, ended, ended_already))


def _end(status: Any, position: int) -> Message:
    return Message.of("end", position, {"status": str(status), "position": position})


async def _messages(
    hub: LiveHub,
    client: Client,
    replay: list[Message],
    ended: Callable[[Message], Awaitable[Message | None]] | None = None,
    ended_already: Message | None = None,
) -> AsyncIterator[bytes]:
    try:
        yield b": connected\nretry: 1000\n\n"
        last = 0
        for message in replay:
            yield message.frame
            last = max(last, message.id)
        if ended_already is not None:
            yield ended_already.frame
            return
        while not client.dropped:
            try:
                waiting = await client.take(HEARTBEAT_SECONDS)  # all of it: one write
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if client.dropped:
                return
            frames = []
            for message in waiting:
                if message.id <= last:
                    continue  # already replayed
                frames.append(message.frame)
                last = message.id
                if ended is not None and (end := await ended(message)) is not None:
                    yield b"".join([*frames, end.frame])
                    return
            if frames:
                yield b"".join(frames)
    finally:
        hub.leave(client)


def _event_stream(frames: AsyncIterator[bytes]) -> Stream:
    return Stream(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
