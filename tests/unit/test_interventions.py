"""People step in while a worker runs: for any interleaving of block, unblock, answer and
cancel with a worker's reports (tool calls, output, questions, completion, failure), no
report the worker made is lost, the run is never refused anything it had to say, it is
picked up once, and it always ends (nothing is left running with nobody running it).

The worker follows the protocol of ``workers/context.py``: a tool call or a question that
is refused because the execution is blocked is tried again later; a cancel is confirmed
at the worker's next turn; a question waits for its answer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import DomainError, ExecutionBlocked, InvalidCommand
from domain.execution.values import Actor, ActorKind, FailureReason, InputKind, ToolOutcome

ALICE = Actor(ActorKind.USER, "alice")
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

# What the agent does, in order; a tool call is two reports, so a person may step in while
# the tool runs (between its start and its result).
agent_steps = st.lists(st.sampled_from(["tool", "say", "ask"]), max_size=4).map(
    lambda steps: [part for step in steps for part in _reports_of(step)]
)
endings = st.sampled_from(["complete", "fail"])
turns = st.lists(
    st.sampled_from(["worker", "worker", "worker", "block", "unblock", "answer", "cancel"]),
    max_size=40,
)


def _reports_of(step: str) -> list[str]:
    return ["tool_start", "tool_finish"] if step == "tool" else [step]


@dataclass
class Run:
    """The worker's side: its script, where it is, and what the command side accepted."""

    service: ExecutionService
    execution_id: UUID
    lease: int
    script: list[str]
    at: int = 0
    waiting_for_answer: bool = False
    over: bool = False
    accepted: list[tuple[str, Any]] = field(default_factory=list)

    def command(self, step: str) -> tuple[c.Command, tuple[str, Any]]:
        execution_id, lease, call = self.execution_id, self.lease, f"call-{self.at}"
        match step:
            case "tool_start":
                return c.RecordToolCall(execution_id, lease, call, "bash"), ("ToolCalled", call)
            case "tool_finish":
                started = f"call-{self.at - 1}"
                command = c.FinishToolCall(execution_id, lease, started, ToolOutcome.SUCCESS)
                return command, ("ToolCallFinished", started)
            case "say":
                command = c.AppendOutput(execution_id, lease, "text\n", self.at + 1)
                return command, ("OutputAppended", self.at + 1)
            case "ask":
                command = c.RequestInput(execution_id, lease, "go on?", InputKind.APPROVAL)
                return command, ("InputRequested", None)
            case "complete":
                return c.Complete(execution_id, lease, {"done": True}), ("Completed", None)
            case _:
                command = c.Fail(execution_id, lease, "gave up", FailureReason.AGENT_ERROR)
                return command, ("Failed", None)

    def turn(self) -> None:
        if self.over:
            return
        state = self.service.state(self.execution_id)
        if state.cancel_requested:  # the agent is stopped; the worker confirms
            self.send(c.ConfirmCancel(self.execution_id, self.lease), ("Cancelled", None))
            self.over = True
            return
        if self.waiting_for_answer:
            if state.status != "running":
                return
            self.waiting_for_answer = False
        step = self.script[self.at]
        command, expected = self.command(step)
        if not self.send(command, expected, may_wait=step in ("tool_start", "ask")):
            return  # blocked: the same report is tried again at the next turn
        self.at += 1
        self.waiting_for_answer = step == "ask"
        self.over = self.at == len(self.script)

    def send(
        self, command: c.Command, expected: tuple[str, Any], *, may_wait: bool = False
    ) -> bool:
        try:
            self.service.process_one(command)
        except ExecutionBlocked:
            assert may_wait, f"{type(command).__name__} refused while blocked"
            return False
        except DomainError as refusal:  # a report of a live run refused: it would be lost
            raise AssertionError(f"{type(command).__name__} refused: {refusal}") from None
        self.accepted.append(expected)
        return True


def person(service: ExecutionService, execution_id: UUID, action: str) -> None:
    commands = {
        "block": c.Block(execution_id, "hold on", ALICE),
        "unblock": c.Unblock(execution_id, "go on", ALICE),
        "answer": c.ProvideInput(execution_id, "yes", ALICE),
        "cancel": c.RequestCancel(execution_id, "not needed", ALICE),
    }
    with contextlib.suppress(DomainError):  # not possible now: a person sees a 409
        service.process_one(commands[action])


