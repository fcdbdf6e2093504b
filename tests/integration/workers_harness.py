"""Running the relay, the command service, the lease monitor and workers in a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from domain.execution import commands as c
from domain.execution.state import ExecutionState
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from infra.keys import KeyStore, Role
from infra.relay import relay_position
from infra.services import BackgroundServices
from tests.eventually import eventually_async
from workers.agents import BUILTIN_AGENTS
from workers.runtime import Worker

ALICE = Actor(ActorKind.USER, "alice")


@asynccontextmanager
async def running_stack(
    container: Container, *, workers: int = 1, concurrency: int = 4
) -> AsyncIterator[tuple[BackgroundServices, list[Worker]]]:
    services = BackgroundServices(container)
    await services.start()
    key = worker_key(container)
    started = [
        Worker(container.nats_url, ("default",), dict(BUILTIN_AGENTS), concurrency, key)
        for _ in range(workers)
    ]
    tasks = [asyncio.create_task(worker.run()) for worker in started]
    try:
        yield services, started
    finally:
        for worker in started:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        await services.stop()


def worker_key(
    container: Container,
    tenant: str = "default",
    role: Role = Role.WORKER,
    queues: tuple[str, ...] | None = None,
) -> str:
    """A key to report work with (one of tenant default serves every tenant)."""
    return KeyStore(container.database_url).create(tenant, role, "test", queues)


async def create(container: Container, agent: str = "script", **options: Any) -> UUID:
    options.setdefault("prompt", "a test run")
    options.setdefault("tenant", "default")
    options.setdefault("worker_queue", "default")
    result = await asyncio.to_thread(
        container.service.process_one,
        c.CreateExecution.new(agent_id=agent, created_by=ALICE, **options),
    )
    return result.execution.id


async def wait_for_status(
    container: Container, execution_id: UUID, *statuses: str, timeout: float = 20
) -> ExecutionState:
    return await eventually_async(
        lambda: asyncio.to_thread(container.service.state, execution_id),
        lambda state: state.status in statuses,
        what=f"{execution_id} to be {' or '.join(statuses)}",
        timeout=timeout,
        interval=0.02,
    )


async def wait_for_relay(container: Container, position: int, timeout: float = 10) -> None:
    """Until the relay has published (and JetStream acknowledged) the log up to ``position``."""
    datastore = container.read_models.datastore
    await eventually_async(
        lambda: asyncio.to_thread(relay_position, datastore),
        lambda tracked: tracked >= position,
        what=f"the relay's tracked position to reach {position}",
        timeout=timeout,
    )


def event_types(container: Container, execution_id: UUID) -> list[str]:
    return [type(event).__name__ for event in container.service.timeline(execution_id)]
