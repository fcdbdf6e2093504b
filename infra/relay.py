"""The relay: a tracked consumer of the notification log that publishes

- every stored event to ``AGENTBOARD_EVENTS`` (``Nats-Msg-Id`` = ``<store id>:<position>``);
- a work message to ``agentboard.work.<queue>[.band]`` for every execution that needs a
  worker (Created, RetryScheduled — which also follows a requeue after LeaseExpired);
- a control message on ``agentboard.control.<id>`` for a cancel, an answer, an unblock, or
  an end decided elsewhere, so the worker holding the execution hears at once (workers also
  poll, so a control message lost on a reconnect delays, never loses, any of them).

Publishes are pipelined within a page and across pages: the next page is read while
JetStream acknowledges the last ones (at most ``IN_FLIGHT`` pages), so an event waits for
one read, not for the acknowledgements and the tracking write of the page before it. The
tracking position advances only over acknowledged pages, in order, written at most every
``TRACK_EVERY`` seconds under load and always before the relay idles; it never moves back.
A restart republishes what was published but not yet tracked, and JetStream drops those
duplicates by their message id. Exactly one relay is active:
it holds a PostgreSQL advisory lock on its own connection; when it dies the lock goes
with its connection and another relay takes over.

It wakes on the log's NOTIFY through the process's listener (projections/engine/listener.py),
and reads at least every second anyway: a read that finds what no NOTIFY announced tells
the listener, which reconnects if it has gone silent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from cachetools import LRUCache
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from nats.aio.client import Client
from nats.js import JetStreamContext

from domain.application import ExecutionService
from domain.execution.aggregate import Execution
from infra.eventstore import SELECT_STORE_ID
from infra.nats import (
    band_of,
    control_subject,
    ensure_work_consumers,
    event_subject,
    work_subject,
)
from projections.engine.listener import EVENTS_CHANNEL, Listener
from projections.views.timeline import render

log = logging.getLogger(__name__)

RELAY_LOCK = 0x61_62_72_6C  # advisory lock id: one active relay per database
SELECT_POSITION = "SELECT position FROM agentboard_relay_tracking WHERE id = 1"
UPSERT_POSITION = (  # a fact ("published up to here"): whoever writes it, it never goes back
    "INSERT INTO agentboard_relay_tracking AS t (id, position) VALUES (1, %s) "
    "ON CONFLICT (id) DO UPDATE SET position = GREATEST(t.position, EXCLUDED.position)"
)
IN_FLIGHT = 4  # pages published and not yet acknowledged
TRACK_EVERY = 0.1  # seconds between tracking writes while pages keep coming
WAKE_UP_AT_LEAST_EVERY = 1.0  # seconds: LISTEN can go silent; polling is the fallback
# JetStream acknowledges a publish in milliseconds; one lost in a reconnect (nats-py can
# send the buffered publishes before the reply subscription is back) never comes. The
# relay then restarts from its tracked position (duplicates are dropped by message id),
# and stands still meanwhile: so it waits for an acknowledgement this long, not the 10 s
# a client would.
ACK_TIMEOUT_SECONDS = 2.0
NEEDS_A_WORKER = ("Created", "RetryScheduled")
# What the worker holding an execution must hear about at once: a cancel, an answer, or
# that the execution was ended or taken from it by someone else.
CONTROL_EVENTS = (
    "CancelRequested",
    "InputProvided",
    "Unblocked",  # a run paused by a block goes on
    "Failed",
    "Completed",
    "Cancelled",
    "LeaseExpired",
)


class Relay:
    def __init__(
        self,
        service: ExecutionService,
        nc: Client,
        database_url: str,
        *,
        listener: Listener,
        page_size: int = 1000,
    ) -> None:
        """``listener``: the process's LISTEN connection (started by its owner)."""
        self.service = service
        self.listener = listener
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(publish_async_max_pending=10_000)
        self.database_url = database_url
        self.page_size = page_size
        self.position = 0  # tracked: published, acknowledged and written down
        self.published = 0  # published, perhaps not yet acknowledged
        self.acknowledged = 0  # acknowledged, perhaps not yet written down
        self._unsettled: deque[tuple[int, asyncio.Future[Any]]] = deque()
        self._tracked_at = 0.0
        self.store_id = ""
        self.active = False
        # tenant, queue and priority of each execution seen lately, for subjects
        self._cards: LRUCache[UUID, tuple[str, str, int]] = LRUCache(100_000)
        self._queues_ready: set[str] = set()
        self._consumers_being_made: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until ``stopping`` is set; wait for leadership first."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            while not stopping.is_set():
                row = await (
                    await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
                ).fetchone()
                if row and row[0]:
                    break
                await _sleep_unless(stopping, 1.0)
            if stopping.is_set():
                return
            self.active = True
            log.info("relay active")
            loop, stored = asyncio.get_running_loop(), asyncio.Event()
            unsubscribe = self.listener.subscribe(
                EVENTS_CHANNEL, lambda _: loop.call_soon_threadsafe(stored.set)
            )
            try:
                self.position = await self._load_position(conn)
                self.published = self.acknowledged = self.position
                # A run that failed (an acknowledgement that never came) left its pages
                # here, their futures cancelled by the timeout: this run publishes them anew.
                self._unsettled.clear()
                row = await (await conn.execute(SELECT_STORE_ID)).fetchone()
                self.store_id = str(row[0]) if row else "store"
                await self._relay_until(conn, stored, stopping)
            finally:
                unsubscribe()
                self.active = False

    async def _relay_until(
        self, conn: psycopg.AsyncConnection[Any], stored: asyncio.Event, stopping: asyncio.Event
    ) -> None:
        started_at = self.position
        try:
            await self._follow(conn, stored, stopping)
            await self._settle(conn, everything=True)  # track what went out before stopping
        except Exception as error:
            if self.position == started_at:
                raise  # the next run after a pause that grows while it keeps failing
            # It had made progress: the next run at once, and its pauses start over (a
            # NATS server dying under load fails a run every few seconds; measured, the
            # pauses had grown to 8 s across faults).
            log.warning("relay stopped after publishing up to %d (%r); again at once",
                        self.position, error)  # fmt: skip

    async def _follow(
        self, conn: psycopg.AsyncConnection[Any], stored: asyncio.Event, stopping: asyncio.Event
    ) -> None:
        """Relay page after page; when there is none, wait for the log to grow (``stored``,
        set by its NOTIFY), at most ``WAKE_UP_AT_LEAST_EVERY``."""
        woken_by_timer = False
        while not stopping.is_set():
            stored.clear()  # before reading: a commit from now on wakes the next wait
            if await self.relay_once(conn):
                if woken_by_timer:
                    self.listener.missed()
                woken_by_timer = False
                continue
            if await self._settle(conn, everything=True):
                continue
            woken_by_timer = not await _woken(stored, stopping)

    async def relay_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Publish the next page (0: there was none)."""
        notifications = await asyncio.to_thread(
            self.service.recorder.select_notifications,
            self.published + 1,
            self.page_size,
        )
        if not notifications:
            return 0
        acks = await self._publish(notifications)
        self.published = notifications[-1].id
        self._unsettled.append((self.published, acks))
        await self._settle(conn, everything=False)
        return len(notifications)

    async def _settle(self, conn: psycopg.AsyncConnection[Any], *, everything: bool) -> bool:
        """Track the pages JetStream acknowledged, oldest first: all of them (waiting for
        their acknowledgements), or those already acknowledged, waiting only when more
        than ``IN_FLIGHT`` are out. A failed acknowledgement raises: the relay restarts
        from its tracked position. True if it wrote the position."""
        while self._unsettled:
            last, acks = self._unsettled[0]
            if not (everything or acks.done() or len(self._unsettled) > IN_FLIGHT):
                break
            await asyncio.wait_for(acks, ACK_TIMEOUT_SECONDS)
            self._unsettled.popleft()
            self.acknowledged = last
        now = time.monotonic()
        due = everything or now - self._tracked_at >= TRACK_EVERY
        if self.acknowledged > self.position and due:
            await conn.execute(UPSERT_POSITION, (self.acknowledged,))
            self.position, self._tracked_at = self.acknowledged, now
            return True
        return False

    async def _publish(self, notifications: Sequence[Notification]) -> asyncio.Future[Any]:
        """Publish a page in order; the future of all its acknowledgements."""
        events = [self.service.mapper.to_domain_event(n) for n in notifications]
        await self._learn_cards(events)
        acks = []
        for notification, event in zip(notifications, events, strict=True):
            tenant, queue, priority = self._cards[event.originator_id]
            name = type(event).__name__
            payload = _event_json(notification.id, event, tenant)
            acks.append(
                await self.js.publish_async(
                    event_subject(tenant, str(event.originator_id), name),
                    payload,
                    headers={"Nats-Msg-Id": f"{self.store_id}:{notification.id}"},
                )
            )
            if name in NEEDS_A_WORKER:
                await self._ensure_queue(queue)
                acks.append(
                    await self.js.publish_async(
                        work_subject(queue, band_of(priority)),
                        _work_json(event, tenant),
                        headers={"Nats-Msg-Id": f"{self.store_id}:work:{notification.id}"},
                    )
                )
            elif name in CONTROL_EVENTS:
                await self.nc.publish(control_subject(str(event.originator_id)), payload)
        return asyncio.gather(*acks)

    async def _learn_cards(self, events: Sequence[Any]) -> None:
        """Tenant, queue and priority of each execution, for subjects: from Created
        events as they pass, else from the execution's first stored event."""
        for event in events:
            if isinstance(event, Execution.Created):
                self._cards[event.originator_id] = (
                    event.tenant,
                    event.worker_queue,
                    event.priority,
                )
        missing = {e.originator_id for e in events if e.originator_id not in self._cards}
        for execution_id in missing:
            [created] = await asyncio.to_thread(self.service.events.get, execution_id, lte=1)
            self._cards[execution_id] = (
                created.tenant, created.worker_queue, created.priority,  # type: ignore[attr-defined]
            )  # fmt: skip

    async def _ensure_queue(self, queue: str) -> None:
        """Make a queue's consumers beside the publishing, not before it: the work stream
        keeps a queue's messages until a consumer takes them, and asking after a consumer
        whose JetStream leader died waits seconds for an election (measured on a 3-node
        cluster: a relay that waited timed out and restarted again and again)."""
        if queue not in self._queues_ready:
            self._queues_ready.add(queue)
            task = asyncio.create_task(self._make_consumers(queue))
            self._consumers_being_made.add(task)
            task.add_done_callback(self._consumers_being_made.discard)

    async def _make_consumers(self, queue: str) -> None:
        try:
            await ensure_work_consumers(self.js, queue)
        except Exception as error:
            self._queues_ready.discard(queue)  # the next work for it tries again
            log.warning("work consumers of queue %s not made yet: %r", queue, error)

    async def _load_position(self, conn: psycopg.AsyncConnection[Any]) -> int:
        row = await (await conn.execute(SELECT_POSITION)).fetchone()
        return int(row[0]) if row else 0


