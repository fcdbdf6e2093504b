"""Bring your own agent, end to end: a worker started with ``--agent`` on a module this test
writes, driven from Python with the SDK against the running stack (create, wait, list,
follow), its token usage on the execution and in the usage stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentboard_client import Client
from agentboard_client.errors import BadRequest

from tests.e2e.conftest import RunningStack, module_stack

pytestmark = pytest.mark.e2e

AGENTBOARD = Path(sys.executable).parent / "agentboard"
MODULE = """
from agentboard_client.agent import AgentContext


async def greet(context: AgentContext):
    async with context.tool("lookup", {"who": context.execution.prompt}) as call:
        call.summary = "found them"
    await context.usage("test-model", input_tokens=120, output_tokens=30, cost_usd=0.002)
    await context.usage("priced-model", input_tokens=1000, output_tokens=500)  # no cost given
    await context.say(f"hello {context.execution.prompt}\\n")
    return {"greeted": context.execution.prompt}
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from module_stack(tmp_path_factory, "sdk")


@pytest.fixture(scope="module")
def worker(running: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``agentboard worker --queue byo --agent greeter=byo_agent:greet``, started in the
    directory holding the module."""
    home = tmp_path_factory.mktemp("agents")
    (home / "byo_agent.py").write_text(MODULE)
    environment = {
        **os.environ, "AGENTBOARD_DATA_DIR": str(running.data_dir),
        "AGENTBOARD_PRICES": '{"priced-model": {"input": 1.0, "output": 2.0}}',
    }  # fmt: skip
    environment.pop("AGENTBOARD_API_KEY", None)
    with (home / "worker.log").open("ab") as log:
        process = subprocess.Popen(
            [str(AGENTBOARD), "worker", "--queue", "byo", "--agent", "greeter=byo_agent:greet"],
            cwd=home, env=environment, stdout=log, stderr=log,
        )  # fmt: skip
    yield
    process.terminate()
    process.wait(30)


@pytest.fixture
def client(running: RunningStack) -> Iterator[Client]:
    key = (running.data_dir / "admin.key").read_text().strip()
    with Client(running.url, key) as made:
        yield made


def test_the_sdk_drives_an_agent_of_ours_run_by_a_worker_started_with_agent(
    worker: None, client: Client
) -> None:
    created = client.executions.create(agent_id="greeter", worker_queue="byo", prompt="ada",
                                       labels={"suite": "sdk"})  # fmt: skip
    done = client.executions.wait(created.id, timeout=90)
    assert done.status == "completed", done.error
    assert done.result == {"greeted": "ada"}
    # the second report's cost comes from the worker's price table: 1000 * $1 + 500 * $2 per 1M
    assert done.usage is not None
    assert done.usage["cost_usd"] == pytest.approx(0.002 + 0.002)
    assert (done.usage["input_tokens"], done.usage["output_tokens"]) == (1120, 530)
    assert done.usage["reports"] == 2
    assert [call["tool"] for call in done.tool_calls or []] == ["lookup"]

    listed = client.executions.list(agent="greeter", label="suite=sdk")
    assert [item.id for item in listed.items] == [created.id]

    events = list(client.executions.follow(created.id))
    types = [event.type for event in events]
    assert types[-1] == "end"
    assert "UsageRecorded" in types
    assert "".join(event.text for event in events) == "hello ada\n"

    by_agent = {row["key"]: row for row in client.stats.usage("agent")}
    assert by_agent["greeter"]["input_tokens"] == 1120
    assert by_agent["greeter"]["cost_usd"] == pytest.approx(0.004)
    with pytest.raises(BadRequest, match="group_by"):
        client.stats.usage("moon")


def test_the_cli_shows_usage_per_model(worker: None, running: RunningStack, client: Client) -> None:
    created = client.executions.create(agent_id="greeter", worker_queue="byo", prompt="bo")
    assert client.executions.wait(created.id, timeout=90).status == "completed"
    key = (running.data_dir / "admin.key").read_text().strip()
    shown = subprocess.run(
        [str(AGENTBOARD), "stats", "usage", "--group-by", "model", "-o", "json"],
        env={**os.environ, "AGENTBOARD_URL": running.url, "AGENTBOARD_API_KEY": key},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    [row] = [row for row in json.loads(shown.stdout) if row["key"] == "test-model"]
    assert row["executions"] >= 1
    assert row["input_tokens"] == 120 * row["executions"]


def test_a_refusal_carries_the_problems_detail(running: RunningStack, client: Client) -> None:
    with pytest.raises(BadRequest) as refused:
        client.executions.create(agent_id="greeter", prompt="x", worker_queue="no spaces")
    assert refused.value.status == 400
    assert "worker_queue" in refused.value.detail
