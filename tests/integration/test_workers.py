"""Workers over real NATS JetStream and PostgreSQL: every path of the script agent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from domain.execution import commands as c
from domain.execution.values import ToolOutcome
from infra.bootstrap import Container
from infra.keys import Role
from tests.eventually import eventually_async
from tests.integration.workers_harness import (
    ALICE,
    create,
    event_types,
    running_stack,
    wait_for_relay,
    wait_for_status,
    worker_key,
)
from workers.agents import BUILTIN_AGENTS
from workers.client import CommandClient, CommandRefused
from workers.runtime import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_tools_and_output_run_to_completion(container: Container) -> None:
    steps = [
        {"say": "looking around\n"},
        {"tool": "search", "args": {"q": "logs"}, "seconds": 0.05},
        {"tool": "read", "args": {"path": "/var/log/app.log"}},
    ]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        state = await wait_for_status(container, execution_id, "completed")

    assert state.result == {"answers": []}
    timeline = container.service.timeline(execution_id)
    calls = [(e.tool, e.arguments) for e in timeline if type(e).__name__ == "ToolCalled"]  # type: ignore[attr-defined]
    assert calls == [("search", {"q": "logs"}), ("read", {"path": "/var/log/app.log"})]
    outcomes = [e.outcome for e in timeline if type(e).__name__ == "ToolCallFinished"]  # type: ignore[attr-defined]
    assert outcomes == ["success", "success"]
    output = "".join(e.text for e in timeline if type(e).__name__ == "OutputAppended")  # type: ignore[attr-defined]
    assert "looking around" in output
    lifecycle = [name for name in event_types(container, execution_id) if name != "OutputAppended"]
    assert lifecycle == [
        "Created", "PickedUp", "ToolCalled", "ToolCallFinished", "ToolCalled",
        "ToolCallFinished", "Completed",
    ]  # a result sent with the report after it still lands before it  # fmt: skip


async def test_a_failing_tool_fails_the_execution(container: Container) -> None:
    steps = [{"tool": "deploy", "args": {}, "fails": True}, {"say": "never said"}]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        state = await wait_for_status(container, execution_id, "failed")

    assert state.failure_reason == "tool_error"
    timeline = container.service.timeline(execution_id)
    [finished] = [e for e in timeline if type(e).__name__ == "ToolCallFinished"]
    assert finished.outcome == "failed"  # type: ignore[attr-defined]


async def test_an_answer_resumes_the_run(container: Container) -> None:
    steps = [{"ask": "Which branch?"}, {"say": "deploying\n"}]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        waiting = await wait_for_status(container, execution_id, "requires_input")
        assert waiting.question == "Which branch?"
        await asyncio.to_thread(
            container.service.process_one, c.ProvideInput(execution_id, "main", ALICE)
        )
        state = await wait_for_status(container, execution_id, "completed")

    assert state.result == {"answers": ["main"]}


async def test_cancel_reaches_a_sleeping_agent_within_a_second(container: Container) -> None:
    async with running_stack(container):
        steps = [{"say": "going to sleep\n"}, {"sleep": 60}]
        execution_id = await create(container, parameters={"steps": steps})
        await eventually_async(  # the agent is at its sleep step, or about to be
            lambda: asyncio.to_thread(event_types, container, execution_id),
            lambda types: "OutputAppended" in types,
            what="the agent to say it goes to sleep",
        )
        asked = time.monotonic()
        await asyncio.to_thread(
            container.service.process_one, c.RequestCancel(execution_id, "no longer needed", ALICE)
        )
        await wait_for_status(container, execution_id, "cancelled", timeout=5)
        took = time.monotonic() - asked

    assert took < 1.0
    assert event_types(container, execution_id)[-2:] == ["CancelRequested", "Cancelled"]


async def test_artifacts_land_in_the_object_store_with_their_hash(container: Container) -> None:
    text = "build log\nall green\n"
    steps = [{"artifact": {"name": "build.log", "text": text}}]
    async with running_stack(container) as (services, _):
        execution_id = await create(container, parameters={"steps": steps})
        await wait_for_status(container, execution_id, "completed")
        assert services.nc is not None
        store = await services.nc.jetstream().object_store("agentboard_artifacts")
        stored = await store.get(f"{execution_id}/build.log")

    [added] = [
        e for e in container.service.timeline(execution_id) if type(e).__name__ == "ArtifactAdded"
    ]
    assert added.sha256 == hashlib.sha256(text.encode()).hexdigest()  # type: ignore[attr-defined]
    assert stored.data == text.encode()


async def test_a_fail_step_fails_with_its_reason(container: Container) -> None:
    steps = [{"fail": "the API key is missing", "reason": "missing_prerequisite"}]
    async with running_stack(container):
        execution_id = await create(container, parameters={"steps": steps})
        state = await wait_for_status(container, execution_id, "failed")

    assert state.error == "the API key is missing"
    assert state.failure_reason == "missing_prerequisite"


async def test_an_unknown_agent_fails_clearly(container: Container) -> None:
    async with running_stack(container):
        execution_id = await create(container, agent="no-such-agent")
        state = await wait_for_status(container, execution_id, "failed")

    assert state.failure_reason == "missing_prerequisite"
    assert "no-such-agent" in (state.error or "")


async def test_higher_priority_runs_first(container: Container) -> None:
    # enqueue while no worker runs, then start one worker with one slot
    services_only = running_stack(container, workers=0)
    async with services_only:
        low = await create(container, priority=-5, parameters={"steps": []})
        normal = await create(container, priority=0, parameters={"steps": []})
        high = await create(container, priority=5, parameters={"steps": []})
        await wait_for_relay(container, container.service.recorder.max_notification_id() or 0)
    async with running_stack(container, concurrency=1):
        for execution_id in (low, normal, high):
            await wait_for_status(container, execution_id, "completed")

    picked = {
        execution_id: container.service.timeline(execution_id)[1].timestamp
        for execution_id in (low, normal, high)
    }
    assert picked[high] < picked[normal] < picked[low]


async def test_a_batch_of_reports_is_applied_in_order_and_answered_one_by_one(
    container: Container,
) -> None:
    """What a worker sends for a tool call's result and the report after it."""
    async with running_stack(container, workers=0) as (services, _):
        assert services.nc is not None
        execution_id = await create(container, parameters={"steps": []})
        client = CommandClient(services.nc, worker_key(container))
        headers = client.headers
        lease = (await client.send(c.PickUp(execution_id, "w-test", "delivery-1")))["lease"]
        await client.send(c.RecordToolCall(execution_id, lease, "call-1", "search", {"q": "x"}))

        finished = c.FinishToolCall(
            execution_id, lease, "call-1", ToolOutcome.SUCCESS, "found it", 0.01
        )
        last = await client.send_all([finished, c.Complete(execution_id, lease, {"done": 1})])

        assert last["status"] == "completed"
        assert event_types(container, execution_id)[-3:] == [
            "ToolCalled", "ToolCallFinished", "Completed",
        ]  # fmt: skip
        with pytest.raises(CommandRefused) as refused:  # the run is over: refused, not stored
            await client.send_all([finished, c.Complete(execution_id, lease, {"done": 2})])
        assert refused.value.error in ("InvalidTransition", "LeaseLost")
        assert event_types(container, execution_id).count("Completed") == 1

        for payload in (b"[]", b"not json", b'[{"command": "launch_missiles", "data": {}}]'):
            answer = await services.nc.request("agentboard.cmd.batch", payload, headers=headers)
            reply = json.loads(answer.data)
            assert reply["ok"] is False
            assert reply["error"] == "InvalidCommand"
            assert reply["detail"]


