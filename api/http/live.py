"""Live events for SSE clients: one JetStream consumer per API process, fanned out in memory.

The relay publishes every stored event to ``agentboard.events.<tenant>.<id>.<Event>``. One
ordered consumer reads them; events nobody watches are dropped unparsed. Each client has a
bounded backlog, and a client that falls ``CLIENT_QUEUE`` messages behind is dropped (its
stream ends; it resumes from its ``Last-Event-ID``) so that one slow client never slows
the others. Board clients get the execution's card as the board view shows it once it has
applied the event; log clients get the event itself.
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

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from infra.nats import NatsOptions, connect
from projections.views.card import Card
from projections.views.filters import ExecutionFilter

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
    """One connected stream: the board of a tenant (filtered), or one execution's events.

    Messages wait in a list that the stream takes whole: a batch of events costs a client
    one wake-up and one write, however many messages it holds."""

    tenant: str
    execution_id: UUID | None = None
    where: ExecutionFilter | None = None
    dropped: bool = False
    _pending: list[Message] = field(default_factory=list)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, messages: list[Message]) -> None:
        if self.dropped or not messages:
            return
        if len(self._pending) + len(messages) > CLIENT_QUEUE:
            self.close()  # it resumes from the last id it received
            return
        self._pending.extend(messages)
        self._ready.set()

    async def take(self, timeout: float) -> list[Message]:
        """Every message waiting (at least one unless dropped); TimeoutError if none comes
        within ``timeout``."""
        if not self._pending and not self.dropped:
            await asyncio.wait_for(self._ready.wait(), timeout)
        self._ready.clear()
        taken, self._pending = self._pending, []
        return taken

    def close(self) -> None:
        self.dropped = True
        self._ready.set()


class LiveHub:
    def __init__(
        self, nats_url: str, cards_at: CardsAt, options: NatsOptions | None = None
    ) -> None:
        self.nats_url = nats_url
        self.options = options
        self.cards_at = cards_at
        self._boards: dict[str, set[Client]] = {}
        self._followers: dict[str, set[Client]] = {}  # by execution id, as in subjects
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._nc: NATS | None = None
        self.delivered = 0

    @property
    def clients(self) -> int:
        return sum(map(len, self._boards.values())) + sum(map(len, self._followers.values()))

    async def start(self) -> None:
        self._nc = await connect(self.nats_url, "agentboard-api-live", self.options)
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
            self._followers.setdefault(str(client.execution_id), set()).add(client)
        return client

    def close_all(self) -> None:
        """The server is stopping: end every stream now (clients resume elsewhere or later)."""
        for group in [*self._boards.values(), *self._followers.values()]:
            for client in group:
                client.close()

    def leave(self, client: Client) -> None:
        groups, key = (
            (self._boards, client.tenant)
            if client.execution_id is None
            else (self._followers, str(client.execution_id))
        )
        group = groups.get(key)
        if group is not None:
            group.discard(client)
            if not group:
                del groups[key]

    def _watched(self, subject: str) -> bool:
        """Whether a client waits for an event on ``subject``
        (``agentboard.events.<tenant>.<execution id>.<Event>``): most events go to nobody,
        and are dropped before they are parsed."""
        parts = subject.split(".")
        return len(parts) != 5 or parts[2] in self._boards or parts[3] in self._followers

    async def _received(self, msg: Msg) -> None:
        if not self._watched(msg.subject):
            return
        try:
            self._inbox.put_nowait(json.loads(msg.data))
        except ValueError:
            log.warning("live: an event that is not JSON on %s", msg.subject)

    async def _pump(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            # What arrived while the last batch went out goes out together: one card read
            # and one write per client for the lot.
            while not self._inbox.empty() and len(batch) < BATCH:
                batch.append(self._inbox.get_nowait())
            try:
                await self._dispatch(batch)
            except Exception:  # one bad batch must not stop every stream
                log.exception("live: could not fan out %d events", len(batch))

    async def _dispatch(self, batch: list[dict[str, Any]]) -> None:
        followed: dict[str, list[Message]] = {}
        for event in batch:
            if event["execution_id"] in self._followers:
                followed.setdefault(event["execution_id"], []).append(
                    Message.of(event["type"], event["position"], event)
                )
        for execution_id, messages in followed.items():
            for client in list(self._followers.get(execution_id, ())):
                client.offer(messages)
        watched = [e for e in batch if e["tenant"] in self._boards]
        if not watched:
            return
        ids = list({UUID(e["execution_id"]) for e in watched})
        cards = await self.cards_at(max(e["position"] for e in watched), ids)
        now = datetime.now(UTC)
        by_tenant: dict[str, list[tuple[Card, Message]]] = {}
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
            by_tenant.setdefault(card.tenant, []).append((card, message))
        for tenant, changes in by_tenant.items():
            everything = [message for _, message in changes]
            for client in list(self._boards.get(tenant, ())):
                where = client.where
                mine = (
                    everything
                    if where is None
                    else [message for card, message in changes if where.matches(card, now)]
                )
                client.offer(mine)
                self.delivered += len(mine)


def stream_filter(where: ExecutionFilter) -> ExecutionFilter:
    """What a board stream filters on: the card's lasting fields. A card that changes status,
    becomes overdue or ages is still sent, so that a client can move or drop it."""
    return ExecutionFilter(
        agent=where.agent, team=where.team, type=where.type, queue=where.queue,
        label=where.label, created_by=where.created_by, q=where.q,
    )  # fmt: skip
