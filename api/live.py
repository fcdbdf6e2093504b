"""Live events for SSE clients: one JetStream consumer per API process, fanned out in memory.

The relay publishes every stored event to ``agentboard.events.<tenant>.<id>.<Event>``. One
ordered consumer reads them; each client has a bounded queue, and a client whose queue is
full is dropped (its stream ends; it resumes from its ``Last-Event-ID``) so that one slow
client never slows the others. Board clients get the execution's card as the board view
shows it once it has applied the event; log clients get the event itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from projections import ExecutionFilter
from projections.card import Card

log = logging.getLogger(__name__)

EVENTS = "agentboard.events.>"
CLIENT_QUEUE = 1_000  # messages a client may fall behind before it is dropped
BATCH = 500

CardsAt = Callable[[int, Sequence[UUID]], Awaitable[dict[UUID, Card]]]
"""The cards of these executions once the board view has applied this position."""


@dataclass(frozen=True, slots=True)
class Message:
    """One server-sent event, encoded once however many clients it goes to."""

    event: str
    id: int
    data: dict[str, Any]
    frame: bytes = b""

    @classmethod
    def of(cls, event: str, id: int, data: dict[str, Any]) -> Message:
        payload = json.dumps(data, default=_json_default, separators=(",", ":"))
        return cls(event, id, data, f"event: {event}\nid: {id}\ndata: {payload}\n\n".encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


@dataclass(eq=False)
class Client:
    """One connected stream: the board of a tenant (filtered), or one execution's events."""

    tenant: str
    execution_id: UUID | None = None
    where: ExecutionFilter | None = None
    queue: asyncio.Queue[Message] = field(
        default_factory=lambda: asyncio.Queue(maxsize=CLIENT_QUEUE)
    )
    dropped: bool = False

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped = True  # it resumes from the last id it received


class LiveHub:
    def __init__(self, nats_url: str, cards_at: CardsAt) -> None:
        self.nats_url = nats_url
        self.cards_at = cards_at
        self._boards: dict[str, set[Client]] = {}
        self._followers: dict[UUID, set[Client]] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._nc: NATS | None = None
        self.delivered = 0

    @property
    def clients(self) -> int:
        return sum(map(len, self._boards.values())) + sum(map(len, self._followers.values()))

    async def start(self) -> None:
        self._nc = await nats.connect(
            self.nats_url, name="agentboard-api-live", max_reconnect_attempts=-1
        )
        await self._nc.jetstream().subscribe(
            EVENTS,
            cb=self._received,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        self._tasks.append(asyncio.create_task(self._pump(), name="live-hub"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._nc is not None:
            await self._nc.close()

    def join(self, client: Client) -> Client:
        if client.execution_id is None:
            self._boards.setdefault(client.tenant, set()).add(client)
        else:
            self._followers.setdefault(client.execution_id, set()).add(client)
        return client

    def close_all(self) -> None:
        """The server is stopping: end every stream now (clients resume elsewhere or later)."""
        for group in [*self._boards.values(), *self._followers.values()]:
            for client in group:
                client.dropped = True
                with contextlib.suppress(asyncio.QueueFull):
                    client.queue.put_nowait(Message("closing", 0, {}))

    def leave(self, client: Client) -> None:
        group = (
            self._boards.get(client.tenant)
            if client.execution_id is None
            else self._followers.get(client.execution_id)
        )
        if group is not None:
            group.discard(client)

    async def _received(self, msg: Msg) -> None:
        try:
            self._inbox.put_nowait(json.loads(msg.data))
        except ValueError:
            log.warning("live: an event that is not JSON on %s", msg.subject)

    async def _pump(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty() and len(batch) < BATCH:
                batch.append(self._inbox.get_nowait())
            try:
                await self._dispatch(batch)
            except Exception:  # one bad batch must not stop every stream
                log.exception("live: could not fan out %d events", len(batch))

    async def _dispatch(self, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            for client in list(self._followers.get(UUID(event["execution_id"]), ())):
                client.offer(Message.of(event["type"], event["position"], event))
        watched = [e for e in batch if self._boards.get(e["tenant"])]
        if not watched:
            return
        ids = list({UUID(e["execution_id"]) for e in watched})
        cards = await self.cards_at(max(e["position"] for e in watched), ids)
        now = datetime.now(UTC)
        for event in watched:
            card = cards.get(UUID(event["execution_id"]))
            if card is None:  # the board view is far behind (its process just started?)
                log.warning("live: no card yet for %s at %d", event["execution_id"],
                            event["position"])  # fmt: skip
                continue
            if card.tenant != event["tenant"]:
                continue
            message = Message.of(
                "execution",
                event["position"],
                {"position": event["position"], "event": event["type"], "execution": card},
            )
            for client in list(self._boards.get(card.tenant, ())):
                if client.where is None or client.where.matches(card, now):
                    client.offer(message)
                    self.delivered += 1


def stream_filter(where: ExecutionFilter) -> ExecutionFilter:
    """What a board stream filters on: the card's lasting fields. A card that changes status,
    becomes overdue or ages is still sent, so that a client can move or drop it."""
    return ExecutionFilter(
        agent=where.agent, team=where.team, type=where.type, queue=where.queue,
        label=where.label, created_by=where.created_by, q=where.q,
    )  # fmt: skip
