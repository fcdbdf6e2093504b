"""The HTTP API against the running stack: keys, roles, tenants, commands, bad input.

Every test runs on the session's shared stack, in a tenant of its own (``keys``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from infra.keys import KeyStore, Role
from tests.e2e.conftest import RunningStack, new_tenant
from tests.e2e.scrape import scrape, series
from tests.eventually import eventually

SCRIPT = {"agent_id": "script", "prompt": "two tools", "parameters": {"steps": [
    {"tool": "search", "args": {"q": "x"}}, {"tool": "read", "args": {}}]}}  # fmt: skip


@pytest.fixture(scope="module")
def stack(shared_stack: RunningStack) -> RunningStack:
    return shared_stack


@pytest.fixture
def keys(stack: RunningStack, tenant: str) -> dict[str, str]:
    """Keys of this test's own tenant, the admin key of `up`, and another tenant's admin."""
    store = KeyStore(stack.stack["database_url"])
    return {
        "admin": (stack.data_dir / "admin.key").read_text().strip(),
        "viewer": store.create(tenant, Role.VIEWER, "test"),
        "operator": store.create(tenant, Role.OPERATOR, "test"),
        "other_tenant": store.create(new_tenant(), Role.ADMIN, "test"),
    }


def client(stack: RunningStack, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=stack.url, headers=headers, timeout=30)


def wait_for(api: httpx.Client, execution_id: str, status: str) -> dict[str, Any]:
    """The execution once it shows ``status``."""
    body: dict[str, Any] = eventually(
        lambda: api.get(f"/v1/executions/{execution_id}").json(),
        lambda body: body.get("status") == status,
        what=f"execution {execution_id} to be {status}",
    )
    return body


def test_an_execution_created_over_http_runs_to_completion(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    api = client(stack, keys["operator"])
    created = api.post("/v1/executions", json=SCRIPT)
    assert created.status_code == 201
    execution = created.json()
    assert execution["status"] == "pending"
    assert execution["created_by"]["kind"] == "api"

    done = wait_for(api, execution["id"], "completed")
    assert done["status"] == "completed"
    events = api.get(f"/v1/executions/{execution['id']}/events").json()
    assert [e["type"] for e in events].count("ToolCalled") == 2


def test_the_admin_key_of_up_works_and_a_missing_or_wrong_key_is_401(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    some_id = uuid4()
    assert client(stack, keys["admin"]).get(f"/v1/executions/{some_id}").status_code == 404
    for key in (None, "ab_nope_nope", "not-a-key"):
        response = client(stack, key).get(f"/v1/executions/{some_id}")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"]


def test_a_viewer_reads_but_cannot_act(stack: RunningStack, keys: dict[str, str]) -> None:
    created = client(stack, keys["operator"]).post("/v1/executions", json=SCRIPT).json()
    viewer = client(stack, keys["viewer"])

    assert viewer.get(f"/v1/executions/{created['id']}").status_code == 200
    refused = viewer.post("/v1/executions", json=SCRIPT)
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    assert viewer.post(f"/v1/executions/{created['id']}/cancel").status_code == 403


def test_another_tenant_sees_nothing_and_changes_nothing(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    ours = client(stack, keys["operator"]).post("/v1/executions", json=SCRIPT).json()
    theirs = client(stack, keys["other_tenant"])
    path = f"/v1/executions/{ours['id']}"

    for response in (
        theirs.get(path),
        theirs.get(f"{path}/events"),
        theirs.post(f"{path}/cancel"),
        theirs.post(f"{path}/input", json={"answer": "x"}),
    ):
        assert response.status_code == 404
        assert ours["id"] in response.json()["detail"]  # the id they sent, nothing more
    events = client(stack, keys["operator"]).get(f"{path}/events").json()
    assert "CancelRequested" not in [e["type"] for e in events]


def test_bad_input_is_a_clear_4xx_and_records_nothing(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    api = client(stack, keys["operator"])
    cases = [
        ({"agent_id": "", "prompt": "x"}, "agent_id"),
        ({"agent_id": "a", "prompt": "x", "priority": "high"}, "priority"),
        ({"agent_id": "a", "prompt": "x", "worker_queue": "no spaces"}, "worker_queue"),
        ({"agent_id": "a", "prompt": "x" * (65 * 1024)}, "prompt"),
        ({"agent_id": "a", "prompt": "x", "surprise": 1}, "surprise"),
        ({"prompt": "x"}, "agent_id"),
    ]
    for body, field in cases:
        response = api.post("/v1/executions", json=body)
        assert response.status_code == 400, body
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.json()["detail"]
    malformed = api.post(
        "/v1/executions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert api.get("/v1/executions/not-a-uuid").status_code in (400, 404)
    answered = api.post(f"/v1/executions/{uuid4()}/input", json={"answer": 1})
    assert answered.status_code == 404


def test_an_idempotency_key_returns_the_first_execution(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    api = client(stack, keys["operator"])
    headers = {"Idempotency-Key": "nightly-2026-11-22"}
    first = api.post("/v1/executions", json=SCRIPT, headers=headers).json()
    again = api.post("/v1/executions", json=SCRIPT, headers=headers).json()
    changed = api.post("/v1/executions", json={**SCRIPT, "prompt": "other"}, headers=headers)

    assert again["id"] == first["id"]
    assert changed.status_code == 422
    assert "idempotency key" in changed.json()["detail"]


def test_an_answer_from_http_resumes_an_agent(stack: RunningStack, keys: dict[str, str]) -> None:
    api = client(stack, keys["operator"])
    body = {"agent_id": "script", "prompt": "ask", "parameters": {"steps": [{"ask": "Go?"}]}}
    execution = api.post("/v1/executions", json=body).json()
    waiting = wait_for(api, execution["id"], "requires_input")
    assert waiting["question"] == "Go?"
    answered = api.post(f"/v1/executions/{execution['id']}/input", json={"answer": "yes"})
    assert answered.status_code == 200
    done = wait_for(api, execution["id"], "completed")
    assert done["result"] == {"answers": ["yes"]}
    refused = api.post(f"/v1/executions/{execution['id']}/input", json={"answer": "again"})
    assert refused.status_code == 409


def run_cli(
    stack: RunningStack, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTBOARD_URL": stack.url, "AGENTBOARD_DATA_DIR": str(stack.data_dir)}
    env.pop("AGENTBOARD_API_KEY", None)
    if key:
        env["AGENTBOARD_API_KEY"] = key
    agentboard = Path(sys.executable).parent / "agentboard"
    return subprocess.run(
        [str(agentboard), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_from_the_cli(stack: RunningStack, keys: dict[str, str], tenant: str) -> None:
    made = run_cli(stack, "keys", "create", "--tenant", tenant, "--role", "viewer")
    assert made.returncode == 0, made.stderr
    new_key = made.stdout.strip()
    assert client(stack, new_key).get(f"/v1/executions/{uuid4()}").status_code == 404

    refused = run_cli(stack, "keys", "create", "--tenant", "x", "--role", "viewer",
                      key=keys["operator"])  # fmt: skip
    assert refused.returncode == 1
    assert "admin role" in refused.stderr
    assert "Traceback" not in refused.stderr

    bad = run_cli(stack, "keys", "create", "--tenant", "x", "--role", "boss")
    assert bad.returncode == 2
    mixed = run_cli(stack, "keys", "create", "--tenant", "x", "--role", "viewer", "--queue", "q")
    assert mixed.returncode == 2
    assert "worker keys only" in mixed.stderr

    admin = client(stack, keys["admin"])
    made_http = admin.post("/v1/keys", json={"tenant": tenant, "role": "worker",
                                             "queues": ["gpu", "gpu", "cpu"]})  # fmt: skip
    assert made_http.status_code == 201, made_http.text
    assert made_http.json()["queues"] == ["cpu", "gpu"]
    refused_http = admin.post("/v1/keys", json={"tenant": tenant, "role": "operator",
                                                "queues": ["gpu"]})  # fmt: skip
    assert refused_http.status_code == 400
    assert "worker keys only" in refused_http.json()["detail"]


def test_keys_are_listed_without_secrets_and_a_revoked_key_is_refused_at_once(
    stack: RunningStack, keys: dict[str, str], tenant: str
) -> None:
    made = run_cli(stack, "keys", "create", "--tenant", tenant, "--role", "operator")
    assert made.returncode == 0, made.stderr
    new_key = made.stdout.strip()
    key_id = new_key.split("_")[1]
    assert client(stack, new_key).get("/v1/board").status_code == 200

    listed = run_cli(stack, "keys", "list", "--tenant", tenant, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    [mine] = [item for item in json.loads(listed.stdout) if item["key_id"] == key_id]
    assert (mine["tenant"], mine["role"], mine["revoked_at"]) == (tenant, "operator", None)
    assert new_key.split("_", 2)[2] not in listed.stdout  # never the secret (it may hold _)
    table = run_cli(stack, "keys", "list")
    assert key_id in table.stdout

    revoked = run_cli(stack, "keys", "revoke", new_key)  # the key itself, or its id
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked {key_id}" in revoked.stdout
    refused = client(stack, new_key).get("/v1/board")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    again = run_cli(stack, "keys", "revoke", key_id)
    assert again.returncode == 1
    assert "revoked already" in again.stderr
    assert "Traceback" not in again.stderr
    after = client(stack, keys["admin"]).get("/v1/keys", params={"tenant": tenant}).json()
    assert [k["revoked_at"] is not None for k in after["items"] if k["key_id"] == key_id] == [True]


def test_metrics_show_requests_commands_and_queue_depth(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    api = client(stack, keys["operator"])
    route = {"method": "POST", "route": "/v1/executions"}
    created = series("agentboard_http_requests_total", **route, status="201")
    before = scrape(stack.url).get(created, 0.0)
    api.post("/v1/executions", json=SCRIPT)
    seen = scrape(stack.url)

    assert seen[created] == before + 1  # the shared stack served others before
    assert series("agentboard_commands_total") in seen
    assert series("agentboard_queue_depth", queue="default", band="normal") in seen
    assert seen[series("agentboard_events_stored")] >= 1


def test_list_board_and_durations_follow_the_executions(
    stack: RunningStack, keys: dict[str, str]
) -> None:
    api = client(stack, keys["operator"])
    labelled = {**SCRIPT, "labels": {"team": "search"}, "agent_id": "script"}
    made = [api.post("/v1/executions", json=labelled).json() for _ in range(3)]
    ids = [execution["id"] for execution in made]
    waiting = api.post("/v1/executions", json={**SCRIPT, "parameters": {"steps": [{"ask": "?"}]}})
    for execution_id in ids:
        wait_for(api, execution_id, "completed")
    wait_for(api, waiting.json()["id"], "requires_input")

    body = eventually(  # the board view follows the log within milliseconds
        lambda: api.get("/v1/board").json(),
        lambda body: {c["status"]: c["count"] for c in body["columns"]}.get("completed") == 3,
        what="the board to count the 3 completed executions", timeout=10,
    )  # fmt: skip
    counts = {column["status"]: column["count"] for column in body["columns"]}
    assert counts["completed"] == 3
    assert counts["requires_input"] == 1
    assert [c["status"] for c in body["columns"]] == [
        "pending", "running", "requires_input", "blocked", "completed", "failed", "cancelled",
    ]  # fmt: skip

    listed = api.get("/v1/executions", params={"status": "completed", "label": "team=search"})
    assert sorted(item["id"] for item in listed.json()["items"]) == sorted(ids)
    first_page = api.get("/v1/executions", params={"limit": 2}).json()
    assert len(first_page["items"]) == 2
    rest = api.get("/v1/executions", params={"limit": 2, "cursor": first_page["next_cursor"]})
    assert len(rest.json()["items"]) == 2

    detail = api.get(f"/v1/executions/{ids[0]}").json()
    assert set(detail["time_in_status"]) >= {"pending", "running", "completed"}
    assert [call["tool"] for call in detail["tool_calls"]] == ["search", "read"]

    first = str(made[0]["position"])  # right after the tenant's first create
    past = api.get("/v1/board", params={"as_of": first}).json()
    past_counts = {c["status"]: c["count"] for c in past["columns"]}
    assert past_counts["pending"] == 1
    assert past_counts["completed"] == 0

    stats = api.get("/v1/stats/status-durations", params={"group_by": "agent"}).json()
    assert {row["status"] for row in stats} >= {"pending", "running"}

    assert api.get("/v1/executions", params={"status": "sleeping"}).status_code == 400
    assert api.get("/v1/executions", params={"limit": 501}).status_code == 400
    assert api.get("/v1/executions", params={"older_than": "soon"}).status_code == 400
    assert api.get("/v1/board", params={"as_of": "yesterday"}).status_code == 400
    for as_of in ("²", "9" * 5000, str(2**63)):  # digits int() refuses, or past any position
        assert api.get("/v1/board", params={"as_of": as_of}).status_code == 400, as_of
    for age in ("999999999d", "9999999999d", "60000000m"):  # older than any date
        refused = api.get("/v1/executions", params={"older_than": age})
        assert refused.status_code == 400, age
        assert "at most" in refused.json()["detail"]
    assert api.get("/v1/stats/status-durations", params={"group_by": "moon"}).status_code == 400
