"""POST /v1/executions/bulk on real PostgreSQL: what it matches, what it changes, what it
refuses, and that a thousand actions share a few group commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import AsyncTestClient

from api.http import bulk as bulk_module
from api.http.app import create_app
from domain.execution import commands as c
from domain.execution.state import CommandResult
from domain.execution.values import Actor, ActorKind, FailureReason
from infra.bootstrap import Container, bootstrap
from infra.keys import KeyStore, Role
from infra.nats import connect, ensure_streams
from infra.settings import Settings

pytestmark = pytest.mark.anyio

PEOPLE = Actor(ActorKind.USER, "test")
CANCEL_PENDING = {"action": "cancel", "filter": {"status": ["pending"]}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def read_side(
    settings: Settings, database_url: str, nats_server: str, container: Container
) -> Iterator[Container]:
    """The command side with the read models running (the `container` fixture made the
    schema)."""
    with_views = bootstrap(
        settings, database_url=database_url, nats_url=nats_server, run_projections=True
    )
    yield with_views
    with_views.close()


@pytest.fixture
async def api(read_side: Container) -> AsyncIterator[AsyncTestClient[Any]]:
    nc = await connect(read_side.nats_url, "test-bulk")  # the app's live hub needs the streams
    await ensure_streams(nc.jetstream())
    await nc.close()
    async with AsyncTestClient(create_app(read_side)) as client:
        yield client


@pytest.fixture
def keys(database_url: str) -> dict[str, str]:
    store = KeyStore(database_url)
    return {
        "operator": store.create("default", Role.OPERATOR, "test"),
        "viewer": store.create("default", Role.VIEWER, "test"),
        "other": store.create("acme", Role.OPERATOR, "test"),
    }


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create(container: Container, count: int, tenant: str = "default") -> list[UUID]:
    commands = [
        c.CreateExecution(uuid4(), tenant=tenant, agent_id="script", worker_queue="default",
                          prompt=f"task {n}", created_by=PEOPLE)
        for n in range(count)
    ]  # fmt: skip
    results = await asyncio.gather(*(container.writer.send(command) for command in commands))
    await caught_up(container, results)
    return [command.execution_id for command in commands]


async def send(container: Container, command: c.Command) -> CommandResult:
    result = await container.writer.send(command)
    await caught_up(container, [result])
    return result


async def caught_up(container: Container, results: list[CommandResult]) -> None:
    assert container.projections is not None
    head = max(result.position or 0 for result in results)
    assert await asyncio.to_thread(container.projections.wait_for, "board", head, 30)


async def running(container: Container, execution_id: UUID) -> int:
    picked = await send(container, c.PickUp(execution_id, "worker-1", f"claim-{execution_id}"))
    return picked.lease


def statuses(container: Container, ids: list[UUID]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for execution_id in ids:
        status = container.service.state(execution_id).status
        counted[status] = counted.get(status, 0) + 1
    return counted


async def test_a_thousand_cancels_share_a_few_commits(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    ids = await create(read_side, 1000)
    batches_before = read_side.writer.batches

    response = await api.post("/v1/executions/bulk", headers=auth(keys["operator"]),
                              json=CANCEL_PENDING)  # fmt: skip

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] == 1000
    assert not body["truncated"]
    assert {item["outcome"] for item in body["items"]} == {"changed"}
    assert {item["status"] for item in body["items"]} == {"cancelled"}
    assert statuses(read_side, ids) == {"cancelled": 1000}
    print("group commits for 1,000 cancels:", read_side.writer.batches - batches_before)
    assert read_side.writer.batches - batches_before <= 10


async def test_a_dry_run_predicts_and_changes_nothing(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    pending, held = await create(read_side, 2)
    await running(read_side, held)
    versions = {i: read_side.service.state(i).version for i in (pending, held)}
    request = {"action": "complete", "filter": {"status": ["pending", "running"]}}

    dry = await api.post("/v1/executions/bulk", headers=auth(keys["operator"]),
                         json={**request, "dry_run": True})  # fmt: skip

    outcomes = {item["id"]: item for item in dry.json()["items"]}
    assert outcomes[str(held)]["outcome"] == "would_change"
    assert outcomes[str(pending)]["outcome"] == "refused"
    assert "pending" in outcomes[str(pending)]["detail"]
    assert outcomes[str(pending)]["prompt"].startswith("task")
    assert {i: read_side.service.state(i).version for i in (pending, held)} == versions

    done = await api.post("/v1/executions/bulk", headers=auth(keys["operator"]), json=request)
    acted = {item["id"]: (item["outcome"], item["status"]) for item in done.json()["items"]}
    assert acted == {str(held): ("changed", "completed"), str(pending): ("refused", "pending")}
    completed = read_side.service.state(held)
    assert completed.completion_notes == "completed in bulk by an operator"


async def test_one_refusal_does_not_stop_the_others_and_retry_makes_a_new_attempt(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    failed, still_pending = await create(read_side, 2)
    lease = await running(read_side, failed)
    await send(read_side, c.Fail(failed, lease, "boom", FailureReason.AGENT_ERROR))

    response = await api.post(
        "/v1/executions/bulk", headers=auth(keys["operator"]),
        json={"action": "retry", "filter": {"ids": [str(still_pending), str(failed)]}},
    )  # fmt: skip

    items = {item["id"]: item for item in response.json()["items"]}
    assert items[str(failed)]["outcome"] == "changed"
    assert items[str(failed)]["status"] == "pending"
    assert read_side.service.state(failed).attempt == 2
    assert items[str(still_pending)]["outcome"] == "refused"
    assert "cannot retry" in items[str(still_pending)]["detail"]


async def test_ids_of_another_tenant_or_of_nothing_are_refused_as_not_existing(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    [ours] = await create(read_side, 1)
    [theirs] = await create(read_side, 1, tenant="acme")
    nothing = uuid4()

    response = await api.post(
        "/v1/executions/bulk", headers=auth(keys["operator"]),
        json={"action": "cancel", "filter": {"ids": [str(theirs), str(nothing), str(ours)]}},
    )  # fmt: skip

    items = {item["id"]: item for item in response.json()["items"]}
    assert items[str(ours)]["outcome"] == "changed"
    for unknown in (theirs, nothing):
        assert items[str(unknown)] == {
            "id": str(unknown), "prompt": None, "status": None, "outcome": "refused",
            "detail": f"execution {unknown} does not exist",
        }  # fmt: skip
    assert read_side.service.state(theirs).status == "pending"

    by_filter = await api.post("/v1/executions/bulk", headers=auth(keys["other"]),
                               json={"action": "cancel", "filter": {"status": ["cancelled"]},
                                     "dry_run": True})  # fmt: skip
    assert by_filter.json()["matched"] == 0


async def test_ids_combine_with_filters_and_the_key_is_recorded_once(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    ids = await create(read_side, 3)
    await running(read_side, ids[0])
    body = {"action": "cancel",
            "filter": {"ids": [str(i) for i in ids], "status": ["running"]}}  # fmt: skip
    headers = {**auth(keys["operator"]), "Idempotency-Key": "clean-up-1"}

    first = await api.post("/v1/executions/bulk", headers=headers, json=body)
    again = await api.post("/v1/executions/bulk", headers=headers, json=body)

    assert [item["id"] for item in first.json()["items"]] == [str(ids[0])]
    assert again.json()["items"][0]["outcome"] == "changed"
    timeline = read_side.service.timeline(ids[0])
    assert [type(event).__name__ for event in timeline].count("CancelRequested") == 1
    assert first.json()["items"][0]["detail"] == "asked its worker to stop"
    reused = await api.post("/v1/executions/bulk", headers=headers,
                            json={**body, "action": "complete"})  # fmt: skip
    assert "idempotency key" in reused.json()["items"][0]["detail"]
    assert statuses(read_side, ids[1:]) == {"pending": 2}


async def test_a_match_past_the_cap_is_truncated(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(bulk_module, "MAX_MATCHED", 3)
    monkeypatch.setattr(bulk_module, "PAGE", 2)
    ids = await create(read_side, 5)

    response = await api.post("/v1/executions/bulk", headers=auth(keys["operator"]),
                              json=CANCEL_PENDING)  # fmt: skip

    assert response.json()["matched"] == 3
    assert response.json()["truncated"] is True
    assert statuses(read_side, ids) == {"cancelled": 3, "pending": 2}


async def test_bad_requests_are_refused_with_a_reason(
    api: AsyncTestClient[Any], read_side: Container, keys: dict[str, str]
) -> None:
    operator = auth(keys["operator"])
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"action": "cancel", "filter": {}}, 422, "filter.status or filter.ids"),
        ({"action": "cancel", "filter": {"agent": "x"}}, 422, "every execution"),
        ({"action": "cancel", "filter": {"status": ["sleeping"]}}, 400, "status"),
        ({"action": "explode", "filter": {"status": ["pending"]}}, 400, "action"),
        ({"action": "cancel", "filter": {"status": ["pending"], "older_than": "7x"}}, 400,
         "older_than"),
        ({"action": "cancel", "filter": {"ids": [str(uuid4())] * 501}}, 400, "ids"),
        ({"action": "cancel", "filter": {"status": ["pending"], "colour": "red"}}, 400, "colour"),
    ]  # fmt: skip
    for body, status, words in cases:
        response = await api.post("/v1/executions/bulk", headers=operator, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert words in response.json()["detail"], response.json()

    viewer = await api.post("/v1/executions/bulk", headers=auth(keys["viewer"]),
                            json=CANCEL_PENDING)  # fmt: skip
    assert viewer.status_code == 403
    assert "operator" in viewer.json()["detail"]
    [one] = await create(read_side, 1)
    assert (await api.get(f"/v1/executions/{one}", headers=operator)).status_code == 200
