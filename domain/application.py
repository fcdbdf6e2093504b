"""The command side: the one way in. Every command, from the API or a worker's report,
is a ``domain.execution.commands`` object handed to ``process``.

``process`` applies a batch of commands to their executions (in order, on one
instance when two touch the same execution), each by its handler
(domain/execution/handlers.py), and saves every resulting event in one transaction. A
caller's bad command fails only that caller. If another process wrote to one of the
executions meanwhile (a version conflict), the batch falls back to reload-and-retry,
command by command; and a command refused on a cached execution is tried again on the
stored one when that is newer (another process wrote it: a refusal from a stale copy, with
no events to conflict, would otherwise stand).

Who forms the batches is not decided here: ``infra.writer.GroupCommitWriter`` hands
``process`` whatever commands are waiting at that moment; ``process_one`` makes one
command a batch of its own. Nor is the cache of executions: the composition root gives
the writer's service a bounded one (cachetools' ``LRUCache``); without it every command
loads its execution from the store.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import MutableMapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import Environment

from domain.execution import commands as c
from domain.execution.aggregate import Execution
from domain.execution.errors import (
    DomainError,
    ExecutionNotFound,
    IdempotencyKeyReused,
    InvalidCommand,
)
from domain.execution.handlers import HANDLERS
from domain.execution.state import CommandResult, ExecutionState, snapshot

Outcome = CommandResult | BaseException
CONFLICT_RETRIES = 20


class CorruptedAggregate(RuntimeError):
    """A handler raised after it had already changed its execution (a bug, not a refusal)."""


class ExecutionService(Application[UUID]):
    name = "agentboard"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        cache: MutableMapping[UUID, Execution] | None = None,
    ) -> None:
        """``cache``: executions as the last commit left them, kept between commands (a
        bounded map whose reads mark what is recently used); None: load each from the store."""
        super().__init__(env)
        self._cache = cache
        self._lock = threading.Lock()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Configuration comes only from the composition root, never from os.environ."""
        return Environment(name, dict(env or {}))

    # -- processing -----------------------------------------------------------------

    def process_one(self, command: c.Command) -> CommandResult:
        """One command as a batch of its own (where no writer forms batches: tests, tools)."""
        [outcome] = self.process([command])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def process(self, commands: Sequence[c.Command]) -> list[Outcome]:
        """Apply the commands in order and store all their events in one transaction."""
        with self._lock:
            try:
                return self._process_together(commands)
            except (IntegrityError, CorruptedAggregate):
                return [self._process_alone(command) for command in commands]

    def _process_together(self, commands: Sequence[c.Command]) -> list[Outcome]:
        touched: dict[UUID, Execution] = {}
        staged: list[tuple[list[DomainEventProtocol[UUID]], dict[str, Any]] | DomainError] = []
        try:
            for command in commands:
                try:
                    execution, new_events = self._apply(command, touched)
                except DomainError as error:
                    staged.append(error)
                    continue
                touched[execution.id] = execution
                staged.append((new_events, snapshot(execution)))
            recordings = self._save(touched)
        except BaseException:
            # The cached executions may hold changes that were never stored.
            self._evict(touched)
            raise
        self._remember(touched)
        positions = {id(r.domain_event): r.notification.id for r in recordings}
        outcomes: list[Outcome] = []
        for entry in staged:
            if isinstance(entry, DomainError):
                outcomes.append(entry)
                continue
            new_events, state = entry
            position = positions.get(id(new_events[-1])) if new_events else None
            outcomes.append(CommandResult(state, position, len(new_events)))
        return outcomes

    def _save(self, executions: dict[UUID, Execution]) -> list[Recording[UUID]]:
        # Application.save would check each event against runtime protocols, which costs
        # more than encoding it; these are our own aggregates, so collect them directly.
        events = [
            event for execution in executions.values() for event in execution.collect_events()
        ]
        return self.events.put(events) if events else []

    def _process_alone(self, command: c.Command) -> Outcome:
        for attempt in range(CONFLICT_RETRIES):
            self._evict({command.execution_id: None})
            try:
                return self._process_together([command])[0]
            except IntegrityError:
                # another process won the race: back off a little, with jitter, and retry
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
            except Exception as error:
                return error
        return IntegrityError(f"execution {command.execution_id} kept changing under us")

    def _apply(
        self, command: c.Command, touched: dict[UUID, Execution]
    ) -> tuple[Execution, list[DomainEventProtocol[UUID]]]:
        if isinstance(command, c.CreateExecution):
            return self._create(command, touched)
        cached = command.execution_id not in touched and self._cache is not None
        execution = touched.get(command.execution_id) or self._load(command.execution_id)
        if isinstance(command, c.Within):
            command.check(execution.tenant, execution.worker_queue)
            command = command.command
        touched[execution.id] = execution  # from here on it may change: evict it on failure
        try:
            return execution, self._handle(execution, command)
        except DomainError:
            if not cached:
                raise
            # Another process (the conductor, another API) may have written since this copy
            # was cached: a refusal is decided on the stored execution, never a stale copy.
            stored = self._load_stored(execution.id)
            if stored.version == execution.version:
                raise
            touched[execution.id] = stored
            return stored, self._handle(stored, command)

    def _handle(self, execution: Execution, command: c.Command) -> list[DomainEventProtocol[UUID]]:
        already_pending = len(execution.pending_events)
        version = execution.version
        try:
            HANDLERS[type(command)](execution, command)
        except DomainError:
            if execution.version != version:
                raise CorruptedAggregate(f"{type(command).__name__} half-applied") from None
            raise
        except Exception as error:
            raise CorruptedAggregate(f"{type(command).__name__} raised {error!r}") from error
        return list(execution.pending_events[already_pending:])

    def _create(
        self, command: c.CreateExecution, touched: dict[UUID, Execution]
    ) -> tuple[Execution, list[DomainEventProtocol[UUID]]]:
        if command.idempotency_key is not None:
            existing = touched.get(command.execution_id) or self._find(command.execution_id)
            if existing is not None:
                if not _same_request(existing, command):
                    raise IdempotencyKeyReused(command.idempotency_key)
                return existing, []
        if command.parent_execution_id is not None:
            self._check_parent(command.parent_execution_id, command.tenant, touched)
        execution = Execution.create(
            command.execution_id,
            tenant=command.tenant,
            type=command.type,
            agent_id=command.agent_id,
            team_id=command.team_id,
            worker_queue=command.worker_queue,
            prompt=command.prompt,
            parameters=command.parameters,
            priority=command.priority,
            labels=command.labels,
            deadline=command.deadline,
            retry=command.retry,
            timeout_seconds=command.timeout_seconds,
            heartbeat_timeout_seconds=command.heartbeat_timeout_seconds,
            parent_execution_id=command.parent_execution_id,
            created_by=command.created_by,
            idempotency_key=command.idempotency_key,
            traceparent=command.traceparent,
            pipeline=command.pipeline,
            output_schema=command.output_schema,
        )
        return execution, list(execution.pending_events)

    def _check_parent(self, parent_id: UUID, tenant: str, touched: dict[UUID, Execution]) -> None:
        """A sub-task names an execution of its own tenant as its parent."""
        parent = touched.get(parent_id) or self._find(parent_id)
        if parent is None or parent.tenant != tenant:
            raise InvalidCommand(
                f"parent_execution_id {parent_id} names no execution: give the id of an "
                "existing execution of this tenant, or leave parent_execution_id out"
            )

    # -- the writer's cache of executions -------------------------------------------

    def _find(self, execution_id: UUID) -> Execution | None:
        try:
            return self._load(execution_id)
        except ExecutionNotFound:
            return None

    def _load(self, execution_id: UUID) -> Execution:
        cached = self._cache.get(execution_id) if self._cache is not None else None
        if cached is not None:
            return cached
        try:
            execution: Execution = self.repository.get(execution_id)
        except AggregateNotFoundError:
            raise ExecutionNotFound(execution_id) from None
        return execution

    def _load_stored(self, execution_id: UUID) -> Execution:
        try:
            execution: Execution = self.repository.get(execution_id)
        except AggregateNotFoundError:
            raise ExecutionNotFound(execution_id) from None
        return execution

    def _remember(self, executions: dict[UUID, Execution]) -> None:
        if self._cache is not None:
            self._cache.update(executions)

    def _evict(self, executions: dict[UUID, Any]) -> None:
        if self._cache is not None:
            for execution_id in executions:
                self._cache.pop(execution_id, None)

    # -- queries from the store -------------------------------------------------------

    def state(self, execution_id: UUID) -> ExecutionState:
        try:
            return ExecutionState.of(self.repository.get(execution_id))
        except AggregateNotFoundError:
            raise ExecutionNotFound(execution_id) from None

    def timeline(self, execution_id: UUID) -> list[DomainEventProtocol[UUID]]:
        events = list(self.events.get(execution_id))
        if not events:
            raise ExecutionNotFound(execution_id)
        return events


def _same_request(execution: Execution, command: c.CreateExecution) -> bool:
    return (
        execution.tenant == command.tenant
        and execution.agent_id == command.agent_id
        and execution.worker_queue == command.worker_queue
        and execution.prompt == command.prompt
        and execution.parameters == command.parameters
        and execution.type == command.type.value
        and execution.team_id == command.team_id
        and execution.priority == command.priority
        and execution.labels == command.labels
        and execution.deadline == command.deadline
        and execution.retry_policy == command.retry
        and execution.timeout_seconds == command.timeout_seconds
        and execution.heartbeat_timeout_seconds == command.heartbeat_timeout_seconds
        and execution.parent_execution_id == command.parent_execution_id
        and execution.created_by == command.created_by.as_dict()
    )
