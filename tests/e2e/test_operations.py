"""What an operator relies on: readiness, metrics, and logs that carry a request id."""

from __future__ import annotations

import json

import httpx
import pytest

from infra.keys import KeyStore, Role
from tests.e2e.conftest import RunningStack, new_tenant
from tests.e2e.scrape import scrape, series
from tests.e2e.sse import SseReader


@pytest.fixture(scope="module")
def running(shared_stack: RunningStack) -> RunningStack:
    return shared_stack


@pytest.fixture(scope="module")
def key(running: RunningStack) -> str:
    return KeyStore(running.stack["database_url"]).create(new_tenant(), Role.OPERATOR, "ops")


def test_readyz_checks_postgres_nats_and_projection_lag(running: RunningStack) -> None:
    ready = httpx.get(f"{running.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["postgres"]["ok"]
    assert checks["nats"]["ok"]
    assert set(checks["projections"]["lag"]) >= {"board", "status_intervals", "tool_calls"}
    assert set(checks["projections"]["states"].values()) == {"running"}


def test_metrics_show_latency_histograms_projection_lag_and_stream_clients(
    running: RunningStack, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    route = {"method": "POST", "route": "/v1/executions"}
    count = series("agentboard_http_request_duration_seconds_count", **route)
    slowest = series("agentboard_http_request_duration_seconds_bucket", **route, le="+Inf")
    before = scrape(running.url)  # the shared stack's so far
    for _ in range(3):
        created = httpx.post(
            f"{running.url}/v1/executions",
            json={"agent_id": "script", "prompt": "m", "parameters": {"steps": []}},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201
    board = SseReader(running.url, "/v1/board/stream", key)
    seen = scrape(running.url)
    board.close()

    assert seen[count] == before.get(count, 0.0) + 3
    assert seen[slowest] == before.get(slowest, 0.0) + 3
    assert series("agentboard_projection_lag", view="board") in seen
    assert seen[series("agentboard_sse_clients")] >= 1


def test_every_response_carries_a_request_id_that_the_json_logs_show(
    running: RunningStack, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "trace-me-42"}
    answered = httpx.get(f"{running.url}/v1/board", headers=headers, timeout=10)
    assert answered.headers["x-request-id"] == "trace-me-42"
    fresh = httpx.get(f"{running.url}/healthz", timeout=10).headers["x-request-id"]
    assert len(fresh) == 32
    assert httpx.get(f"{running.url}/healthz", timeout=10).headers["x-request-id"] != fresh
    bad = httpx.get(f"{running.url}/healthz", headers={"X-Request-ID": "no spaces!"}, timeout=10)
    assert bad.headers["x-request-id"] != "no spaces!"

    lines = [json.loads(line) for line in running.log.read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    mine = [entry for entry in lines if entry.get("request_id") == "trace-me-42"]
    assert mine, "the request's log line carries its id"
    assert mine[-1]["status"] == 200
    assert mine[-1]["route"] == "/v1/board"
