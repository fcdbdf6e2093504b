"""The usage view: what ``GET /v1/stats/usage`` answers, from usage reports recorded through
the command side and projected by the supervisor, rebuilt alike."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from domain.execution import commands as c
from infra.bootstrap import Container
from projections.engine.errors import InvalidQuery
from projections.engine.rebuild import rebuild
from projections.engine.supervisor import ProjectionSupervisor
from tests.integration.test_projection_support import (
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
)

pytestmark = pytest.mark.integration


def used(
    service: ExecutionService, execution_id: UUID, *reports: tuple[str, int, int, float | None]
) -> None:
    lease = service.process_one(c.PickUp(execution_id, "worker-1", f"claim-{uuid4()}")).lease
    for model, tokens_in, tokens_out, cost in reports:
        service.process_one(
            c.RecordUsage(execution_id, lease, model, tokens_in, tokens_out, uuid4().hex, cost)
        )


def test_usage_is_summed_per_agent_and_model_with_percentiles_per_execution(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore
) -> None:
    service = container.service
    used(service, create(service, agent_id="triage"), ("gpt-4o", 100, 20, 0.01),
         ("gpt-4o", 50, 10, 0.005))  # fmt: skip
    used(service, create(service, agent_id="triage"), ("claude", 300, 30, None))
    used(service, create(service, agent_id="deploy", team_id="ops"), ("gpt-4o", 10, 1, 0.001))
    used(service, create(service, agent_id="deploy", tenant="other"), ("gpt-4o", 9, 9, 9.0))
    create(service, agent_id="quiet")  # no usage: in no group
    read_side.catch_up()
    queries = read_side.read_models.usage

    by_agent = {row.key: row for row in queries.usage("default", "agent")}
    assert set(by_agent) == {"triage", "deploy"}
    triage = by_agent["triage"]
    assert (triage.executions, triage.input_tokens, triage.output_tokens) == (2, 450, 60)
    assert triage.cost_usd == pytest.approx(0.015)
    assert triage.p50_tokens == pytest.approx((180 + 330) / 2)  # per execution: 180 and 330
    assert triage.p50_cost_usd == pytest.approx(0.015)  # the one execution with a cost
    by_model = {row.key: row for row in queries.usage("default", "model")}
    assert by_model["claude"].cost_usd is None
    assert by_model["gpt-4o"].input_tokens == 160
    assert [row.key for row in queries.usage("default", "team")] == ["ops", None]
    with pytest.raises(InvalidQuery, match="group_by must be one of agent, model, team, queue"):
        queries.usage("default", "tenant")

    before = queries.usage("default", "model")
    rebuild(service, datastore, "usage")
    assert queries.usage("default", "model") == before
