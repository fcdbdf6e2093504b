"""The pipelines view: one row per pipeline (its status, iteration, and each column's
items with their step's status, execution, attempt and output), folded from the
pipelines' own log (domain/pipeline/events.py) by a tracked runner.

Each page of events is applied in one transaction with the view's tracking record, read
under a row lock (``FOR UPDATE``), so a page lands exactly once whoever else runs it; a
restart resumes from the tracked position. The row keeps the folded state (``state``);
``render`` gives the API's shape of it (DESIGN §12: ``columns [{name, counts, items}]``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.pipeline.application import PipelineService
from projections.engine.listener import PIPELINE_EVENTS_CHANNEL, Listener

TABLES = (
    "CREATE TABLE IF NOT EXISTS agentboard_pipelines (id uuid PRIMARY KEY, tenant text NOT "
    "NULL, name text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL, "
    "updated_at timestamptz NOT NULL, position bigint NOT NULL, state jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS agentboard_pipelines_by_tenant "
    "ON agentboard_pipelines (tenant, created_at DESC, id DESC)",
    "CREATE TABLE IF NOT EXISTS agentboard_pipelines_tracking "
    "(id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL)",
    "INSERT INTO agentboard_pipelines_tracking (id, position) VALUES (1, 0) "
    "ON CONFLICT (id) DO NOTHING",
)
SELECT_TRACKING = "SELECT position FROM agentboard_pipelines_tracking WHERE id = 1 FOR UPDATE"
UPDATE_TRACKING = "UPDATE agentboard_pipelines_tracking SET position = %s WHERE id = 1"
SELECT_STATES = "SELECT id, state FROM agentboard_pipelines WHERE id = ANY(%s)"
UPSERT = (
    "INSERT INTO agentboard_pipelines (id, tenant, name, status, created_at, updated_at, "
    "position, state) VALUES (%(id)s, %(tenant)s, %(name)s, %(status)s, %(created_at)s, "
    "%(updated_at)s, %(position)s, %(state)s) ON CONFLICT (id) DO UPDATE SET "
    "status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, "
    "position = EXCLUDED.position, state = EXCLUDED.state"
)
SELECT_ONE = "SELECT state, position FROM agentboard_pipelines WHERE id = %s AND tenant = %s"
PAGE = 500
NOT_REACHED = {"iteration": None, "execution_id": None, "attempt": 0, "output": None,
               "error": None}  # fmt: skip
POLL_SECONDS = 1.0


# -- folding (pure) ----------------------------------------------------------------------


def fold(state: dict[str, Any] | None, name: str, event: Any) -> dict[str, Any]:
    """``state`` after ``event`` (``name`` its class name); None before ``Started``."""
    at = event.timestamp.isoformat()
    if state is None:
        spec = event.spec
        return {
            "id": str(event.originator_id),
            "tenant": event.tenant,
            "name": spec["name"],
            "status": "pending",
            "iteration": 1,
            "flow": spec["flow"],
            "columns": [column["name"] for column in spec["columns"]],
            "items": [str(item["id"]) for item in spec["items"]],
            "steps": {},
            "summary": None,
            "summary_execution_id": None,
            "reason": None,
            "error": None,
            "created_by": event.created_by,
            "created_at": at,
            "updated_at": at,
            "spec": spec,
        }
    state["updated_at"] = at
    fold_change(state, name, event)
    return state


FOLDED = frozenset({
    "Started", "ItemsAdded", "StepDispatched", "StepEnded", "IterationEnded",
    "SummaryDispatched", "Completed", "Failed", "Cancelled",
})  # fmt: skip
IGNORED = frozenset({"UntilHeld"})
"""Events that change nothing the view shows (a test checks that these two name them all)."""


def fold_change(state: dict[str, Any], name: str, event: Any) -> None:
    if name == "ItemsAdded":
        state["items"].extend(str(item["id"]) for item in event.items)
    elif name == "StepDispatched":
        state["status"] = "running"
        state["steps"][f"{event.column}/{event.item_id}"] = {
            "iteration": event.iteration,
            "status": "running",
            "execution_id": str(event.execution_id),
            "attempt": 1,
            "output": None,
            "error": None,
        }
    elif name == "StepEnded":
        step = state["steps"].get(f"{event.column}/{event.item_id}")
        if step is not None and step["iteration"] == event.iteration:
            step.update(
                status=event.status, output=event.output, error=event.error, attempt=event.attempt
            )
    elif name == "IterationEnded":
        state["iteration"] = event.iteration + 1
    elif name == "SummaryDispatched":
        state["summary_execution_id"] = str(event.execution_id)
    elif name == "Completed":
        state.update(status="completed", summary=event.summary, reason=event.reason)
    elif name == "Failed":
        state.update(status="failed", reason=event.reason, error=event.error)
    elif name == "Cancelled":
        state.update(status="cancelled", reason=event.reason)


def render(state: dict[str, Any], position: int) -> dict[str, Any]:
    """The API's shape of a pipeline: its columns, each with counts and every item's step
    in the latest iteration it reached that column (``waiting`` before it did, ``skipped``
    if the pipeline ended first)."""
    ended = state["status"] in ("completed", "failed", "cancelled")
    columns = []
    for column in state["columns"]:
        items = []
        for item_id in state["items"]:
            step = state["steps"].get(f"{column}/{item_id}")
            if step is None:
                step = {**NOT_REACHED, "status": "skipped" if ended else "waiting"}
            items.append({"item_id": item_id, **step})
        counts: dict[str, int] = {}
        for item in items:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        columns.append({"name": column, "counts": counts, "items": items})
    shown = {k: v for k, v in state.items() if k not in ("steps", "columns", "items", "spec")}
    return {**shown, "items": state["items"], "columns": columns, "spec": state["spec"],
            "position": position}  # fmt: skip


# -- the runner ---------------------------------------------------------------------------


class PipelinesView:
    def __init__(self, pipelines: PipelineService, database_url: str, *, listener: Listener):
        self.pipelines = pipelines
        self.database_url = database_url
        self.listener = listener
        self.position = 0

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.to_thread(create_tables, self.database_url)
        loop, stored = asyncio.get_running_loop(), asyncio.Event()
        unsubscribe = self.listener.subscribe(
            PIPELINE_EVENTS_CHANNEL, lambda _: loop.call_soon_threadsafe(stored.set)
        )
        try:
            while not stopping.is_set():
                stored.clear()
                if await asyncio.to_thread(self.apply_page):
                    continue
                waits = {asyncio.create_task(stored.wait()), asyncio.create_task(stopping.wait())}
                _, pending = await asyncio.wait(
                    waits, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
        finally:
            unsubscribe()

    def apply_page(self) -> int:
        """Fold the next page into the view, with its tracking, in one transaction."""
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            row = conn.execute(SELECT_TRACKING).fetchone()
            position = int(row[0]) if row else 0
            page = self.pipelines.recorder.select_notifications(position + 1, PAGE)
            if not page:
                self.position = position
                return 0
            ids = list({n.originator_id for n in page})
            states = {UUID(str(r[0])): r[1] for r in conn.execute(SELECT_STATES, (ids,)).fetchall()}
            last: dict[UUID, int] = {}
            for notification in page:
                event = self.pipelines.mapper.to_domain_event(notification)
                pipeline_id = event.originator_id
                states[pipeline_id] = fold(states.get(pipeline_id), type(event).__name__, event)
                last[pipeline_id] = notification.id
            for pipeline_id, position_of in last.items():
                state = states[pipeline_id]
                conn.execute(UPSERT, _row(pipeline_id, state, position_of))
            conn.execute(UPDATE_TRACKING, (page[-1].id,))
        self.position = page[-1].id
        return len(page)


def _row(pipeline_id: UUID, state: dict[str, Any], position: int) -> dict[str, Any]:
    return {
        "id": pipeline_id,
        "tenant": state["tenant"],
        "name": state["name"],
        "status": state["status"],
        "created_at": datetime.fromisoformat(state["created_at"]),
        "updated_at": datetime.fromisoformat(state["updated_at"]),
        "position": position,
        "state": Jsonb(state, dumps=_dumps),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def create_tables(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (0x61_62_70_76,))
        try:
            for statement in TABLES:
                conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (0x61_62_70_76,))


# -- queries -------------------------------------------------------------------------------


def get_pipeline(database_url: str, tenant: str, pipeline_id: UUID) -> dict[str, Any] | None:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute(SELECT_ONE, (pipeline_id, tenant)).fetchone()
    return None if row is None else render(row["state"], row["position"])


def list_pipelines(
    database_url: str,
    tenant: str,
    *,
    status: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """The newest first; ``cursor`` (created_at, id) of the last one of the page before."""
    where, params = ["tenant = %(tenant)s"], {"tenant": tenant, "limit": limit}
    if status is not None:
        where.append("status = %(status)s")
        params["status"] = status
    if name is not None:
        where.append("name = %(name)s")
        params["name"] = name
    if cursor is not None:
        where.append("(created_at, id) < (%(at)s, %(after)s)")
        params.update(at=cursor[0], after=cursor[1])
    query = (
        "SELECT state, position FROM agentboard_pipelines WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    )
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(query, params).fetchall()
    return [render(row["state"], row["position"]) for row in rows]


def view_position(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT position FROM agentboard_pipelines_tracking WHERE id = 1")
        found = row.fetchone()
    return int(found[0]) if found else 0
