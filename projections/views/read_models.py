"""Everything the API asks of the read side, behind one object.

Every query takes the caller's tenant: nothing crosses tenants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from projections.engine.registry import make_projection
from projections.views.board_queries import BoardQueries
from projections.views.durations import DurationQueries
from projections.views.time_travel import TimeTravel
from projections.views.timeline import TimelineQueries
from projections.views.tool_calls import tool_calls_of

_POLL = (0.002, 0.05)


@dataclass
class ReadModels:
    board: BoardQueries
    durations: DurationQueries
    timeline: TimelineQueries
    time_travel: TimeTravel
    datastore: PostgresDatastore

    @classmethod
    def build(cls, service: ExecutionService, datastore: PostgresDatastore) -> ReadModels:
        return cls(
            BoardQueries(datastore),
            DurationQueries(datastore),
            TimelineQueries(service, datastore),
            TimeTravel(service, datastore),
            datastore,
        )

    def tool_calls(self, tenant: str, execution_id: UUID) -> list[dict[str, Any]]:
        return tool_calls_of(self.datastore, tenant, execution_id)

    def wait_for(self, view: str, position: int, timeout: float) -> bool:
        """Read-your-writes from any process: poll ``view``'s tracking position until it
        reaches ``position``. (In the process that runs the projections,
        ``ProjectionSupervisor.wait_for`` answers without polling.)"""
        recorder = make_projection(view, self.datastore).view
        deadline = time.monotonic() + timeout
        interval = _POLL[0]
        while recorder.position() < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, _POLL[1])
        return True
