"""Crashes, restarts, redeliveries and timeouts: nothing acknowledged is lost, nothing
happens twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NoKeysError

from infra.bootstrap import Container, bootstrap
from infra.embedded import EmbeddedNats
from infra.eventstore import ensure_schema
from infra.nats import (
    EVENTS_STREAM,
    PRESENCE_TTL_SECONDS,
    WORK_STREAM,
    connect,
    work_consumer,
    workers_bucket,
)
from infra.processes import free_port
from infra.relay import ACK_TIMEOUT_SECONDS, relay_position
from infra.settings import Settings
from tests.eventually import eventually_async
from tests.integration.workers_harness import (
    create,
    event_types,
    running_stack,
    wait_for_relay,
    wait_for_status,
    worker_key,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spawn_worker(container: Container, concurrency: int = 4) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AGENTBOARD_NATS_URL": container.nats_url,
           "AGENTBOARD_API_KEY": worker_key(container)}  # fmt: skip
    agentboard = Path(sys.executable).parent / "agentboard"
    return subprocess.Popen(
        [str(agentboard), "worker", "--queue", "default", "--concurrency", str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_a_killed_worker_s_executions_are_requeued_or_fail_as_worker_lost(
    container: Container,
) -> None:
    steps = {"steps": [{"say": "working\n"}, {"sleep": 2}]}
    async with running_stack(container, workers=0) as (services, _):
        doomed = spawn_worker(container)
        try:
            retried = await create(container, parameters=steps, retry={"max_attempts": 2})
            last_try = await create(container, parameters=steps, retry={"max_attempts": 1})
            for execution_id in (retried, last_try):
                await wait_for_status(container, execution_id, "running")
            assert services.nc is not None  # killed once its presence lists both claims
            await wait_for_presence(services.nc.jetstream(), {retried, last_try})
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        async with running_stack(container, workers=1):  # (a claim not yet announced is
            # left to the board scan: test_an_orphan_is_found_by_a_monitor_...)
            lost = await wait_for_status(container, last_try, "failed", timeout=30)
            done = await wait_for_status(container, retried, "completed", timeout=30)

    assert lost.failure_reason == "worker_lost"
    assert done.attempt == 2
    assert event_types(container, retried).count("PickedUp") == 2
    assert "LeaseExpired" in event_types(container, retried)


@contextlib.asynccontextmanager
async def on_own_nats(
    settings: Settings, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Container, EmbeddedNats]]:
    """A container on a NATS server of this test's own, which it may stop or pause."""
    nats = EmbeddedNats(tmp_path / "own-nats", port=free_port())
    nats_url = nats.start()
    ensure_schema(database_url, settings)
    container = bootstrap(settings, database_url=database_url, nats_url=nats_url)
    try:
        yield container, nats
    finally:
        container.close()
        nats.stop()


async def events_in_stream(nats: EmbeddedNats) -> int:
    client = await connect(nats.url, "check")
    try:
        info = await client.jetstream().stream_info(EVENTS_STREAM)
    finally:
        await client.close()
    return info.state.messages


async def wait_for_presence(js: JetStreamContext, held: set[UUID], timeout: float = 10) -> None:
    """Until some worker's presence lists every execution of ``held``."""
    bucket = await workers_bucket(js)
    wanted = {str(execution_id) for execution_id in held}

    async def presences() -> list[set[str]]:
        listed = []
        with contextlib.suppress(NoKeysError):
            for key in await bucket.keys():
                entry = await bucket.get(key)
                listed.append(set(json.loads(entry.value or b"{}").get("executions", {})))
        return listed

    await eventually_async(
        presences,
        lambda listed: any(wanted <= executions for executions in listed),
        what=f"a worker's presence to list {sorted(wanted)}",
        timeout=timeout,
    )


async def wait_for_acknowledged(js: JetStreamContext, sequence: int, timeout: float = 10) -> None:
    """Until the normal band's work consumer has acknowledged (or terminated) the work
    stream up to ``sequence``: the worker has handled that message."""
    await eventually_async(
        lambda: js.consumer_info(WORK_STREAM, work_consumer("default", "normal")),
        lambda info: info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= sequence,
        what=f"work message {sequence} to be handled",
        timeout=timeout,
    )


async def test_a_redelivered_work_message_does_not_run_twice(container: Container) -> None:
    async with running_stack(container) as (services, _):
        execution_id = await create(container, parameters={"steps": [{"tool": "t", "args": {}}]})
        await wait_for_status(container, execution_id, "completed")
        assert services.nc is not None
        js = services.nc.jetstream()
        payload = json.dumps({"execution_id": str(execution_id), "not_before": None}).encode()
        sent = await js.publish("agentboard.work.default", payload)  # a stray duplicate
        await wait_for_acknowledged(js, sent.seq)
        info = await js.consumer_info(WORK_STREAM, work_consumer("default", "normal"))

    assert event_types(container, execution_id).count("PickedUp") == 1
    assert info.num_ack_pending == 0  # acknowledged away, not redelivered


async def test_a_malformed_work_message_is_terminated(container: Container) -> None:
    async with running_stack(container) as (services, _):
        assert services.nc is not None
        js = services.nc.jetstream()
        sent = await js.publish("agentboard.work.default", b"this is not json")
        await wait_for_acknowledged(js, sent.seq)
        info = await js.consumer_info(WORK_STREAM, work_consumer("default", "normal"))

    assert info.num_ack_pending == 0
    assert info.num_redelivered == 0


