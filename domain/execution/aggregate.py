"""The Execution aggregate: one run of one agent (or team) on one prompt.

Commands are methods that check their guards first and only then trigger events,
so a refused command raises a named error and leaves the aggregate unchanged. The
events, with their explicit topics and how each changes the aggregate, are in
domain/execution/events.py; the guards in domain/execution/guards.py, typed answers'
checks in domain/execution/answers.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.execution import events
from domain.execution.answers import check_answer, check_answer_schema
from domain.execution.errors import InvalidTransition, UnknownToolCall
from domain.execution.guards import ExecutionGuards, check_request
from domain.execution.values import (
    LEASED,
    POLICY,
    SYSTEM,
    Actor,
    ExecutionType,
    FailureReason,
    InputKind,
    RetryPolicy,
    Status,
    ToolOutcome,
)

# The reason recorded when a run ends while blocked: the block ends with the run, on record.
ENDED_WHILE_BLOCKED = "ended_while_blocked"


class Execution(ExecutionGuards, Aggregate):
    TOPIC = f"{events.TOPIC}.Execution.v1"

    # Its events (domain/execution/events.py), named on the class as eventsourcing expects:
    # it registers each one's topic from here.
    Event = events.ExecutionEvent
    Created = events.Created
    PickedUp = events.PickedUp
    ToolCalled = events.ToolCalled
    ToolCallFinished = events.ToolCallFinished
    OutputAppended = events.OutputAppended
    ArtifactAdded = events.ArtifactAdded
    InputRequested = events.InputRequested
    InputProvided = events.InputProvided
    Blocked = events.Blocked
    Unblocked = events.Unblocked
    CancelRequested = events.CancelRequested
    Cancelled = events.Cancelled
    Completed = events.Completed
    Failed = events.Failed
    LeaseExpired = events.LeaseExpired
    UsageRecorded = events.UsageRecorded
    RetryScheduled = events.RetryScheduled

    def __init__(
        self, tenant: str, type: str, agent_id: str, team_id: str | None, worker_queue: str,
        prompt: str, parameters: dict[str, Any], priority: int, labels: dict[str, str],
        deadline: datetime | None, retry: dict[str, Any], timeout_seconds: float | None,
        heartbeat_timeout_seconds: float | None, parent_execution_id: UUID | None,
        created_by: dict[str, str], idempotency_key: str | None, traceparent: str | None = None,
        pipeline: dict[str, Any] | None = None, output_schema: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """What ``Created`` recorded (eventsourcing calls this with its fields), and the
        state every execution starts in."""
        self.tenant = tenant
        self.type = type
        self.agent_id = agent_id
        self.team_id = team_id
        self.worker_queue = worker_queue
        self.prompt = prompt
        self.parameters = parameters
        self.priority = priority
        self.labels = labels
        self.deadline = deadline
        self.retry_policy = RetryPolicy.from_dict(retry)
        self.timeout_seconds = timeout_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.parent_execution_id = parent_execution_id
        self.created_by = created_by
        self.idempotency_key = idempotency_key
        self.traceparent = traceparent
        self.pipeline = pipeline
        self.output_schema = output_schema
        self.status = Status.PENDING
        self.status_entered_at = self.created_on
        self.attempt = 1
        self.lease = 0
        self.claim_token: str | None = None
        self.worker_id: str | None = None  # the worker that holds it, or last held it
        self.lease_expired = False  # its worker was presumed lost (the lease is nobody's)
        self.picked_up_at: datetime | None = None
        self.not_before: datetime | None = None
        self.tool_calls: dict[str, ToolOutcome | None] = {}
        self.tool_calls_started: dict[str, datetime] = {}
        self.last_tool: str | None = None
        self.last_tool_call_id: str | None = None
        self.last_tool_outcome: str | None = None
        self.output_sequence = 0
        self.output_chars = 0
        self.artifacts: dict[str, str] = {}
        self.question: str | None = None
        self.pending_input: dict[str, Any] | None = None  # question, kind, answer schema
        self.answer: Any = None
        self.blocked: dict[str, Any] | None = None  # reason, by (actor), at (ISO time)
        self.cancel_requested = False
        self.result: Any = None
        self.completion_notes: str | None = None
        self.error: str | None = None
        self.failure_reason: FailureReason | None = None
        self.idempotency_keys: dict[str, str] = {}
        self.usage: dict[str, Any] = events.NO_USAGE
        self.usage_ids: set[str] = set()

    @classmethod
    def create(
        cls, execution_id: UUID, *, tenant: str, type: ExecutionType, agent_id: str,
        team_id: str | None, worker_queue: str, prompt: str, parameters: dict[str, Any],
        priority: int, labels: dict[str, str], deadline: datetime | None, retry: RetryPolicy,
        timeout_seconds: float | None, heartbeat_timeout_seconds: float | None,
        parent_execution_id: UUID | None, created_by: Actor, idempotency_key: str | None,
        traceparent: str | None = None,
        pipeline: dict[str, Any] | None = None, output_schema: dict[str, Any] | None = None,
    ) -> Execution:  # fmt: skip
        check_request(
            tenant=tenant, worker_queue=worker_queue, agent_id=agent_id, prompt=prompt,
            type=type, team_id=team_id, timeout_seconds=timeout_seconds,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        )  # fmt: skip
        return cls._create(
            cls.Created, id=execution_id, tenant=tenant, type=type.value, agent_id=agent_id,
            team_id=team_id, worker_queue=worker_queue, prompt=prompt, parameters=parameters,
            priority=priority, labels=labels, deadline=deadline, retry=retry.as_dict(),
            timeout_seconds=timeout_seconds, heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            parent_execution_id=parent_execution_id, created_by=created_by.as_dict(),
            idempotency_key=idempotency_key, traceparent=traceparent,
            pipeline=pipeline, output_schema=output_schema,
        )  # fmt: skip

    def enter(self, status: Status, at: datetime) -> None:
        """Move to ``status`` (events call this): the clock of a status starts when the
        execution enters it, not when something happens within it."""
        if status is not self.status:
            self.status = status
            self.status_entered_at = at

    def ended(self) -> None:
        """It reached a terminal status: no block and no question remain open."""
        self.blocked = None
        self.pending_input = None

    # -- worker reports -----------------------------------------------------------

    def pick_up(self, worker_id: str, claim_token: str) -> int:
        """Claim the execution for a worker; returns the new lease (fencing token)."""
        if self.status is Status.RUNNING and self.claim_token == claim_token:
            return self.lease  # the same claim, repeated: the first outcome stands
        self.check_status("pick up", Status.PENDING)
        self.trigger_event(
            self.PickedUp,
            worker_id=worker_id,
            attempt=self.attempt,
            lease=self.lease + 1,
            claim_token=claim_token,
        )
        return self.lease

    def record_tool_call(
        self, lease: int, call_id: str, tool: str, arguments: dict[str, Any]
    ) -> None:
        self.check_lease(lease, "record a tool call on")
        if call_id in self.tool_calls:
            return
        self.check_not_blocked("start a tool call on")
        self.check_status("record a tool call on", Status.RUNNING)
        self.trigger_event(
            self.ToolCalled, call_id=call_id, tool=tool, arguments=arguments, lease=lease
        )

    def finish_tool_call(
        self,
        lease: int,
        call_id: str,
        outcome: ToolOutcome,
        result_summary: str,
        duration_seconds: float,
    ) -> None:
        self.check_lease(lease, "finish a tool call on")
        if call_id not in self.tool_calls:
            raise UnknownToolCall(self.id, call_id)
        if self.tool_calls[call_id] is not None:
            return
        self.trigger_event(
            self.ToolCallFinished,
            call_id=call_id,
            outcome=outcome.value,
            result_summary=result_summary,
            duration_seconds=duration_seconds,
            lease=lease,
        )

    def append_output(self, lease: int, text: str, sequence: int) -> None:
        self.check_lease(lease, "append output to")
        if sequence <= self.output_sequence:
            return  # a chunk already recorded, delivered again
        self.trigger_event(self.OutputAppended, text=text, sequence=sequence, lease=lease)

    def add_artifact(
        self, lease: int, name: str, media_type: str, size: int, sha256: str, object_key: str
    ) -> None:
        self.check_lease(lease, "add an artifact to")
        if self.artifacts.get(name) == sha256:
            return
        self.trigger_event(
            self.ArtifactAdded,
            name=name,
            media_type=media_type,
            size=size,
            sha256=sha256,
            object_key=object_key,
            lease=lease,
        )

    def record_usage(
        self, lease: int, model: str, input_tokens: int, output_tokens: int,
        cost_usd: float | None, usage_id: str,
    ) -> None:  # fmt: skip
        self.check_lease(lease, "record usage on")
        if usage_id in self.usage_ids:
            return  # a report already recorded, delivered again (its values: RecordUsage)
        self.trigger_event(
            self.UsageRecorded, model=model, input_tokens=input_tokens,
            output_tokens=output_tokens, cost_usd=cost_usd, usage_id=usage_id, lease=lease,
        )  # fmt: skip

    def request_input(
        self, lease: int, question: str, kind: InputKind, answer_schema: dict[str, Any] | None
    ) -> None:
        self.check_lease(lease, "request input on")
        self.check_not_blocked("ask a question on")
        self.check_status("request input on", Status.RUNNING)
        check_answer_schema(answer_schema)
        self.trigger_event(
            self.InputRequested,
            question=question,
            kind=kind.value,
            answer_schema=answer_schema,
            lease=lease,
        )

    def complete(self, lease: int, result: Any, completion_notes: str | None) -> None:
        self.check_lease(lease, "complete")
        self.check_status("complete", Status.RUNNING, Status.BLOCKED)
        self.end_block_with_the_run()
        self.trigger_event(
            self.Completed,
            result=result,
            completion_notes=completion_notes,
            actor=self.worker_actor(),
            idempotency_key=None,
        )

    def fail(self, lease: int, error: str, reason: FailureReason) -> None:
        self.check_lease(lease, "fail")
        self.end_block_with_the_run()
        self.trigger_event(self.Failed, error=error, reason=reason.value, actor=self.worker_actor())
        self.retry_by_policy(reason)

    def worker_actor(self) -> dict[str, str]:
        return {"kind": "worker", "id": self.worker_id or ""}

    def end_block_with_the_run(self) -> None:
        """A run that ends while blocked (its tool was already running when the person
        blocked it) is recorded, never refused: the block ends with it, on record, so the
        result is kept and the execution is not left running with nobody running it."""
        if self.status is Status.BLOCKED:
            self.trigger_event(
                self.Unblocked, reason=ENDED_WHILE_BLOCKED, actor=self.worker_actor(),
                idempotency_key=None,
            )  # fmt: skip

    def confirm_cancel(self, lease: int) -> None:
        self.check_lease(lease, "confirm the cancellation of")
        if not self.cancel_requested:
            raise InvalidTransition(self.id, "not asked to cancel", "confirm the cancellation of")
        self.trigger_event(
            self.Cancelled, reason="stopped by worker", actor=self.worker_actor(),
            idempotency_key=None,
        )  # fmt: skip

    def expire_lease(self, lease: int) -> None:
        """The worker holding ``lease`` was lost: requeue, fail, or finish cancelling. A
        blocked execution stays blocked (a person's block outlives the worker): it is
        requeued or failed when the person unblocks it, never started behind their back."""
        self.check_lease(lease, "expire the lease of")
        self.trigger_event(self.LeaseExpired, lease=lease, worker_id=self.worker_id)
        if self.cancel_requested:
            self.trigger_event(
                self.Cancelled, reason="worker lost while cancelling",
                actor=SYSTEM.as_dict(), idempotency_key=None,
            )  # fmt: skip
        elif self.status is not Status.BLOCKED:
            self.requeue_after_lost_worker()

    def requeue_after_lost_worker(self) -> None:
        if self.retry_policy.allows_retry(self.attempt, FailureReason.WORKER_LOST):
            self.schedule_retry(POLICY, self.modified_on, idempotency_key=None)
        else:
            self.trigger_event(
                self.Failed, error=f"worker {self.worker_id or '?'} was lost",
                reason=FailureReason.WORKER_LOST.value, actor=SYSTEM.as_dict(),
            )  # fmt: skip

    def retry_by_policy(self, reason: FailureReason) -> None:
        if not self.cancel_requested and self.retry_policy.allows_retry(self.attempt, reason):
            self.schedule_retry(POLICY, self.modified_on, idempotency_key=None)

    def schedule_retry(self, actor: Actor, now: datetime, idempotency_key: str | None) -> None:
        delay = timedelta(seconds=self.retry_policy.delay_after(self.attempt))
        self.trigger_event(
            self.RetryScheduled,
            attempt=self.attempt + 1,
            not_before=now + delay if actor == POLICY else now,
            actor=actor.as_dict(),
            idempotency_key=idempotency_key,
        )

    # -- operator actions ---------------------------------------------------------

    def provide_input(self, answer: Any, actor: Actor, idempotency_key: str | None) -> None:
        if self.already_done(idempotency_key, "provide_input"):
            return
        self.check_status("answer", Status.REQUIRES_INPUT)
        schema = self.pending_input["schema"] if self.pending_input else None
        check_answer(self.id, answer, schema)
        self.trigger_event(
            self.InputProvided,
            answer=answer,
            actor=actor.as_dict(),
            idempotency_key=idempotency_key,
        )

    def block(self, reason: str, actor: Actor, idempotency_key: str | None) -> None:
        if self.already_done(idempotency_key, "block"):
            return
        self.check_status("block", Status.RUNNING)
        self.trigger_event(
            self.Blocked, reason=reason, actor=actor.as_dict(), idempotency_key=idempotency_key
        )

    def unblock(self, reason: str, actor: Actor, idempotency_key: str | None) -> None:
        if self.already_done(idempotency_key, "unblock"):
            return
        self.check_status("unblock", Status.BLOCKED)
        self.trigger_event(
            self.Unblocked, reason=reason, actor=actor.as_dict(), idempotency_key=idempotency_key
        )
        if self.lease_expired:  # its worker was lost while it was blocked
            self.requeue_after_lost_worker()

    def request_cancel(self, reason: str, actor: Actor, idempotency_key: str | None) -> None:
        """Pending work is cancelled at once; held work is asked to stop, and the
        worker confirms (or the lease expires)."""
        if self.already_done(idempotency_key, "cancel"):
            return
        if self.status is Status.PENDING or self.nobody_holds_it():  # cancelled at once
            self.trigger_event(
                self.Cancelled,
                reason=reason,
                actor=actor.as_dict(),
                idempotency_key=idempotency_key,
            )
            return
        self.check_status("cancel", *LEASED)
        if self.cancel_requested:
            return  # already asked; asking again changes nothing
        self.trigger_event(
            self.CancelRequested,
            reason=reason,
            actor=actor.as_dict(),
            idempotency_key=idempotency_key,
        )

    def retry(self, actor: Actor, idempotency_key: str | None) -> None:
        """A person retries a failed execution: a new attempt, whatever the policy says."""
        if self.already_done(idempotency_key, "retry"):
            return
        self.check_status("retry", Status.FAILED)
        self.schedule_retry(actor, self.modified_on, idempotency_key)

    def force_complete(
        self, actor: Actor, result: Any, completion_notes: str | None, idempotency_key: str | None
    ) -> None:
        """An operator closes work that began (bulk clean-up of stale executions)."""
        if self.already_done(idempotency_key, "complete"):
            return
        self.check_status("complete", *LEASED)
        self.close_open_tool_calls(f"not finished: the execution was completed by {actor.id}")
        self.trigger_event(
            self.Completed,
            result=result,
            completion_notes=completion_notes,
            actor=actor.as_dict(),
            idempotency_key=idempotency_key,
        )

    def close_open_tool_calls(self, summary: str) -> None:
        """End every tool call still open, as failed, so none stays running forever."""
        now = self.Event.create_timestamp()
        for call_id, outcome in list(self.tool_calls.items()):
            if outcome is None:
                started = self.tool_calls_started.get(call_id, now)
                self.trigger_event(
                    self.ToolCallFinished, call_id=call_id, outcome=ToolOutcome.FAILED.value,
                    result_summary=summary, lease=self.lease,
                    duration_seconds=max((now - started).total_seconds(), 0.0),
                )  # fmt: skip
