"""``agentboard init``: what a deployment that runs its roles on their own makes once,
before (or while) they start: the event store's tables and ours, every view's tables, the
NATS streams, bucket and object store (when NATS is configured), and the first admin key.

Safe to run again, and while other processes run: every statement is idempotent
(``IF NOT EXISTS``) and the whole runs under an advisory lock, so two at once make one
admin key, not two; a store that has an admin key of the deployment's tenant gets none.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import psycopg

from infra.bootstrap import nats_options
from infra.eventstore import ensure_schema
from infra.keys import DEPLOYMENT_TENANT, KeyStore, Role
from infra.nats import connect, ensure_topology
from infra.replicas import replicas_for
from infra.servers import database_url
from infra.settings import Settings
from projections.engine.registry import datastore_for
from projections.engine.supervisor import create_view_tables

INIT_LOCK = 0x61_62_69_6E  # advisory lock: one init at a time
MADE_BY = "agentboard init"


@dataclass(frozen=True)
class Initialized:
    created_schema: bool
    """False: the event store's tables were there already."""
    admin_key: str | None
    """The first admin key (shown once), or None: the store had one."""
    nats: bool
    """Whether the NATS topology was made (NATS configured)."""


def initialize(settings: Settings) -> Initialized:
    url = database_url(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (INIT_LOCK,))
        try:
            created = ensure_schema(url, settings)
            datastore = datastore_for(url, pool_size=1)
            try:
                create_view_tables(datastore)
            finally:
                datastore.close()
            key = _first_admin_key(KeyStore(url))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (INIT_LOCK,))
    if settings.nats_url is not None:
        asyncio.run(_nats_topology(settings.nats_url, settings))
    return Initialized(created, key, settings.nats_url is not None)


def _first_admin_key(keys: KeyStore) -> str | None:
    admins = [
        key
        for key in keys.list_keys(DEPLOYMENT_TENANT)
        if key.role == Role.ADMIN.value and key.revoked_at is None
    ]
    return None if admins else keys.create(DEPLOYMENT_TENANT, Role.ADMIN, created_by=MADE_BY)


async def _nats_topology(url: str, settings: Settings) -> None:
    options = nats_options(settings)
    nc = await connect(url, MADE_BY, options)
    try:
        await ensure_topology(nc.jetstream(), replicas=replicas_for(nc, options.replicas))
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
