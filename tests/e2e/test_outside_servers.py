"""A deployment on servers of its own (DESIGN §10, §11): `agentboard init` makes the schema,
the NATS streams and the first admin key once; `agentboard up` with both URLs set starts
no server of its own, only agentboard's processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.keys import KeyStore, Role
from infra.nats import STREAMS
from infra.processes import free_port

AGENTBOARD = str(Path(sys.executable).parent / "agentboard")


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL and NATS that agentboard did not start: as a deployment's would be."""
    postgres = EmbeddedPostgres(tmp_path / "servers", fsync=False)
    nats_server = EmbeddedNats(tmp_path / "servers")
    database_url, nats_url = postgres.start(), nats_server.start()
    try:
        yield {"AGENTBOARD_DATABASE_URL": database_url, "AGENTBOARD_NATS_URL": nats_url}
    finally:
        nats_server.stop()
        postgres.stop()


def init(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTBOARD, "init"], env=env, capture_output=True, text=True, check=False, timeout=120
    )


async def stream_names(url: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        return {info.config.name or "" for info in await nc.jetstream().streams_info()}
    finally:
        await nc.close()


def test_init_makes_the_schema_the_streams_and_one_first_admin_key(
    outside: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **outside, "AGENTBOARD_DATA_DIR": str(tmp_path / "data")}

    first, again = init(env), init(env)

    assert first.returncode == 0, first.stderr
    [key] = first.stdout.split()
    principal = KeyStore(outside["AGENTBOARD_DATABASE_URL"]).verify(key)
    assert principal is not None
    assert (principal.tenant, principal.role) == ("default", Role.ADMIN)
    assert "schema created" in first.stderr
    assert {config.name for config in STREAMS} <= asyncio.run(
        stream_names(outside["AGENTBOARD_NATS_URL"])
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""  # shown once: a second run makes no other key
    assert "exists already" in again.stderr
    assert "schema already present" in again.stderr


def test_init_with_a_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTBOARD_DATABASE_URL": "postgresql://db/x?sslmode=sometimes"}

    refused = init(env)

    assert refused.returncode == 2
    assert "AGENTBOARD_DATABASE_URL" in refused.stderr
    assert "sslmode" in refused.stderr


def test_up_with_both_urls_set_starts_only_agentboards_processes(
    outside: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {**os.environ, **outside, "AGENTBOARD_DATA_DIR": str(data_dir),
           "AGENTBOARD_HTTP_PORT": str(port)}  # fmt: skip
    with (tmp_path / "up.log").open("ab") as log:
        up = subprocess.Popen([AGENTBOARD, "up"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while not _ready(port):
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        children = psutil.Process(up.pid).children(recursive=True)
        commands = [child.cmdline() for child in children]
        stack = json.loads((data_dir / "stack.json").read_text())
        key = (data_dir / "admin.key").read_text().strip()
        created = httpx.post(f"http://127.0.0.1:{port}/v1/executions",
            headers={"Authorization": f"Bearer {key}"},
            json={"agent_id": "script", "worker_queue": "default", "prompt": "outside",
                  "parameters": {"steps": [{"say": "hi"}]}},
        )  # fmt: skip
    finally:
        up.terminate()
        code = up.wait(60)

    assert created.status_code == 201
    assert (stack["database_url"], stack["nats_url"]) == (
        outside["AGENTBOARD_DATABASE_URL"], outside["AGENTBOARD_NATS_URL"],
    )  # fmt: skip
    assert sorted(_verb(command) for command in commands) == [
        "conductor",
        "projections",
        "relay",
        "worker",
    ]
    assert code == 0


def _verb(command: list[str]) -> str:
    """The agentboard verb a child runs (``python .../agentboard relay``), else its program:
    a server (nats-server, postgres) would show as such."""
    for index, part in enumerate(command[:-1]):
        if Path(part).name == "agentboard":
            return command[index + 1]
    return Path(command[0]).name


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
