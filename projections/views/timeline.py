"""An execution's timeline, read from the event store itself (not from a view): every
event in order, with its log position, and who did it when the event says."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from domain.application import ExecutionService
from domain.execution.aggregate import Execution
from domain.execution.errors import ExecutionNotFound
from projections.engine.errors import NotFound
from projections.engine.log import topic_of

EVENTS_TABLE = f"{ExecutionService.name}_events"  # eventsourcing names it after the app
SELECT_POSITIONS = (
    "SELECT originator_version, notification_id FROM {events} WHERE originator_id = %s"
)
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def actor_of(event: Any) -> dict[str, str] | None:
    if isinstance(event, Execution.Created):
        return dict(event.created_by)
    if isinstance(event, Execution.PickedUp):
        return {"kind": "worker", "id": event.worker_id}
    actor = getattr(event, "actor", None)
    return dict(actor) if isinstance(actor, dict) else None


def render(event: Any, position: int | None) -> dict[str, Any]:
    data = {k: v for k, v in vars(event).items() if k not in _ENVELOPE and k != "actor"}
    return {
        "position": position,
        "version": event.originator_version,
        "type": type(event).__name__,
        "topic": topic_of(type(event)),
        "timestamp": event.timestamp.isoformat(),
        "actor": actor_of(event),
        "data": jsonable(data),
    }


class TimelineQueries:
    def __init__(self, service: ExecutionService, datastore: PostgresDatastore) -> None:
        self.service = service
        self.datastore = datastore
        self._select_positions = sql.SQL(SELECT_POSITIONS).format(
            events=sql.Identifier(EVENTS_TABLE)
        )

    def timeline(self, tenant: str, execution_id: UUID) -> list[dict[str, Any]]:
        try:
            events = self.service.timeline(execution_id)
        except ExecutionNotFound:
            raise NotFound(f"execution {execution_id} does not exist") from None
        if getattr(events[0], "tenant", None) != tenant:
            raise NotFound(f"execution {execution_id} does not exist")
        with self.datastore.get_connection() as conn:
            rows = conn.execute(self._select_positions, (execution_id,)).fetchall()
        positions = {row["originator_version"]: row["notification_id"] for row in rows}
        return [render(event, positions.get(event.originator_version)) for event in events]
