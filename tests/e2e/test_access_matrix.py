"""Who may call what, and what another tenant can see, for every /v1 operation.

The operations come from the running stack's OpenAPI document, so a new endpoint fails
`test_every_v1_operation_is_in_the_matrix` until its row says who may call it.
Roles (DESIGN §6, docs/decisions.md): every role reads its own tenant (a worker key reads
like a viewer: worker reports travel over NATS, not HTTP); operators also create, act and
act in bulk; admins also make keys. Another tenant's key sees none of our executions (a 404
for one named by id, nothing in lists, boards, stats or streams) and changes none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack, new_tenant
from tests.e2e.sse import SseReader
from tests.eventually import eventually

ROLES = ("viewer", "operator", "worker", "admin")
READ = frozenset(ROLES)
OPERATE = frozenset({"operator", "admin"})
ADMIN = frozenset({"admin"})
MARK = "only-the-default-tenant-knows-this"  # in every prompt of ours
IDLE = "nobody"  # a queue without workers: executions there stay pending
THEIRS = new_tenant()  # the other tenant, of this module alone


@dataclass(frozen=True)
class Row:
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)  # besides execution_id
    stream: bool = False  # SSE: the answer's status, then hang up


NO_WEBHOOK = "wh_0000000000000000"  # no such webhook
NO_PIPELINE = {"pipeline_id": "00000000-0000-0000-0000-000000000000"}  # no such pipeline
PIPELINE = {  # one step on a queue without workers: it stays pending
    "name": "matrix", "items": [{"id": "a"}],
    "columns": [{"name": "one", "agent_id": "script", "worker_queue": "nobody"}],
}  # fmt: skip
CREATE = {"agent_id": "script", "worker_queue": IDLE, "prompt": "made by the matrix"}
MATRIX: dict[str, Row] = {
    "listExecutions": Row(READ),
    "createExecution": Row(OPERATE, body=CREATE),
    "getExecution": Row(READ),
    "getExecutionEvents": Row(READ),
    "getExecutionLogs": Row(READ),
    "cancelExecution": Row(OPERATE),
    "retryExecution": Row(OPERATE),
    "answerExecution": Row(OPERATE, body={"answer": "yes"}),
    "blockExecution": Row(OPERATE),
    "unblockExecution": Row(OPERATE),
    "bulkExecutions": Row(OPERATE, body={"action": "cancel", "dry_run": True,
                                         "filter": {"status": ["pending", "running"]}}),
    "getBoard": Row(READ),
    "streamBoard": Row(READ, stream=True),
    "getStatusDurations": Row(READ),
    "getUsage": Row(READ),
    "createKey": Row(ADMIN, body={"tenant": "default", "role": "viewer"}),
    "listKeys": Row(ADMIN),
    "revokeKey": Row(ADMIN, path_params={"key_id": "0000000000000000"}),  # no such key
    "exportAudit": Row(READ),  # each role exports its own tenant's trail
    "getArtifact": Row(READ, path_params={"name": "report.txt"}),
    "createWebhook": Row(ADMIN, body={"url": "http://127.0.0.1:9/matrix", "events": ["failed"]}),
    "listWebhooks": Row(ADMIN),
    "getWebhook": Row(ADMIN, path_params={"webhook_id": NO_WEBHOOK}),
    "deleteWebhook": Row(ADMIN, path_params={"webhook_id": NO_WEBHOOK}),
    "enableWebhook": Row(ADMIN, path_params={"webhook_id": NO_WEBHOOK}),
    "listWebhookDeliveries": Row(ADMIN, path_params={"webhook_id": NO_WEBHOOK}),
    "startPipeline": Row(OPERATE, body=PIPELINE),
    "listPipelines": Row(READ),
    "getPipeline": Row(READ, path_params=NO_PIPELINE),
    "streamPipeline": Row(READ, path_params=NO_PIPELINE, stream=True),
    "cancelPipeline": Row(OPERATE, path_params=NO_PIPELINE),
    "addPipelineItems": Row(OPERATE, body={"items": [{"id": "b"}]}, path_params=NO_PIPELINE),
}  # fmt: skip


@dataclass(frozen=True)
class Operation:
    id: str
    method: str
    path: str

    @property
    def by_id(self) -> bool:
        return "{execution_id}" in self.path


@pytest.fixture(scope="module")
def running(shared_stack: RunningStack) -> RunningStack:
    """The shared stack: our tenant is `default` (its admin is the key of `up`), and counts
    are at least, so what other modules leave in `default` changes nothing here."""
    return shared_stack


@pytest.fixture(scope="module")
def keys(running: RunningStack) -> dict[str, str]:
    """A key per role in our tenant, made by the admin key of `up`, and another tenant's admin."""
    admin = (running.data_dir / "admin.key").read_text().strip()
    made = {"admin": admin}
    for tenant, role in [("default", r) for r in ROLES if r != "admin"] + [(THEIRS, "admin")]:
        response = client(running, admin).post("/v1/keys", json={"tenant": tenant, "role": role})
        assert response.status_code == 201, response.text
        made[role if tenant == "default" else "acme"] = response.json()["key"]
    return made


