"""A person steps in (block, unblock, answer) while a worker runs the execution, over real
PostgreSQL and NATS: nothing the worker reports is lost, nothing runs twice, and a block
holds until a person lifts it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from uuid import UUID

import pytest

from domain.execution import commands as c
from domain.execution.aggregate import Execution
from domain.execution.errors import InvalidAnswer, InvalidTransition
from infra import lease_monitor
from infra.bootstrap import Container
from infra.lease_monitor import LeaseMonitor
from infra.nats import connect, workers_bucket
from tests.integration.test_worker_recovery import spawn_worker, wait_for_presence
from tests.integration.workers_harness import (
    ALICE,
    create,
    event_types,
    running_stack,
    wait_for_status,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def brisk_lease_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease monitor at five times its pace (a board scan every 2 s), an orphan after
    one quiet second: a few seconds see what a minute would."""
    monkeypatch.setattr(lease_monitor, "CHECK_EVERY_SECONDS", 0.2)
    monkeypatch.setattr(lease_monitor, "ORPHAN_AFTER", lease_monitor.timedelta(seconds=1))


async def wait_for_event(
    container: Container, execution_id: UUID, name: str, timeout: float = 20
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while name not in await asyncio.to_thread(event_types, container, execution_id):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {name} in {timeout}s")
        await asyncio.sleep(0.02)


def timeline(container: Container, execution_id: UUID) -> list[tuple[str, dict[str, str]]]:
    """(event, actor) of each event but output, in order."""
    return [
        (type(event).__name__, getattr(event, "actor", {}))
        for event in container.service.timeline(execution_id)
        if type(event).__name__ != "OutputAppended"
    ]


async def test_a_run_that_ends_while_blocked_is_recorded_and_never_runs_again(
    container: Container, tmp_path: Path, brisk_lease_monitor: None
) -> None:
    side_effect = tmp_path / "side-effect"
    script = f"sleep 3; echo side-effect >> {side_effect}; echo wrote"
    async with running_stack(container):
        execution_id = await create(container, agent="shell", prompt=script)
        await wait_for_event(container, execution_id, "ToolCalled")
        await asyncio.to_thread(
            container.service.process_one, c.Block(execution_id, "checking", ALICE)
        )
        done = await wait_for_status(container, execution_id, "completed", "failed")
        with pytest.raises(InvalidTransition):  # nothing left to unblock
            await asyncio.to_thread(
                container.service.process_one, c.Unblock(execution_id, "go", ALICE)
            )
    async with running_stack(container):  # the next start: nothing to expire, nothing rerun
        await asyncio.sleep(3)  # several board scans of a brisk lease monitor

    assert done.status == "completed"
    assert done.result == {"exit_codes": [0], "commands": 1}
    assert side_effect.read_text() == "side-effect\n"  # it ran once
    events = timeline(container, execution_id)
    assert [name for name, _ in events] == [
        "Created", "PickedUp", "ToolCalled", "Blocked", "ToolCallFinished", "Unblocked",
        "Completed",
    ]  # fmt: skip
    [unblocked] = [
        event for event in container.service.timeline(execution_id)
        if isinstance(event, Execution.Unblocked)
    ]  # fmt: skip
    assert unblocked.reason == "ended_while_blocked"  # the run's end lifted it, on record
    assert unblocked.actor["kind"] == "worker"
    assert done.worker_id is not None  # who ran it stays on record


async def test_a_blocked_run_starts_nothing_new_and_stays_alive_until_unblocked(
    container: Container, brisk_lease_monitor: None
) -> None:
    steps = [{"tool": "build", "seconds": 1}, {"tool": "deploy"}, {"say": "shipped"}]
    async with running_stack(container, concurrency=1):
        execution_id = await create(
            container, parameters={"steps": steps}, heartbeat_timeout_seconds=6
        )
        await wait_for_event(container, execution_id, "ToolCalled")
        await asyncio.to_thread(
            container.service.process_one,
            c.Block(execution_id, "waiting for the freeze to end", ALICE),
        )
        await wait_for_event(container, execution_id, "ToolCallFinished")
        # held longer than its heartbeat timeout and through many scans of the lease monitor
        other = await create(container, parameters={"steps": []})
        await wait_for_status(container, other, "completed")  # its slot was given back
        await asyncio.sleep(12)
        held = await asyncio.to_thread(container.service.state, execution_id)
        assert held.status == "blocked"
        assert held.blocked is not None
        assert held.blocked["reason"] == "waiting for the freeze to end"
        assert held.blocked["by"] == ALICE.as_dict()
        await asyncio.to_thread(
            container.service.process_one, c.Unblock(execution_id, "freeze over", ALICE)
        )
        done = await wait_for_status(container, execution_id, "completed", "failed")

    assert done.status == "completed"
    assert [name for name, _ in timeline(container, execution_id)] == [
        "Created", "PickedUp", "ToolCalled", "Blocked", "ToolCallFinished", "Unblocked",
        "ToolCalled", "ToolCallFinished", "Completed",
    ]  # nothing started while blocked; picked up once  # fmt: skip
    assert dict(timeline(container, execution_id))["Unblocked"] == ALICE.as_dict()


async def test_a_worker_lost_while_blocked_leaves_it_blocked_until_a_person_unblocks(
    container: Container,
) -> None:
    steps = {"steps": [{"tool": "migrate", "seconds": 60}]}
    async with running_stack(container, workers=0) as (services, _):
        doomed = spawn_worker(container)
        try:
            execution_id = await create(container, parameters=steps, retry={"max_attempts": 2})
            await wait_for_event(container, execution_id, "ToolCalled")
            assert services.nc is not None
            await wait_for_presence(services.nc.jetstream(), {execution_id})
            await asyncio.to_thread(
                container.service.process_one, c.Block(execution_id, "on hold", ALICE)
            )
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        await wait_for_event(container, execution_id, "LeaseExpired", timeout=30)
        held = await asyncio.to_thread(container.service.state, execution_id)
        assert held.status == "blocked"  # not requeued behind the person's back
        await asyncio.to_thread(
            container.service.process_one, c.Unblock(execution_id, "go on", ALICE)
        )
        requeued = await asyncio.to_thread(container.service.state, execution_id)

    assert (requeued.status, requeued.attempt) == ("pending", 2)
    assert event_types(container, execution_id)[-4:] == [
        "Blocked", "LeaseExpired", "Unblocked", "RetryScheduled",
    ]  # fmt: skip


async def test_an_answer_that_does_not_fit_the_question_s_schema_is_refused(
    container: Container,
) -> None:
    schema = {"type": "object", "required": ["approved"],
              "properties": {"approved": {"type": "boolean"}}}  # fmt: skip
    steps = [{"ask": "Deploy to production?", "kind": "approval", "schema": schema}]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        waiting = await wait_for_status(container, execution_id, "requires_input")
        with pytest.raises(InvalidAnswer, match="answer: 'yes' is not of type 'object'"):
            await asyncio.to_thread(
                container.service.process_one, c.ProvideInput(execution_id, "yes", ALICE)
            )
        with pytest.raises(InvalidAnswer, match="answer: 'approved' is a required property"):
            await asyncio.to_thread(
                container.service.process_one, c.ProvideInput(execution_id, {}, ALICE)
            )
        still = await asyncio.to_thread(container.service.state, execution_id)
        await asyncio.to_thread(
            container.service.process_one, c.ProvideInput(execution_id, {"approved": True}, ALICE)
        )
        done = await wait_for_status(container, execution_id, "completed")

    assert waiting.pending_input == {
        "question": "Deploy to production?", "kind": "approval", "schema": schema,
    }  # fmt: skip
    assert still.status == "requires_input"
    assert done.result == {"answers": [{"approved": True}]}


async def test_a_live_worker_is_never_presumed_lost(container: Container) -> None:
    """The lease monitor lists the workers' keys once a second; a listing that comes back
    short must not expire a live worker's leases (it once undid blocks after a minute)."""
    execution_id = await create(container)
    lease = (
        await asyncio.to_thread(container.service.process_one, c.PickUp(execution_id, "w1", "t"))
    ).lease
    nc = await connect(container.nats_url, "test")
    bucket = await workers_bucket(nc.jetstream())
    stop = asyncio.Event()

    async def announce() -> None:  # as a busy worker does, only more often
        while not stop.is_set():
            held = {str(execution_id): {"lease": lease, "heartbeat_at": time.time()}}
            await bucket.put("w1", json.dumps({"executions": held}).encode())
            await asyncio.sleep(0.01)

    async def no_heartbeat_timeout(_: UUID) -> None:
        return None

    announcing = asyncio.create_task(announce())
    monitor = LeaseMonitor(bucket, container.writer.send, no_heartbeat_timeout)
    try:
        for _ in range(300):
            await monitor.check()
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await announcing
        await nc.close()

    assert monitor.expired == 0
    assert (await asyncio.to_thread(container.service.state, execution_id)).status == "running"


async def test_each_thing_an_agent_says_is_a_line_of_its_own(container: Container) -> None:
    steps = [{"say": "checking cluster"}, {"say": "done"}, {"tool": "scan"}, {"say": "ok\n"}]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        await wait_for_status(container, execution_id, "completed")

    output = "".join(
        event.text
        for event in container.service.timeline(execution_id)
        if isinstance(event, Execution.OutputAppended)
    )
    assert output == "checking cluster\ndone\nok\n"
