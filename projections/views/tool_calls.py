"""Tool calls: one row per call an agent made, with its outcome once it finished.

A call is keyed by (execution, attempt, call_id): a retried execution starts its tool
calls afresh and may reuse call ids. ``ToolCalled`` carries no attempt, so the view
keeps each execution's tenant and current attempt in a small table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from cachetools import LRUCache
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from domain.execution.aggregate import Execution
from domain.execution.events import ToolCallFinished
from projections.engine.errors import BadEvent
from projections.engine.log import LoggedEvent, by_execution, is_created, topic_of
from projections.engine.projection import PageProjection, remembered
from projections.engine.view import ViewRecorder

CREATE_CALLS = """
CREATE TABLE IF NOT EXISTS {tool_calls} (
    execution_id uuid NOT NULL,
    attempt integer NOT NULL,
    call_id text NOT NULL,
    tenant text NOT NULL,
    tool text NOT NULL,
    arguments jsonb NOT NULL,
    outcome text,
    result_summary text,
    duration_seconds double precision,
    called_at timestamptz NOT NULL,
    finished_at timestamptz,
    lease integer NOT NULL,
    called_position bigint NOT NULL,
    finished_position bigint,
    PRIMARY KEY (execution_id, attempt, call_id)
)
"""
CREATE_EXECUTIONS = """
CREATE TABLE IF NOT EXISTS {tool_call_executions} (
    execution_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    attempt integer NOT NULL
)
"""
CALL_COLUMNS = {
    "execution_id": "uuid", "attempt": "int4", "call_id": "text", "tenant": "text",
    "tool": "text", "arguments": "jsonb", "outcome": "text", "result_summary": "text",
    "duration_seconds": "float8", "called_at": "timestamptz", "finished_at": "timestamptz",
    "lease": "int4", "called_position": "int8", "finished_position": "int8",
}  # fmt: skip
SELECT_EXECUTIONS = (
    "SELECT execution_id, tenant, attempt FROM {tool_call_executions} WHERE execution_id = ANY(%s)"
)
CREATE_EXECUTION_CHANGES = """
CREATE TEMP TABLE IF NOT EXISTS {tool_call_executions_changes} (
    execution_id uuid, tenant text, attempt integer
) ON COMMIT DELETE ROWS
"""
UPSERT_EXECUTIONS = """
INSERT INTO {tool_call_executions} AS e (execution_id, tenant, attempt)
SELECT execution_id, tenant, attempt FROM {tool_call_executions_changes}
ON CONFLICT (execution_id) DO UPDATE SET attempt = EXCLUDED.attempt
"""
CREATE_FINISHED = """
CREATE TEMP TABLE IF NOT EXISTS {tool_calls_finished} (
    execution_id uuid, attempt integer, call_id text, outcome text, result_summary text,
    duration_seconds double precision, finished_at timestamptz, finished_position bigint
) ON COMMIT DELETE ROWS
"""
FINISHED_COLUMNS = {
    "execution_id": "uuid", "attempt": "int4", "call_id": "text", "outcome": "text",
    "result_summary": "text", "duration_seconds": "float8", "finished_at": "timestamptz",
    "finished_position": "int8",
}  # fmt: skip
EXECUTION_COLUMNS = {"execution_id": "uuid", "tenant": "text", "attempt": "int4"}
FINISH = """
UPDATE {tool_calls} AS t SET outcome = f.outcome, result_summary = f.result_summary,
    duration_seconds = f.duration_seconds, finished_at = f.finished_at,
    finished_position = f.finished_position