@pytest.fixture(scope="module")
def operations(running: RunningStack) -> list[Operation]:
    document = httpx.get(f"{running.url}/schema/openapi.json").json()
    return [
        Operation(spec["operationId"], method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, spec in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def client(running: RunningStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"},
                        timeout=httpx.Timeout(10, read=30))  # fmt: skip


def call(
    api: httpx.Client, operation: Operation, execution_id: str | None = None
) -> httpx.Response:
    """The operation as its row says; a stream is hung up on once it has answered."""
    row = MATRIX[operation.id]
    path = operation.path.replace("{execution_id}", execution_id or "")
    for name, value in row.path_params.items():
        path = path.replace("{" + name + "}", value)
    with api.stream(operation.method, path, json=row.body, params=row.params) as response:
        if not (row.stream and response.status_code == 200):
            response.read()
    return response


def pending(api: httpx.Client, prompt: str = MARK) -> str:
    created = api.post("/v1/executions", json={**CREATE, "prompt": prompt})
    assert created.status_code == 201, created.text
    execution_id: str = created.json()["id"]
    return execution_id


def test_every_v1_operation_is_in_the_matrix(operations: list[Operation]) -> None:
    found = {operation.id for operation in operations}
    assert not found - set(MATRIX), f"add these operations to MATRIX: {sorted(found - set(MATRIX))}"
    assert not set(MATRIX) - found, f"MATRIX names operations that are gone: {set(MATRIX) - found}"


def test_each_role_may_call_exactly_what_the_design_gives_it(
    running: RunningStack, keys: dict[str, str], operations: list[Operation]
) -> None:
    maker = client(running, keys["operator"])
    unexpected = []
    for role in ROLES:
        api = client(running, keys[role])
        for operation in operations:
            execution_id = pending(maker) if operation.by_id else None
            response = call(api, operation, execution_id)
            allowed = role in MATRIX[operation.id].allowed
            if allowed and (response.status_code in (401, 403) or response.status_code >= 500):
                unexpected.append(f"{role} {operation.id}: {response.status_code} (allowed)")
            if not allowed and response.status_code != 403:
                unexpected.append(f"{role} {operation.id}: {response.status_code} (not 403)")
            if not allowed and f"the key has the {role} role" not in response.json()["detail"]:
                unexpected.append(f"{role} {operation.id}: {response.json()['detail']!r}")
    assert not unexpected, "\n".join(unexpected)


def test_another_tenant_sees_nothing_and_changes_nothing(
    running: RunningStack, keys: dict[str, str], operations: list[Operation]
) -> None:
    ours = client(running, keys["operator"])
    ids = [pending(ours) for _ in range(3)] + [with_an_artifact(ours)]
    listed(ours, 3)
    timelines = {i: ours.get(f"/v1/executions/{i}/events").json() for i in ids}
    theirs = client(running, keys["acme"])
    board = SseReader(running.url, "/v1/board/stream", keys["acme"])
    leaks = []
    for operation in operations:
        if MATRIX[operation.id].stream:
            continue
        for execution_id in ids if operation.by_id else [None]:
            response = call(theirs, operation, execution_id)
            if operation.by_id and response.status_code != 404:
                leaks.append(f"{operation.id}: {response.status_code}, not 404")
            if response.status_code >= 500 or MARK in response.text:
                leaks.append(f"{operation.id}: {response.status_code} {response.text[:200]}")
            if any(other in response.text for other in ids if other != execution_id):
                leaks.append(f"{operation.id}: names one of our executions")
    assert not leaks, "\n".join(leaks)
    assert {i: ours.get(f"/v1/executions/{i}/events").json() for i in ids} == timelines
    assert theirs.post("/v1/keys", json={"tenant": "default", "role": "admin"}).status_code == 403
    our_viewer = keys["viewer"].split("_")[1]
    assert our_viewer not in theirs.get("/v1/keys").text
    assert theirs.get("/v1/keys", params={"tenant": "default"}).status_code == 403
    assert theirs.delete(f"/v1/keys/{our_viewer}").status_code == 404
    assert client(running, keys["viewer"]).get("/v1/board").status_code == 200  # not revoked

    ours.post(f"/v1/executions/{ids[0]}/cancel")  # a change of ours, before theirs in the log
    theirs_only = pending(theirs, prompt="acme's own")
    seen = board.until(lambda event: event.data.get("execution", {}).get("id") == theirs_only)
    board.close()
    assert {event.data["execution"]["tenant"] for event in seen} == {THEIRS}


def with_an_artifact(api: httpx.Client) -> str:
    """A completed execution of ours that stored report.txt (its text names MARK)."""
    steps = [{"artifact": {"name": "report.txt", "text": MARK}}]
    created = api.post("/v1/executions", json={"agent_id": "script", "prompt": MARK,
                                               "parameters": {"steps": steps}})  # fmt: skip
    execution_id: str = created.json()["id"]
    eventually(lambda: api.get(f"/v1/executions/{execution_id}").json()["status"],
               lambda status: status == "completed",
               what="the execution with an artifact to complete")  # fmt: skip
    assert MARK in api.get(f"/v1/executions/{execution_id}/artifacts/report.txt").text
    return execution_id


def listed(api: httpx.Client, count: int) -> None:
    eventually(lambda: api.get("/v1/executions", params={"queue": IDLE}).json()["items"],
               lambda items: len(items) >= count, timeout=15,
               what=f"the list to show {count} new executions")  # fmt: skip