def worker_events(service: ExecutionService, execution_id: UUID) -> list[tuple[str, Any]]:
    """What the worker's reports recorded, in order, named as ``Run.command`` names them."""
    found: list[tuple[str, Any]] = []
    for event in service.events.get(execution_id):
        name = type(event).__name__
        actor = getattr(event, "actor", {})
        if name in ("ToolCalled", "ToolCallFinished"):
            found.append((name, event.call_id))  # type: ignore[attr-defined]
        elif name == "OutputAppended":
            found.append((name, event.sequence))  # type: ignore[attr-defined]
        elif name == "InputRequested" or (
            name in ("Completed", "Failed", "Cancelled") and actor.get("kind") == "worker"
        ):
            found.append((name, None))
    return found


@settings(max_examples=300, deadline=None)
@given(script=agent_steps, ending=endings, interleaving=turns)
def test_no_report_is_lost_and_nothing_runs_twice(
    script: list[str], ending: str, interleaving: list[str]
) -> None:
    service = ExecutionService(env=POPO)
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="shell", worker_queue="default", prompt="deploy",
        created_by=ALICE,
    )).execution.id  # fmt: skip
    lease = service.process_one(c.PickUp(execution_id, "w1", "claim-1")).lease
    run = Run(service, execution_id, lease, [*script, ending])

    for turn in interleaving:
        if turn == "worker":
            run.turn()
        else:
            person(service, execution_id, turn)
    for _ in range(4 * len(run.script) + 4):  # then people let it go on, and it ends
        if run.over:
            break
        person(service, execution_id, "unblock")
        person(service, execution_id, "answer")
        run.turn()

    final = service.state(execution_id)
    assert run.over
    assert final.status in ("completed", "failed", "cancelled")  # never stranded
    assert final.blocked is None
    assert worker_events(service, execution_id) == run.accepted  # each once, in order
    names = [type(event).__name__ for event in service.events.get(execution_id)]
    assert names.count("PickedUp") == 1  # never picked up again
    if ("Completed", None) in run.accepted:
        assert final.result == {"done": True}


def test_an_operator_s_complete_closes_the_tool_call_still_running() -> None:
    service = ExecutionService(env=POPO)
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="shell", worker_queue="default", prompt="deploy",
        created_by=ALICE,
    )).execution.id  # fmt: skip
    lease = service.process_one(c.PickUp(execution_id, "w1", "claim-1")).lease
    service.process_one(
        c.RecordToolCall(execution_id, lease, "call-1", "bash", {"command": "sleep 1d"})
    )

    service.process_one(c.ForceComplete(execution_id, ALICE, completion_notes="cleaning up"))

    *_, finished, completed = service.events.get(execution_id)
    assert type(finished).__name__ == "ToolCallFinished"
    assert (finished.call_id, finished.outcome) == ("call-1", "failed")  # type: ignore[attr-defined]
    assert "completed by alice" in finished.result_summary  # type: ignore[attr-defined]
    assert finished.duration_seconds >= 0  # type: ignore[attr-defined]
    assert type(completed).__name__ == "Completed"
    assert service.state(execution_id).worker_id == "w1"  # who ran it stays named


def test_a_sub_task_names_an_existing_parent_of_its_own_tenant() -> None:
    service = ExecutionService(env=POPO)

    def create(tenant: str, parent: UUID | None) -> UUID:
        return service.process_one(c.CreateExecution.new(
            tenant=tenant, agent_id="shell", worker_queue="default", prompt="p",
            created_by=ALICE, parent_execution_id=parent,
        )).execution.id  # fmt: skip

    parent = create("acme", None)
    child = create("acme", parent)

    assert service.state(child).parent_execution_id == parent
    for tenant, missing in (("acme", UUID(int=7)), ("globex", parent)):
        with pytest.raises(InvalidCommand, match=r"parent_execution_id .* names no execution"):
            create(tenant, missing)
