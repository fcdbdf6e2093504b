"""`agentboard up`: the whole stack in one command, stopped cleanly, restarted on its data."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil

from domain.application import ExecutionService
from domain.values import Actor, ActorKind
from infra.eventstore import eventsourcing_env
from infra.settings import Settings
from tests.e2e.conftest import RunningStack, start_stack


def children_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_up_serves_health_and_readiness(stack: RunningStack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["postgres"]["ok"] is True
    assert stack.stack["database_url"].startswith("postgresql://postgres@127.0.0.1:")
    assert not stack.stack["database_url"].endswith(":5432/postgres")  # never the machine's own
    assert not stack.stack["nats_url"].endswith(":4222")


def test_sigterm_stops_everything_and_a_second_up_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    servers = children_of(first.process.pid)
    database_url = first.stack["database_url"]
    service = ExecutionService(
        eventsourcing_env(database_url, Settings(database_url=database_url), create_table=False)
    )
    created = service.create(
        tenant="default", agent_id="script", worker_queue="unserved",  # no more events
        prompt="survive a restart", created_by=Actor(ActorKind.USER, "alice"),
    )  # fmt: skip
    service.close()

    assert first.stop(signal.SIGTERM) == 0
    assert not any(server.is_running() for server in servers)  # postgres and nats stopped too
    assert not (data_dir / "stack.json").exists()

    second = start_stack(data_dir)
    try:
        ready = httpx.get(f"{second.url}/readyz").json()
        assert ready["checks"]["postgres"]["position"] == created.position
    finally:
        assert second.stop(signal.SIGINT) == 0
