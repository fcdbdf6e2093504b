"""Fixtures and helpers for the read-side tests (no tests of its own).

Kept in a ``test_projection*`` module because the projection work may not touch the
shared conftest; the other ``test_projection_*`` modules import the fixtures from
here (``datastore_fixture`` provides ``datastore``, ``read_side_fixture`` ``read_side``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from projections.engine.registry import VIEWS, ProjectionOptions, datastore_for
from projections.engine.supervisor import ProjectionSupervisor

ALICE = Actor(ActorKind.USER, "alice")
FAST = ProjectionOptions(page_size=500, poll_interval=0.2, min_backoff=0.05, max_backoff=0.5)

PRIMARY_KEYS = {
    "board_cards": "id",
    "board_columns": "tenant, status",
    "board_tracking": "application_name",
    "status_intervals": "execution_id, entered_position",
    "status_intervals_tracking": "application_name",
    "tool_calls": "execution_id, attempt, call_id",
    "tool_call_executions": "execution_id",
    "tool_calls_tracking": "application_name",
    "audit_chain": "position",
    "audit_executions": "execution_id",
    "audit_tenants": "tenant",
    "audit_chain_tracking": "application_name",
}


@pytest.fixture(name="datastore")
def datastore_fixture(database_url: str) -> Iterator[PostgresDatastore]:
    store = datastore_for(database_url, pool_size=4)
    yield store
    store.close()


@pytest.fixture(name="read_side")
def read_side_fixture(
    container: Container, datastore: PostgresDatastore, database_url: str
) -> Iterator[ProjectionSupervisor]:
    """The views, created but not running: tests call ``catch_up()`` or ``start()``."""
    supervisor = ProjectionSupervisor(
        container.service, datastore, database_url=database_url, options=FAST
    )
    supervisor.create_tables()
    yield supervisor
    if supervisor._threads:
        supervisor.stop()


def create(service: ExecutionService, **overrides: Any) -> UUID:
    fields: dict[str, Any] = {
        "tenant": "default", "agent_id": "script", "worker_queue": "default",
        "prompt": "summarise the logs", "created_by": ALICE,
    }  # fmt: skip
    fields.update(overrides)
    return service.process_one(c.CreateExecution.new(**fields)).execution.id


def run_to_completion(service: ExecutionService, execution_id: UUID) -> None:
    lease = service.process_one(c.PickUp(execution_id, "worker-1", f"claim-{uuid4()}")).lease
    service.process_one(c.RecordToolCall(execution_id, lease, "call-1", "bash", {"command": "ls"}))
    service.process_one(
        c.FinishToolCall(execution_id, lease, "call-1", "success", result_summary="3 files")
    )
    service.process_one(c.Complete(execution_id, lease, {"answer": 42}, "all good"))


def rows(datastore: PostgresDatastore, table: str) -> list[dict[str, Any]]:
    with datastore.get_connection() as conn:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY {PRIMARY_KEYS[table]}"))


def snapshot(datastore: PostgresDatastore) -> dict[str, list[dict[str, Any]]]:
    """Every row of every view table, tracking included, in key order."""
    tables = [table for _, view in VIEWS.values() for table in view.tables]
    tables += [f"{name}_tracking" for name in VIEWS]
    return {table: rows(datastore, table) for table in tables}


def scalar(database_url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def counted_columns(datastore: PostgresDatastore) -> dict[tuple[str, str], int]:
    """What the column counts must be: the cards, counted."""
    with datastore.get_connection() as conn:
        found = conn.execute(
            "SELECT tenant, status, count(*) AS n FROM board_cards GROUP BY 1, 2"
        ).fetchall()
    return {(row["tenant"], row["status"]): row["n"] for row in found}


def kept_columns(datastore: PostgresDatastore) -> dict[tuple[str, str], int]:
    return {
        (row["tenant"], row["status"]): row["count"]
        for row in rows(datastore, "board_columns")
        if row["count"]
    }