async def test_reports_need_a_worker_key_of_the_execution_s_tenant(container: Container) -> None:
    async with running_stack(container, workers=0) as (services, _):
        assert services.nc is not None
        execution_id = await create(container, parameters={"steps": []})  # tenant default
        claim = c.PickUp(execution_id, "w-test", "delivery-1")
        refusals = {
            None: "Unauthenticated",
            "ab_nope_nope": "Unauthenticated",
            worker_key(container, role=Role.VIEWER): "Forbidden",
            worker_key(container, tenant="acme"): "ExecutionNotFound",  # reveals nothing
        }
        for key, error in refusals.items():
            client = CommandClient(services.nc, key)
            with pytest.raises(CommandRefused) as refused:
                await client.send(claim)
            assert refused.value.error == error, key
            assert refused.value.detail
            with pytest.raises(CommandRefused):
                await client.state(execution_id)
        assert event_types(container, execution_id) == ["Created"]  # nothing recorded

        acme_key = worker_key(container, tenant="acme")
        acme = CommandClient(services.nc, acme_key)
        assert (await acme.whoami())["tenant"] == "acme"
        theirs = await create(container, tenant="acme", parameters={"steps": []})
        assert (await acme.send(c.PickUp(theirs, "w-acme", "delivery-2")))["status"] == "running"

        # revoked through this process's key store: the command service refuses it at once
        await asyncio.to_thread(container.keys.revoke, acme_key.split("_")[1], None, "test")
        with pytest.raises(CommandRefused) as refused:
            await acme.whoami()
        assert refused.value.error == "Unauthenticated"


