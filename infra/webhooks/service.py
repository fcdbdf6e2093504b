"""The webhooks service, a part of the api role: the outbox (a tracked projection of the
log, in a thread) and the delivery loop (on the API's event loop), active in one API
process per database at a time: the one holding a PostgreSQL advisory lock on its own
connection. When that process dies its lock goes with its connection, and another API
process's service takes over within a second, from the stored state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from infra.services import supervised
from infra.settings import Settings
from infra.webhooks.delivery import Deliveries, DeliveryMetrics, DeliveryPolicy
from infra.webhooks.outbox import OutboxProjection, OutboxView
from infra.webhooks.store import WebhookStore
from projections.engine.registry import ProjectionOptions, datastore_for
from projections.engine.supervisor import ProjectionSupervisor

log = logging.getLogger(__name__)

WEBHOOKS_LOCK = 0x61627764  # advisory lock id: one active webhooks service per database
LEADERSHIP_POLL_SECONDS = 1.0


def outbox_supervisor(service: ExecutionService, database_url: str) -> ProjectionSupervisor:
    """The outbox's runner, supervised as a view's is (restarts, health)."""

    def history(execution_id: Any, version: int) -> list[Any]:
        return list(service.events.get(execution_id, lte=version))

    def outbox(_name: str, datastore: PostgresDatastore, suffix: str) -> OutboxProjection:
        return OutboxProjection(OutboxView(datastore, suffix=suffix), history)

    options = ProjectionOptions(pool_size=2)
    return ProjectionSupervisor(
        service, datastore_for(database_url, pool_size=options.pool_size),
        database_url=database_url, options=options, names=[OutboxView.name], factory=outbox,
    )  # fmt: skip


class WebhookService:
    def __init__(self, settings: Settings, database_url: str, service: ExecutionService) -> None:
        self.database_url = database_url
        self.service = service
        self.store = WebhookStore(database_url)
        self.metrics = DeliveryMetrics()
        self.deliveries = Deliveries(database_url, DeliveryPolicy.of(settings), self.metrics)
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.active = False

    async def start(self) -> None:
        await asyncio.to_thread(self._create_tables)
        self.task = asyncio.create_task(supervised("webhooks", self._run, self.stopping))

    def _create_tables(self) -> None:
        """Before this process takes a registration: an endpoint hears of what is stored
        after it registered, so the outbox must already be following the log by then."""
        self.store.ensure_schema()
        datastore = datastore_for(self.database_url, pool_size=1)
        try:
            OutboxView(datastore).create_table()
        finally:
            datastore.close()

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await self.task

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            if not await self._lead(conn):
                return
            outbox = outbox_supervisor(self.service, self.database_url)
            await asyncio.to_thread(outbox.start)
            self.active = True
            log.info("webhooks active")
            try:
                await self.deliveries.run(self.stopping)
            finally:
                self.active = False
                await asyncio.to_thread(outbox.stop)

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Wait until this process holds the lock (True), or is stopped (False)."""
        while not self.stopping.is_set():
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (WEBHOOKS_LOCK,))
            row = await cursor.fetchone()
            if row and row[0]:
                return True
            try:
                await asyncio.wait_for(self.stopping.wait(), LEADERSHIP_POLL_SECONDS)
            except TimeoutError:
                continue
        return False