FROM {tool_calls_finished} AS f
WHERE t.execution_id = f.execution_id AND t.attempt = f.attempt AND t.call_id = f.call_id
RETURNING t.execution_id, t.attempt, t.call_id
"""


HANDLED = (Execution.Created, Execution.PickedUp, Execution.ToolCalled, Execution.ToolCallFinished)
"""What this view reads: who the execution is, its attempt (a pick-up carries it), its calls."""
IGNORED: frozenset[type[Any]] = frozenset({
    Execution.OutputAppended, Execution.ArtifactAdded, Execution.InputRequested,
    Execution.InputProvided, Execution.Blocked, Execution.Unblocked, Execution.CancelRequested,
    Execution.Cancelled, Execution.Completed, Execution.Failed, Execution.LeaseExpired,
    Execution.RetryScheduled,
})  # fmt: skip
"""Never decoded for this view: a retry's calls belong to the attempt its pick-up names."""

Key = tuple[UUID, int, str]  # execution_id, attempt, call_id


@dataclass(slots=True)
class ToolCall:
    execution_id: UUID
    attempt: int
    call_id: str
    tenant: str
    tool: str
    arguments: dict[str, Any]
    called_at: datetime
    lease: int
    called_position: int
    outcome: str | None = None
    result_summary: str | None = None
    duration_seconds: float | None = None
    finished_at: datetime | None = None
    finished_position: int | None = None

    @property
    def key(self) -> Key:
        return self.execution_id, self.attempt, self.call_id

    def finish(self, event: ToolCallFinished, position: int) -> None:
        self.outcome = event.outcome
        self.result_summary = event.result_summary
        self.duration_seconds = float(event.duration_seconds)
        self.finished_at = event.timestamp
        self.finished_position = position

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.execution_id, self.attempt, self.call_id, self.tenant, self.tool,
            Jsonb(self.arguments), self.outcome, self.result_summary, self.duration_seconds,
            self.called_at, self.finished_at, self.lease, self.called_position,
            self.finished_position,
        )  # fmt: skip


class ToolCallsView(ViewRecorder):
    name = "tool_calls"
    tables = ("tool_calls", "tool_call_executions")
    create_tables = (CREATE_CALLS, CREATE_EXECUTIONS)

    def executions(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, tuple[str, int]]:
        if not ids:
            return {}
        rows = curs.execute(self.sql(SELECT_EXECUTIONS), (ids,), prepare=True).fetchall()
        return {row["execution_id"]: (row["tenant"], row["attempt"]) for row in rows}

    def save_executions(self, curs: Cursor[DictRow], changed: dict[UUID, tuple[str, int]]) -> None:
        if changed:
            curs.execute(self.sql(CREATE_EXECUTION_CHANGES))
            rows = ((execution_id, *state) for execution_id, state in changed.items())
            self.copy_rows(curs, "tool_call_executions_changes", EXECUTION_COLUMNS, rows)
            curs.execute(self.sql(UPSERT_EXECUTIONS), prepare=True)

    def insert_calls(self, curs: Cursor[DictRow], calls: list[ToolCall]) -> None:
        if calls:
            self.copy_rows(curs, "tool_calls", CALL_COLUMNS, (c.as_row() for c in calls))

    def finish_calls(self, curs: Cursor[DictRow], finished: dict[Key, LoggedEvent]) -> set[Key]:
        """Finish calls made in earlier pages; returns the keys it found."""
        if not finished:
            return set()
        rows = (
            (*key, e.event.outcome, e.event.result_summary, float(e.event.duration_seconds),
             e.event.timestamp, e.position)
            for key, e in finished.items()
        )  # fmt: skip
        curs.execute(self.sql(CREATE_FINISHED))
        self.copy_rows(curs, "tool_calls_finished", FINISHED_COLUMNS, rows)
        found = curs.execute(self.sql(FINISH), prepare=True).fetchall()
        return {(row["execution_id"], row["attempt"], row["call_id"]) for row in found}


