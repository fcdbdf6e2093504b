"""Publishes the audit chain's head of each tenant to JetStream, as an external anchor.

Every few seconds, for each tenant whose chain moved, one message on
``agentboard.audit.anchor.<tenant>`` (stream ``AGENTBOARD_AUDIT``): the position and the
tenant chain's value there, and the last of the tenant's key records (its ``key_seq`` and
hash; the chain of who got which key). A copy of the history rewritten inside PostgreSQL,
chain included, no longer matches the anchors published before the rewrite; ``agentboard
audit verify FILE --anchor POSITION=HASH --anchor key:SEQ=HASH`` checks an export
against them.

Any API process may run one: message ids (``<store id>:<tenant>:<position>:<key seq>``)
let JetStream drop the copies, and a restart republishes the current heads.
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
from projections.audit import format as audit_format

log = logging.getLogger(__name__)

ANCHOR_EVERY_SECONDS = 5.0
SELECT_HEADS = "SELECT tenant, position, hash, events FROM audit_tenants ORDER BY tenant"
SELECT_KEY_HEADS = (
    "SELECT DISTINCT ON (tenant) tenant, key_seq, hash FROM agentboard_key_events "
    "ORDER BY tenant, key_seq DESC"
)
Head = tuple[int | None, str | None, int, int | None, str | None]
"""position, tenant hash, events, key seq, key hash"""


class AnchorPublisher:
    def __init__(
        self, js: JetStreamContext, database_url: str, *, every: float = ANCHOR_EVERY_SECONDS
    ) -> None:
        self.js = js
        self.database_url = database_url
        self.every = every
        self.published: dict[str, tuple[int | None, int | None]] = {}  # position, key seq
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
        """Publish each tenant's heads that moved since the last time; returns how many."""
        published = 0
        for tenant, (position, head, events, key_seq, key_hash) in (await heads(conn)).items():
            if self.published.get(tenant) == (position, key_seq):
                continue
            anchor = {
                "scheme": audit_format.SCHEME, "store_id": self.store_id, "tenant": tenant,
                "position": position, "tenant_hash": head, "events": events,
                "key_seq": key_seq, "key_hash": key_hash,
            }  # fmt: skip
            await asyncio.wait_for(
                self.js.publish(
                    anchor_subject(tenant),
                    json.dumps(anchor).encode(),
                    headers={"Nats-Msg-Id": f"{self.store_id}:{tenant}:{position}:{key_seq}"},
                ),
                PUBLISH_TIMEOUT_SECONDS,
            )
            self.published[tenant] = (position, key_seq)
            published += 1
        return published


async def heads(conn: psycopg.AsyncConnection[Any]) -> dict[str, Head]:
    """Each tenant's chain head and last key record, where it has either (a table that does
    not exist yet holds none)."""
    found: dict[str, Head] = {}
    with contextlib.suppress(psycopg.errors.UndefinedTable):
        for tenant, position, head, events in await (await conn.execute(SELECT_HEADS)).fetchall():
            found[tenant] = (position, bytes(head).hex(), events, None, None)
    with contextlib.suppress(psycopg.errors.UndefinedTable):
        for tenant, key_seq, key_hash in await (await conn.execute(SELECT_KEY_HEADS)).fetchall():
            position, head, events, _, _ = found.get(tenant, (None, None, 0, None, None))
            found[tenant] = (position, head, events, key_seq, bytes(key_hash).hex())
    return found
