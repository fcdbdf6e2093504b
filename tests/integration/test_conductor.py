"""The conductor on a real PostgreSQL: a conductor stopped mid-pipeline and another that
takes over finish the pipeline creating each step once; of two conductors one is active,
and the other takes over when it stops."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.pipeline.application import PipelineService
from domain.pipeline.values import PipelineStatus, StepStatus
from infra.bootstrap import event_store, pipeline_store
from infra.conductor import Conductor
from infra.eventstore import ensure_schema
from infra.settings import Settings
from projections.engine.listener import Listener

SPEC = {
    "name": "restart",
    "items": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
    "columns": [
        {"name": "one", "agent_id": "script", "worker_queue": "default"},
        {"name": "two", "agent_id": "script", "worker_queue": "default"},
    ],
}
USER = {"kind": "user", "id": "ada"}
pytestmark = pytest.mark.anyio


@dataclass
class Stores:
    executions: ExecutionService
    pipelines: PipelineService
    listener: Listener
    url: str

    def conductor(self) -> Conductor:
        return Conductor(self.executions, self.pipelines, self.url, listener=self.listener)


@pytest.fixture
def stores(database_url: str, tmp_path: Path) -> Iterator[Stores]:
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    ensure_schema(database_url, settings)
    executions = event_store(settings, database_url, cache_size=0)
    pipelines = pipeline_store(settings, database_url)
    listener = Listener(database_url).start()
    yield Stores(executions, pipelines, listener, database_url)
    listener.stop()
    executions.close()
    pipelines.close()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.05)


def work_on(stores: Stores, pipeline_id: UUID, column: str, items: str) -> None:
    """A worker: pick up and complete the running steps of ``column`` for ``items``."""
    pipeline = stores.pipelines.get(pipeline_id)
    for key, step in pipeline.running_steps():
        if key.column != column or key.item_id not in items:
            continue
        if stores.executions.state(step.execution_id).status == "pending":  # not done yet
            picked = stores.executions.process_one(c.PickUp(step.execution_id, "w", str(uuid4())))
            lease = picked.execution.lease
            stores.executions.process_one(c.Complete(step.execution_id, lease, {"by": column}))


def running_in(stores: Stores, pipeline_id: UUID, column: str) -> int:
    steps = stores.pipelines.get(pipeline_id).running_steps()
    return sum(1 for key, _ in steps if key.column == column)


def created_steps(stores: Stores) -> int:
    return len(
        stores.executions.recorder.select_notifications(
            1, 10_000, topics=["agentboard.execution.Created.v1"]
        )
    )


async def test_a_conductor_that_stops_mid_pipeline_is_taken_over_creating_nothing_twice(
    stores: Stores,
) -> None:
    pipeline_id = stores.pipelines.start("default", SPEC, USER).id
    first, stopping = stores.conductor(), asyncio.Event()
    task = asyncio.create_task(first.run(stopping))
    await until(lambda: running_in(stores, pipeline_id, "one") == 3)
    await asyncio.to_thread(work_on, stores, pipeline_id, "one", "ab")
    await until(lambda: first.positions[0] > 0)
    task.cancel()  # it dies mid-pipeline: no clean stop
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.to_thread(work_on, stores, pipeline_id, "one", "c")  # while none runs

    second, stopping = stores.conductor(), asyncio.Event()
    task = asyncio.create_task(second.run(stopping))
    await until(lambda: running_in(stores, pipeline_id, "two") == 3)
    await asyncio.to_thread(work_on, stores, pipeline_id, "two", "abc")
    await until(lambda: stores.pipelines.get(pipeline_id).status is PipelineStatus.COMPLETED)
    stopping.set()
    await task
    assert created_steps(stores) == 6


async def test_one_conductor_is_active_and_another_takes_over_when_it_stops(
    stores: Stores,
) -> None:
    first, second = stores.conductor(), stores.conductor()
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    await until(lambda: first.active)
    second_task = asyncio.create_task(second.run(stop_second))
    await asyncio.sleep(1.5)  # the second tries for the lock every second: it must not win
    assert not second.active
    stop_first.set()
    await first_task
    started = time.monotonic()
    await until(lambda: second.active, timeout=10)
    assert time.monotonic() - started < 10
    pipeline_id = stores.pipelines.start("default", SPEC, USER).id
    await until(lambda: running_in(stores, pipeline_id, "one") == 3)
    stop_second.set()
    await second_task


def test_a_conductor_process_sigkilled_at_random_moments_creates_each_step_once(
    stores: Stores, tmp_path: Path
) -> None:
    """`agentboard conductor` as a process, killed with SIGKILL at random moments while a
    worker (here, in the test) completes whatever runs: the pipeline ends as an
    uninterrupted run would, every step created exactly once."""
    spec = {
        "name": "killed", "flow": "stream", "max_concurrency": 2,
        "items": [{"id": f"i{n}"} for n in range(4)],
        "columns": [{"name": n, "agent_id": "script", "worker_queue": "default"}
                    for n in ("one", "two", "three")],
    }  # fmt: skip
    pipeline_id = stores.pipelines.start("default", spec, USER).id
    env = {
        **os.environ,
        "AGENTBOARD_DATABASE_URL": stores.url,
        "AGENTBOARD_DATA_DIR": str(tmp_path),
    }
    agentboard = str(Path(sys.executable).parent / "agentboard")
    chance = random.Random(14)
    kills = 0
    deadline = time.monotonic() + 240
    while stores.pipelines.get(pipeline_id).status is not PipelineStatus.COMPLETED:
        assert time.monotonic() < deadline, "the pipeline did not finish"
        process = subprocess.Popen(
            [agentboard, "conductor"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # killed at a random moment once it has recorded something (its start-up time
            # varies with the machine's load; a kill before it acts would test nothing)
            before, lived = stores.pipelines.get(pipeline_id).version, None
            while lived is None or time.monotonic() < lived:
                assert time.monotonic() < deadline, "the pipeline did not finish"
                pipeline = stores.pipelines.get(pipeline_id)
                if pipeline.status is PipelineStatus.COMPLETED:
                    break
                if lived is None and pipeline.version > before:
                    lived = time.monotonic() + chance.uniform(0.0, 1.5)
                for key, _ in pipeline.running_steps()[:1]:
                    work_on(stores, pipeline_id, key.column, key.item_id)
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    pipeline = stores.pipelines.get(pipeline_id)
    assert len(pipeline.steps) == 12
    assert all(step.status is StepStatus.COMPLETED for step in pipeline.steps.values())
    assert created_steps(stores) == 12
    assert kills >= 2
