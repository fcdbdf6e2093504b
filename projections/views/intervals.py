"""Status intervals: every stretch of time an execution spent in one status.

A row per interval (``left_at`` NULL while the execution is still in it), carrying
the grouping keys (tenant, agent, team, queue) so durations aggregate without joins,
and the log positions where it began and ended, so time travel can ask "which status
was each execution in at position P" of this view alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from cachetools import LRUCache
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.execution.aggregate import Execution
from domain.execution.values import Status
from projections.engine.errors import BadEvent
from projections.engine.log import LoggedEvent, by_execution, is_created, topic_of
from projections.engine.projection import PageProjection, remembered
from projections.engine.view import ViewRecorder

STATUS_AFTER: dict[type[Any], str] = {
    Execution.PickedUp: Status.RUNNING.value,
    Execution.InputRequested: Status.REQUIRES_INPUT.value,
    Execution.InputProvided: Status.RUNNING.value,
    Execution.Blocked: Status.BLOCKED.value,
    Execution.Unblocked: Status.RUNNING.value,
    Execution.Cancelled: Status.CANCELLED.value,
    Execution.Completed: Status.COMPLETED.value,
    Execution.Failed: Status.FAILED.value,
    Execution.RetryScheduled: Status.PENDING.value,
}
"""The events that move an execution to another status, and where they move it."""
IGNORED: frozenset[type[Any]] = frozenset({
    Execution.ToolCalled, Execution.ToolCallFinished, Execution.OutputAppended,
    Execution.ArtifactAdded, Execution.CancelRequested, Execution.LeaseExpired,
})  # fmt: skip
"""The events that leave the status as it was (a lost worker's execution moves on with
the event that follows, a retry, a failure or a cancellation): never decoded for this view."""
PENDING = Status.PENDING.value

CREATE_INTERVALS = """
CREATE TABLE IF NOT EXISTS {status_intervals} (
    execution_id uuid NOT NULL,
    tenant text NOT NULL,
    agent_id text NOT NULL,
    team_id text,
    worker_queue text NOT NULL,
    status text NOT NULL,
    entered_at timestamptz NOT NULL,
    entered_position bigint NOT NULL,
    left_at timestamptz,
    left_position bigint,
    PRIMARY KEY (execution_id, entered_position)
)
"""
CREATE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS {status_intervals_by_position} "
    "ON {status_intervals} (tenant, entered_position)",
)
COLUMNS = {
    "execution_id": "uuid", "tenant": "text", "agent_id": "text", "team_id": "text",
    "worker_queue": "text", "status": "text", "entered_at": "timestamptz",
    "entered_position": "int8", "left_at": "timestamptz", "left_position": "int8",
}  # fmt: skip
SELECT_OPEN = """
SELECT execution_id, tenant, agent_id, team_id, worker_queue, status, entered_at, entered_position
FROM {status_intervals}
WHERE execution_id = ANY(%s) AND left_position IS NULL
"""
CREATE_CLOSED = """
CREATE TEMP TABLE IF NOT EXISTS {status_intervals_closed} (
    execution_id uuid, entered_position bigint, left_at timestamptz, left_position bigint
) ON COMMIT DELETE ROWS
"""
CLOSED_COLUMNS = {
    "execution_id": "uuid", "entered_position": "int8", "left_at": "timestamptz",
    "left_position": "int8",
}  # fmt: skip
CLOSE = """
UPDATE {status_intervals} AS s SET left_at = c.left_at, left_position = c.left_position
FROM {status_intervals_closed} AS c
WHERE s.execution_id = c.execution_id AND s.entered_position = c.entered_position
"""


@dataclass(slots=True)
class Interval:
    execution_id: UUID
    tenant: str
    agent_id: str
    team_id: str | None
    worker_queue: str
    status: str
    entered_at: datetime
    entered_position: int
    left_at: datetime | None = None
    left_position: int | None = None

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.execution_id, self.tenant, self.agent_id, self.team_id, self.worker_queue,
            self.status, self.entered_at, self.entered_position, self.left_at, self.left_position,
        )  # fmt: skip

    def next(self, status: str, at: datetime, position: int) -> Interval:
        self.left_at, self.left_position = at, position
        return Interval(
            self.execution_id, self.tenant, self.agent_id, self.team_id, self.worker_queue,
            status, at, position,
        )  # fmt: skip


class StatusIntervalsView(ViewRecorder):
    name = "status_intervals"
    tables = ("status_intervals",)
    create_tables = (CREATE_INTERVALS,)
    create_indexes = CREATE_INDEXES

    def open_intervals(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, Interval]:
        if not ids:
            return {}
        rows = curs.execute(self.sql(SELECT_OPEN), (ids,), prepare=True).fetchall()
        return {row["execution_id"]: Interval(**row) for row in rows}

    def close(self, curs: Cursor[DictRow], closed: list[Interval]) -> None:
        if closed:
            curs.execute(self.sql(CREATE_CLOSED))
            rows = (
                (i.execution_id, i.entered_position, i.left_at, i.left_position) for i in closed
            )
            self.copy_rows(curs, "status_intervals_closed", CLOSED_COLUMNS, rows)
            curs.execute(self.sql(CLOSE), prepare=True)

    def insert(self, curs: Cursor[DictRow], intervals: list[Interval]) -> None:
        if intervals:
            self.copy_rows(curs, "status_intervals", COLUMNS, (i.as_row() for i in intervals))


class StatusIntervalsProjection(PageProjection[StatusIntervalsView]):
    name = "status_intervals"
    decoded: ClassVar[frozenset[str] | None] = frozenset(
        [topic_of(Execution.Created), *(topic_of(cls) for cls in STATUS_AFTER)]
    )

    can_write_behind = True
    cache_size = 50_000

    def __init__(self, view: StatusIntervalsView) -> None:
        super().__init__(view)
        self.open: LRUCache[UUID, Interval] = LRUCache(self.cache_size)
        self.unsaved: list[Interval] = []
        """Intervals entered since the last save (closed in memory if they close before)."""
        self.unsaved_open: dict[UUID, Interval] = {}
        """... and each execution's open one among them."""

    def forget(self) -> None:
        self.open.clear()
        self.unsaved.clear()
        self.unsaved_open.clear()

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        histories = by_execution(events)
        earlier = [i for i, history in histories.items() if not is_created(history[0])]
        stored = self._find(curs, earlier)
        new: list[Interval] = []
        current: dict[UUID, Interval] = {}
        for execution_id, history in histories.items():
            first = history[0]
            if is_created(first):
                event = first.event
                interval = Interval(
                    execution_id, event.tenant, event.agent_id, event.team_id,
                    event.worker_queue, PENDING, event.timestamp, first.position,
                )  # fmt: skip
                new.append(interval)
                history = history[1:]  # noqa: PLW2901 (the rest of it)
            elif (found := stored.get(execution_id)) is not None:
                interval = found
            else:
                raise BadEvent(
                    self.name, first.position, first.topic,
                    f"execution {execution_id} has no open interval (its Created event is missing)",
                )  # fmt: skip
            for entry in history:
                status = STATUS_AFTER[type(entry.event)]
                if status != interval.status:
                    interval = interval.next(status, entry.event.timestamp, entry.position)
                    new.append(interval)
            current[execution_id] = interval
        held = self.unsaved_open
        self.view.close(
            curs,
            [
                interval
                for execution_id, interval in stored.items()
                if interval.left_position is not None and held.get(execution_id) is not interval
            ],
        )  # the intervals that closed and are stored; those held are written closed
        self.unsaved += new
        entered = {id(interval) for interval in new}
        held.update((i, interval) for i, interval in current.items() if id(interval) in entered)
        self.open.update(current)
        if not self.write_behind or len(self.unsaved) >= self.hold_limit:
            self._save(curs)

    def _save(self, curs: Cursor[DictRow]) -> None:
        """Write the intervals entered since the last save: live, that is every page; in a
        rebuild's write-behind, an interval entered and left in different pages is
        written once, closed, instead of inserted then updated."""
        self.view.insert(curs, self.unsaved)
        self.unsaved = []
        self.unsaved_open = {}

    def _find(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, Interval]:
        """Each execution's open interval: held back, remembered, or read."""
        held = self.unsaved_open
        stored, missing = remembered(self.open, [i for i in ids if i not in held] if held else ids)
        if held:
            stored.update((i, interval) for i in ids if (interval := held.get(i)) is not None)
        stored.update(self.view.open_intervals(curs, missing))
        return stored
