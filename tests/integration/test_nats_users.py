"""NATS users per role (infra/nats_users.py): every role runs under its own user with only
the permissions it needs, and an execution still runs to its end with no permission
violation; a worker's user cannot publish events, read the event stream, or take work
from a queue it was not given."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from infra.embedded import EmbeddedNats
from infra.keys import KeyStore, Role
from infra.nats_users import authorization_config
from infra.processes import die_with_parent, free_port, stop_process
from tests.integration.cluster_support import AGENTBOARD, Roles, until

pytestmark = pytest.mark.integration

ROLES = ("admin", "api", "relay", "worker")


@dataclass
class SecuredNats:
    port: int
    passwords: dict[str, str]
    log: Path

    def url(self, role: str) -> str:
        return f"nats://{role}:{self.passwords[role]}@127.0.0.1:{self.port}"

    def violations(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "Violation" in line]


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    import signal  # noqa: PLC0415

    port = free_port()
    passwords = {role: secrets.token_hex(8) for role in ROLES}
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        + authorization_config(passwords, worker_queues=["default"])
    )
    log = tmp_path / "nats.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(EmbeddedNats.binary()), "-c", str(config)], stdout=out, stderr=out,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509
        )  # fmt: skip
    served = SecuredNats(port, passwords, log)
    until(lambda: asyncio.run(_connects(served.url("admin"))), 20, f"NATS\n{log.read_text()}")
    yield served
    stop_process(process, signal.SIGTERM)


async def _connects(url: str) -> bool:
    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    except (nats.errors.Error, OSError):
        return False
    await nc.close()
    return True


def test_every_role_runs_under_its_own_user(
    secured_nats: SecuredNats, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AGENTBOARD_DATABASE_URL": database_url,
        "AGENTBOARD_DATA_DIR": str(tmp_path / "data"),
        "AGENTBOARD_LOG_FORMAT": "text",
    }
    made = subprocess.run(
        [AGENTBOARD, "init"], env={**env, "AGENTBOARD_NATS_URL": secured_nats.url("admin")},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    worker_key = KeyStore(database_url).create("default", Role.WORKER, "test")
    logs = tmp_path / "logs"
    logs.mkdir()
    roles = Roles(env, logs)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        roles.start("api", "api", AGENTBOARD_HTTP_PORT=str(port),
                    AGENTBOARD_NATS_URL=secured_nats.url("api"))  # fmt: skip
        roles.start("relay", "relay", AGENTBOARD_NATS_URL=secured_nats.url("relay"))
        roles.start("projections", "projections", "run")
        roles.start("worker", "worker", AGENTBOARD_NATS_URL=secured_nats.url("worker"),
                    AGENTBOARD_API_KEY=worker_key)  # fmt: skip
        until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 90,
              f"the api is ready\n{roles.log_tails()}")  # fmt: skip
        created = httpx.post(f"{url}/v1/executions", headers=headers, json={
            "agent_id": "script", "worker_queue": "default", "prompt": "under users",
            "parameters": {"steps": [
                {"tool": "lookup", "args": {"q": 1}}, {"say": "hello"},
                {"artifact": {"name": "notes.txt", "text": "kept"}},
            ]},
        }).json()  # fmt: skip

        def execution() -> dict[str, Any] | None:
            got: dict[str, Any] = httpx.get(
                f"{url}/v1/executions/{created['id']}", headers=headers
            ).json()
            return got if got["status"] in ("completed", "failed") else None

        done = until(execution, 60, f"the execution ends\n{roles.log_tails()}")
    finally:
        codes = roles.stop()

    assert done["status"] == "completed", done
    assert secured_nats.violations() == []
    assert set(codes.values()) == {0}, f"{codes}\n{roles.log_tails(40)}"


def test_a_workers_user_cannot_publish_events_read_them_or_take_other_queues(
    secured_nats: SecuredNats,
) -> None:
    errors = asyncio.run(_as_a_worker(secured_nats.url("worker")))

    assert any("agentboard.events.default" in error for error in errors), errors
    assert any("agentboard.events.>" in error for error in errors), errors
    assert any("work-gpu-normal" in error for error in errors), errors


async def _as_a_worker(url: str) -> list[str]:
    errors: list[str] = []

    async def error_cb(error: Exception) -> None:
        errors.append(str(error))

    nc = await nats.connect(url, error_cb=error_cb, allow_reconnect=False)
    try:
        for attempt in (
            lambda: nc.publish("agentboard.events.default.forged.Completed", b"{}"),
            lambda: nc.subscribe("agentboard.events.>"),
            lambda: nc.publish("$JS.API.CONSUMER.MSG.NEXT.AGENTBOARD_WORK.work-gpu-normal"),
        ):
            await attempt()
            await nc.flush()
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return errors