def event_payload(position: int, event: Any, tenant: str) -> dict[str, Any]:
    """An event as published: the shape of one item of ``GET /v1/executions/{id}/events``,
    plus the execution and its tenant."""
    return {**render(event, position), "execution_id": str(event.originator_id), "tenant": tenant}


def _event_json(position: int, event: Any, tenant: str) -> bytes:
    return json.dumps(event_payload(position, event, tenant), default=_json_default).encode()


def _work_json(event: Any, tenant: str) -> bytes:
    not_before = getattr(event, "not_before", None)
    return json.dumps(
        {
            "execution_id": str(event.originator_id),
            "tenant": tenant,
            "attempt": getattr(event, "attempt", 1),
            "not_before": not_before.isoformat() if not_before else None,
        }
    ).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return


async def _woken(stored: asyncio.Event, stopping: asyncio.Event) -> bool:
    """Wait for ``stored`` or ``stopping``, at most ``WAKE_UP_AT_LEAST_EVERY``; False if
    the time ran out."""
    waits = {asyncio.create_task(stored.wait()), asyncio.create_task(stopping.wait())}
    done, pending = await asyncio.wait(
        waits, timeout=WAKE_UP_AT_LEAST_EVERY, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return bool(done)


def relay_position(datastore: PostgresDatastore) -> int:
    """The last position any relay of this database published (its tracking record)."""
    with datastore.get_connection() as conn:
        row = conn.execute(SELECT_POSITION).fetchone()
    return int(row["position"]) if row else 0
