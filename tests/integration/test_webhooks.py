"""Webhooks over a real PostgreSQL: what is stored reaches a local receiver, signed, in
order per execution, again and again until it is accepted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import pytest

from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, FailureReason
from infra.bootstrap import Container
from infra.processes import free_port
from infra.settings import Settings
from infra.webhooks.service import WebhookService
from infra.webhooks.store import Registered
from tests.integration.webhook_receiver import Received, Receiver, receiving, verify

pytestmark = pytest.mark.anyio
ALICE = Actor(ActorKind.USER, "alice")
FAST = {  # retries within tens of milliseconds instead of seconds
    "webhook_backoff_seconds": 0.05, "webhook_max_backoff_seconds": 0.2,
    "webhook_poll_seconds": 0.05, "webhook_timeout_seconds": 1.0,
}  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def webhooks(container: Container, **settings: Any) -> AsyncIterator[WebhookService]:
    service = WebhookService(
        Settings(**{**FAST, **settings}), container.database_url, container.service
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def register(container: Container, url: str, events: list[str], **where: Any) -> Registered:
    return container.webhooks.register("default", url, events, where, "key:test")


def running(container: Container, **options: Any) -> UUID:
    service = container.service
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="default", agent_id="script", worker_queue="default", prompt="p",
        created_by=ALICE, **options,
    )).execution.id  # fmt: skip
    service.process_one(c.PickUp(execution_id, "w1", f"claim-{execution_id}"))
    return execution_id


def ask_then_fail(container: Container) -> UUID:
    """running -> requires_input -> running -> failed."""
    execution_id = running(container)
    service = container.service
    service.process_one(c.RequestInput(execution_id, 1, "Which branch?"))
    service.process_one(c.ProvideInput(execution_id, "main", ALICE))
    service.process_one(c.Fail(execution_id, 1, "tests are red", FailureReason.AGENT_ERROR))
    return execution_id


def types(received: list[Received]) -> list[str]:
    return [r.message["type"] for r in received]


async def test_a_refused_delivery_is_retried_with_the_same_id_and_both_are_logged(
    container: Container,
) -> None:
    receiver = Receiver(lambda received, n: 500 if n == 0 else 204)
    with receiving(receiver) as url:
        async with webhooks(container):
            registered = register(container, url, ["requires_input", "failed"])
            execution_id = await asyncio.to_thread(ask_then_fail, container)
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 3)

    first, retry, failed = receiver.received
    assert types(receiver.received) == ["execution.requires_input"] * 2 + ["execution.failed"]
    assert retry.webhook_id == first.webhook_id != failed.webhook_id
    assert registered.secret is not None
    assert all(verify(registered.secret, r) for r in receiver.received)
    asked = first.message["data"]
    assert asked["id"] == str(execution_id)
    assert (asked["status"], asked["question"]) == ("requires_input", "Which branch?")
    assert failed.message["data"]["error"] == "tests are red"

    attempts = container.webhooks.attempts("default", registered.webhook.id, 10)
    oldest_first = list(reversed(attempts))
    assert [(a["status_code"], a["delivered"]) for a in oldest_first] == [
        (500, False),
        (204, True),
        (204, True),
    ]
    assert oldest_first[0]["message_id"] == oldest_first[1]["message_id"] == first.webhook_id
    assert "HTTP 500" in oldest_first[0]["error"]
    assert all(a["duration_ms"] >= 0 and a["attempted_at"] for a in attempts)


async def test_a_receiver_that_was_down_gets_every_event_in_order_once_back(
    container: Container,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    async with webhooks(container) as service:
        registered = register(container, url, ["*"])
        executions = [await asyncio.to_thread(ask_then_fail, container) for _ in range(3)]
        webhook_id = registered.webhook.id

        def refused_some() -> bool:
            return len(container.webhooks.attempts("default", webhook_id, 20)) >= 6

        while not await asyncio.to_thread(refused_some):  # nobody listens on the port yet
            await asyncio.sleep(0.05)
        receiver = Receiver()
        with receiving(receiver, port):
            expected = 3 * 5  # pending, running, requires_input, running, failed
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= expected)
        assert service.active

    for execution_id in executions:
        mine = [r for r in receiver.received if r.message["data"]["id"] == str(execution_id)]
        assert types(mine) == [
            "execution.pending", "execution.running", "execution.requires_input",
            "execution.running", "execution.failed",
        ]  # fmt: skip
        positions = [r.message["data"]["position"] for r in mine]
        assert positions == sorted(positions)
    refused = container.webhooks.attempts("default", webhook_id, 1000)
    assert any("ConnectError" in (a["error"] or "") for a in refused)


async def test_an_endpoint_failing_past_the_limit_is_disabled_until_enabled(
    container: Container,
) -> None:
    receiver = Receiver(lambda received, n: 503)
    with receiving(receiver) as url:
        async with webhooks(container, webhook_disable_after_seconds=0.3):
            registered = register(container, url, ["running"])
            await asyncio.to_thread(running, container)
            webhook_id = registered.webhook.id
            while (await asyncio.to_thread(container.webhooks.get, "default", webhook_id)).enabled:
                await asyncio.sleep(0.05)

    disabled = container.webhooks.get("default", webhook_id)
    assert disabled.disabled_reason is not None
    assert "failed since" in disabled.disabled_reason
    assert len(receiver.received) >= 2  # retried until then
    enabled = container.webhooks.enable("default", webhook_id)
    assert enabled.enabled
    assert enabled.failing_since is None


async def test_a_receiver_that_never_answers_holds_up_no_other_endpoint(
    container: Container,
) -> None:
    hanging, quick = Receiver(lambda received, n: None), Receiver()
    with receiving(hanging) as hanging_url, receiving(quick) as quick_url:
        async with webhooks(container, webhook_timeout_seconds=30.0):
            register(container, hanging_url, ["running"])
            register(container, quick_url, ["running"])
            for _ in range(10):
                await asyncio.to_thread(running, container)
            await asyncio.to_thread(quick.wait_for, lambda got: len(got) >= 10, 10.0)
            assert len(hanging.received) <= 4  # its own slots only, all still waiting


async def test_registering_the_same_endpoint_twice_returns_the_first(container: Container) -> None:
    first = register(container, "http://127.0.0.1:9/hook", ["failed", "completed"])
    again = register(container, "http://127.0.0.1:9/hook", ["completed", "failed"])
    other = register(container, "http://127.0.0.1:9/hook", ["failed"])

    assert first.secret is not None
    assert first.secret.startswith("whsec_")
    assert again.secret is None
    assert again.webhook.id == first.webhook.id
    assert other.webhook.id != first.webhook.id
    assert [w.id for w in container.webhooks.list_webhooks("default")] == [
        first.webhook.id,
        other.webhook.id,
    ]
    assert container.webhooks.list_webhooks("another") == []


async def test_a_filter_picks_the_executions_announced(container: Container) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        async with webhooks(container):
            register(container, url, ["running"], label="team=red")
            await asyncio.to_thread(running, container, labels={"team": "blue"})
            red = await asyncio.to_thread(running, container, labels={"team": "red"})
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 1)
            last = await asyncio.to_thread(running, container, labels={"team": "red"})
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 2)

    assert [r.message["data"]["id"] for r in receiver.received] == [str(red), str(last)]


async def test_another_api_process_takes_over_what_was_not_yet_delivered(
    container: Container,
) -> None:
    accepting = asyncio.Event()
    receiver = Receiver(lambda received, n: 200 if accepting.is_set() else 500)
    with receiving(receiver) as url:
        first = WebhookService(Settings(**FAST), container.database_url, container.service)
        second = WebhookService(Settings(**FAST), container.database_url, container.service)
        await first.start()
        await second.start()
        try:
            while not first.active:
                await asyncio.sleep(0.02)
            assert not second.active  # one active per database
            register(container, url, ["running"])
            await asyncio.to_thread(running, container)
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 1)
            await first.stop()  # with the message still to be delivered
            accepting.set()
            await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= 2)
            assert second.active
        finally:
            await first.stop()
            await second.stop()

    refused, accepted = receiver.received[0], receiver.received[-1]
    assert refused.webhook_id == accepted.webhook_id
    assert accepted.message["type"] == "execution.running"
