"""Token usage: one row per usage report (``UsageRecorded``), with the agent, team and
queue of its execution, for ``GET /v1/stats/usage``.

``UsageRecorded`` names none of those, so the view keeps each execution's in a small table
of its own, from its ``Created`` event (as the tool calls view keeps attempts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from cachetools import LRUCache
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.execution.aggregate import Execution
from projections.engine.errors import BadEvent, InvalidQuery
from projections.engine.log import LoggedEvent, by_execution, is_created, topic_of
from projections.engine.projection import PageProjection, remembered
from projections.engine.view import ViewRecorder

CREATE_RECORDS = """
CREATE TABLE IF NOT EXISTS {usage_records} (
    execution_id uuid NOT NULL,
    usage_id text NOT NULL,
    tenant text NOT NULL,
    agent_id text NOT NULL,
    team_id text,
    worker_queue text NOT NULL,
    model text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd double precision,
    recorded_at timestamptz NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (execution_id, usage_id)
)
"""
CREATE_EXECUTIONS = """
CREATE TABLE IF NOT EXISTS {usage_executions} (
    execution_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    agent_id text NOT NULL,
    team_id text,
    worker_queue text NOT NULL
)
"""
CREATE_INDEX = "CREATE INDEX IF NOT EXISTS {usage_records_by_tenant} ON {usage_records} (tenant)"
RECORD_COLUMNS = {
    "execution_id": "uuid", "usage_id": "text", "tenant": "text", "agent_id": "text",
    "team_id": "text", "worker_queue": "text", "model": "text", "input_tokens": "int8",
    "output_tokens": "int8", "cost_usd": "float8", "recorded_at": "timestamptz",
    "position": "int8",
}  # fmt: skip
EXECUTION_COLUMNS = {
    "execution_id": "uuid", "tenant": "text", "agent_id": "text", "team_id": "text",
    "worker_queue": "text",
}  # fmt: skip
SELECT_EXECUTIONS = (
    "SELECT execution_id, tenant, agent_id, team_id, worker_queue FROM {usage_executions} "
    "WHERE execution_id = ANY(%s)"
)
HANDLED = (Execution.Created, Execution.UsageRecorded)
"""What this view reads: who the execution is, and its usage reports; nothing else."""

Who = tuple[str, str, str | None, str]  # tenant, agent_id, team_id, worker_queue


class UsageView(ViewRecorder):
    name = "usage"
    tables = ("usage_records", "usage_executions")
    create_tables = (CREATE_RECORDS, CREATE_EXECUTIONS, CREATE_INDEX)

    def executions(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, Who]:
        if not ids:
            return {}
        rows = curs.execute(self.sql(SELECT_EXECUTIONS), (ids,), prepare=True).fetchall()
        return {
            row["execution_id"]: (row["tenant"], row["agent_id"], row["team_id"],
                                  row["worker_queue"])
            for row in rows
        }  # fmt: skip

    def save(
        self, curs: Cursor[DictRow], created: dict[UUID, Who], records: list[tuple[Any, ...]]
    ) -> None:
        if created:
            rows = ((execution_id, *who) for execution_id, who in created.items())
            self.copy_rows(curs, "usage_executions", EXECUTION_COLUMNS, rows)
        if records:
            self.copy_rows(curs, "usage_records", RECORD_COLUMNS, records)


class UsageProjection(PageProjection[UsageView]):
    name = "usage"
    decoded: ClassVar[frozenset[str] | None] = frozenset(topic_of(cls) for cls in HANDLED)

    cache_size = 100_000

    def __init__(self, view: UsageView) -> None:
        super().__init__(view)
        self.known: LRUCache[UUID, Who] = LRUCache(self.cache_size)

    def forget(self) -> None:
        self.known.clear()

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        histories = by_execution(events)
        earlier = [i for i, history in histories.items() if not is_created(history[0])]
        found, missing = remembered(self.known, earlier)
        found.update(self.view.executions(curs, missing))
        created: dict[UUID, Who] = {}
        records: list[tuple[Any, ...]] = []
        for execution_id, history in histories.items():
            first = history[0]
            if is_created(first):
                event = first.event
                who: Who = (event.tenant, event.agent_id, event.team_id, event.worker_queue)
                created[execution_id] = who
                history = history[1:]  # noqa: PLW2901 (the rest of it)
            elif execution_id in found:
                who = found[execution_id]
            else:
                raise BadEvent(
                    self.name, first.position, first.topic,
                    f"execution {execution_id} is unknown (its Created event is missing)",
                )  # fmt: skip
            for entry in history:
                usage = entry.event
                records.append((
                    execution_id, usage.usage_id, *who, usage.model, usage.input_tokens,
                    usage.output_tokens, usage.cost_usd, usage.timestamp, entry.position,
                ))  # fmt: skip
            self.known[execution_id] = who
        self.view.save(curs, created, records)


USAGE_STATS = """
WITH per_execution AS (
    SELECT {key} AS key, execution_id, sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
    FROM usage_records
    WHERE tenant = %(tenant)s
    GROUP BY 1, 2
)
SELECT key, count(*) AS executions, sum(input_tokens)::int8 AS input_tokens,
    sum(output_tokens)::int8 AS output_tokens, sum(cost_usd)::float8 AS cost_usd,
    percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
        ORDER BY input_tokens + output_tokens) AS tokens,
    percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY cost_usd) AS cost
FROM per_execution
GROUP BY 1
ORDER BY 1
"""
GROUP_KEYS = {"agent": "agent_id", "model": "model", "team": "team_id", "queue": "worker_queue"}


@dataclass(frozen=True, slots=True)
class UsageStats:
    key: str | None  # the agent, model, team or queue
    executions: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    p50_tokens: float
    p95_tokens: float
    p50_cost_usd: float | None
    p95_cost_usd: float | None


class UsageQueries:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def usage(self, tenant: str, group_by: str) -> list[UsageStats]:
        """Sums, and p50/p95 per execution, of the tokens and cost reported, grouped."""
        key = GROUP_KEYS.get(group_by)
        if key is None:
            raise InvalidQuery(f"group_by must be one of {', '.join(GROUP_KEYS)}")
        with self.datastore.get_connection() as conn:
            rows = conn.execute(USAGE_STATS.format(key=key), {"tenant": tenant}).fetchall()
        return [
            UsageStats(
                row["key"], row["executions"], row["input_tokens"], row["output_tokens"],
                row["cost_usd"], row["tokens"][0], row["tokens"][1],
                row["cost"][0] if row["cost"] else None, row["cost"][1] if row["cost"] else None,
            )
            for row in rows
        ]  # fmt: skip
