"""The command side: one intention-named method per command, committed by group commit.

``process`` applies a batch of commands to their executions (in order, on one
instance when two touch the same execution) and saves every resulting event in one
transaction. A caller's bad command fails only that caller. If another process wrote
to one of the executions meanwhile (a version conflict), the batch falls back to
reload-and-retry, command by command.

Who forms the batches is not decided here: by default each call is its own batch;
``infra.writer.GroupCommitWriter`` installs itself as ``send`` and batches whatever
callers are waiting at that moment.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

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
from domain.execution.state import CommandResult, ExecutionState, idempotent_execution_id, snapshot
from domain.execution.values import Actor, InputKind

Outcome = CommandResult | BaseException
CONFLICT_RETRIES = 20


class CorruptedAggregate(RuntimeError):
    """A handler raised after it had already changed its execution (a bug, not a refusal)."""


class ExecutionService(Application[UUID]):
    name = "agentboard"

    def __init__(self, env: dict[str, str] | None = None, *, cache_size: int = 20_000) -> None:
        super().__init__(env)
        self._cache: OrderedDict[UUID, Execution] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.send: Callable[[c.Command], CommandResult] = self.process_one

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Configuration comes only from the composition root, never from os.environ."""
        return Environment(name, dict(env or {}))

    # -- processing -----------------------------------------------------------------

    def process_one(self, command: c.Command) -> CommandResult:
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
        execution = touched.get(command.execution_id) or self._load(command.execution_id)
        if isinstance(command, c.Within):
            command.check(execution.tenant, execution.worker_queue)
            command = command.command
        touched[execution.id] = execution  # from here on it may change: evict it on failure
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
        return execution, list(execution.pending_events[already_pending:])

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
        cached = self._cache.get(execution_id)
        if cached is not None:
            self._cache.move_to_end(execution_id)
            return cached
        try:
            execution: Execution = self.repository.get(execution_id)
        except AggregateNotFoundError:
            raise ExecutionNotFound(execution_id) from None
        return execution

    def _remember(self, executions: dict[UUID, Execution]) -> None:
        for execution_id, execution in executions.items():
            self._cache[execution_id] = execution
            self._cache.move_to_end(execution_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _evict(self, executions: dict[UUID, Any]) -> None:
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

    # -- intention-named commands -------------------------------------------------------

    def create(
        self,
        *,
        tenant: str,
        agent_id: str,
        worker_queue: str,
        prompt: str,
        created_by: Actor,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> CommandResult:
        execution_id = (
            idempotent_execution_id(tenant, idempotency_key) if idempotency_key else uuid4()
        )
        return self.send(
            c.CreateExecution(
                execution_id,
                tenant=tenant,
                agent_id=agent_id,
                worker_queue=worker_queue,
                prompt=prompt,
                created_by=created_by,
                idempotency_key=idempotency_key,
                **options,
            )
        )

    def pick_up(self, execution_id: UUID, worker_id: str, claim_token: str) -> CommandResult:
        return self.send(c.PickUp(execution_id, worker_id, claim_token))

    def record_tool_call(
        self, execution_id: UUID, lease: int, call_id: str, tool: str, arguments: dict[str, Any]
    ) -> CommandResult:
        return self.send(c.RecordToolCall(execution_id, lease, call_id, tool, arguments))

    def finish_tool_call(
        self, execution_id: UUID, lease: int, call_id: str, outcome: Any, **details: Any
    ) -> CommandResult:
        return self.send(c.FinishToolCall(execution_id, lease, call_id, outcome, **details))

    def append_output(
        self, execution_id: UUID, lease: int, text: str, sequence: int
    ) -> CommandResult:
        return self.send(c.AppendOutput(execution_id, lease, text, sequence))

    def add_artifact(self, execution_id: UUID, lease: int, **artifact: Any) -> CommandResult:
        return self.send(c.AddArtifact(execution_id, lease, **artifact))

    def request_input(
        self,
        execution_id: UUID,
        lease: int,
        question: str,
        kind: InputKind = InputKind.CLARIFICATION,
        answer_schema: dict[str, Any] | None = None,
    ) -> CommandResult:
        return self.send(c.RequestInput(execution_id, lease, question, kind, answer_schema))

    def provide_input(
        self, execution_id: UUID, answer: Any, actor: Actor, idempotency_key: str | None = None
    ) -> CommandResult:
        return self.send(c.ProvideInput(execution_id, answer, actor, idempotency_key))

    def block(
        self, execution_id: UUID, reason: str, actor: Actor, idempotency_key: str | None = None
    ) -> CommandResult:
        return self.send(c.Block(execution_id, reason, actor, idempotency_key))

    def unblock(
        self, execution_id: UUID, reason: str, actor: Actor, idempotency_key: str | None = None
    ) -> CommandResult:
        return self.send(c.Unblock(execution_id, reason, actor, idempotency_key))

    def request_cancel(
        self, execution_id: UUID, reason: str, actor: Actor, idempotency_key: str | None = None
    ) -> CommandResult:
        return self.send(c.RequestCancel(execution_id, reason, actor, idempotency_key))

    def confirm_cancel(self, execution_id: UUID, lease: int) -> CommandResult:
        return self.send(c.ConfirmCancel(execution_id, lease))

    def complete(
        self, execution_id: UUID, lease: int, result: Any = None, notes: str | None = None
    ) -> CommandResult:
        return self.send(c.Complete(execution_id, lease, result, notes))

    def force_complete(
        self, execution_id: UUID, actor: Actor, notes: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:  # fmt: skip
        return self.send(c.ForceComplete(execution_id, actor, None, notes, idempotency_key))

    def fail(self, execution_id: UUID, lease: int, error: str, reason: Any) -> CommandResult:
        return self.send(c.Fail(execution_id, lease, error, reason))

    def expire_lease(self, execution_id: UUID, lease: int) -> CommandResult:
        return self.send(c.ExpireLease(execution_id, lease))

    def retry(
        self, execution_id: UUID, actor: Actor, idempotency_key: str | None = None
    ) -> CommandResult:
        return self.send(c.Retry(execution_id, actor, idempotency_key))


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
