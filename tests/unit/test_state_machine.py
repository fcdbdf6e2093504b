"""Random command sequences against executions, checked against DESIGN §2 after every step.

The machine sends what workers, people and the lease sweeper might send, in any order,
with the current lease or a stale one, and checks what a user relies on: the status is
always one of the seven, every status change in the stored log follows an edge of the
diagram, a refused command raises a named domain error and leaves the log as it was,
and replaying the log gives back the execution the commands produced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from cachetools import LRUCache
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.aggregate import Execution
from domain.execution.errors import DomainError, InvalidTransition, LeaseLost
from domain.execution.state import CommandResult, ExecutionState
from domain.execution.values import (
    Actor,
    ActorKind,
    FailureReason,
    InputKind,
    RetryPolicy,
    Status,
    ToolOutcome,
)

PENDING, RUNNING, REQUIRES_INPUT, BLOCKED = (
    Status.PENDING,
    Status.RUNNING,
    Status.REQUIRES_INPUT,
    Status.BLOCKED,
)
COMPLETED, FAILED, CANCELLED = Status.COMPLETED, Status.FAILED, Status.CANCELLED
HELD = (RUNNING, REQUIRES_INPUT, BLOCKED)

# The diagram of DESIGN §2, edge by edge.
ALLOWED_EDGES = {
    (PENDING, RUNNING),  # PickedUp
    (PENDING, CANCELLED),  # cancelled before anyone picked it up
    (RUNNING, COMPLETED),
    (RUNNING, REQUIRES_INPUT),  # InputRequested
    (REQUIRES_INPUT, RUNNING),  # InputProvided
    (RUNNING, BLOCKED),  # Blocked
    (BLOCKED, RUNNING),  # Unblocked
    (FAILED, PENDING),  # RetryScheduled
    *((held, CANCELLED) for held in HELD),  # after CancelRequested, or lost while cancelling
    *((held, PENDING) for held in HELD),  # LeaseExpired, requeued while attempts remain
    *((held, FAILED) for held in HELD),  # Failed, or LeaseExpired on the last attempt
}
FINAL = {"Completed", "Cancelled"}

ALICE = Actor(ActorKind.USER, "alice")
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

# Commands are drawn addressed to nobody and sent to the current execution with its lease.
NOBODY = UUID(int=0)
call_ids = st.sampled_from(["call-1", "call-2"])
keys = st.sampled_from([None, None, None, "key-1", "key-2"])


def a_report(command: type[c.Command], *fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(command, st.just(NOBODY), st.just(0), *fields)


def an_action(command: type[c.Command], *fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(command, st.just(NOBODY), *fields, st.just(ALICE), keys)


worker_reports = st.one_of(
    a_report(c.RecordToolCall, call_ids, st.just("bash")),
    a_report(c.FinishToolCall, call_ids, st.sampled_from(ToolOutcome)),
    a_report(c.AppendOutput, st.just("text"), st.integers(min_value=1, max_value=4)),
    a_report(c.AddArtifact, *map(st.just, ("a.txt", "text/plain", 1, "cc" * 32, "k/a"))),
    a_report(c.RequestInput, st.just("Which branch?"), st.sampled_from(InputKind)),
    a_report(c.Complete, st.just("done")),
    a_report(c.Fail, st.just("boom"), st.sampled_from(FailureReason)),
    a_report(c.ConfirmCancel),
    a_report(c.ExpireLease),
)
people_actions = st.one_of(
    an_action(c.ProvideInput, st.just("main")),
    an_action(c.Block, st.just("waiting for CI")),
    an_action(c.Unblock, st.just("CI is green")),
    an_action(c.RequestCancel, st.just("not needed")),
    an_action(c.Retry),
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(min_value=1, max_value=3),
    backoff_seconds=st.just(0.0),
    retry_on=st.sets(st.sampled_from(FailureReason)).map(tuple),
)


def replayed(events: Sequence[Any]) -> Iterator[tuple[Any, ExecutionState | None, Execution]]:
    """Each stored event with the execution just before it and just after it."""
    execution: Execution | None = None
    for event in events:
        before = None if execution is None else ExecutionState.of(execution)
        execution = event.mutate(execution)
        assert execution is not None
        yield event, before, execution


def check_edges(events: Sequence[Any]) -> None:
    previous = ""
    lost = False  # its worker was lost (while blocked, it waits for a person to move it on)
    for event, before, after in replayed(events):
        name = type(event).__name__
        assert previous not in FINAL, f"{name} recorded after the execution ended"
        previous, cause = name, previous
        lost = (lost or name == "LeaseExpired") and name != "PickedUp"
        if before is None or before.status == after.status.value:
            continue
        edge = (Status(before.status), after.status)
        assert edge in ALLOWED_EDGES, f"{name} moved {edge[0]} -> {edge[1]}"
        if edge[0] in HELD and edge[1] is CANCELLED:
            assert before.cancel_requested or lost, "held work cancelled without a request"
        if edge[0] in HELD and edge[1] is PENDING:
            requeued_by = ("LeaseExpired", "Unblocked") if lost else ("LeaseExpired",)
            assert cause in requeued_by, f"held work requeued after {cause}"


def is_held(machine: ExecutionLifecycle) -> bool:
    return machine.status in HELD


def has_ended(machine: ExecutionLifecycle) -> bool:
    return machine.status in {COMPLETED, CANCELLED}


class ExecutionLifecycle(RuleBasedStateMachine):
    """Commands go to the newest execution; once it has ended a new one may be created,
    so a run that cancels early still goes on exploring.

    A worker's reports carry the current lease only while a worker holds the execution;
    reports with any other lease, or after the work was let go, have rules of their own
    that expect a refusal.
    """

    def __init__(self) -> None:
        super().__init__()
        self.service = ExecutionService(env=POPO, cache=LRUCache(20_000))
        self.produced: dict[UUID, ExecutionState] = {}
        self.pickups: dict[UUID, int] = {}

    @initialize(policy=policies)
    def create_first(self, policy: RetryPolicy) -> None:
        self.create(policy)

    @precondition(has_ended)
    @rule(policy=policies)
    def create_another(self, policy: RetryPolicy) -> None:
        self.create(policy)

    def create(self, policy: RetryPolicy) -> None:
        result = self.service.process_one(
            c.CreateExecution.new(
                tenant="acme",
                agent_id="reviewer",
                worker_queue="default",
                prompt="Review the pull request",
                created_by=ALICE,
                retry=policy,
            )
        )
        self.execution_id = result.execution.id
        self.produced[self.execution_id] = result.execution
        self.pickups[self.execution_id] = 0

    # -- sending ----------------------------------------------------------------------

    @property
    def current(self) -> ExecutionState:
        return self.produced[self.execution_id]

    @property
    def status(self) -> Status:
        return Status(self.current.status)

    def stored(self) -> list[Any]:
        return list(self.service.recorder.select_events(self.execution_id))

    def send(self, command: c.Command) -> CommandResult | DomainError:
        before = self.stored()
        try:
            result = self.service.process_one(command)
        except DomainError as refusal:
            assert self.stored() == before, f"refused {command} but the log changed"
            return refusal
        assert len(self.stored()) == len(before) + result.recorded
        assert (result.position is None) == (result.recorded == 0)
        self.produced[self.execution_id] = result.execution
        return result

    # -- workers and people -----------------------------------------------------------

    @rule(claim=st.sampled_from(["claim-a", "claim-b", "claim-c"]))
    def pick_up(self, claim: str) -> None:
        lease_before = self.current.lease
        result = self.send(c.PickUp(self.execution_id, "w1", claim))
        if isinstance(result, CommandResult) and result.recorded:
            assert result.lease == lease_before + 1
            self.pickups[self.execution_id] += 1

    def report(self, command: c.Command) -> None:
        self.send(replace(command, execution_id=self.execution_id, lease=self.current.lease))

    @precondition(is_held)
    @rule(call_id=call_ids)
    def the_worker_calls_a_tool(self, call_id: str) -> None:
        self.report(c.RecordToolCall(NOBODY, 0, call_id, "bash"))

    @precondition(is_held)
    @rule(call_id=call_ids, outcome=st.sampled_from(ToolOutcome))
    def a_tool_call_finishes(self, call_id: str, outcome: ToolOutcome) -> None:
        self.report(c.FinishToolCall(NOBODY, 0, call_id, outcome))

    @precondition(is_held)
    @rule(sequence=st.integers(min_value=1, max_value=4))
    def the_worker_sends_output(self, sequence: int) -> None:
        self.report(c.AppendOutput(NOBODY, 0, "text", sequence))

    @precondition(is_held)
    @rule(kind=st.sampled_from(InputKind))
    def the_worker_asks_a_question(self, kind: InputKind) -> None:
        self.report(c.RequestInput(NOBODY, 0, "Which branch?", kind))

    @precondition(is_held)
    @rule()
    def the_worker_completes(self) -> None:
        self.report(c.Complete(NOBODY, 0, "done"))

    @precondition(is_held)
    @rule(reason=st.sampled_from(FailureReason))
    def the_worker_fails(self, reason: FailureReason) -> None:
        self.report(c.Fail(NOBODY, 0, "boom", reason))

    @precondition(is_held)
    @rule()
    def the_worker_confirms_a_cancellation(self) -> None:
        self.report(c.ConfirmCancel(NOBODY, 0))

    @precondition(is_held)
    @rule()
    def the_worker_is_lost(self) -> None:
        self.report(c.ExpireLease(NOBODY, 0))

    @rule(command=worker_reports, lease_offset=st.sampled_from([-2, -1, 1]))
    def a_worker_reports_with_a_lease_it_does_not_hold(
        self, command: Any, lease_offset: int
    ) -> None:
        lease = self.current.lease + lease_offset
        refusal = self.send(replace(command, execution_id=self.execution_id, lease=lease))
        assert isinstance(refusal, LeaseLost)

    @precondition(lambda machine: not is_held(machine))
    @rule(command=worker_reports)
    def the_worker_reports_after_the_work_was_let_go(self, command: Any) -> None:
        refusal = self.send(
            replace(command, execution_id=self.execution_id, lease=self.current.lease)
        )
        requeued = self.status is PENDING and self.current.lease > 0
        assert isinstance(refusal, LeaseLost if requeued else InvalidTransition)

    @precondition(lambda machine: machine.status is REQUIRES_INPUT)
    @rule(key=keys)
    def a_person_answers(self, key: str | None) -> None:
        self.send(c.ProvideInput(self.execution_id, "main", ALICE, key))

    @precondition(lambda machine: machine.status is RUNNING)
    @rule(key=keys)
    def a_person_blocks(self, key: str | None) -> None:
        self.send(c.Block(self.execution_id, "waiting for CI", ALICE, key))

    @precondition(lambda machine: machine.status is BLOCKED)
    @rule(key=keys)
    def a_person_unblocks(self, key: str | None) -> None:
        self.send(c.Unblock(self.execution_id, "CI is green", ALICE, key))

    @precondition(is_held)  # pending work is cancelled by a_person_acts_whatever_the_status
    @rule(key=keys)
    def a_person_cancels(self, key: str | None) -> None:
        self.send(c.RequestCancel(self.execution_id, "not needed", ALICE, key))

    @precondition(lambda machine: machine.status is FAILED)
    @rule(key=keys)
    def a_person_retries(self, key: str | None) -> None:
        self.send(c.Retry(self.execution_id, ALICE, key))

    @rule(command=people_actions)
    def a_person_acts_whatever_the_status(self, command: Any) -> None:
        self.send(replace(command, execution_id=self.execution_id))

    # -- what must always hold --------------------------------------------------------

    @invariant()
    def status_is_one_of_the_seven(self) -> None:
        for state in self.produced.values():
            assert state.status in {status.value for status in Status}

    @invariant()
    def every_status_change_follows_the_diagram(self) -> None:
        for execution_id in self.produced:
            check_edges(list(self.service.events.get(execution_id)))

    @invariant()
    def every_pickup_raised_the_lease_by_one(self) -> None:
        for execution_id, state in self.produced.items():
            assert state.lease == self.pickups[execution_id]

    @invariant()
    def replaying_the_log_gives_back_what_the_commands_produced(self) -> None:
        for execution_id, state in self.produced.items():
            *_, (_, _, rebuilt) = replayed(list(self.service.events.get(execution_id)))
            assert ExecutionState.of(rebuilt) == state
            assert self.service.state(execution_id) == state


TestExecutionLifecycle = ExecutionLifecycle.TestCase
TestExecutionLifecycle.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
