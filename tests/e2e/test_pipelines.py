"""Pipelines through the running stack (`agentboard up`): a YAML pipeline of 2 columns x 3
items over the built-in `script` agent, run with `agentboard pipeline run --wait`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningStack, admin_client, module_stack

PIPELINE = """
name: e2e-two-columns
items: [{id: A, size: 1}, {id: B, size: 2}, {id: C, size: 3}]
columns:
  - name: plan
    agent_id: script
    worker_queue: default
    prompt: "Plan {{ item.id }} of size {{ item.size }}"
    parameters: {steps: [{say: planned}]}
    output_schema: {type: object, required: [answers]}
  - name: build
    agent_id: script
    worker_queue: default
    max_concurrency: 1
    prompt: "Build {{ item.id }} after {{ outputs.plan.answers | length }} answers"
    parameters: {steps: [{tool: compile, args: {}, seconds: 0.05}]}
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from module_stack(tmp_path_factory, "pipelines")


def cli(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTBOARD_URL": stack.url, "AGENTBOARD_DATA_DIR": str(stack.data_dir)}
    env.pop("AGENTBOARD_API_KEY", None)
    agentboard = Path(sys.executable).parent / "agentboard"
    return subprocess.run(
        [str(agentboard), *args], env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def test_a_yaml_pipeline_runs_to_the_end_with_wait(running: RunningStack, tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(PIPELINE)
    ran = cli(running, "pipeline", "run", str(spec), "--wait", "--output", "json")
    assert ran.returncode == 0, ran.stderr
    pipeline_id, shown = ran.stdout.split("\n", 1)
    pipeline = json.loads(shown)
    assert pipeline["status"] == "completed"
    assert [column["name"] for column in pipeline["columns"]] == ["plan", "build"]
    for column in pipeline["columns"]:
        assert column["counts"] == {"completed": 3}
        assert [item["item_id"] for item in column["items"]] == ["A", "B", "C"]
    with admin_client(running) as http:
        steps = http.get("/v1/executions", params={"pipeline": pipeline_id}).json()["items"]
    assert len(steps) == 6
    assert {step["created_by"]["kind"] for step in steps} == {"pipeline"}
    assert {step["pipeline"]["id"] for step in steps} == {pipeline_id}
    assert sorted((s["pipeline"]["column"], s["pipeline"]["item_id"]) for s in steps) == [
        (column, item) for column in ("build", "plan") for item in "ABC"
    ]
    one = http_get_execution(running, steps[0]["id"])
    assert one["pipeline"] == steps[0]["pipeline"]
    prompts = sorted(step["prompt"] for step in steps)
    assert "Build A after 0 answers" in prompts
    assert "Plan C of size 3" in prompts


def http_get_execution(running: RunningStack, execution_id: str) -> dict[str, Any]:
    with admin_client(running) as http:
        found: dict[str, Any] = http.get(f"/v1/executions/{execution_id}").json()
    return found


def test_a_spec_that_cannot_run_is_refused_naming_the_field(
    running: RunningStack, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ncolumns: [{name: x, worker_queue: default, prompt: '{{'}]\n")
    ran = cli(running, "pipeline", "run", str(spec))
    assert ran.returncode == 2
    assert "columns[0].prompt: not a template" in ran.stderr
    with admin_client(running) as http:
        response = http.post("/v1/pipelines", json={"name": "x", "columns": []})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "columns" in response.json()["detail"]


def test_cancel_skips_what_waits(running: RunningStack) -> None:
    slow = {
        "name": "slow", "items": [{"id": n} for n in range(4)],
        "columns": [{"name": "wait", "agent_id": "script", "worker_queue": "default",
                     "max_concurrency": 1, "parameters": {"steps": [{"sleep": 30}]}}],
    }  # fmt: skip
    with admin_client(running) as http:
        started = http.post("/v1/pipelines", json=slow)
        assert started.status_code == 201, started.text
        pipeline_id = started.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first step runs: a worker holds it
            steps = http.get("/v1/executions", params={"pipeline": pipeline_id}).json()
            if [step for step in steps["items"] if step["status"] == "running"]:
                break
            time.sleep(0.1)
        cancelled = http.post(f"/v1/pipelines/{pipeline_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        items = cancelled.json()["columns"][0]["items"]
        assert sum(item["status"] == "skipped" for item in items) >= 3
        # the step that ran is cancelled by the conductor, and the view shows it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = http.get(f"/v1/pipelines/{pipeline_id}")
            if shown.status_code == 200 and shown.json()["columns"][0]["counts"].get("cancelled"):
                break
            time.sleep(0.2)
        assert shown.json()["columns"][0]["counts"] == {"cancelled": 1, "skipped": 3}
        listed = http.get("/v1/pipelines", params={"status": "cancelled"}).json()["items"]
        assert pipeline_id in [pipeline["id"] for pipeline in listed]


def test_the_stream_shows_every_move_and_resumes_after_the_last_id(running: RunningStack) -> None:
    spec = {
        "name": "streamed", "items": [{"id": "x"}, {"id": "y"}],
        "columns": [{"name": n, "agent_id": "script", "worker_queue": "default",
                     "parameters": {"steps": [{"say": n}]}} for n in ("one", "two")],
    }  # fmt: skip
    with admin_client(running) as http:
        pipeline_id = http.post("/v1/pipelines", json=spec).json()["id"]
        seen = read_stream(http, pipeline_id)
        assert seen[-1][1] == "Completed"
        names = [name for _, name in seen]
        assert names.count("StepDispatched") == 4
        assert names.count("StepEnded") == 4
        resumed = read_stream(http, pipeline_id, after=seen[-3][0])
        assert resumed == seen[-2:]


def read_stream(http: Any, pipeline_id: str, after: int | None = None) -> list[tuple[int, str]]:
    """(id, event) of each message of the pipeline's stream, until it ends."""
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    seen: list[tuple[int, str]] = []
    with http.stream(
        "GET", f"/v1/pipelines/{pipeline_id}/stream", headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        message_id = 0
        for line in response.iter_lines():
            if line.startswith("id: "):
                message_id = int(line[4:])
            elif line.startswith("event: "):
                seen.append((message_id, line[7:]))
    return seen


def test_follow_prints_each_move_until_the_end(running: RunningStack, tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(PIPELINE.replace("e2e-two-columns", "followed"))
    ran = cli(running, "pipeline", "run", str(spec), "--follow")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert "-> plan A (iteration 1)" in "\n".join(lines)
    assert sum(line.startswith("<- build") and "completed" in line for line in lines) == 3
    assert "pipeline completed" in lines
