"""`agentboard up`: the whole stack in one command, stopped cleanly, restarted on its data."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.eventstore import eventsourcing_env
from infra.settings import Settings
from tests.e2e.conftest import RunningStack, start_stack
from tests.e2e.test_api import run_cli
from tests.eventually import eventually


def children_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_up_serves_health_and_readiness(shared_stack: RunningStack) -> None:
    stack = shared_stack
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["postgres"]["ok"] is True
    assert stack.stack["database_url"].startswith("postgresql://postgres@127.0.0.1:")
    assert not stack.stack["database_url"].endswith(":5432/postgres")  # never the machine's own
    assert not stack.stack["nats_url"].endswith(":4222")


# The next two tests stop or kill what they run on: each has a stack of its own.
def test_sigterm_stops_everything_and_a_second_up_keeps_the_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    servers = children_of(first.process.pid)
    database_url = first.stack["database_url"]
    service = ExecutionService(
        eventsourcing_env(database_url, Settings(database_url=database_url), create_table=False)
    )
    created = service.process_one(c.CreateExecution.new(
        tenant="default", agent_id="script", worker_queue="unserved",  # no more events
        prompt="survive a restart", created_by=Actor(ActorKind.USER, "alice"),
    ))  # fmt: skip
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


def test_a_killed_relay_projections_or_worker_process_is_started_again(
    stack: RunningStack,
) -> None:
    roles = {"relay": "relay", "projections run": "projections", "worker": "worker"}
    killed = []
    for child in children_of(stack.process.pid):
        try:
            command = " ".join(child.cmdline()[1:])
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
        if any(f"agentboard {role}" in command for role in roles):
            child.send_signal(signal.SIGKILL)  # as a crash or the OOM killer would
            killed.append(child)
    assert len(killed) == 3, [" ".join(c.cmdline()) for c in killed]
    psutil.wait_procs(killed, timeout=10)

    done = run_cli(stack, "exec", "echo after the crash", "--wait")  # relay and worker back

    assert done.returncode == 0, done.stderr
    execution_id = done.stdout.splitlines()[0]
    key = (stack.data_dir / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    eventually(  # the board is the projections' (back too)
        lambda: httpx.get(f"{stack.url}/v1/board", headers=headers).json(),
        lambda board: execution_id in [c["id"] for col in board["columns"] for c in col["items"]],
        what=f"the board to show {execution_id}",
    )
    assert "starting it again" in stack.log.read_text()