async def test_a_key_made_for_some_queues_reports_only_for_those(container: Container) -> None:
    gpu_key = worker_key(container, tenant="acme", queues=("gpu",))
    async with running_stack(container, workers=0) as (services, _):
        assert services.nc is not None
        gpu = CommandClient(services.nc, gpu_key)
        assert (await gpu.whoami())["queues"] == ["gpu"]
        elsewhere = await create(container, tenant="acme", parameters={"steps": []})
        with pytest.raises(CommandRefused) as refused:
            await gpu.send(c.PickUp(elsewhere, "w-gpu", "delivery-1"))
        assert refused.value.error == "QueueNotAllowed"
        assert "'default'" in refused.value.detail
        assert "'gpu'" in refused.value.detail
        assert event_types(container, elsewhere) == ["Created"]  # nothing recorded

        # a worker started on a queue its key does not serve says so and does not start
        agents = dict(BUILTIN_AGENTS)
        wrong = Worker(container.nats_url, ("gpu", "default"), agents, 1, gpu_key)
        with pytest.raises(CommandRefused) as refused:
            await asyncio.wait_for(wrong.run(), 30)
        assert "serves only queues gpu, not default" in refused.value.detail

        right = Worker(container.nats_url, ("gpu",), agents, 1, gpu_key)
        running = asyncio.create_task(right.run())
        try:
            ours = await create(
                container, tenant="acme", worker_queue="gpu", parameters={"steps": []}
            )
            await wait_for_status(container, ours, "completed")
        finally:
            right.stop()
            await running
        assert (await asyncio.to_thread(container.service.state, elsewhere)).status == "pending"


async def test_a_tenant_s_worker_runs_its_own_work_and_gives_the_rest_back(
    container: Container,
) -> None:
    agents = dict(BUILTIN_AGENTS)
    acme_worker = Worker(container.nats_url, ("default",), agents, 4, worker_key(container, "acme"))
    async with running_stack(container, workers=0):
        running = asyncio.create_task(acme_worker.run())
        try:
            ours = await create(container, parameters={"steps": []})  # tenant default
            theirs = await create(container, tenant="acme", parameters={"steps": []})
            await wait_for_status(container, theirs, "completed")
            # a chance for the wrong thing to happen (acme's worker running ours): an absence
            # has no event to wait for
            await asyncio.sleep(0.5)
            assert (await asyncio.to_thread(container.service.state, ours)).status == "pending"
        finally:
            acme_worker.stop()
            await running
    async with running_stack(container, workers=1):  # a worker of the deployment's tenant
        await wait_for_status(container, ours, "completed", timeout=30)  # the work was kept
