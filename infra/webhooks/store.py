"""Webhook endpoints, the messages due to each, and every delivery attempt: PostgreSQL
tables this module owns (as ``infra/keys.py`` owns the keys). Endpoints are configuration
a person registers, not events of the execution log; messages are written by the outbox
(a tracked projection of the log, ``outbox.py``), attempts by the delivery loop.

The secret of an endpoint signs its deliveries, so it is kept as given (whoever reads
this table can sign as agentboard): it is shown once, at registration, and never again.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.application import ExecutionService

EVENTS_TABLE = f"{ExecutionService.name}_events"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS agentboard_webhooks ("
    "id text PRIMARY KEY, tenant text NOT NULL, url text NOT NULL, events text[] NOT NULL, "
    "filter jsonb NOT NULL, secret text NOT NULL, created_by text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now(), created_position bigint NOT NULL, "
    "enabled boolean NOT NULL DEFAULT true, disabled_at timestamptz, disabled_reason text, "
    "failing_since timestamptz)",
    "CREATE UNIQUE INDEX IF NOT EXISTS agentboard_webhooks_same "
    "ON agentboard_webhooks (tenant, url, events, filter)",
    "CREATE TABLE IF NOT EXISTS agentboard_webhook_messages ("
    "webhook_id text NOT NULL REFERENCES agentboard_webhooks (id) ON DELETE CASCADE, "
    "position bigint NOT NULL, message_id text NOT NULL, execution_id uuid NOT NULL, "
    "event_type text NOT NULL, body bytea NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now(), state text NOT NULL DEFAULT 'pending', "
    "attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (webhook_id, position))",
    "CREATE INDEX IF NOT EXISTS agentboard_webhook_messages_due "
    "ON agentboard_webhook_messages (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS agentboard_webhook_messages_in_order "
    "ON agentboard_webhook_messages (webhook_id, execution_id, position) WHERE state = 'pending'",
    "CREATE TABLE IF NOT EXISTS agentboard_webhook_attempts ("
    "id bigserial PRIMARY KEY, "
    "webhook_id text NOT NULL REFERENCES agentboard_webhooks (id) ON DELETE CASCADE, "
    "position bigint NOT NULL, message_id text NOT NULL, event_type text NOT NULL, "
    "execution_id uuid NOT NULL, attempt integer NOT NULL, attempted_at timestamptz NOT NULL, "
    "status_code integer, error text, duration_ms double precision NOT NULL, "
    "delivered boolean NOT NULL)",
    "CREATE INDEX IF NOT EXISTS agentboard_webhook_attempts_of "
    "ON agentboard_webhook_attempts (webhook_id, id)",
)
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(%s)"
WEBHOOKS_SCHEMA_LOCK = 0x61627768  # making the tables: one process at a time
HEAD = f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"
COLUMNS = (
    "id, tenant, url, events, filter, created_by, created_at, enabled, disabled_at, "
    "disabled_reason, failing_since"
)
INSERT = (
    "INSERT INTO agentboard_webhooks "
    "(id, tenant, url, events, filter, secret, created_by, created_position) "
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, ({HEAD})) "
    f"ON CONFLICT (tenant, url, events, filter) DO NOTHING RETURNING {COLUMNS}"
)
SELECT_SAME = (
    f"SELECT {COLUMNS} FROM agentboard_webhooks "
    "WHERE tenant = %s AND url = %s AND events = %s AND filter = %s"
)
SELECT_ALL = f"SELECT {COLUMNS} FROM agentboard_webhooks WHERE tenant = %s ORDER BY created_at, id"
SELECT_ONE = f"SELECT {COLUMNS} FROM agentboard_webhooks WHERE tenant = %s AND id = %s"
DELETE = "DELETE FROM agentboard_webhooks WHERE tenant = %s AND id = %s RETURNING id"
ENABLE = (
    "UPDATE agentboard_webhooks SET enabled = true, disabled_at = NULL, "
    "disabled_reason = NULL, failing_since = NULL "
    f"WHERE tenant = %s AND id = %s RETURNING {COLUMNS}"
)
SELECT_ATTEMPTS = (
    "SELECT message_id, event_type, execution_id, attempt, attempted_at, status_code, error, "
    "duration_ms, delivered FROM agentboard_webhook_attempts "
    "WHERE webhook_id = %s ORDER BY id DESC LIMIT %s"
)
SECRET_BYTES = 24


class WebhookNotFound(Exception):
    """No such webhook in the caller's tenant."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """What may be shown of an endpoint: everything but its secret."""

    id: str
    tenant: str
    url: str
    events: list[str]
    filter: dict[str, Any]
    created_by: str
    created_at: datetime
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class Registered:
    webhook: Webhook
    secret: str | None
    """The signing secret: only when this registration made the endpoint."""


def new_secret() -> str:
    """``whsec_`` and the base64 of random bytes (Standard Webhooks' format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookStore:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._ready = False

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        conn = psycopg.connect(self.database_url, row_factory=dict_row)
        if not self._ready:
            with conn.transaction():
                conn.execute(SCHEMA_LOCK, (WEBHOOKS_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    conn.execute(statement)
            self._ready = True
        return conn

    def ensure_schema(self) -> None:
        with self._connect():
            pass

    def register(
        self, tenant: str, url: str, events: list[str], where: dict[str, Any], created_by: str
    ) -> Registered:
        """A new endpoint with a new secret; or, for the same URL, events and filter in
        the tenant, the one already registered (and no secret). It is told about what
        is stored after this moment."""
        events = sorted(set(events))
        webhook_id, secret = "wh_" + secrets.token_hex(8), new_secret()
        with self._connect() as conn:
            row = conn.execute(
                INSERT, (webhook_id, tenant, url, events, Jsonb(where), secret, created_by)
            ).fetchone()
            if row is not None:
                return Registered(Webhook(**row), secret)
            row = conn.execute(SELECT_SAME, (tenant, url, events, Jsonb(where))).fetchone()
        if row is None:  # deleted between the two statements: try again
            return self.register(tenant, url, events, where, created_by)
        return Registered(Webhook(**row), None)

    def list_webhooks(self, tenant: str) -> list[Webhook]:
        with self._connect() as conn:
            return [Webhook(**row) for row in conn.execute(SELECT_ALL, (tenant,)).fetchall()]

    def get(self, tenant: str, webhook_id: str) -> Webhook:
        with self._connect() as conn:
            row = conn.execute(SELECT_ONE, (tenant, webhook_id)).fetchone()
        if row is None:
            raise WebhookNotFound(webhook_id)
        return Webhook(**row)

    def delete(self, tenant: str, webhook_id: str) -> None:
        """Forget the endpoint, its messages not yet delivered and its attempts."""
        with self._connect() as conn:
            if conn.execute(DELETE, (tenant, webhook_id)).fetchone() is None:
                raise WebhookNotFound(webhook_id)

    def enable(self, tenant: str, webhook_id: str) -> Webhook:
        """Deliver to it again (after it was disabled for failing): from the next event."""
        with self._connect() as conn:
            row = conn.execute(ENABLE, (tenant, webhook_id)).fetchone()
        if row is None:
            raise WebhookNotFound(webhook_id)
        return Webhook(**row)

    def attempts(self, tenant: str, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        """Its delivery attempts, newest first."""
        self.get(tenant, webhook_id)
        with self._connect() as conn:
            return list(conn.execute(SELECT_ATTEMPTS, (webhook_id, limit)).fetchall())
