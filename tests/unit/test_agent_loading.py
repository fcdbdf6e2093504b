"""A worker runs the agents named on its command line and those installed packages declare
(workers/loading.py); one that does not load stops it with one line (exit 2)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_context import RecordingContext
from workers.agents import BUILTIN_AGENTS
from workers.loading import AgentNotLoaded, load_agents

AGENTBOARD = Path(sys.executable).parent / "agentboard"
MODULE = """
from agentboard_client.agent import AgentContext

async def greet(context: AgentContext):
    async with context.tool("greet", {"who": context.execution.prompt}) as call:
        call.summary = "greeted"
    await context.say(f"hello {context.execution.prompt}")
    return {"greeted": context.execution.prompt}

NOT_CALLABLE = 3
"""


@pytest.fixture
def agents_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with ``my_agents_{id}.py``, importable, and cleaned from sys.modules."""
    (tmp_path / "my_agents_t.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_agents_t", None)


def test_an_agent_named_on_the_command_line_runs_beside_the_built_in_ones(
    agents_dir: Path,
) -> None:
    agents = load_agents(BUILTIN_AGENTS, ["greeter=my_agents_t:greet"], installed=False)
    assert set(agents) == {"shell", "script", "greeter"}
    context = RecordingContext(agent_id="greeter", prompt="ada")
    assert asyncio.run(agents["greeter"](context)) == {"greeted": "ada"}
    assert context.said == ["hello ada"]
    assert [(call.name, call.outcome) for call in context.tool_calls] == [("greet", "success")]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("greeter", "expected NAME=module:callable"),
        ("greeter=my_agents_t", "expected NAME=module:callable"),
        ("gr eeter=my_agents_t:greet", "expected NAME=module:callable"),
        ("greeter=no_such_module_here:greet", "cannot import 'no_such_module_here'"),
        ("greeter=my_agents_t:absent", "'my_agents_t' has no 'absent'"),
        ("greeter=my_agents_t:NOT_CALLABLE", "is a int, not an async callable"),
    ],
)
def test_an_agent_that_does_not_load_is_named_with_why(
    agents_dir: Path, spec: str, says: str
) -> None:
    with pytest.raises(AgentNotLoaded, match=says):
        load_agents(BUILTIN_AGENTS, [spec], installed=False)


def test_agents_come_from_the_entry_point_group(agents_dir: Path) -> None:
    info = agents_dir / "my_agents_t-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-agents-t\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[agentboard.agents]\nhello = my_agents_t:greet\n")
    agents = load_agents(BUILTIN_AGENTS, [])
    context = RecordingContext(agent_id="hello", prompt="bo")
    assert asyncio.run(agents["hello"](context)) == {"greeted": "bo"}


def run_worker(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment: dict[str, Any] = {**os.environ, "AGENTBOARD_API_KEY": "ab_unused_key"}
    return subprocess.run(
        [str(AGENTBOARD), "worker", *args], cwd=cwd, env=environment, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_worker_whose_agent_does_not_load_stops_with_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    shown = run_worker("--agent", "triage=nowhere_to_be_found:run", cwd=tmp_path)
    assert shown.returncode == 2
    lines = shown.stderr.strip().splitlines()
    assert lines == [
        "agentboard: agent 'triage' (--agent nowhere_to_be_found:run): cannot import "
        "'nowhere_to_be_found': ModuleNotFoundError: No module named 'nowhere_to_be_found'"
    ]


def test_a_wrong_setting_stops_the_worker_with_one_line_naming_it(tmp_path: Path) -> None:
    environment = {**os.environ, "AGENTBOARD_PRICES": '{"m": {"input": -1, "output": 1}}'}
    shown = subprocess.run(
        [str(AGENTBOARD), "worker"], cwd=tmp_path, env=environment, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 2
    assert shown.stderr.strip().splitlines() == [
        "agentboard: AGENTBOARD_PRICES (m.input): Input should be greater than or equal to 0"
    ]
