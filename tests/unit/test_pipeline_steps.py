"""Steps are ordinary executions: what the conductor's port (infra/conductor.py
``ExecutionSteps``) creates, over an in-memory store. A result that does not satisfy the
column's output schema fails the step with ``invalid_output``, retried as the column's
``task.retries`` allow; the pipeline sees only the final end."""

from __future__ import annotations

from uuid import UUID, uuid4

from cachetools import LRUCache

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.aggregate import Execution
from domain.pipeline.conduct import StepOrigin
from domain.pipeline.decide import StepRequest
from domain.pipeline.values import StepStatus
from infra.conductor import ExecutionSteps
from tests.unit.test_application import ALICE, sharing_the_store_of

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
SCHEMA = {"type": "object", "required": ["verdict"]}


def created_step(service: ExecutionService, retries: int) -> tuple[ExecutionSteps, UUID]:
    steps = ExecutionSteps(service)
    pipeline_id = uuid4()
    key = f"pipeline:{pipeline_id}:1:review:T-1"
    execution_id = c.idempotent_execution_id("default", key)
    request = StepRequest("script", "default", "Review T-1", {}, SCHEMA, retries=retries)
    origin = StepOrigin(pipeline_id, "review", "T-1", 1)
    steps.create(execution_id, key, "default", origin, request)
    steps.create(execution_id, key, "default", origin, request)  # a replay: nothing new
    return steps, execution_id


def run_once(service: ExecutionService, execution_id: UUID, result: object) -> None:
    picked = service.process_one(c.PickUp(execution_id, "w1", f"claim-{uuid4()}"))
    service.process_one(c.Complete(execution_id, picked.execution.lease, result))


def test_a_step_is_an_execution_created_by_its_pipeline_once() -> None:
    service = ExecutionService(POPO)
    _, execution_id = created_step(service, retries=1)
    execution: Execution = service.repository.get(execution_id)
    assert execution.created_by["kind"] == "pipeline"
    assert execution.pipeline == {
        "id": execution.created_by["id"], "column": "review", "item_id": "T-1", "iteration": 1,
    }  # fmt: skip
    assert execution.retry_policy.max_attempts == 2
    assert len(service.timeline(execution_id)) == 1


def test_an_output_the_schema_refuses_fails_invalid_output_and_is_retried() -> None:
    service = ExecutionService(POPO)
    steps, execution_id = created_step(service, retries=1)
    run_once(service, execution_id, {"answers": []})
    state = service.state(execution_id)
    assert state.status == "pending"
    assert state.attempt == 2
    assert steps.end_of(execution_id) is None
    events = [type(e).__name__ for e in service.timeline(execution_id)]
    assert events[-2:] == ["Failed", "RetryScheduled"]
    run_once(service, execution_id, {"answers": []})
    end = steps.end_of(execution_id)
    assert end is not None
    assert end.status is StepStatus.FAILED
    assert service.state(execution_id).failure_reason == "invalid_output"
    assert "'verdict' is a required property" in (end.error or "")


def test_an_output_the_schema_accepts_completes_the_step() -> None:
    service = ExecutionService(POPO)
    steps, execution_id = created_step(service, retries=0)
    run_once(service, execution_id, {"verdict": "ship it"})
    end = steps.end_of(execution_id)
    assert end is not None
    assert end.status is StepStatus.COMPLETED
    assert end.output == {"verdict": "ship it"}


def test_a_refusal_is_decided_on_the_stored_execution_not_a_stale_cached_copy() -> None:
    """The conductor asks a step to cancel from its own process; the worker's confirmation
    reaches the API's writer, whose cached copy predates the request. It must be accepted
    (it was refused as "not asked to cancel", and the step ran on)."""
    api = ExecutionService(POPO, cache=LRUCache(100))
    conductor = sharing_the_store_of(api)
    request = {"tenant": "default", "agent_id": "script", "worker_queue": "default"}
    created = api.process_one(c.CreateExecution.new(**request, prompt="Wait", created_by=ALICE))
    execution_id = created.execution.id
    picked = api.process_one(c.PickUp(execution_id, "w1", "claim-1"))
    conductor.process_one(c.RequestCancel(execution_id, "its pipeline ended", ALICE))
    api.process_one(c.ConfirmCancel(execution_id, picked.execution.lease))
    assert api.state(execution_id).status == "cancelled"
