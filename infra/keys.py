"""API keys: stored hashed, shown once, scoped to one tenant and one role (and a worker
key, when made so, to some queues: it reports only for executions on those).

A key reads ``ab_<key id>_<secret>``. Only ``sha256(secret)`` is stored; verifying looks the
key up by its id and compares the hashes in constant time. Verified keys are remembered for
a short while so a request does not cost a query; a revoked key stops working within that
while (30 s).

Making a key is an operator action the audit trail must show: in the same transaction as
the key, a row goes into ``agentboard_key_events``, an append-only table (a trigger
refuses UPDATE, DELETE and TRUNCATE) hash-chained per tenant, which the audit export
carries (docs/audit.md). Keys are not events of the execution log: the log holds
executions only, and every view and the relay read it as such.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from domain.execution.guards import check_name
from infra.local_keys import ADMIN_KEY_FILE, WORKER_KEY_FILE, read_key_file
from infra.local_keys import Role as Role  # noqa: PLC0414 - kept importable from here too

KEYS_TABLE = (
    "CREATE TABLE IF NOT EXISTS agentboard_api_keys ("
    "key_id text PRIMARY KEY, tenant text NOT NULL, role text NOT NULL, "
    "secret_sha256 bytea NOT NULL, created_by text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz, queues text[])"
)
# Stores made before worker keys could be limited to queues, or keys revoked, get the
# columns on start (ensure_schema).
KEY_COLUMNS_ADDED = (
    "ALTER TABLE agentboard_api_keys ADD COLUMN IF NOT EXISTS queues text[]",
    "ALTER TABLE IF EXISTS agentboard_key_events ADD COLUMN IF NOT EXISTS queues text[]",
    "ALTER TABLE IF EXISTS agentboard_key_events "
    "ADD COLUMN IF NOT EXISTS revoked boolean NOT NULL DEFAULT false",
)
INSERT_KEY = (
    "INSERT INTO agentboard_api_keys (key_id, tenant, role, secret_sha256, created_by, queues) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
SELECT_KEY = (
    "SELECT tenant, role, secret_sha256, queues FROM agentboard_api_keys "
    "WHERE key_id = %s AND revoked_at IS NULL"
)
SELECT_KEYS = (
    "SELECT key_id, tenant, role, queues, created_by, created_at, revoked_at "
    "FROM agentboard_api_keys WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s) "
    "ORDER BY created_at, key_id"
)
REVOKE_KEY = (
    "UPDATE agentboard_api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL "
    "RETURNING key_id, tenant, role, queues, created_by, created_at, revoked_at"
)
REMEMBER_SECONDS = 30.0

KEY_EVENTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS agentboard_key_events ("
    "key_seq bigint PRIMARY KEY, tenant text NOT NULL, key_id text NOT NULL, "
    "role text NOT NULL, actor text NOT NULL, created_at timestamptz NOT NULL, "
    "prev_hash bytea NOT NULL, hash bytea NOT NULL, queues text[], "
    "revoked boolean NOT NULL DEFAULT false)",
    "CREATE SEQUENCE IF NOT EXISTS agentboard_key_events_seq",
    "CREATE OR REPLACE FUNCTION agentboard_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    "CREATE OR REPLACE TRIGGER agentboard_key_events_append_only BEFORE UPDATE OR DELETE "
    "ON agentboard_key_events FOR EACH ROW EXECUTE FUNCTION agentboard_append_only()",
    "CREATE OR REPLACE TRIGGER agentboard_key_events_no_truncate BEFORE TRUNCATE "
    "ON agentboard_key_events FOR EACH STATEMENT EXECUTE FUNCTION agentboard_append_only()",
)
KEY_LOG_LOCK = 0x61626B6C  # one key event at a time: each links to the one before it
LOCK = "SELECT pg_advisory_xact_lock(%s)"
LAST_KEY_EVENT = (
    "SELECT hash FROM agentboard_key_events WHERE tenant = %s ORDER BY key_seq DESC LIMIT 1"
)
NEXT_KEY_SEQ = "SELECT nextval('agentboard_key_events_seq')"
INSERT_KEY_EVENT = (
    "INSERT INTO agentboard_key_events "
    "(key_seq, tenant, key_id, role, actor, created_at, prev_hash, hash, queues, revoked) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


# What each role may do, beyond reading (every role reads its own tenant).
OPERATES = frozenset({Role.OPERATOR, Role.ADMIN})
# The deployment's own tenant: its admin makes keys for every tenant, its workers serve all.
DEPLOYMENT_TENANT = "default"


class KeyNotPossible(Exception):
    """A key asked for with options that do not go together."""


class KeyNotFound(Exception):
    """No such key (or none that the caller may see), or one already revoked."""


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: everything but its secret."""

    key_id: str
    tenant: str
    role: str
    queues: list[str] | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


