"""What a webhook says, and how it is signed, without I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import fields
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from standardwebhooks.webhooks import Webhook

from api.http.schemas import Execution
from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, FailureReason, ToolOutcome
from infra.webhooks.delivery import DeliveryPolicy, signed_headers
from infra.webhooks.outbox import UnknownFilter, message_id, subscription_filter
from infra.webhooks.payload import execution_document, message_body, status_entered
from infra.webhooks.store import new_secret
from projections.engine.errors import InvalidQuery

ALICE = Actor(ActorKind.USER, "alice")


def asdict_of(execution: Execution) -> dict[str, object]:
    return {field.name: getattr(execution, field.name) for field in fields(Execution)}


@pytest.fixture
def service() -> ExecutionService:
    return ExecutionService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def test_the_document_is_the_execution_json_of_get_as_it_was_at_the_event(
    service: ExecutionService,
) -> None:
    created = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="coder", worker_queue="default", prompt="fix it",
        created_by=ALICE, labels={"team": "red"},
    )).execution  # fmt: skip
    service.process_one(c.PickUp(created.id, "w1", "claim"))
    service.process_one(c.RecordToolCall(created.id, 1, "c1", "bash", {"cmd": "make"}))
    service.process_one(c.FinishToolCall(created.id, 1, "c1", ToolOutcome.FAILED,
                                         result_summary="red", duration_seconds=1.5))  # fmt: skip
    service.process_one(c.RequestInput(created.id, 1, "Which branch?"))
    events = service.timeline(created.id)

    document = execution_document(events, position=5)

    assert set(document) == {field.name for field in fields(Execution)}  # one shape: GET's
    now = asdict_of(Execution.of(service.state(created.id), position=None))
    shared = set(document) - {"position", "time_in_status", "tool_calls", "artifacts"}
    assert {k: document[k] for k in shared} == {k: now[k] for k in shared}
    assert document["status"] == "requires_input"
    assert set(document["time_in_status"]) == {"pending", "running", "requires_input"}
    assert document["time_in_status"]["requires_input"] == 0.0
    [call] = document["tool_calls"]
    assert (call["tool"], call["outcome"], call["attempt"]) == ("bash", "failed", 1)

    earlier = execution_document(events[:2], position=2)  # as it was when picked up
    assert (earlier["status"], earlier["question"], earlier["tool_calls"]) == ("running", None, [])


def test_the_body_is_type_timestamp_and_data(service: ExecutionService) -> None:
    execution_id = service.process_one(c.CreateExecution.new(
        tenant="acme", agent_id="coder", worker_queue="default", prompt="p", created_by=ALICE,
    )).execution.id  # fmt: skip
    service.process_one(c.PickUp(execution_id, "w1", "claim"))
    service.process_one(c.Fail(execution_id, 1, "boom", FailureReason.AGENT_ERROR))
    events = service.timeline(execution_id)
    failed = events[-1]

    body = message_body(f"execution.{status_entered(failed)}", failed.timestamp,
                        execution_document(events, 3))  # fmt: skip

    message = json.loads(body)
    assert message["type"] == "execution.failed"
    assert datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")) == failed.timestamp
    assert (message["data"]["error"], message["data"]["failure_reason"]) == ("boom", "agent_error")


def test_a_signature_verifies_by_the_specification_and_by_the_reference_library() -> None:
    secret, body, at = new_secret(), b'{"type":"execution.failed"}', datetime.now(UTC)
    headers = signed_headers(secret, "msg_1", at, body)

    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"msg_1.{int(at.timestamp())}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert Webhook(secret).verify(body, headers) == {"type": "execution.failed"}
    assert 24 <= len(key) <= 32


def test_the_message_id_is_one_per_event() -> None:
    execution_id = uuid4()
    assert message_id(execution_id, 3) == message_id(execution_id, 3)
    assert message_id(execution_id, 3) != message_id(execution_id, 4)
    assert message_id(execution_id, 3).startswith("msg_")


def test_retries_back_off_exponentially_with_jitter() -> None:
    policy = DeliveryPolicy(backoff=5.0, max_backoff=3600.0)
    assert 5.0 <= policy.delay(1) <= 10.0
    assert 40.0 <= policy.delay(4) <= 45.0
    assert policy.delay(30) == 3600.0


def test_a_filter_is_the_lists() -> None:
    where = subscription_filter({"agent": "coder", "status": ["failed"], "older_than": "1h"})
    assert (where.agent, where.status, where.older_than is not None) == ("coder", ("failed",), True)
    with pytest.raises(UnknownFilter, match=r"filter\.colour"):
        subscription_filter({"colour": "red"})
    with pytest.raises(InvalidQuery):
        subscription_filter({"status": ["sleeping"]})
