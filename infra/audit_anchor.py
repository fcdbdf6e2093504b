"""Publishes the audit chain's head of each tenant to JetStream, as an external anchor.

Every few seconds, for each tenant whose chain moved, one message on
``agentboard.audit.anchor.<tenant>`` (stream ``AGENTBOARD_AUDIT``): the position and the
tenant chain's value there. A copy of the history rewritten inside PostgreSQL, chain
included, no longer matches the anchors published before the rewrite; ``agentboard
audit verify FILE --anchor POSITION=HASH`` checks an export against them.

Any API process may run one: message ids (``<store id>:<tenant>:<position>``) let
JetStream drop the copies, and a restart republishes the current heads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import psycopg
from nats.js import JetStreamContext

from infra.eventstore import SELECT_STORE_ID
from infra.nats import PUBLISH_TIMEOUT_SECONDS, anchor_subject
from projections import audit_format

log = logging.getLogger(__name__)

ANCHOR_EVERY_SECONDS = 5.0
SELECT_HEADS = "SELECT tenant, position, hash, events FROM audit_tenants ORDER BY tenant"


class AnchorPublisher:
    def __init__(
        self, js: JetStreamContext, database_url: str, *, every: float = ANCHOR_EVERY_SECONDS
    ) -> None:
        self.js = js
        self.database_url = database_url
        self.every = every
        self.published: dict[str, int] = {}
        self.store_id = ""

    async def run(self, stopping: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            row = await (await conn.execute(SELECT_STORE_ID)).fetchone()
            self.store_id = str(row[0]) if row else "store"
            while not stopping.is_set():
                await self.publish_once(conn)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.every)

    async def publish_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Publish each tenant's head that moved since the last time; returns how many."""
        try:
            rows = await (await conn.execute(SELECT_HEADS)).fetchall()
        except psycopg.errors.UndefinedTable:
            return 0  # the chain has not run here yet
        published = 0
        for tenant, position, head, events in rows:
            if self.published.get(tenant) == position:
                continue
            anchor = {
                "scheme": audit_format.SCHEME, "store_id": self.store_id, "tenant": tenant,
                "position": position, "tenant_hash": bytes(head).hex(), "events": events,
            }  # fmt: skip
            await asyncio.wait_for(
                self.js.publish(
                    anchor_subject(tenant),
                    json.dumps(anchor).encode(),
                    headers={"Nats-Msg-Id": f"{self.store_id}:{tenant}:{position}"},
                ),
                PUBLISH_TIMEOUT_SECONDS,
            )
            self.published[tenant] = position
            published += 1
        return published
