"""Schemathesis against the running stack's OpenAPI document: whatever it sends, valid or not,
no answer is a 5xx and every documented answer matches its schema.

An operator key signs every request. Operations that take an execution id are called twice,
once with the id schemathesis made up and once with one of a few seeded executions in
different states, so the handlers are exercised past the 404. Live streams are left out
(an SSE response never ends); tests/e2e/test_streams.py covers them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from infra.keys import KeyStore, Role
from tests.e2e.conftest import RunningStack, module_stack
from tests.eventually import eventually

EXAMPLES = 20  # per operation and generation mode; the whole module stays under ~2 minutes
SOAK_EXAMPLES = 200  # make soak
CHECKS = [not_a_server_error, response_schema_conformance]
STREAMS = ("streamBoard",)
SEEDS = {
    "pending": {"agent_id": "script", "worker_queue": "nobody", "prompt": "waits"},
    "requires_input": {"agent_id": "script", "prompt": "asks",
                       "parameters": {"steps": [{"ask": "which way?"}]}},
    "completed": {"agent_id": "script", "prompt": "works",
                  "parameters": {"steps": [{"tool": "search", "args": {}}]}},
    "failed": {"agent_id": "shell", "prompt": "exit 3"},
}  # fmt: skip


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of this module's own: the fuzzer creates and acts on whatever it makes up,
    and would leave that work (and load) to the modules after it."""
    yield from module_stack(tmp_path_factory, "fuzz")


@pytest.fixture(scope="module")
def operator(running: RunningStack) -> str:
    return KeyStore(running.stack["database_url"]).create("default", Role.OPERATOR, "fuzz")


@pytest.fixture(scope="module")
def seeded(running: RunningStack, operator: str) -> Iterator[str]:
    """Ids of executions that exist, in turn, one per status the seeds reach."""
    api = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {operator}"})
    ids = {status: api.post("/v1/executions", json=body).json()["id"]
           for status, body in SEEDS.items()}  # fmt: skip
    for status, execution_id in ids.items():
        eventually(lambda i=execution_id: api.get(f"/v1/executions/{i}").json()["status"],
                   lambda now, wanted=status: now == wanted,
                   what=f"{execution_id} to become {status}")  # fmt: skip
    return itertools.cycle(ids.values())


@pytest.mark.parametrize(
    "examples", [EXAMPLES, pytest.param(SOAK_EXAMPLES, marks=pytest.mark.soak)]
)
def test_the_api_answers_every_request_without_a_5xx_and_as_documented(
    running: RunningStack, operator: str, seeded: Iterator[str], examples: int
) -> None:
    schema = schemathesis.openapi.from_url(f"{running.url}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {operator}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 10
    for operation in operations:
        if operation.definition.raw.get("operationId") in STREAMS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def call(case: Any) -> None:
                send(case, running.url, headers, seeded)

            try:
                call()
            except (Exception, FailureGroup) as failure:  # every operation runs; all are reported
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert not failures, "\n\n".join(failures)


def send(case: Any, url: str, headers: dict[str, str], seeded: Iterator[str]) -> None:
    if isinstance(case.query, dict) and "follow" in case.query:
        case.query["follow"] = "false"  # a followed log is a stream: test_streams.py
    case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=20)
    if isinstance(case.path_parameters, dict) and "execution_id" in case.path_parameters:
        case.path_parameters["execution_id"] = next(seeded)
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=20)


def test_what_the_views_could_not_store_is_refused_and_the_board_goes_on(
    running: RunningStack, operator: str
) -> None:
    """Found by fuzzing: each of these was stored, then halted the board view (or failed
    every list of the tenant) until someone skipped the event."""
    api = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {operator}"})
    base = {"agent_id": "script", "worker_queue": "nobody", "prompt": "fine"}
    deep: Any = []
    for _ in range(40):
        deep = [deep]
    bodies = [
        ({**base, "prompt": "a\x00b"}, "NUL"),
        ({**base, "labels": {"team": "\x00"}}, "NUL"),
        ({**base, "parameters": {"x": deep}}, "nested deeper"),
        ({**base, "deadline": "2020-01-01T00:00:00"}, "timezone"),
        ({**base, "deadline": "9999-12-31T23:59:59-14:00"}, "deadline"),
    ]
    for body, words in bodies:
        response = api.post("/v1/executions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert words in response.json()["detail"]
    for params in ({"agent": "\x00"}, {"q": "\x00"}, {"label": "a=\x00"}):
        assert api.get("/v1/executions", params=params).status_code == 400
    bulk = {"action": "cancel", "dry_run": True, "filter": {"status": ["pending"], "q": "\x00"}}
    assert api.post("/v1/executions/bulk", json=bulk).status_code == 400

    late = api.post("/v1/executions", json={**base, "deadline": "2020-01-01T00:00:00Z"}).json()
    eventually(lambda: str(api.get("/v1/executions", params={"overdue": True}).json()),
               lambda overdue: late["id"] in overdue, timeout=15,
               what="the board view to list the late execution as overdue")  # fmt: skip