class ToolCallsProjection(PageProjection[ToolCallsView]):
    name = "tool_calls"
    decoded: ClassVar[frozenset[str] | None] = frozenset(topic_of(cls) for cls in HANDLED)

    can_write_behind = True
    cache_size = 100_000

    def __init__(self, view: ToolCallsView) -> None:
        super().__init__(view)
        self.known: LRUCache[UUID, tuple[str, int]] = LRUCache(self.cache_size)
        self.calls: dict[Key, ToolCall] = {}
        """Calls made since the last save, finished in memory if they finish before it."""
        self.changed: dict[UUID, tuple[str, int]] = {}
        """Executions whose tenant and attempt changed since the last save."""

    def forget(self) -> None:
        self.known.clear()
        self.calls.clear()
        self.changed.clear()

    def apply(self, curs: Cursor[DictRow], events: list[LoggedEvent]) -> None:
        histories = by_execution(events)
        earlier = [i for i, history in histories.items() if not is_created(history[0])]
        executions = self._find(curs, earlier)
        changed, new = self.changed, self.calls
        finished_earlier: dict[Key, LoggedEvent] = {}
        for execution_id, history in histories.items():
            first = history[0]
            if is_created(first):
                tenant, attempt = first.event.tenant, 1
                changed[execution_id] = (tenant, attempt)
                history = history[1:]  # noqa: PLW2901 (the rest of it)
            elif execution_id in executions:
                tenant, attempt = executions[execution_id]
            else:
                raise BadEvent(
                    self.name, first.position, first.topic,
                    f"execution {execution_id} is unknown (its Created event is missing)",
                )  # fmt: skip
            for entry in history:
                event = entry.event
                if isinstance(event, Execution.PickedUp):
                    attempt = event.attempt
                    changed[execution_id] = (tenant, attempt)
                elif isinstance(event, Execution.ToolCalled):
                    call = ToolCall(
                        execution_id, attempt, event.call_id, tenant, event.tool,
                        event.arguments, event.timestamp, event.lease, entry.position,
                    )  # fmt: skip
                    new[call.key] = call
                elif (call_made := new.get((execution_id, attempt, event.call_id))) is not None:
                    call_made.finish(event, entry.position)
                else:
                    finished_earlier[(execution_id, attempt, event.call_id)] = entry
            executions[execution_id] = (tenant, attempt)
        found = self.view.finish_calls(curs, finished_earlier)
        for key, entry in finished_earlier.items():
            if key not in found:
                raise BadEvent(
                    self.name,
                    entry.position,
                    entry.topic,
                    f"tool call {key[2]!r} of execution {key[0]} (attempt {key[1]}) was never made",
                )
        self.known.update({i: executions[i] for i in histories})
        if not self.write_behind or len(new) + len(changed) >= self.hold_limit:
            self._save(curs)

    def _save(self, curs: Cursor[DictRow]) -> None:
        """Write the executions changed and the calls made since the last save: live,
        that is every page; in a rebuild's write-behind, a call made and finished in
        different pages is written once, finished, instead of inserted then updated."""
        self.view.save_executions(curs, self.changed)
        self.view.insert_calls(curs, list(self.calls.values()))
        self.changed = {}
        self.calls = {}

    def _find(self, curs: Cursor[DictRow], ids: list[UUID]) -> dict[UUID, tuple[str, int]]:
        """Each execution's tenant and attempt: held back, remembered, or read."""
        held = self.changed
        executions, missing = remembered(
            self.known, [i for i in ids if i not in held] if held else ids
        )
        if held:
            executions.update((i, state) for i in ids if (state := held.get(i)) is not None)
        executions.update(self.view.executions(curs, missing))
        return executions


SELECT_CALLS = """
SELECT execution_id, attempt, call_id, tool, arguments, outcome, result_summary,
    duration_seconds, called_at, finished_at
FROM tool_calls
WHERE tenant = %s AND execution_id = %s
ORDER BY attempt, called_position
"""


def tool_calls_of(
    datastore: PostgresDatastore, tenant: str, execution_id: UUID
) -> list[dict[str, Any]]:
    """An execution's tool calls, in the order they were made, attempt by attempt."""
    with datastore.get_connection() as conn:
        return list(conn.execute(SELECT_CALLS, (tenant, execution_id), prepare=True).fetchall())
