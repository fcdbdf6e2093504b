"""The board card fold, with no database: folding an execution's events gives the card
that agrees with the aggregate, field for field of their shared shape, for every history
the aggregate accepts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import DomainError
from domain.execution.shape import shape_of
from domain.execution.values import Actor, ActorKind
from projections.views.card import Card, fold

ALICE = Actor(ActorKind.USER, "alice")


def card_of(service: ExecutionService, execution_id: UUID) -> Card:
    events = service.timeline(execution_id)
    card = fold([(event.originator_version, event) for event in events])
    if card is None:
        raise AssertionError("no Created event")
    return card


def agrees(card: Card, service: ExecutionService, execution_id: UUID) -> None:
    state = service.state(execution_id)
    assert shape_of(card) == shape_of(state)  # every field of the shape, tool and clock too


def new_execution(service: ExecutionService) -> UUID:
    return service.process_one(c.CreateExecution.new(
        tenant="default", agent_id="script", worker_queue="q", prompt="p", created_by=ALICE,
        retry={"max_attempts": 3, "retry_on": ["tool_error"]},
    )).execution.id  # fmt: skip


def test_a_card_follows_tool_calls_input_and_a_retry() -> None:
    service = ExecutionService()
    execution_id = new_execution(service)
    lease = service.process_one(c.PickUp(execution_id, "w1", "claim-1")).lease
    service.process_one(c.RecordToolCall(execution_id, lease, "c1", "bash", {}))
    card = card_of(service, execution_id)
    assert (card.status, card.last_tool, card.last_tool_outcome) == ("running", "bash", None)

    service.process_one(c.FinishToolCall(execution_id, lease, "c1", "failed"))
    service.process_one(c.RequestInput(execution_id, lease, "retry?"))
    assert card_of(service, execution_id).question == "retry?"
    service.process_one(c.ProvideInput(execution_id, "yes", ALICE))
    service.process_one(c.Fail(execution_id, lease, "tool broke", "tool_error"))

    card = card_of(service, execution_id)
    agrees(card, service, execution_id)
    assert (card.status, card.attempt, card.last_tool, card.error) == ("pending", 2, None, None)
    stamps = [event.timestamp for event in service.timeline(execution_id)]
    assert card.status_entered_at == stamps[-1]  # entered pending with the retry


def act(service: ExecutionService, execution_id: UUID, operation: str, variant: int) -> None:
    lease = service.state(execution_id).lease
    call = f"c{variant}"
    commands: dict[str, Callable[[], object]] = {
        "pick_up": lambda: service.process_one(c.PickUp(execution_id, f"w{variant}", str(uuid4()))),
        "tool": lambda: service.process_one(
            c.RecordToolCall(execution_id, lease, call, "bash", {})
        ),
        "finish": lambda: service.process_one(
            c.FinishToolCall(execution_id, lease, call, "success")
        ),
        "ask": lambda: service.process_one(c.RequestInput(execution_id, lease, "?")),
        "answer": lambda: service.process_one(c.ProvideInput(execution_id, variant, ALICE)),
        "block": lambda: service.process_one(c.Block(execution_id, "b", ALICE)),
        "unblock": lambda: service.process_one(c.Unblock(execution_id, "u", ALICE)),
        "cancel": lambda: service.process_one(c.RequestCancel(execution_id, "c", ALICE)),
        "confirm": lambda: service.process_one(c.ConfirmCancel(execution_id, lease)),
        "complete": lambda: service.process_one(c.Complete(execution_id, lease, {"v": variant})),
        "fail": lambda: service.process_one(
            c.Fail(execution_id, lease, "e", ("tool_error", "timeout")[variant % 2])
        ),
        "expire": lambda: service.process_one(c.ExpireLease(execution_id, lease)),
        "retry": lambda: service.process_one(c.Retry(execution_id, ALICE)),
        "force": lambda: service.process_one(
            c.ForceComplete(execution_id, ALICE, completion_notes="n")
        ),
    }
    commands[operation]()


OPERATIONS = st.sampled_from(
    ["pick_up", "tool", "finish", "ask", "answer", "block", "unblock", "cancel",
     "confirm", "complete", "fail", "expire", "retry", "force"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OPERATIONS, st.integers(0, 2)), max_size=30))
def test_the_fold_agrees_with_the_aggregate_for_any_history(
    steps: list[tuple[str, int]],
) -> None:
    service = ExecutionService()
    execution_id = new_execution(service)
    for operation, variant in steps:
        with contextlib.suppress(DomainError):
            act(service, execution_id, operation, variant)
    agrees(card_of(service, execution_id), service, execution_id)
