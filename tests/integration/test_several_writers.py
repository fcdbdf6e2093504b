"""Several API processes, each with its own writer and its own cache of executions, on one
event store (DESIGN §10, §11): a command is decided on the stored execution, never refused
on a stale cached copy because another process wrote to it since."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import LeaseLost
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import event_store
from infra.eventstore import ensure_schema
from infra.settings import Settings

pytestmark = pytest.mark.integration

ALICE = Actor(ActorKind.USER, "alice")


@pytest.fixture
def two_writers(settings: Settings, database_url: str) -> Iterator[list[ExecutionService]]:
    ensure_schema(database_url, settings)
    services = [event_store(settings, database_url, cache_size=100) for _ in range(2)]
    yield services
    for service in services:
        service.close()


def test_a_report_to_another_api_is_decided_on_the_stored_execution(
    two_writers: list[ExecutionService],
) -> None:
    first, second = two_writers
    execution_id = first.process_one(
        c.CreateExecution.new(
            tenant="default",
            agent_id="script",
            worker_queue="default",
            prompt="p",
            created_by=ALICE,
        )
    ).execution.id  # fmt: skip  (the first keeps it cached at lease 0)
    lease = second.process_one(c.PickUp(execution_id, "worker-1", "claim-1")).execution.lease

    output = first.process_one(c.AppendOutput(execution_id, lease, "hello", 1))  # to the first
    done = first.process_one(c.Complete(execution_id, lease, {"ok": True}))

    assert output.execution.lease == lease == 1
    assert done.execution.status == "completed"
    assert [type(e).__name__ for e in second.timeline(execution_id)] == [
        "Created", "PickedUp", "OutputAppended", "Completed",
    ]  # fmt: skip


def test_a_refusal_that_the_stored_execution_confirms_stands(
    two_writers: list[ExecutionService],
) -> None:
    first, second = two_writers
    execution_id = first.process_one(c.CreateExecution.new(
        tenant="default", agent_id="script", worker_queue="default", prompt="p",
        created_by=ALICE,
    )).execution.id  # fmt: skip
    second.process_one(c.PickUp(execution_id, "worker-1", "claim-1"))

    with pytest.raises(LeaseLost):
        first.process_one(
            c.AppendOutput(execution_id, 7, "from a worker with a lease it never had", 1)
        )
