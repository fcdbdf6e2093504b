"""Each process role on its own (DESIGN §11): `agentboard api`, `relay`, `projections run`
and `worker`, each a process connecting to AGENTBOARD_DATABASE_URL and AGENTBOARD_NATS_URL,
together run an execution to its end and show it on the board."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.keys import KeyStore, Role
from infra.processes import free_port

AGENTBOARD = str(Path(sys.executable).parent / "agentboard")
T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    postgres = EmbeddedPostgres(tmp_path / "servers", fsync=False)
    nats = EmbeddedNats(tmp_path / "servers")
    database_url, nats_url = postgres.start(), nats.start()
    try:
        yield {"AGENTBOARD_DATABASE_URL": database_url, "AGENTBOARD_NATS_URL": nats_url}
    finally:
        nats.stop()
        postgres.stop()


def test_the_roles_run_as_processes_of_their_own(servers: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **servers, "AGENTBOARD_DATA_DIR": str(tmp_path / "data"),
           "AGENTBOARD_HTTP_PORT": str(port)}  # fmt: skip
    log = (tmp_path / "roles.log").open("ab")
    url = f"http://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **extra: str) -> None:
        started.append(
            subprocess.Popen([AGENTBOARD, *args], env={**env, **extra}, stdout=log, stderr=log)
        )

    try:
        start("api")  # first: it makes the event store's tables
        until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "the api answers")
        keys = KeyStore(servers["AGENTBOARD_DATABASE_URL"])
        headers = {"Authorization": f"Bearer {keys.create('default', Role.ADMIN, 'test')}"}
        start("relay")
        start("projections", "run")
        start("worker", "--queue", "default", AGENTBOARD_API_KEY=keys.create(
            "default", Role.WORKER, "test"))  # fmt: skip
        until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, "the stack is ready")

        created = httpx.post(f"{url}/v1/executions", headers=headers, json={
            "agent_id": "script", "worker_queue": "default", "prompt": "on its own",
            "parameters": {"steps": [{"say": "hello from a worker process"}]},
        }).json()  # fmt: skip

        def execution() -> dict[str, Any] | None:
            got: dict[str, Any] = httpx.get(
                f"{url}/v1/executions/{created['id']}", headers=headers
            ).json()
            return got if got["status"] == "completed" else None

        def on_board() -> bool:
            board = httpx.get(f"{url}/v1/board", headers=headers).json()
            [done] = [column for column in board["columns"] if column["status"] == "completed"]
            return created["id"] in [card["id"] for card in done["items"]]

        assert until(execution, 60, "the execution completes")["status"] == "completed"
        assert until(on_board, 30, "the board shows it completed")
        refused = subprocess.run(
            [AGENTBOARD, "worker", "--api-key", "ab_unknown_secret"],
            env=env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "refused this worker" in refused.stderr
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(60) for process in started]
        log.close()

    assert codes == [0, 0, 0, 0], (tmp_path / "roles.log").read_text()[-3000:]


def test_a_role_with_nothing_to_connect_to_says_which_setting_is_missing(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "AGENTBOARD_DATA_DIR": str(tmp_path / "no-stack-here")}
    env.pop("AGENTBOARD_DATABASE_URL", None)
    env.pop("AGENTBOARD_NATS_URL", None)

    relay = subprocess.run(
        [AGENTBOARD, "relay"], env=env, capture_output=True, text=True, check=False
    )

    assert relay.returncode == 2
    assert "AGENTBOARD_DATABASE_URL" in relay.stderr
    assert "agentboard up" in relay.stderr
