"""Webhooks through the running stack: registered over HTTP and the CLI, delivered by the
API process's webhooks service to a receiver in this test, signed, counted on /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack, admin_client, module_stack
from tests.e2e.scrape import scrape, series
from tests.e2e.test_api import run_cli, wait_for
from tests.integration.webhook_receiver import Receiver, receiving, verify

ASK_THEN_FAIL = {
    "agent_id": "script", "worker_queue": "default", "prompt": "ask, then fail",
    "parameters": {"steps": [{"ask": "Ship it?"}, {"fail": "not today"}]},
}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from module_stack(tmp_path_factory, "webhooks")


@pytest.fixture(scope="module")
def api(stack: RunningStack) -> httpx.Client:
    return admin_client(stack)


def test_a_person_is_told_when_an_agent_needs_them_and_when_it_fails(
    stack: RunningStack, api: httpx.Client
) -> None:
    receiver = Receiver()
    with receiving(receiver) as url:
        created = api.post(
            "/v1/webhooks", json={"url": url, "events": ["requires_input", "failed"]}
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        execution_id = api.post("/v1/executions", json=ASK_THEN_FAIL).json()["id"]
        receiver.wait_for(lambda got: len(got) >= 1)
        shown = wait_for(api, execution_id, "requires_input")
        api.post(f"/v1/executions/{execution_id}/input", json={"answer": "yes"})
        receiver.wait_for(lambda got: len(got) >= 2)

    asked, failed = receiver.received
    assert all(verify(secret, received) for received in receiver.received)
    assert [asked.message["type"], failed.message["type"]] == [
        "execution.requires_input", "execution.failed"
    ]  # fmt: skip
    data = asked.message["data"]
    assert set(data) == set(shown)  # GET /v1/executions/{id}'s JSON, as it was then
    for field in set(shown) - {"position", "time_in_status"}:
        assert data[field] == shown[field], field
    assert failed.message["data"]["error"] == "not today"

    webhook_id = created.json()["id"]
    deliveries = api.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
    assert [(d["type"], d["status_code"], d["delivered"]) for d in deliveries] == [
        ("execution.failed", 200, True), ("execution.requires_input", 200, True)
    ]  # fmt: skip
    assert deliveries[1]["webhook_id"] == asked.webhook_id
    metrics = scrape(stack.url)
    assert metrics[series("agentboard_webhook_deliveries_total", outcome="delivered")] >= 2
    assert metrics[series("agentboard_webhook_delivery_duration_seconds_count")] >= 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.invalid/hook", "events": ["failed"]}, "url"),
        ({"url": "https://user:pw@hooks.invalid/hook", "events": ["failed"]}, "url"),
        ({"url": "https://hooks.invalid/" + "a" * 2048, "events": ["failed"]}, "url"),
        ({"url": "not a url", "events": ["failed"]}, "url"),
        ({"url": "https://hooks.invalid/hook", "events": ["sleeping"]}, "events"),
        ({"url": "https://hooks.invalid/hook", "events": ["*", "failed"]}, "events"),
        ({"url": "https://hooks.invalid/hook", "events": []}, "events"),
        ({"url": "https://hooks.invalid/hook", "events": ["failed"], "filter": {"colour": 1}},
         "filter"),
        ({"url": "https://hooks.invalid/hook", "events": ["failed"],
          "filter": {"older_than": "7 weeks"}}, "filter"),
    ],
)  # fmt: skip
def test_bad_registrations_are_refused_naming_the_field(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    refused = api.post("/v1/webhooks", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["detail"].startswith(field)


def test_a_webhook_to_the_api_itself_is_refused(stack: RunningStack, api: httpx.Client) -> None:
    for url in (f"{stack.url}/v1/executions", stack.url.replace("127.0.0.1", "localhost")):
        refused = api.post("/v1/webhooks", json={"url": url, "events": ["failed"]})
        assert refused.status_code == 422, refused.text
        assert "this API itself" in refused.json()["detail"]


def test_only_admins_manage_webhooks_of_their_own_tenant(
    stack: RunningStack, api: httpx.Client
) -> None:
    made = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a", "events": ["*"]})
    operator = api.post("/v1/keys", json={"tenant": "default", "role": "operator"}).json()["key"]
    other_admin = api.post("/v1/keys", json={"tenant": "acme", "role": "admin"}).json()["key"]
    headers = {"Authorization": f"Bearer {operator}"}
    assert httpx.get(f"{stack.url}/v1/webhooks", headers=headers).status_code == 403
    acme = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {other_admin}"})
    assert acme.get("/v1/webhooks").json() == {"items": []}
    webhook_id = made.json()["id"]
    assert acme.delete(f"/v1/webhooks/{webhook_id}").status_code == 404
    assert acme.get(f"/v1/webhooks/{webhook_id}/deliveries").status_code == 404
    listed = api.get("/v1/webhooks").json()["items"]
    assert webhook_id in [item["id"] for item in listed]
    assert all("secret" not in item for item in listed)


def test_the_cli_creates_lists_shows_deliveries_and_deletes(stack: RunningStack) -> None:
    made = run_cli(stack, "webhooks", "create", "http://127.0.0.1:9/cli", "--event",
                   "requires_input", "--event", "failed", "--filter", "agent=coder")  # fmt: skip
    assert made.returncode == 0, made.stderr
    webhook_id = made.stdout.split()[0]
    assert "secret: whsec_" in made.stdout
    again = run_cli(stack, "webhooks", "create", "http://127.0.0.1:9/cli", "--event", "failed",
                    "--event", "requires_input", "--filter", "agent=coder")  # fmt: skip
    assert again.stdout.split()[0] == webhook_id
    assert "whsec_" not in again.stdout

    listed = run_cli(stack, "webhooks", "list", "--output", "json")
    assert webhook_id in listed.stdout
    assert run_cli(stack, "webhooks", "deliveries", webhook_id).returncode == 0
    assert run_cli(stack, "webhooks", "enable", webhook_id).returncode == 0
    assert run_cli(stack, "webhooks", "delete", webhook_id).returncode == 0
    gone = run_cli(stack, "webhooks", "delete", webhook_id)
    assert gone.returncode == 1
    assert "does not exist" in gone.stderr
    bad = run_cli(stack, "webhooks", "create", "ftp://hooks.invalid", "--event", "failed")
    assert bad.returncode == 2  # bad input, refused by the server (422)
    assert "url: must be an http:// or https:// URL" in bad.stderr


def test_a_receiver_refusing_once_gets_the_retry(stack: RunningStack, api: httpx.Client) -> None:
    receiver = Receiver(lambda received, n: 503 if n == 0 else 200)
    with receiving(receiver) as url:
        made = api.post("/v1/webhooks", json={"url": url, "events": ["running"]})
        api.post("/v1/executions", json=ASK_THEN_FAIL)
        started = time.monotonic()
        receiver.wait_for(lambda got: len(got) >= 2, timeout=30)
    first, retry = receiver.received
    assert first.webhook_id == retry.webhook_id
    assert time.monotonic() - started < 30  # the first retry comes after 5-10 s
    attempts = api.get(f"/v1/webhooks/{made.json()['id']}/deliveries").json()["items"]
    assert [a["status_code"] for a in attempts] == [200, 503]