def key_queues(role: Role, queues: Sequence[str] | None) -> tuple[str, ...] | None:
    """The queues a key is limited to, checked and in order (None: every queue); only a
    worker key may be limited."""
    if queues is None:
        return None
    if role is not Role.WORKER:
        raise KeyNotPossible(f"queues limit worker keys only, not a key of role {role}")
    if not queues:
        raise KeyNotPossible("a key limited to queues needs at least one queue")
    for queue in queues:
        check_name("queue", queue)
    return tuple(sorted(set(queues)))


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str
    role: Role
    queues: tuple[str, ...] | None = None  # a worker key's queues; None: every queue

    @property
    def can_operate(self) -> bool:
        return self.role in OPERATES

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def of_deployment(self) -> bool:
        """A key of the deployment's own tenant: it acts for every tenant."""
        return self.tenant == DEPLOYMENT_TENANT


class KeyStore:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._remembered: dict[str, tuple[float, Principal, bytes]] = {}
        self._key_events_ready = False

    def create(
        self, tenant: str, role: Role, created_by: str, queues: Sequence[str] | None = None
    ) -> str:
        """A new key; the returned text is the only time the secret is seen. ``created_by``
        is ``key:<key id>`` (a person's key) or the name of the tool that made it. A worker
        key may be limited to ``queues``."""
        check_name("tenant", tenant)
        queues = key_queues(role, queues)
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with psycopg.connect(self.database_url) as conn:
            self._ensure_key_events(conn)
            row = (key_id, tenant, role.value, _hash(secret), created_by, _array(queues))
            conn.execute(INSERT_KEY, row)
            _record_key_event(conn, tenant, key_id, role, created_by, queues)
        return f"ab_{key_id}_{secret}"

    def list_keys(self, tenant: str | None) -> list[KeyInfo]:
        """The keys of ``tenant`` (None: of every tenant), oldest first, revoked ones too."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(SELECT_KEYS, {"tenant": tenant}).fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, key_id: str, tenant: str | None, revoked_by: str) -> KeyInfo:
        """Revoke a key of ``tenant`` (None: of any tenant) and chain the revocation with
        the tenant's key records. This process forgets the key at once; others within
        ``REMEMBER_SECONDS``."""
        with psycopg.connect(self.database_url) as conn:
            self._ensure_key_events(conn)
            row = conn.execute(REVOKE_KEY, (key_id,)).fetchone()
            info = KeyInfo(*row) if row is not None else None
            if info is None or (tenant is not None and info.tenant != tenant):
                conn.rollback()
                raise KeyNotFound(f"no key {key_id!r} to revoke")
            queues = tuple(info.queues) if info.queues is not None else None
            _record_key_event(conn, info.tenant, key_id, Role(info.role), revoked_by, queues, True)
        self._remembered.pop(key_id, None)
        return info

    def _ensure_key_events(self, conn: psycopg.Connection[Any]) -> None:
        if not self._key_events_ready:
            conn.execute(LOCK, (KEY_LOG_LOCK,))
            for statement in KEY_EVENTS_SCHEMA:
                conn.execute(statement)
            self._key_events_ready = True

    def verify_remembered(self, token: str) -> Principal | bool | None:
        """Without I/O: the key's principal, None for a bad key, or False when only
        ``verify`` (which queries) can tell."""
        key_id, secret = _split(token)
        if not key_id:
            return None
        remembered = self._remembered.get(key_id)
        if remembered is None or time.monotonic() - remembered[0] >= REMEMBER_SECONDS:
            return False
        _, principal, digest = remembered
        return principal if hmac.compare_digest(digest, _hash(secret)) else None

    async def verify_async(self, token: str) -> Principal | None:
        """``verify`` for an event loop: from memory when it can, else in a thread."""
        found = self.verify_remembered(token)
        if found is False:
            return await asyncio.to_thread(self.verify, token)
        return found if isinstance(found, Principal) else None

    def verify(self, token: str) -> Principal | None:
        key_id, secret = _split(token)
        if not key_id:
            return None
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(SELECT_KEY, (key_id,)).fetchone()
        if row is None:
            return None
        queues = tuple(row[3]) if row[3] is not None else None
        principal, digest = Principal(key_id, row[0], Role(row[1]), queues), bytes(row[2])
        self._remembered[key_id] = (time.monotonic(), principal, digest)
        return principal if hmac.compare_digest(digest, _hash(secret)) else None


def _record_key_event(
    conn: psycopg.Connection[Any],
    tenant: str,
    key_id: str,
    role: Role,
    created_by: str,
    queues: tuple[str, ...] | None,
    revoked: bool = False,
) -> None:
    """Append the key's creation (or revocation) to its tenant's chain of key events
    (under a lock, so each links to the one before it)."""
    from projections.audit import format as audit_format  # noqa: PLC0415 - the CLI imports this module light

    kind = "user" if created_by.startswith("key:") else "system"
    actor = audit_format.json_text({"kind": kind, "id": created_by})
    conn.execute(LOCK, (KEY_LOG_LOCK,))
    row = conn.execute(LAST_KEY_EVENT, (tenant,)).fetchone()
    prev = bytes(row[0]) if row else bytes(32)
    seq_row = conn.execute(NEXT_KEY_SEQ).fetchone()
    key_seq = int(seq_row[0]) if seq_row else 0
    now = datetime.now(UTC)
    record = audit_format.key_record(
        key_seq, prev.hex(), tenant, key_id, role.value, actor, audit_format.utc_text(now),
        queues, revoked,
    )  # fmt: skip
    digest = hashlib.sha256(record).digest()
    conn.execute(
        INSERT_KEY_EVENT,
        (key_seq, tenant, key_id, role.value, actor, now, prev, digest, _array(queues), revoked),
    )


def _array(queues: tuple[str, ...] | None) -> list[str] | None:
    return list(queues) if queues is not None else None


def _split(token: str) -> tuple[str, str]:
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "ab" or not key_id or not secret:
        return "", ""
    return key_id, secret


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def ensure_admin_key(data_dir: Path, store: KeyStore, tenant: str = "default") -> str:
    """The admin key of the local stack: made once, kept in ``<data dir>/admin.key``
    (readable by its owner only), which the CLI uses when no key is set."""
    return _ensure_key(data_dir / ADMIN_KEY_FILE, store, tenant, Role.ADMIN)


def ensure_worker_key(data_dir: Path, store: KeyStore, tenant: str = "default") -> str:
    """The key the local stack's workers report with: made once, kept in
    ``<data dir>/worker.key``, which ``agentboard worker`` uses when no key is set."""
    return _ensure_key(data_dir / WORKER_KEY_FILE, store, tenant, Role.WORKER)


def _ensure_key(path: Path, store: KeyStore, tenant: str, role: Role) -> str:
    key = read_key_file(path)
    if key is not None:
        found = store.verify(key)
        if found is not None and found.role is role:
            return key
    key = store.create(tenant, role, created_by="agentboard up")
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key
