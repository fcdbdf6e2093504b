"""Stepping in through the running stack, as a user does: blocks and answers over HTTP and
the CLI, errors that say what to fix, and `agentboard up` on a port already taken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.processes import free_port
from tests.e2e.conftest import RunningStack, admin_client, module_stack
from tests.e2e.scrape import scrape, series
from tests.e2e.test_api import run_cli, wait_for

APPROVAL = {"type": "object", "required": ["approved"],
            "properties": {"approved": {"type": "boolean"}}}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from module_stack(tmp_path_factory, "interventions")


@pytest.fixture(scope="module")
def api(stack: RunningStack) -> httpx.Client:
    return admin_client(stack)


def script(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"agent_id": "script", "prompt": "steps", "parameters": {"steps": list(steps)},
            **fields}  # fmt: skip


def tool_outcomes(api: httpx.Client, execution_id: str) -> list[tuple[str, str]]:
    calls = api.get(f"/v1/executions/{execution_id}").json()["tool_calls"]
    return [(call["tool"], call["outcome"]) for call in calls if call["outcome"]]


def test_a_blocked_execution_shows_who_blocked_it_and_why(
    stack: RunningStack, api: httpx.Client
) -> None:
    execution_id = api.post("/v1/executions", json=script(
        {"tool": "build", "seconds": 3}, {"tool": "deploy"})).json()["id"]  # fmt: skip
    wait_for(api, execution_id, "running")

    blocked = api.post(f"/v1/executions/{execution_id}/block", json={"reason": "change freeze"})
    assert blocked.status_code == 200
    detail = api.get(f"/v1/executions/{execution_id}").json()
    assert detail["status"] == "blocked"
    assert detail["blocked"]["reason"] == "change freeze"
    assert detail["blocked"]["by"]["kind"] == "user"
    deadline = time.monotonic() + 30
    while not tool_outcomes(api, execution_id) and time.monotonic() < deadline:
        time.sleep(0.1)  # the build ends meanwhile
    time.sleep(1)  # the run would start the deploy now, were it not blocked
    listed = api.get("/v1/executions", params={"status": "blocked"}).json()["items"]
    assert [(c["id"], c["blocked"]["reason"]) for c in listed] == [(execution_id, "change freeze")]
    shown = run_cli(stack, "execution", "get", execution_id)
    assert "change freeze" in shown.stdout
    assert tool_outcomes(api, execution_id) == [("build", "success")]  # no deploy yet

    unblocked = run_cli(stack, "execution", "unblock", execution_id)
    assert unblocked.returncode == 0, unblocked.stderr
    assert unblocked.stdout.split() == [execution_id, "running"]
    done = wait_for(api, execution_id, "completed")
    assert done["status"] == "completed"
    assert done["blocked"] is None
    assert done["worker_id"]  # who ran it stays on record
    assert done["time_in_status"]["completed"] == 0  # the clock stops at the end


def test_the_cli_blocks_and_a_blocked_execution_can_be_cancelled(
    stack: RunningStack, api: httpx.Client
) -> None:
    execution_id = api.post(
        "/v1/executions", json=script({"tool": "migrate", "seconds": 600})
    ).json()["id"]
    wait_for(api, execution_id, "running")

    blocked = run_cli(stack, "execution", "block", execution_id, "--reason", "disk full")
    assert blocked.returncode == 0, blocked.stderr
    assert blocked.stdout.split() == [execution_id, "blocked"]
    assert api.get(f"/v1/executions/{execution_id}").json()["blocked"]["reason"] == "disk full"
    no_reason = run_cli(stack, "execution", "block", execution_id)
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr

    api.post(f"/v1/executions/{execution_id}/cancel")
    assert wait_for(api, execution_id, "cancelled")["status"] == "cancelled"


def test_an_answer_must_fit_its_question(stack: RunningStack, api: httpx.Client) -> None:
    ask = {"ask": "Deploy to production?", "kind": "approval", "schema": APPROVAL}
    execution_id = api.post("/v1/executions", json=script(ask)).json()["id"]
    waiting = wait_for(api, execution_id, "requires_input")
    assert waiting["pending_input"] == {
        "question": "Deploy to production?", "kind": "approval", "schema": APPROVAL,
    }  # fmt: skip

    refused = api.post(f"/v1/executions/{execution_id}/input", json={"answer": "yes"})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "answer: 'yes' is not of type 'object'" in refused.json()["detail"]
    by_cli = run_cli(stack, "execution", "respond", execution_id, '{"approved": "yes"}')
    assert by_cli.returncode == 2
    assert "answer.approved: 'yes' is not of type 'boolean'" in by_cli.stderr
    assert api.get(f"/v1/executions/{execution_id}").json()["status"] == "requires_input"

    answered = run_cli(stack, "execution", "respond", execution_id, '{"approved": true}')
    assert answered.returncode == 0, answered.stderr
    assert wait_for(api, execution_id, "completed")["result"] == {"answers": [{"approved": True}]}


def test_a_sub_task_names_its_parent(api: httpx.Client) -> None:
    parent = api.post("/v1/executions", json=script()).json()["id"]
    child = api.post("/v1/executions", json=script(parent_execution_id=parent))
    assert child.status_code == 201
    assert child.json()["parent_execution_id"] == parent
    assert api.get(f"/v1/executions/{child.json()['id']}").json()["parent_execution_id"] == parent

    nobody = api.post(
        "/v1/executions", json=script(parent_execution_id="3fa85f64-5717-4562-b3fc-2c963f66afa6")
    )
    assert nobody.status_code == 422
    assert "parent_execution_id" in nobody.json()["detail"]


def test_cancelled_work_leaves_the_queue_depth(stack: RunningStack, api: httpx.Client) -> None:
    parked = [
        api.post("/v1/executions", json=script(worker_queue="parked")).json()["id"]
        for _ in range(3)
    ]  # no worker serves this queue
    api.post(f"/v1/executions/{parked[0]}/cancel")
    api.post(f"/v1/executions/{parked[1]}/cancel")
    api.get("/v1/executions", params={"queue": "parked"})  # read-your-writes: the board has them

    seen = scrape(stack.url)
    assert seen[series("agentboard_queue_depth", queue="parked", band="normal")] == 1


def test_exec_takes_priority_labels_deadline_and_a_team(
    stack: RunningStack, api: httpx.Client
) -> None:
    made = run_cli(
        stack, "exec", "review the release", "--queue", "parked", "--priority", "9",
        "--label", "team=search", "--label", "tier=1", "--deadline", "2h",
        "--type", "team", "--team", "release-crew",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    detail = api.get(f"/v1/executions/{made.stdout.strip()}").json()
    assert (detail["priority"], detail["labels"]) == (9, {"team": "search", "tier": "1"})
    assert (detail["type"], detail["team_id"]) == ("team", "release-crew")
    assert detail["deadline"] is not None

    for args, says in (
        (["--param", 'steps=[{"say": "hi"}'], "--param steps: the value looks like JSON"),
        (["--param", "note={oops"], "--param note: the value looks like JSON"),
        (["--type", "team"], "--type team --team T"),
        (["--deadline", "next week"], "--deadline is an ISO 8601 time"),
        (["--label", "nokey"], "--label takes key=value"),
    ):
        refused = run_cli(stack, "exec", "x", "--queue", "parked", *args)
        assert refused.returncode == 2, args
        assert says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    text = run_cli(stack, "exec", "x", "--queue", "parked", "--param", "note=plain words")
    assert text.returncode == 0, text.stderr


def test_errors_say_what_to_fix_in_the_caller_s_terms(api: httpx.Client) -> None:
    def problem(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        detail: str = response.json()["detail"]
        return detail

    empty = problem(api.post("/v1/executions"), 400)
    assert "a JSON body is required" in empty
    malformed = api.post(
        "/v1/executions", content=b'{"agent_id": "x",', headers={"content-type": "application/json"}
    )
    assert "the request body is not valid JSON" in problem(malformed, 400)
    export = problem(api.get("/v1/audit/export", params={"from": "yesterday"}), 400)
    assert export.startswith("from: not a time")
    assert "'yesterday'" in export
    assert "start" not in export
    limit = problem(api.get("/v1/executions", params={"limit": "ten"}), 400)
    assert limit == "limit: must be a whole number (sent 'ten')"
    for method, path in (("GET", "/v1/executions/abc"), ("POST", "/v1/executions/abc/cancel")):
        assert "'abc' is not an execution id" in problem(api.request(method, path), 404)
    assert "no such path: GET /v1/nothing" in problem(api.get("/v1/nothing"), 404)


def test_up_on_a_port_already_taken_says_so_before_starting_anything(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        env = {**os.environ, "AGENTBOARD_DATA_DIR": str(tmp_path / "data"),
               "AGENTBOARD_HTTP_PORT": str(port)}  # fmt: skip
        env.pop("AGENTBOARD_DATABASE_URL", None)
        env.pop("AGENTBOARD_NATS_URL", None)
        up = subprocess.run(
            [str(Path(sys.executable).parent / "agentboard"), "up"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert up.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in up.stderr
    assert "AGENTBOARD_HTTP_PORT" in up.stderr
    assert "agentboard is up" not in up.stdout
    assert "#key=" not in up.stdout
    assert not (tmp_path / "data" / "admin.key").exists()
    assert "Traceback" not in up.stderr


def test_up_prints_its_sign_in_link_once_it_listens(stack: RunningStack) -> None:
    printed = stack.log.read_text()
    link = next(line for line in printed.splitlines() if line.startswith("sign in to the board"))
    key = link.split("#key=", 1)[1]
    assert httpx.get(f"{stack.url}/v1/board", headers={"Authorization": f"Bearer {key}"}).json()
    assert printed.index("agentboard is up") > printed.index("Application startup complete")
    assert json.loads((stack.data_dir / "stack.json").read_text())["http_url"] == stack.url
