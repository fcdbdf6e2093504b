"""ExecutionService.process: many callers' commands applied and stored as one batch.

Each caller gets back its own outcome: a CommandResult, or the domain error that
refused its command, while the rest of the batch is recorded.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from cachetools import LRUCache

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import (
    ExecutionNotFound,
    IdempotencyKeyReused,
    InvalidCommand,
    InvalidTransition,
    LeaseLost,
    QueueNotAllowed,
)
from domain.execution.state import CommandResult
from domain.execution.values import Actor, ActorKind, ToolOutcome

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
ALICE = Actor(ActorKind.USER, "alice")
REQUEST: dict[str, Any] = {
    "tenant": "acme",
    "agent_id": "reviewer",
    "worker_queue": "default",
    "prompt": "Review the pull request",
    "created_by": ALICE,
}


def new_execution(service: ExecutionService, **overrides: Any) -> UUID:
    return service.process_one(c.CreateExecution.new(**{**REQUEST, **overrides})).execution.id


def running_execution(service: ExecutionService) -> UUID:
    execution_id = new_execution(service)
    service.process_one(c.PickUp(execution_id, "w1", f"claim-{execution_id}"))
    return execution_id


def timeline(service: ExecutionService, execution_id: UUID) -> list[str]:
    return [type(event).__name__ for event in service.timeline(execution_id)]


def results(outcomes: list[Any]) -> list[CommandResult]:
    assert all(isinstance(outcome, CommandResult) for outcome in outcomes), outcomes
    return outcomes


def sharing_the_store_of(service: ExecutionService) -> ExecutionService:
    """A second writer (another process, say) appending to the same stored log."""

    class SecondWriter(ExecutionService):
        name = "agentboard"

        def construct_recorder(self) -> Any:
            return service.recorder

    return SecondWriter(env=POPO)


@pytest.fixture
def service() -> ExecutionService:
    return ExecutionService(env=POPO, cache=LRUCache(20_000))


# -- a batch of several executions -------------------------------------------------


def test_creates_in_one_batch_are_all_recorded_in_order(service: ExecutionService) -> None:
    ids = [uuid4(), uuid4(), uuid4()]

    outcomes = results(service.process([c.CreateExecution(i, **REQUEST) for i in ids]))

    assert [outcome.execution.id for outcome in outcomes] == ids
    assert [outcome.recorded for outcome in outcomes] == [1, 1, 1]
    assert [outcome.position for outcome in outcomes] == [1, 2, 3]
    assert all(service.state(i).status == "pending" for i in ids)


def test_commands_on_different_executions_get_increasing_positions(
    service: ExecutionService,
) -> None:
    first, second, third = (new_execution(service) for _ in range(3))
    last_position = service.recorder.max_notification_id()
    assert last_position is not None

    outcomes = results(
        service.process(
            [
                c.PickUp(first, "w1", "claim-1"),
                c.PickUp(second, "w2", "claim-2"),
                c.RequestCancel(third, "not needed", ALICE),
            ]
        )
    )

    positions = [outcome.position for outcome in outcomes]
    assert positions == [last_position + 1, last_position + 2, last_position + 3]
    assert [outcome.execution.status for outcome in outcomes] == [
        "running",
        "running",
        "cancelled",
    ]
    assert service.recorder.max_notification_id() == positions[-1]


def test_commands_on_one_execution_in_one_batch_apply_in_order(
    service: ExecutionService,
) -> None:
    execution_id = new_execution(service)

    outcomes = results(
        service.process(
            [
                c.PickUp(execution_id, "w1", "claim-1"),
                c.RecordToolCall(execution_id, 1, "call-1", "bash", {"cmd": "pytest"}),
                c.FinishToolCall(execution_id, 1, "call-1", ToolOutcome.SUCCESS),
                c.Complete(execution_id, 1, {"approved": True}),
            ]
        )
    )

    assert outcomes[0].lease == 1
    assert [outcome.execution.status for outcome in outcomes] == [
        "running",
        "running",
        "running",
        "completed",
    ]
    assert [outcome.execution.version for outcome in outcomes] == [2, 3, 4, 5]
    positions = [outcome.position for outcome in outcomes]
    assert positions == sorted(positions)
    assert len(set(positions)) == 4
    assert timeline(service, execution_id) == [
        "Created",
        "PickedUp",
        "ToolCalled",
        "ToolCallFinished",
        "Completed",
    ]
    assert service.state(execution_id).result == {"approved": True}


def test_an_execution_can_be_created_and_picked_up_in_one_batch(
    service: ExecutionService,
) -> None:
    execution_id = uuid4()

    created, picked_up = results(
        service.process(
            [c.CreateExecution(execution_id, **REQUEST), c.PickUp(execution_id, "w1", "claim-1")]
        )
    )

    assert created.execution.status == "pending"
    assert (picked_up.execution.status, picked_up.lease) == ("running", 1)
    assert timeline(service, execution_id) == ["Created", "PickedUp"]


# -- one caller's bad command ------------------------------------------------------


def test_a_bad_command_fails_only_its_caller(service: ExecutionService) -> None:
    to_pick_up = new_execution(service)
    held = running_execution(service)
    pending = new_execution(service)
    to_cancel = new_execution(service)
    nobody = uuid4()

    outcomes = service.process(
        [
            c.PickUp(to_pick_up, "w1", "claim-a"),
            c.Complete(held, 7, "done"),
            c.PickUp(nobody, "w1", "claim-b"),
            c.Complete(pending, 0, "done"),
            c.RequestCancel(to_cancel, "not needed", ALICE),
        ]
    )

    assert [type(outcome) for outcome in outcomes] == [
        CommandResult,
        LeaseLost,
        ExecutionNotFound,
        InvalidTransition,
        CommandResult,
    ]
    assert service.state(to_pick_up).status == "running"
    assert service.state(to_cancel).status == "cancelled"
    assert timeline(service, held) == ["Created", "PickedUp"]
    assert timeline(service, pending) == ["Created"]
    with pytest.raises(ExecutionNotFound):
        service.state(nobody)


def test_a_refused_command_between_two_good_ones_leaves_both_recorded(
    service: ExecutionService,
) -> None:
    execution_id = new_execution(service)

    outcomes = service.process(
        [
            c.PickUp(execution_id, "w1", "claim-1"),
            c.Complete(execution_id, 5, "from a worker long gone"),
            c.Complete(execution_id, 1, "done"),
        ]
    )

    assert isinstance(outcomes[1], LeaseLost)
    assert service.state(execution_id).result == "done"
    assert timeline(service, execution_id) == ["Created", "PickedUp", "Completed"]


def test_a_single_command_raises_its_callers_error(service: ExecutionService) -> None:
    execution_id = running_execution(service)

    with pytest.raises(LeaseLost):
        service.process_one(c.Complete(execution_id, lease=9))
    with pytest.raises(ExecutionNotFound):
        service.process_one(c.PickUp(uuid4(), "w1", "claim-1"))

    assert timeline(service, execution_id) == ["Created", "PickedUp"]


# -- repeats -----------------------------------------------------------------------


def test_a_create_repeated_in_one_batch_records_once(service: ExecutionService) -> None:
    execution_id = c.idempotent_execution_id("acme", "order-42")
    create = c.CreateExecution(execution_id, **REQUEST, idempotency_key="order-42")

    first, repeat = results(service.process([create, create]))

    assert first.execution.id == repeat.execution.id == execution_id
    assert (first.recorded, repeat.recorded) == (1, 0)
    assert first.position is not None
    assert repeat.position is None
    assert timeline(service, execution_id) == ["Created"]


def test_an_idempotent_create_must_name_the_execution_its_key_names() -> None:
    """Else a repeat with the same key would find nothing and record a second execution."""
    with pytest.raises(InvalidCommand, match="names its execution by its key"):
        c.CreateExecution(uuid4(), **REQUEST, idempotency_key="order-42")

    assert c.CreateExecution.new(**REQUEST, idempotency_key="order-42").execution_id == (
        c.idempotent_execution_id("acme", "order-42")
    )


def test_a_create_repeated_later_returns_the_first_execution(service: ExecutionService) -> None:
    first = service.process_one(c.CreateExecution.new(**REQUEST, idempotency_key="order-42"))

    repeat = service.process_one(c.CreateExecution.new(**REQUEST, idempotency_key="order-42"))

    assert repeat.execution.id == first.execution.id
    assert (repeat.recorded, repeat.position) == (0, None)
    assert timeline(service, first.execution.id) == ["Created"]


def test_a_create_repeated_after_the_execution_moved_on_returns_it_as_it_is_now(
    service: ExecutionService,
) -> None:
    execution_id = new_execution(service, idempotency_key="order-42")
    service.process_one(c.PickUp(execution_id, "w1", "claim-1"))

    repeat = service.process_one(c.CreateExecution.new(**REQUEST, idempotency_key="order-42"))

    assert (repeat.execution.id, repeat.execution.status) == (execution_id, "running")
    assert repeat.recorded == 0


def test_the_same_key_with_a_different_prompt_is_refused(service: ExecutionService) -> None:
    execution_id = new_execution(service, idempotency_key="order-42")

    with pytest.raises(IdempotencyKeyReused):
        service.process_one(
            c.CreateExecution.new(
                **{**REQUEST, "prompt": "Something else"}, idempotency_key="order-42"
            )
        )

    assert service.state(execution_id).prompt == REQUEST["prompt"]
    assert timeline(service, execution_id) == ["Created"]


def test_the_same_key_with_a_different_prompt_in_one_batch_is_refused(
    service: ExecutionService,
) -> None:
    execution_id = c.idempotent_execution_id("acme", "order-42")
    create = c.CreateExecution(execution_id, **REQUEST, idempotency_key="order-42")
    different = c.CreateExecution(
        execution_id, **{**REQUEST, "prompt": "Something else"}, idempotency_key="order-42"
    )

    first, refusal = service.process([create, different])

    assert isinstance(first, CommandResult)
    assert isinstance(refusal, IdempotencyKeyReused)
    assert service.state(execution_id).prompt == REQUEST["prompt"]


def test_the_same_key_in_another_tenant_is_another_execution(service: ExecutionService) -> None:
    acme = new_execution(service, idempotency_key="order-42")

    globex = new_execution(service, tenant="globex", idempotency_key="order-42")

    assert globex != acme
    assert service.state(globex).tenant == "globex"


def test_a_repeated_claim_records_nothing_and_has_no_position(service: ExecutionService) -> None:
    execution_id = new_execution(service)
    first = service.process_one(c.PickUp(execution_id, "w1", "claim-1"))

    repeat = service.process_one(c.PickUp(execution_id, "w1", "claim-1"))

    assert (repeat.lease, repeat.recorded, repeat.position) == (first.lease, 0, None)
    assert timeline(service, execution_id) == ["Created", "PickedUp"]


def test_a_repeated_operator_action_records_nothing_and_has_no_position(
    service: ExecutionService,
) -> None:
    execution_id = running_execution(service)
    first = service.process_one(
        c.Block(execution_id, "waiting for CI", ALICE, idempotency_key="block-1")
    )

    repeat = service.process_one(
        c.Block(execution_id, "waiting for CI", ALICE, idempotency_key="block-1")
    )

    assert first.recorded == 1
    assert first.position is not None
    assert (repeat.recorded, repeat.position) == (0, None)
    assert repeat.execution.status == "blocked"


def test_keys_are_remembered_by_the_stored_log_not_only_by_the_cache() -> None:
    service = ExecutionService(env=POPO)  # no cache: every command reloads from the log
    execution_id = running_execution(service)
    service.process_one(c.Block(execution_id, "waiting for CI", ALICE, idempotency_key="key-1"))

    repeat = service.process_one(
        c.Block(execution_id, "waiting for CI", ALICE, idempotency_key="key-1")
    )
    with pytest.raises(IdempotencyKeyReused):
        service.process_one(c.Unblock(execution_id, "CI is green", ALICE, idempotency_key="key-1"))

    assert repeat.recorded == 0
    assert timeline(service, execution_id) == ["Created", "PickedUp", "Blocked"]


def test_a_create_repeated_after_a_reload_returns_the_first_execution() -> None:
    service = ExecutionService(env=POPO)
    first = service.process_one(c.CreateExecution.new(**REQUEST, idempotency_key="order-42"))

    repeat = service.process_one(c.CreateExecution.new(**REQUEST, idempotency_key="order-42"))

    assert repeat.execution.id == first.execution.id
    assert repeat.recorded == 0
    assert timeline(service, first.execution.id) == ["Created"]


# -- another writer ----------------------------------------------------------------


def test_a_batch_retries_on_top_of_what_another_writer_recorded_meanwhile(
    service: ExecutionService,
) -> None:
    contested = running_execution(service)
    bystander = new_execution(service)
    other_writer = sharing_the_store_of(service)
    other_writer.process_one(c.RequestCancel(contested, "not needed", ALICE))

    completed, picked_up = results(
        service.process([c.Complete(contested, 1, "done"), c.PickUp(bystander, "w2", "claim-2")])
    )

    assert completed.execution.status == "completed"
    assert completed.execution.cancel_requested
    assert picked_up.execution.status == "running"
    assert timeline(service, contested) == ["Created", "PickedUp", "CancelRequested", "Completed"]
    assert timeline(service, bystander) == ["Created", "PickedUp"]


def test_a_command_in_another_tenant_is_refused_as_not_existing(service: ExecutionService) -> None:
    execution_id = new_execution(service)  # of tenant acme
    claim = c.PickUp(execution_id, "w1", "claim-1")

    [refused] = service.process([c.Within.of(claim, "globex")])
    assert isinstance(refused, ExecutionNotFound)
    assert timeline(service, execution_id) == ["Created"]

    [accepted] = results(service.process([c.Within.of(claim, "acme")]))
    assert accepted.execution.status == "running"
    assert timeline(service, execution_id) == ["Created", "PickedUp"]


def test_a_command_limited_to_queues_is_refused_on_another_queue(
    service: ExecutionService,
) -> None:
    execution_id = new_execution(service)  # on queue default
    claim = c.PickUp(execution_id, "w1", "claim-1")

    [refused] = service.process([c.Within.of(claim, None, ("gpu", "cpu"))])
    assert isinstance(refused, QueueNotAllowed)
    assert "is on queue 'default'" in str(refused)
    assert timeline(service, execution_id) == ["Created"]

    [accepted] = results(service.process([c.Within.of(claim, None, ("default",))]))
    assert accepted.execution.status == "running"


def test_a_claimed_creator_is_stored_with_the_credential_it_came_via(
    service: ExecutionService,
) -> None:
    claimed = Actor(ActorKind.SCHEDULE, "nightly", via="key:k1")
    result = service.process_one(
        c.CreateExecution.new(
            tenant="t", agent_id="a", worker_queue="q", prompt="p", created_by=claimed
        )
    )
    created = service.timeline(result.execution.id)[0]
    assert created.created_by == {"kind": "schedule", "id": "nightly", "via": "key:k1"}
    assert Actor.from_dict(created.created_by) == claimed
    plain = Actor(ActorKind.API, "key:k1")
    assert plain.as_dict() == {"kind": "api", "id": "key:k1"}  # as every earlier event
    assert Actor.from_dict(plain.as_dict()) == plain