async def test_the_relay_resumes_exactly_where_it_stopped(container: Container) -> None:
    async with running_stack(container, workers=0):
        first = [await create(container, prompt=f"first {n}") for n in range(5)]
        await wait_for_relay(container, len(first))
    second = [await create(container, prompt=f"second {n}") for n in range(5)]  # relay down
    async with running_stack(container, workers=0) as (services, _):
        await wait_for_relay(container, len(first) + len(second))
        assert services.nc is not None
        info = await services.nc.jetstream().stream_info(EVENTS_STREAM)
        assert services.relay is not None
        position = services.relay.position

    assert info.state.messages == len(first) + len(second)  # each event published once
    assert position == len(first) + len(second)


@pytest.mark.parametrize("bursts", [20, pytest.param(400, marks=pytest.mark.soak)])
async def test_the_relay_tracks_the_last_page_of_a_burst_once_idle(
    container: Container, bursts: int
) -> None:
    """Under a burst the relay writes its position at most every 100 ms; once it idles,
    the tracked position is the last stored one (nothing is left to republish)."""
    async with running_stack(container, workers=0) as (services, _):
        for burst in range(bursts):
            await asyncio.gather(*(create(container, prompt=f"burst {burst}") for _ in range(25)))
        stored = container.service.recorder.max_notification_id() or 0
        assert services.relay is not None
        relay = services.relay
        await eventually_async(
            lambda: relay.position,
            lambda position: position == stored,
            what=f"the relay to reach position {stored}",
            timeout=10,
        )
        tracked = await asyncio.to_thread(relay_position, container.read_models.datastore)

    assert stored == bursts * 25
    assert relay.position == stored
    assert tracked == stored


async def test_run_timeout_fails_with_reason_timeout(container: Container) -> None:
    async with running_stack(container):
        execution_id = await create(
            container, parameters={"steps": [{"sleep": 10}]}, timeout_seconds=0.5,
            retry={"max_attempts": 1},
        )  # fmt: skip
        state = await wait_for_status(container, execution_id, "failed", timeout=10)

    assert state.failure_reason == "timeout"


async def test_a_silent_execution_fails_on_its_heartbeat_timeout(container: Container) -> None:
    async with running_stack(container):
        execution_id = await create(
            container, parameters={"steps": [{"sleep": 10}]}, heartbeat_timeout_seconds=1,
            retry={"max_attempts": 1},
        )  # fmt: skip
        state = await wait_for_status(container, execution_id, "failed", timeout=15)

    assert state.failure_reason == "timeout"
    assert "heartbeat" in (state.error or "")


async def test_a_nats_restart_mid_run_loses_nothing(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    steps = {"steps": [{"say": "before\n"}, {"sleep": 2}, {"tool": "after", "args": {}}]}
    async with on_own_nats(settings, database_url, tmp_path) as (container, nats):
        async with running_stack(container):
            execution_id = await create(container, parameters=steps)
            await wait_for_status(container, execution_id, "running")
            nats.stop()
            await asyncio.sleep(0.5)  # the time under test: NATS is down for a while
            nats.start()
            state = await wait_for_status(container, execution_id, "completed", timeout=30)
            after = await create(container, parameters={"steps": []})
            await wait_for_status(container, after, "completed", timeout=30)
            stored = container.service.recorder.max_notification_id() or 0
            await wait_for_relay(container, stored)  # the last events are relayed after it
        in_stream = await events_in_stream(nats)

    assert state.result == {"answers": []}
    assert in_stream == stored  # every stored event reached the stream, once


async def test_the_relay_carries_on_after_acknowledgements_that_never_came(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """NATS paused: the relay's publishes get no acknowledgement, it gives up on them (more
    than once) and starts again from its tracked position; resumed, it relays everything."""
    async with on_own_nats(settings, database_url, tmp_path) as (container, nats):
        async with running_stack(container, workers=0):
            await create(container)
            await wait_for_relay(container, container.service.recorder.max_notification_id() or 0)
            assert nats.process is not None
            nats.process.send_signal(signal.SIGSTOP)
            try:
                await create(container)
                # the time under test: more than two acknowledgement timeouts pass unanswered
                await asyncio.sleep(ACK_TIMEOUT_SECONDS * 2 + 1)
            finally:
                nats.process.send_signal(signal.SIGCONT)
            await create(container)
            head = container.service.recorder.max_notification_id() or 0
            await wait_for_relay(container, head, timeout=30)
        in_stream = await events_in_stream(nats)

    assert head == 3
    assert in_stream == head  # each once: the republished ones were deduplicated


async def test_an_orphan_is_found_by_a_monitor_that_never_saw_its_worker(
    settings: Settings, database_url: str, nats_server: str
) -> None:
    ensure_schema(database_url, settings)
    container = bootstrap(
        settings, database_url=database_url, nats_url=nats_server, run_projections=True
    )
    try:
        async with running_stack(container, workers=0):
            doomed = spawn_worker(container)
            execution_id = await create(
                container, parameters={"steps": [{"sleep": 1}]}, retry={"max_attempts": 2}
            )
            await wait_for_status(container, execution_id, "running")
        doomed.send_signal(signal.SIGKILL)  # while no monitor runs
        doomed.wait()
        # the time under test: its presence expires while no monitor watches
        await asyncio.sleep(PRESENCE_TTL_SECONDS + 1)
        async with running_stack(container, workers=1):  # a new monitor, knowing nothing
            state = await wait_for_status(container, execution_id, "completed", timeout=60)
        events = event_types(container, execution_id)
    finally:
        container.close()

    assert state.attempt == 2
    assert "LeaseExpired" in events
