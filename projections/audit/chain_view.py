"""The audit chain's tables and SQL (see ``audit_chain`` for the projection).

* ``audit_chain``: one row per chained event: where it is (position, tenant, execution,
  agent, time), its record head (the line up to its data, as hashed), its hash, and the
  tenant chain's value before and after it;
* ``audit_executions``: each execution's head (tenant, agent, current worker, version,
  hash), what the next event of it links to;
* ``audit_tenants``: each tenant's head, which the anchors publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row

from projections.engine.view import ViewRecorder
from projections.views.timeline import EVENTS_TABLE

CREATE_CHAIN = """
CREATE TABLE IF NOT EXISTS {audit_chain} (
    position bigint PRIMARY KEY,
    tenant text NOT NULL,
    execution_id uuid NOT NULL,
    agent_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    head bytea NOT NULL,
    hash bytea NOT NULL,
    tenant_prev bytea NOT NULL,
    tenant_hash bytea NOT NULL
)
"""
CREATE_EXECUTIONS = """
CREATE TABLE IF NOT EXISTS {audit_executions} (
    execution_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    agent_id text NOT NULL,
    worker_id text,
    version bigint NOT NULL,
    hash bytea NOT NULL
)
"""
CREATE_TENANTS = """
CREATE TABLE IF NOT EXISTS {audit_tenants} (
    tenant text PRIMARY KEY,
    position bigint NOT NULL,
    hash bytea NOT NULL,
    events bigint NOT NULL
)
"""
CHAIN_INDEXES = (
    "CREATE INDEX IF NOT EXISTS {audit_chain_by_tenant} ON {audit_chain} (tenant, position)",
    "CREATE INDEX IF NOT EXISTS {audit_chain_by_execution} "
    "ON {audit_chain} (execution_id, position)",
    "CREATE INDEX IF NOT EXISTS {audit_chain_by_agent} "
    "ON {audit_chain} (tenant, agent_id, position)",
    "CREATE INDEX IF NOT EXISTS {audit_chain_by_time} ON {audit_chain} (tenant, occurred_at)",
)
# Text COPY: each row is laid out by the projection (hex for bytea, ISO for the time),
# which costs a fraction of a typed value-by-value binary COPY.
COPY_CHAIN = (
    "COPY {audit_chain} (position, tenant, execution_id, agent_id, occurred_at, head, hash, "
    "tenant_prev, tenant_hash) FROM STDIN"
)
STORED = (
    "SELECT notification_id, originator_id::text, originator_version, topic, state "
    f"FROM {EVENTS_TABLE} "
)
SELECT_STORED = (
    STORED + "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
)
SELECT_STORED_AT = STORED + "WHERE notification_id = ANY(%s) ORDER BY notification_id"
SELECT_EXECUTIONS = (
    "SELECT execution_id::text, tenant, agent_id, worker_id, version, hash "
    "FROM {audit_executions} WHERE execution_id = ANY(%s::uuid[])"
)
CREATE_EXECUTION_CHANGES = """
CREATE TEMP TABLE IF NOT EXISTS {audit_executions_changes} (
    execution_id uuid, tenant text, agent_id text, worker_id text, version bigint, hash bytea
) ON COMMIT DELETE ROWS
"""
COPY_EXECUTION_CHANGES = (
    "COPY {audit_executions_changes} (execution_id, tenant, agent_id, worker_id, version, hash) "
    "FROM STDIN"
)
UPSERT_EXECUTIONS = """
INSERT INTO {audit_executions} AS e (execution_id, tenant, agent_id, worker_id, version, hash)
SELECT execution_id, tenant, agent_id, worker_id, version, hash FROM {audit_executions_changes}
ON CONFLICT (execution_id) DO UPDATE SET worker_id = EXCLUDED.worker_id,
    version = EXCLUDED.version, hash = EXCLUDED.hash
"""
SELECT_TENANT = "SELECT position, hash, events FROM {audit_tenants} WHERE tenant = %s"
UPSERT_TENANT = """
INSERT INTO {audit_tenants} (tenant, position, hash, events) VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant) DO UPDATE SET position = EXCLUDED.position, hash = EXCLUDED.hash,
    events = EXCLUDED.events
"""


class Stored(NamedTuple):
    position: int
    execution_id: str
    version: int
    topic: str
    state: bytes


@dataclass(slots=True)
class Head:
    """Where an execution's chain stands: its last hash, and what lines need to know."""

    tenant: str
    agent_id: str
    worker_id: str | None
    version: int
    hash: bytes


@dataclass(slots=True)
class TenantHead:
    position: int
    hash: bytes
    events: int


class AuditChainView(ViewRecorder):
    name = "audit_chain"
    tables = ("audit_chain", "audit_executions", "audit_tenants")
    create_tables = (CREATE_CHAIN, CREATE_EXECUTIONS, CREATE_TENANTS)
    create_indexes = CHAIN_INDEXES

    def stored(self, curs: Cursor[DictRow], after: int, last: int) -> list[Stored]:
        with curs.connection.cursor(row_factory=tuple_row) as tuples:
            rows = tuples.execute(SELECT_STORED, (after, last), prepare=True).fetchall()
        return [Stored(*row) for row in rows]

    def stored_at(self, curs: Cursor[DictRow], positions: list[int]) -> list[Stored]:
        with curs.connection.cursor(row_factory=tuple_row) as tuples:
            rows = tuples.execute(SELECT_STORED_AT, (positions,), prepare=True).fetchall()
        return [Stored(*row) for row in rows]

    def heads(self, curs: Cursor[DictRow], ids: list[str]) -> dict[str, Head]:
        if not ids:
            return {}
        with curs.connection.cursor(row_factory=tuple_row) as tuples:
            rows = tuples.execute(self.sql(SELECT_EXECUTIONS), (ids,), prepare=True).fetchall()
        return {row[0]: Head(*row[1:]) for row in rows}

    def tenant_head(self, curs: Cursor[DictRow], tenant: str) -> TenantHead | None:
        row = curs.execute(self.sql(SELECT_TENANT), (tenant,), prepare=True).fetchone()
        return TenantHead(row["position"], row["hash"], row["events"]) if row else None

    def save(
        self,
        curs: Cursor[DictRow],
        links: list[bytes],
        heads: dict[str, Head],
        tenants: dict[str, TenantHead],
    ) -> None:
        """``links``: the chain's new rows, each a line of text COPY."""
        if links:
            with curs.copy(self.sql(COPY_CHAIN)) as copy:
                copy.write(b"".join(links))
        if heads:
            curs.execute(self.sql(CREATE_EXECUTION_CHANGES))
            rows = (
                f"{i}\t{copy_text(h.tenant)}\t{copy_text(h.agent_id)}\t"
                f"{copy_text(h.worker_id) if h.worker_id is not None else NULL}\t{h.version}\t"
                f"\\\\x{h.hash.hex()}\n"
                for i, h in heads.items()
            )
            with curs.copy(self.sql(COPY_EXECUTION_CHANGES)) as copy:
                copy.write("".join(rows).encode())
            curs.execute(self.sql(UPSERT_EXECUTIONS), prepare=True)
        for tenant, head in tenants.items():
            params = (tenant, head.position, head.hash, head.events)
            curs.execute(self.sql(UPSERT_TENANT), params, prepare=True)


NULL = "\\N"  # text COPY's null


def copy_text(value: str) -> str:
    """A value for text COPY: backslash, tab and line breaks escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value
