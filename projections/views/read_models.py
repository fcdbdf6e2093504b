"""Everything the API asks of the read side, behind one object.

Every query takes the caller's tenant: nothing crosses tenants. How far the views are
(``progress``) is given by whoever builds this (the composition root, infra/bootstrap.py,
or the supervisor for its own process): the read side does not decide where the views run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from projections.engine.progress import ViewProgress
from projections.views.board_queries import BoardQueries
from projections.views.durations import DurationQueries
from projections.views.time_travel import TimeTravel
from projections.views.timeline import TimelineQueries
from projections.views.tool_calls import tool_calls_of


@dataclass
class ReadModels:
    board: BoardQueries
    durations: DurationQueries
    timeline: TimelineQueries
    time_travel: TimeTravel
    datastore: PostgresDatastore
    progress: ViewProgress
    """Where each view is, and ``wait_for`` (read-your-writes, the streams, the export)."""

    @classmethod
    def build(
        cls, service: ExecutionService, datastore: PostgresDatastore, progress: ViewProgress
    ) -> ReadModels:
        return cls(
            BoardQueries(datastore),
            DurationQueries(datastore),
            TimelineQueries(service, datastore),
            TimeTravel(service, datastore),
            datastore,
            progress,
        )

    def tool_calls(self, tenant: str, execution_id: UUID) -> list[dict[str, Any]]:
        return tool_calls_of(self.datastore, tenant, execution_id)
