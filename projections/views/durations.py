"""Time in status, from the status intervals view.

``time_in_status``: seconds an execution spent in each status, its open interval
counted up to now, unless it is a final status (the execution ended there: none).
``status_durations``: p50/p95/p99 of interval durations per status,
grouped by agent, team, queue or tenant. A terminal status's open interval has no
duration (the execution simply ended there), so it is left out of the percentiles;
an open interval of a non-terminal status counts up to now, so work stuck in
``pending`` shows in p99 while it is stuck, not only once it moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from projections.engine.errors import InvalidQuery, NotFound

# An open interval of a final status ends where it began: time stops once the execution ended.
TIME_IN_STATUS = """
SELECT status, sum(extract(epoch FROM coalesce(
    left_at,
    CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN entered_at ELSE %(now)s END
) - entered_at))::float8 AS seconds
FROM status_intervals
WHERE execution_id = %(execution_id)s AND tenant = %(tenant)s
GROUP BY status
"""
STATUS_DURATIONS = """
SELECT {key} AS key, status, count(*) AS intervals,
    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
        ORDER BY extract(epoch FROM coalesce(left_at, %(now)s) - entered_at)
    ) AS seconds
FROM status_intervals
WHERE tenant = %(tenant)s
    AND (left_at IS NOT NULL OR status NOT IN ('completed', 'failed', 'cancelled'))
    AND entered_at >= %(since)s
GROUP BY 1, 2
ORDER BY 1, 2
"""
GROUP_KEYS = {"agent": "agent_id", "team": "team_id", "queue": "worker_queue", "tenant": "tenant"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StatusDuration:
    key: str | None  # the agent, team, queue or tenant
    status: str
    intervals: int
    p50: float
    p95: float
    p99: float


class DurationQueries:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def time_in_status(
        self, tenant: str, execution_id: UUID, *, now: datetime | None = None
    ) -> dict[str, float]:
        params = {"tenant": tenant, "execution_id": execution_id, "now": now or datetime.now(UTC)}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(TIME_IN_STATUS, params, prepare=True).fetchall()
        if not rows:
            raise NotFound(f"execution {execution_id} does not exist")
        return {row["status"]: max(float(row["seconds"]), 0.0) for row in rows}

    def status_durations(
        self,
        tenant: str,
        group_by: str = "tenant",
        *,
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> list[StatusDuration]:
        if group_by not in GROUP_KEYS:
            raise InvalidQuery(f"group_by must be one of {', '.join(GROUP_KEYS)}")
        sql = STATUS_DURATIONS.format(key=GROUP_KEYS[group_by])
        params = {"tenant": tenant, "now": now or datetime.now(UTC), "since": since or _EPOCH}
        with self.datastore.get_connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            StatusDuration(
                row["key"], row["status"], int(row["intervals"]), *map(float, row["seconds"])
            )
            for row in rows
        ]
