"""The Execution aggregate, one transition at a time, driven only through its methods.

Each helper builds an execution in a named state the way the system would (create,
pick up, ...) and collects the events that got it there, so a test sees only the
events its own step records.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.application import ExecutionService
from domain.execution.aggregate import Execution
from domain.execution.errors import (
    DomainError,
    IdempotencyKeyReused,
    InvalidCommand,
    InvalidTransition,
    LeaseLost,
    UnknownToolCall,
)
from domain.execution.values import (
    POLICY,
    SYSTEM,
    Actor,
    ActorKind,
    ExecutionType,
    FailureReason,
    InputKind,
    RetryPolicy,
    Status,
    ToolOutcome,
)

ALICE = Actor(ActorKind.USER, "alice")
EVERY_EVENT = [
    "Created",
    "PickedUp",
    "ToolCalled",
    "ToolCallFinished",
    "OutputAppended",
    "ArtifactAdded",
    "InputRequested",
    "InputProvided",
    "Blocked",
    "Unblocked",
    "CancelRequested",
    "Cancelled",
    "Completed",
    "Failed",
    "LeaseExpired",
    "RetryScheduled",
]
ONE_ATTEMPT = RetryPolicy(max_attempts=1)

CREATE_DEFAULTS: dict[str, Any] = {
    "tenant": "acme",
    "type": ExecutionType.AGENT,
    "agent_id": "reviewer",
    "team_id": None,
    "worker_queue": "default",
    "prompt": "Review the pull request",
    "parameters": {"repo": "acme/api"},
    "priority": 0,
    "labels": {"team": "platform"},
    "deadline": None,
    "retry": RetryPolicy(),
    "timeout_seconds": None,
    "heartbeat_timeout_seconds": None,
    "parent_execution_id": None,
    "created_by": ALICE,
    "idempotency_key": None,
}


# -- executions in a given state ---------------------------------------------------


def create(**overrides: Any) -> Execution:
    return Execution.create(uuid4(), **{**CREATE_DEFAULTS, **overrides})


def created(**overrides: Any) -> Execution:
    execution = create(**overrides)
    execution.collect_events()
    return execution


def running(worker_id: str = "w1", **overrides: Any) -> Execution:
    execution = created(**overrides)
    execution.pick_up(worker_id, "claim-1")
    execution.collect_events()
    return execution


def requiring_input(**overrides: Any) -> Execution:
    execution = running(**overrides)
    execution.request_input(execution.lease, "Which branch?", InputKind.CLARIFICATION, None)
    execution.collect_events()
    return execution


def blocked(**overrides: Any) -> Execution:
    execution = running(**overrides)
    execution.block("waiting for CI", ALICE, None)
    execution.collect_events()
    return execution


def cancelling(**overrides: Any) -> Execution:
    execution = running(**overrides)
    execution.request_cancel("wrong repository", ALICE, None)
    execution.collect_events()
    return execution


def completed(**overrides: Any) -> Execution:
    execution = running(**overrides)
    execution.complete(execution.lease, {"approved": True}, None)
    execution.collect_events()
    return execution


def failed(**overrides: Any) -> Execution:
    execution = running(**{"retry": ONE_ATTEMPT, **overrides})
    execution.fail(execution.lease, "the model refused", FailureReason.AGENT_ERROR)
    execution.collect_events()
    return execution


def cancelled(**overrides: Any) -> Execution:
    execution = created(**overrides)
    execution.request_cancel("not needed", ALICE, None)
    execution.collect_events()
    return execution


def taken_over() -> Execution:
    """Worker w1 (lease 1) was presumed lost; w2 now holds lease 2, has a tool call
    open, and has been asked to cancel."""
    execution = running("w1")
    execution.expire_lease(1)
    execution.pick_up("w2", "claim-2")
    execution.record_tool_call(2, "call-1", "bash", {"cmd": "ls"})
    execution.request_cancel("superseded", ALICE, None)
    execution.collect_events()
    return execution


def recorded(execution: Execution) -> list[str]:
    """The names of the events recorded since the last look."""
    return [type(event).__name__ for event in execution.collect_events()]


@contextmanager
def refused(execution: Execution, error: type[DomainError]) -> Iterator[None]:
    """The command must raise ``error`` and leave the execution exactly as it was."""
    version = execution.version
    pending = list(execution.pending_events)
    everything = copy.deepcopy(execution.__dict__)
    with pytest.raises(error):
        yield
    assert execution.version == version
    assert execution.pending_events == pending
    assert execution.__dict__ == everything


# -- create ------------------------------------------------------------------------


def test_a_new_execution_waits_for_a_worker_on_its_first_attempt() -> None:
    execution = create()

    assert recorded(execution) == ["Created"]
    assert execution.status is Status.PENDING
    assert execution.attempt == 1
    assert execution.lease == 0
    assert execution.worker_id is None
    assert execution.created_by == {"kind": "user", "id": "alice"}


def test_a_team_execution_names_its_team() -> None:
    execution = create(type=ExecutionType.TEAM, team_id="release-crew")

    assert execution.type == "team"
    assert execution.team_id == "release-crew"


def test_a_name_of_64_letters_digits_dashes_and_underscores_is_accepted() -> None:
    name = "Acme_eu-1" + "x" * 55

    execution = create(tenant=name, worker_queue=name)

    assert (execution.tenant, execution.worker_queue) == (name, name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", ""),
        ("prompt", "  \n\t "),
        ("tenant", ""),
        ("tenant", "acme corp"),
        ("tenant", "acme.eu"),
        ("tenant", "a" * 65),
        ("worker_queue", ""),
        ("worker_queue", "gpu.large"),
        ("worker_queue", "gpu>"),
        ("agent_id", ""),
        ("agent_id", "a" * 129),
        ("timeout_seconds", 0),
        ("timeout_seconds", -5.0),
        ("heartbeat_timeout_seconds", 0),
        ("heartbeat_timeout_seconds", -1),
    ],
)
def test_create_refuses_a_bad_value_and_names_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidCommand, match=field):
        create(**{field: value})


def test_a_team_execution_without_a_team_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="team_id"):
        create(type=ExecutionType.TEAM, team_id=None)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_attempts": 0},
        {"max_attempts": 101},
        {"backoff_seconds": -1},
        {"max_backoff_seconds": 86_401},
    ],
)
def test_a_retry_policy_out_of_bounds_is_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(InvalidCommand, match="retry"):
        RetryPolicy(**policy)


# -- stored topics -----------------------------------------------------------------


def test_every_event_is_stored_under_an_explicit_versioned_topic() -> None:
    story = running(retry=RetryPolicy(max_attempts=3))
    lease = story.lease
    story.record_tool_call(lease, "call-1", "bash", {"cmd": "ls"})
    story.finish_tool_call(lease, "call-1", ToolOutcome.SUCCESS, "3 files", 0.2)
    story.append_output(lease, "Looking at the diff", 1)
    story.add_artifact(lease, "report.md", "text/markdown", 12, "ab" * 32, "acme/report.md")
    story.request_input(lease, "Which branch?", InputKind.CLARIFICATION, None)
    story.provide_input("main", ALICE, None)
    story.block("waiting for CI", ALICE, None)
    story.unblock("CI is green", ALICE, None)
    story.fail(lease, "timed out", FailureReason.TIMEOUT)
    lease = story.pick_up("w2", "claim-2")
    story.expire_lease(lease)
    lease = story.pick_up("w3", "claim-3")
    story.request_cancel("not needed", ALICE, None)
    story.confirm_cancel(lease)
    finished = running()
    finished.complete(finished.lease, "ok", None)
    events = story.collect_events() + finished.collect_events() + create().collect_events()
    mapper = ExecutionService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper

    topics = {mapper.to_stored_event(event).topic for event in events}

    assert topics == {f"agentboard.execution.{name}.v1" for name in EVERY_EVENT}
    assert [mapper.to_domain_event(mapper.to_stored_event(event)) for event in events] == events
    assert create().collect_events()[0].originator_topic == "agentboard.execution.Execution.v1"


# -- pick up -----------------------------------------------------------------------


def test_a_worker_picks_up_pending_work_and_gets_the_first_lease() -> None:
    execution = created()

    lease = execution.pick_up("w1", "claim-1")

    [picked_up] = execution.collect_events()
    assert lease == 1
    assert (picked_up.worker_id, picked_up.attempt, picked_up.lease) == ("w1", 1, 1)
    assert execution.status is Status.RUNNING
    assert execution.worker_id == "w1"


def test_every_pickup_hands_out_a_higher_lease() -> None:
    execution = created()

    leases = []
    for worker in ("w1", "w2", "w3"):
        leases.append(execution.pick_up(worker, f"claim-{worker}"))
        execution.expire_lease(leases[-1])

    assert leases == [1, 2, 3]


def test_a_repeated_claim_returns_the_same_lease_and_records_nothing() -> None:
    execution = running("w1")

    lease = execution.pick_up("w1", "claim-1")

    assert lease == 1
    assert recorded(execution) == []


@pytest.mark.parametrize("state", [running, requiring_input, blocked, completed, failed, cancelled])
def test_only_pending_work_can_be_picked_up(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.pick_up("w9", "claim-9")


# -- tool calls, output, artifacts ---------------------------------------------------


def test_a_tool_call_is_recorded_with_its_arguments() -> None:
    execution = running()

    execution.record_tool_call(execution.lease, "call-1", "bash", {"cmd": "pytest"})

    [called] = execution.collect_events()
    assert (called.call_id, called.tool, called.arguments) == ("call-1", "bash", {"cmd": "pytest"})
    assert called.lease == 1


@pytest.mark.parametrize("outcome", list(ToolOutcome))
def test_a_tool_call_finishes_with_its_outcome(outcome: ToolOutcome) -> None:
    execution = running()
    execution.record_tool_call(execution.lease, "call-1", "bash", {})
    execution.collect_events()

    execution.finish_tool_call(execution.lease, "call-1", outcome, "exit 0", 1.5)

    [finished] = execution.collect_events()
    assert (finished.call_id, finished.outcome) == ("call-1", outcome.value)
    assert (finished.result_summary, finished.duration_seconds) == ("exit 0", 1.5)


def test_a_tool_call_delivered_twice_is_recorded_once() -> None:
    execution = running()
    execution.record_tool_call(execution.lease, "call-1", "bash", {})
    execution.finish_tool_call(execution.lease, "call-1", ToolOutcome.SUCCESS, "", 0.1)
    execution.collect_events()

    execution.record_tool_call(execution.lease, "call-1", "bash", {})
    execution.finish_tool_call(execution.lease, "call-1", ToolOutcome.FAILED, "", 0.1)

    assert recorded(execution) == []
    assert execution.tool_calls == {"call-1": ToolOutcome.SUCCESS}


def test_finishing_a_tool_call_that_never_started_is_refused() -> None:
    execution = running()

    with refused(execution, UnknownToolCall):
        execution.finish_tool_call(execution.lease, "call-7", ToolOutcome.SUCCESS, "", 0.1)


@pytest.mark.parametrize("state", [requiring_input, blocked])
def test_no_new_tool_call_starts_while_the_work_is_paused(
    state: Callable[[], Execution],
) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.record_tool_call(execution.lease, "call-1", "bash", {})


def test_output_chunks_delivered_again_are_recorded_once() -> None:
    execution = running()
    lease = execution.lease

    for sequence in (1, 2, 2, 1, 3):
        execution.append_output(lease, f"chunk {sequence}", sequence)

    assert [event.sequence for event in execution.collect_events()] == [1, 2, 3]
    assert execution.output_sequence == 3


def test_the_same_artifact_twice_is_recorded_once_and_a_new_version_again() -> None:
    execution = running()
    lease = execution.lease

    execution.add_artifact(lease, "report.md", "text/markdown", 10, "aa" * 32, "k/1")
    execution.add_artifact(lease, "report.md", "text/markdown", 10, "aa" * 32, "k/1")
    execution.add_artifact(lease, "report.md", "text/markdown", 12, "bb" * 32, "k/2")

    assert [event.sha256 for event in execution.collect_events()] == ["aa" * 32, "bb" * 32]


# -- input, block ------------------------------------------------------------------


def test_a_worker_asks_a_question_and_a_person_answers_it() -> None:
    execution = running()

    execution.request_input(
        execution.lease, "Which branch?", InputKind.APPROVAL, {"type": "string"}
    )
    assert execution.status is Status.REQUIRES_INPUT
    assert execution.question == "Which branch?"

    execution.provide_input("main", ALICE, None)

    requested, provided = execution.collect_events()
    assert (requested.kind, requested.answer_schema) == ("approval", {"type": "string"})
    assert (provided.answer, provided.actor) == ("main", ALICE.as_dict())
    assert execution.status is Status.RUNNING
    assert execution.question is None


@pytest.mark.parametrize("state", [requiring_input, blocked])
def test_only_running_work_asks_a_question(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.request_input(execution.lease, "again?", InputKind.CLARIFICATION, None)


@pytest.mark.parametrize("state", [created, running, blocked, completed])
def test_an_answer_nobody_asked_for_is_refused(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.provide_input("main", ALICE, None)


def test_a_person_blocks_running_work_and_unblocks_it() -> None:
    execution = running()

    execution.block("waiting for CI", ALICE, None)
    assert execution.status is Status.BLOCKED
    execution.unblock("CI is green", ALICE, None)

    blocked_event, unblocked_event = execution.collect_events()
    assert (blocked_event.reason, blocked_event.actor) == ("waiting for CI", ALICE.as_dict())
    assert (unblocked_event.reason, unblocked_event.actor) == ("CI is green", ALICE.as_dict())
    assert execution.status is Status.RUNNING


@pytest.mark.parametrize("state", [created, requiring_input, blocked, completed])
def test_only_running_work_can_be_blocked(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.block("again", ALICE, None)


@pytest.mark.parametrize("state", [created, running, requiring_input, completed])
def test_only_blocked_work_can_be_unblocked(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.unblock("go", ALICE, None)


# -- cancel ------------------------------------------------------------------------


def test_cancelling_pending_work_cancels_it_at_once() -> None:
    execution = created()

    execution.request_cancel("not needed", ALICE, None)

    [cancelled_event] = execution.collect_events()
    assert type(cancelled_event).__name__ == "Cancelled"
    assert (cancelled_event.reason, cancelled_event.actor) == ("not needed", ALICE.as_dict())
    assert execution.status is Status.CANCELLED


@pytest.mark.parametrize("state", [running, requiring_input, blocked])
def test_cancelling_held_work_asks_the_worker_to_stop_and_the_worker_confirms(
    state: Callable[[], Execution],
) -> None:
    execution = state()
    status_before = execution.status

    execution.request_cancel("wrong repository", ALICE, None)
    assert recorded(execution) == ["CancelRequested"]
    assert execution.status is status_before
    assert execution.cancel_requested

    execution.confirm_cancel(execution.lease)

    [confirmed] = execution.collect_events()
    assert type(confirmed).__name__ == "Cancelled"
    assert confirmed.actor == {"kind": "worker", "id": "w1"}
    assert execution.status is Status.CANCELLED
    assert execution.worker_id == "w1"  # the worker that ran it stays named


def test_asking_twice_to_cancel_records_one_request() -> None:
    execution = cancelling()

    execution.request_cancel("really, stop", ALICE, None)

    assert recorded(execution) == []


def test_a_worker_cannot_confirm_a_cancellation_nobody_asked_for() -> None:
    execution = running()

    with refused(execution, InvalidTransition):
        execution.confirm_cancel(execution.lease)


@pytest.mark.parametrize("state", [completed, failed, cancelled])
def test_finished_work_cannot_be_cancelled(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.request_cancel("too late", ALICE, None)


# -- complete, fail, retry ---------------------------------------------------------


def test_a_worker_completes_running_work_with_its_result() -> None:
    execution = running()

    execution.complete(execution.lease, {"approved": True}, "two nits")

    [completed_event] = execution.collect_events()
    assert completed_event.actor == {"kind": "worker", "id": "w1"}
    assert execution.status is Status.COMPLETED
    assert (execution.result, execution.completion_notes) == ({"approved": True}, "two nits")
    assert execution.worker_id == "w1"  # the worker that ran it stays named


@pytest.mark.parametrize("state", [requiring_input, completed, cancelled])
def test_only_running_or_blocked_work_can_be_completed_by_its_worker(
    state: Callable[[], Execution],
) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.complete(execution.lease, "done", None)


def test_a_failure_the_policy_does_not_retry_is_final() -> None:
    execution = running()  # the default policy retries only worker_lost and timeout

    execution.fail(execution.lease, "the model refused", FailureReason.AGENT_ERROR)

    assert recorded(execution) == ["Failed"]
    assert execution.status is Status.FAILED
    assert execution.error == "the model refused"
    assert execution.failure_reason is FailureReason.AGENT_ERROR
    assert execution.worker_id == "w1"


def test_a_failure_the_policy_retries_is_requeued_for_the_next_attempt() -> None:
    execution = running(retry=RetryPolicy(max_attempts=3, backoff_seconds=30))

    execution.fail(execution.lease, "timed out", FailureReason.TIMEOUT)

    failed_event, retry_event = execution.collect_events()
    assert type(retry_event).__name__ == "RetryScheduled"
    assert retry_event.actor == POLICY.as_dict()
    assert retry_event.not_before == failed_event.timestamp + timedelta(seconds=30)
    assert execution.status is Status.PENDING
    assert execution.attempt == 2
    assert execution.error is None
    assert execution.not_before == retry_event.not_before


def test_a_policy_may_retry_the_agents_own_failures() -> None:
    execution = running(retry=RetryPolicy(retry_on=(FailureReason.AGENT_ERROR,)))

    execution.fail(execution.lease, "the model refused", FailureReason.AGENT_ERROR)

    assert recorded(execution) == ["Failed", "RetryScheduled"]


def test_each_automatic_retry_waits_twice_as_long_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_seconds=10, max_backoff_seconds=25)
    execution = running(retry=policy)

    waits = []
    for attempt in range(2, 6):
        execution.fail(execution.lease, "timed out", FailureReason.TIMEOUT)
        failed_event, retry_event = execution.collect_events()
        waits.append((retry_event.not_before - failed_event.timestamp).total_seconds())
        execution.pick_up("w1", f"claim-{attempt}")
        execution.collect_events()
    execution.fail(execution.lease, "timed out", FailureReason.TIMEOUT)

    assert waits == [10, 20, 25, 25]
    assert recorded(execution)[-1] == "Failed"
    assert (execution.status, execution.attempt) == (Status.FAILED, 5)


def test_a_retryable_failure_on_the_last_attempt_is_final() -> None:
    execution = running(retry=RetryPolicy(max_attempts=2))
    execution.fail(execution.lease, "timed out", FailureReason.TIMEOUT)
    execution.pick_up("w2", "claim-2")
    execution.collect_events()

    execution.fail(execution.lease, "timed out again", FailureReason.TIMEOUT)

    assert recorded(execution) == ["Failed"]
    assert (execution.status, execution.attempt) == (Status.FAILED, 2)


def test_work_asked_to_cancel_is_not_retried_when_it_fails() -> None:
    execution = cancelling()

    execution.fail(execution.lease, "timed out", FailureReason.TIMEOUT)

    assert recorded(execution) == ["Failed"]
    assert execution.status is Status.FAILED


@pytest.mark.parametrize("state", [requiring_input, blocked])
def test_paused_work_can_fail(state: Callable[[], Execution]) -> None:
    execution = state()

    execution.fail(execution.lease, "gave up", FailureReason.MISSING_PREREQUISITE)

    assert execution.status is Status.FAILED


def test_a_person_retries_failed_work_whatever_the_policy_says() -> None:
    execution = failed(retry=ONE_ATTEMPT)

    execution.retry(ALICE, None)

    [retry_event] = execution.collect_events()
    assert retry_event.actor == ALICE.as_dict()
    assert (execution.status, execution.attempt) == (Status.PENDING, 2)
    assert (execution.error, execution.failure_reason) == (None, None)
    assert execution.pick_up("w2", "claim-2") == 2


@pytest.mark.parametrize("state", [created, running, completed, cancelled])
def test_only_failed_work_can_be_retried(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.retry(ALICE, None)


@pytest.mark.parametrize("state", [running, requiring_input, blocked])
def test_an_operator_force_completes_held_work(state: Callable[[], Execution]) -> None:
    execution = state()

    execution.force_complete(ALICE, None, "stale since Friday", None)

    [completed_event] = execution.collect_events()
    assert completed_event.actor == ALICE.as_dict()
    assert execution.status is Status.COMPLETED
    assert execution.completion_notes == "stale since Friday"


@pytest.mark.parametrize("state", [created, completed, failed, cancelled])
def test_only_held_work_can_be_force_completed(state: Callable[[], Execution]) -> None:
    execution = state()

    with refused(execution, InvalidTransition):
        execution.force_complete(ALICE, None, None, None)


# -- lost workers ------------------------------------------------------------------


def test_a_lost_worker_is_replaced_while_attempts_remain() -> None:
    execution = running("w1", retry=RetryPolicy(max_attempts=2, backoff_seconds=5))

    execution.expire_lease(1)

    expired, retry_event = execution.collect_events()
    assert type(expired).__name__ == "LeaseExpired"
    assert (expired.lease, expired.worker_id) == (1, "w1")
    assert retry_event.not_before == expired.timestamp + timedelta(seconds=5)
    assert (execution.status, execution.attempt) == (Status.PENDING, 2)
    assert execution.worker_id is None


def test_a_lost_worker_on_the_last_attempt_fails_the_work() -> None:
    execution = running("w1", retry=ONE_ATTEMPT)

    execution.expire_lease(1)

    assert recorded(execution) == ["LeaseExpired", "Failed"]
    assert execution.status is Status.FAILED
    assert execution.failure_reason is FailureReason.WORKER_LOST


def test_the_failure_after_a_lost_worker_names_the_worker() -> None:
    execution = running("w1", retry=ONE_ATTEMPT)

    execution.expire_lease(1)

    assert execution.error == "worker w1 was lost"


def test_a_worker_lost_while_cancelling_finishes_the_cancellation() -> None:
    execution = cancelling()

    execution.expire_lease(execution.lease)

    expired, cancelled_event = execution.collect_events()
    assert type(expired).__name__ == "LeaseExpired"
    assert type(cancelled_event).__name__ == "Cancelled"
    assert cancelled_event.actor == SYSTEM.as_dict()
    assert execution.status is Status.CANCELLED


def test_a_requeued_lease_cannot_expire_twice() -> None:
    execution = running()
    execution.expire_lease(1)
    execution.collect_events()

    with refused(execution, LeaseLost):
        execution.expire_lease(1)


WORKER_REPORTS: dict[str, Callable[[Execution, int], object]] = {
    "record a tool call": lambda e, lease: e.record_tool_call(lease, "call-2", "bash", {}),
    "repeat a tool call": lambda e, lease: e.record_tool_call(lease, "call-1", "bash", {}),
    "finish a tool call": lambda e, lease: e.finish_tool_call(
        lease, "call-1", ToolOutcome.SUCCESS, "", 0.1
    ),
    "append output": lambda e, lease: e.append_output(lease, "hello", 1),
    "add an artifact": lambda e, lease: e.add_artifact(
        lease, "a.txt", "text/plain", 1, "cc" * 32, "k/a"
    ),
    "request input": lambda e, lease: e.request_input(lease, "ok?", InputKind.APPROVAL, None),
    "complete": lambda e, lease: e.complete(lease, "done", None),
    "fail": lambda e, lease: e.fail(lease, "boom", FailureReason.TOOL_ERROR),
    "confirm cancel": lambda e, lease: e.confirm_cancel(lease),
    "expire lease": lambda e, lease: e.expire_lease(lease),
}


@pytest.mark.parametrize("report", list(WORKER_REPORTS.values()), ids=list(WORKER_REPORTS))
def test_a_worker_presumed_lost_cannot_report_on_work_someone_else_holds(
    report: Callable[[Execution, int], object],
) -> None:
    execution = taken_over()

    with refused(execution, LeaseLost):
        report(execution, 1)

    report(execution, 2)  # the same report from the worker that holds the work is accepted


def test_a_lease_from_the_future_is_refused_too() -> None:
    execution = running()

    with refused(execution, LeaseLost):
        execution.complete(execution.lease + 1, "done", None)


# -- idempotency keys --------------------------------------------------------------

OPERATOR_ACTIONS: dict[str, tuple[Callable[[], Execution], Callable[[Execution, str], None]]] = {
    "answer": (requiring_input, lambda e, key: e.provide_input("main", ALICE, key)),
    "block": (running, lambda e, key: e.block("waiting", ALICE, key)),
    "unblock": (blocked, lambda e, key: e.unblock("go", ALICE, key)),
    "cancel pending work": (created, lambda e, key: e.request_cancel("no", ALICE, key)),
    "cancel held work": (running, lambda e, key: e.request_cancel("no", ALICE, key)),
    "retry": (failed, lambda e, key: e.retry(ALICE, key)),
    "force complete": (running, lambda e, key: e.force_complete(ALICE, None, "x", key)),
}


@pytest.mark.parametrize(
    ("state", "action"), list(OPERATOR_ACTIONS.values()), ids=list(OPERATOR_ACTIONS)
)
def test_an_operator_action_repeated_with_its_key_records_once(
    state: Callable[[], Execution], action: Callable[[Execution, str], None]
) -> None:
    execution = state()
    action(execution, "key-1")
    assert len(execution.collect_events()) == 1
    after_first = copy.deepcopy(execution.__dict__)

    action(execution, "key-1")

    assert recorded(execution) == []
    assert execution.__dict__ == after_first


def test_the_same_key_on_a_different_action_is_refused() -> None:
    execution = running()
    execution.block("waiting", ALICE, "key-1")
    execution.collect_events()

    with refused(execution, IdempotencyKeyReused):
        execution.unblock("go", ALICE, "key-1")


def test_a_key_used_to_retry_cannot_be_reused_to_cancel() -> None:
    execution = failed()
    execution.retry(ALICE, "key-1")
    execution.pick_up("w2", "claim-2")
    execution.collect_events()

    with refused(execution, IdempotencyKeyReused):
        execution.request_cancel("no", ALICE, "key-1")


def test_without_a_key_a_repeated_action_is_judged_afresh() -> None:
    execution = running()
    execution.block("waiting", ALICE, None)

    with refused(execution, InvalidTransition):
        execution.block("waiting", ALICE, None)
