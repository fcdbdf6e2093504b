"""The conductor: a tracked consumer of the executions' log and the pipelines' log that
moves each pipeline on when one of its steps ends or the pipeline itself changes
(started, items added, cancelled), through the pure rules of domain/pipeline/.

Exactly one conductor is active per database: it holds a PostgreSQL advisory lock on its
own connection, as the relay does; when it dies the lock goes with its connection and a
waiting one takes over (it tries every second). Its positions in both logs are tracked in
``agentboard_conductor_tracking``; a conductor that starts (or takes over) first moves on
every pipeline that has not ended, then follows the logs from its positions. Replaying is
harmless: every step's execution is named by its step and created before the pipeline
records its dispatch, so a pass repeated after a crash creates nothing twice and skips
nothing (domain/pipeline/conduct.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import psycopg

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import DomainError, ExecutionNotFound
from domain.execution.values import Actor, ActorKind, FailureReason, RetryPolicy, Status
from domain.pipeline.application import PipelineService
from domain.pipeline.conduct import StepEnd, StepOrigin
from domain.pipeline.decide import StepRequest
from domain.pipeline.values import StepStatus
from projections.engine.listener import EVENTS_CHANNEL, PIPELINE_EVENTS_CHANNEL, Listener

log = logging.getLogger(__name__)

CONDUCTOR_LOCK = 0x61_62_63_64  # advisory lock id: one active conductor per database
TRACKING_TABLE = (
    "CREATE TABLE IF NOT EXISTS agentboard_conductor_tracking (id integer PRIMARY KEY "
    "CHECK (id = 1), executions bigint NOT NULL, pipelines bigint NOT NULL)"
)
SELECT_POSITIONS = "SELECT executions, pipelines FROM agentboard_conductor_tracking WHERE id = 1"
UPSERT_POSITIONS = (
    "INSERT INTO agentboard_conductor_tracking AS t (id, executions, pipelines) "
    "VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE SET "
    "executions = GREATEST(t.executions, EXCLUDED.executions), "
    "pipelines = GREATEST(t.pipelines, EXCLUDED.pipelines)"
)
STEP_ENDS = tuple(
    f"agentboard.execution.{name}.v1" for name in ("Completed", "Failed", "Cancelled")
)
PIPELINE_ENDS = tuple(
    f"agentboard.pipeline.{name}.v1" for name in ("Completed", "Failed", "Cancelled")
)
PAGE = 1000
POLL_SECONDS = 1.0  # LISTEN can go silent; the conductor reads at least this often
RETRY_BACKOFF_SECONDS = 1.0  # a step's execution waits this long before its next attempt
ALL_REASONS = tuple(FailureReason)  # a column's retries retry any failure, as in Smithers


class ExecutionSteps:
    """The conductor's port to the executions (domain/pipeline/conduct.py ``Steps``):
    each step an ordinary execution, created by the pipeline."""

    def __init__(self, service: ExecutionService) -> None:
        self.service = service

    def end_of(self, execution_id: UUID) -> StepEnd | None:
        try:
            state = self.service.state(execution_id)
        except ExecutionNotFound:
            return None
        if not Status(state.status).is_terminal:
            return None
        return StepEnd(StepStatus(state.status), state.result, state.error, state.attempt)

    def create(
        self,
        execution_id: UUID,
        idempotency_key: str,
        tenant: str,
        origin: StepOrigin,
        request: StepRequest,
    ) -> None:
        command = c.CreateExecution.new(
            tenant=tenant,
            agent_id=request.agent_id,
            worker_queue=request.worker_queue,
            prompt=request.prompt,
            created_by=Actor(ActorKind.PIPELINE, str(origin.pipeline_id)),
            idempotency_key=idempotency_key,
            parameters=request.parameters,
            labels=request.labels,
            retry=RetryPolicy(
                max_attempts=request.retries + 1,
                backoff_seconds=RETRY_BACKOFF_SECONDS,
                retry_on=ALL_REASONS,
            ),
            timeout_seconds=request.timeout_seconds,
            heartbeat_timeout_seconds=request.heartbeat_timeout_seconds,
            pipeline=origin.as_dict(),
            output_schema=request.output_schema,
        )
        if command.execution_id != execution_id:
            raise RuntimeError("a step's execution id must follow from its key")
        self.service.process_one(command)

    def cancel(self, execution_id: UUID, pipeline_id: UUID) -> None:
        command = c.RequestCancel(
            execution_id,
            reason="its pipeline ended",
            actor=Actor(ActorKind.PIPELINE, str(pipeline_id)),
            idempotency_key=f"pipeline-cancel:{pipeline_id}",
        )
        with contextlib.suppress(DomainError):  # it ended meanwhile: nothing left to stop
            self.service.process_one(command)


class Conductor:
    def __init__(
        self,
        executions: ExecutionService,
        pipelines: PipelineService,
        database_url: str,
        *,
        listener: Listener,
    ) -> None:
        self.executions = executions
        self.pipelines = pipelines
        self.steps = ExecutionSteps(executions)
        self.database_url = database_url
        self.listener = listener
        self.positions = (0, 0)  # executions' log, pipelines' log
        self.step_of: dict[UUID, UUID] = {}  # a running step's execution -> its pipeline
        self.active = False
        self.passes = 0

    async def run(self, stopping: asyncio.Event) -> None:
        """Conduct until ``stopping`` is set; wait for leadership first."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(TRACKING_TABLE)
            while not stopping.is_set():
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (CONDUCTOR_LOCK,))
                row = await cursor.fetchone()
                if row and row[0]:
                    break
                await _wait(stopping, 1.0)
            if stopping.is_set():
                return
            self.active = True
            log.info("conductor active")
            loop, stored = asyncio.get_running_loop(), asyncio.Event()
            unsubscribes = [
                self.listener.subscribe(channel, lambda _: loop.call_soon_threadsafe(stored.set))
                for channel in (EVENTS_CHANNEL, PIPELINE_EVENTS_CHANNEL)
            ]
            try:
                row = await (await conn.execute(SELECT_POSITIONS)).fetchone()
                self.positions = (int(row[0]), int(row[1])) if row else (0, 0)
                await asyncio.to_thread(self.resume)
                while not stopping.is_set():
                    stored.clear()  # before reading: a commit from now on wakes the wait
                    before = self.positions
                    await asyncio.to_thread(self.follow_once)
                    if self.positions != before:
                        await conn.execute(UPSERT_POSITIONS, self.positions)
                        continue
                    await _wait_for(stored, stopping, POLL_SECONDS)
            finally:
                for unsubscribe in unsubscribes:
                    unsubscribe()
                self.active = False

    def resume(self) -> None:
        """Move on every pipeline that has not ended (what a conductor that died left)."""
        for pipeline_id in self._unended():
            self.advance(pipeline_id)

    def follow_once(self) -> None:
        """Read both logs past their positions and move on each pipeline they touched."""
        touched: dict[UUID, None] = {}
        executions_at, pipelines_at = self.positions
        top = self.pipelines.recorder.max_notification_id() or 0
        if top > pipelines_at:
            for notification in self.pipelines.recorder.select_notifications(
                pipelines_at + 1, top - pipelines_at, stop=top
            ):
                touched[UUID(str(notification.originator_id))] = None
            pipelines_at = top
        top = self.executions.recorder.max_notification_id() or 0
        if top > executions_at:
            ends = self.executions.recorder.select_notifications(
                executions_at + 1, max(top - executions_at, 1), stop=top, topics=STEP_ENDS
            )
            for notification in ends:
                pipeline_id = self.step_of.get(UUID(str(notification.originator_id)))
                if pipeline_id is not None:
                    touched[pipeline_id] = None
            executions_at = top
        for pipeline_id in touched:
            self.advance(pipeline_id)
        self.positions = (executions_at, pipelines_at)

    def advance(self, pipeline_id: UUID) -> None:
        pipeline = self.pipelines.advance(pipeline_id, self.steps)
        self.passes += 1
        for step in pipeline.steps.values():
            if step.status.ended:
                self.step_of.pop(step.execution_id, None)
            else:
                self.step_of[step.execution_id] = pipeline_id
        if pipeline.summary_execution_id is not None:
            if pipeline.status.is_terminal:
                self.step_of.pop(pipeline.summary_execution_id, None)
            else:
                self.step_of[pipeline.summary_execution_id] = pipeline_id

    def _unended(self) -> list[UUID]:
        started: dict[UUID, None] = {}
        position = 0
        while True:
            page = self.pipelines.recorder.select_notifications(position + 1, PAGE)
            if not page:
                return list(started)
            for notification in page:
                if notification.topic in PIPELINE_ENDS:
                    started.pop(UUID(str(notification.originator_id)), None)
                elif notification.topic.endswith(".Started.v1"):
                    started[UUID(str(notification.originator_id))] = None
            position = page[-1].id


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return


async def _wait_for(stored: asyncio.Event, stopping: asyncio.Event, seconds: float) -> Any:
    waits = {asyncio.create_task(stored.wait()), asyncio.create_task(stopping.wait())}
    _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
