"""The eventsourcing PostgreSQL store: its environment, and its tables, created once."""

from __future__ import annotations

import json

import psycopg
from psycopg.conninfo import conninfo_to_dict

from domain.application import ExecutionService
from domain.pipeline.application import PipelineService
from infra.keys import KEY_COLUMNS_ADDED, KEYS_TABLE
from infra.pgstore import CONNECTION_OPTIONS, FACTORY_TOPIC
from infra.pgstore import TOPIC as RECORDER_TOPIC
from infra.settings import Settings
from projections.engine.registry import connection_options

EVENTS_TABLE = "agentboard_events"  # eventsourcing names it after the application
_SCHEMA_LOCK = 0x61_62_73_63  # advisory lock: two processes starting at once create once


def eventsourcing_env(
    database_url: str, settings: Settings, *, create_table: bool
) -> dict[str, str]:
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": FACTORY_TOPIC,
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.db_pool_max_overflow),
        # No ping before each use of a pooled connection: it cost a round trip per commit
        # (a fifth of the writer's time under load). A connection the server dropped fails
        # once; eventsourcing retries the statement (10 attempts) and the pool discards it.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        "CREATE_TABLE": "y" if create_table else "n",
        CONNECTION_OPTIONS: json.dumps(connection_options(database_url)),
    }


# Our own small tables beside the event store (each view's tables live with its view).
OWN_TABLES = (
    "CREATE TABLE IF NOT EXISTS agentboard_relay_tracking "
    "(id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL)",
    # This store's identity: message ids on NATS are <store id>:<position>, so two stores
    # (a reset database, a tenant partition) never collide in JetStream's dedupe window.
    "CREATE TABLE IF NOT EXISTS agentboard_store "
    "(id integer PRIMARY KEY CHECK (id = 1), store_id uuid NOT NULL DEFAULT gen_random_uuid(), "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO agentboard_store (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
    KEYS_TABLE,
    *KEY_COLUMNS_ADDED,
)
SELECT_STORE_ID = "SELECT store_id FROM agentboard_store WHERE id = 1"


def ensure_schema(database_url: str, settings: Settings) -> bool:
    """Create the event store's tables if they are missing. Returns True if it created them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            for statement in OWN_TABLES:
                conn.execute(statement)
            PipelineService(eventsourcing_env(database_url, settings, create_table=True)).close()
            row = conn.execute("SELECT to_regclass(%s)", (EVENTS_TABLE,)).fetchone()
            if row is not None and row[0] is not None:
                return False
            service = ExecutionService(eventsourcing_env(database_url, settings, create_table=True))
            service.close()
            return True
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
