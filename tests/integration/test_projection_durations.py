"""Status intervals (time in status, percentiles), tool calls and the timeline."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from projections.engine.errors import InvalidQuery
from projections.engine.supervisor import ProjectionSupervisor
from tests.integration.test_projection_support import (
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
    run_to_completion,
)

BOB = Actor(ActorKind.USER, "bob")


def percentile(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_time_in_status_sums_intervals_and_counts_the_open_one_up_to_now(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    execution_id = create(service)
    lease = service.process_one(c.PickUp(execution_id, "w", "claim")).lease
    service.process_one(c.Block(execution_id, "waiting", BOB))
    service.process_one(c.Unblock(execution_id, "go on", BOB))
    read_side.catch_up()
    stamps = [event.timestamp for event in service.timeline(execution_id)]
    now = stamps[-1] + timedelta(seconds=30)

    spent = read_side.read_models.durations.time_in_status("default", execution_id, now=now)

    running = (stamps[2] - stamps[1]) + (now - stamps[3])
    assert spent == pytest.approx(
        {
            "pending": (stamps[1] - stamps[0]).total_seconds(),
            "running": running.total_seconds(),
            "blocked": (stamps[3] - stamps[2]).total_seconds(),
        }
    )
    service.process_one(c.Complete(execution_id, lease))
    read_side.catch_up()
    later = read_side.read_models.durations.time_in_status("default", execution_id, now=now)
    assert set(later) == {"pending", "running", "blocked", "completed"}
    assert later["completed"] == 0  # the final status: the clock stopped when it ended
    an_hour_on = now + timedelta(hours=1)
    assert read_side.read_models.durations.time_in_status(
        "default", execution_id, now=an_hour_on
    ) == pytest.approx(later)


def test_percentiles_per_status_grouped_by_agent(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    ids = [create(service, agent_id="fast" if n % 2 else "slow") for n in range(6)]
    for execution_id in ids:
        run_to_completion(service, execution_id)
    stuck = create(service, agent_id="slow")
    read_side.catch_up()
    now = datetime.now(UTC) + timedelta(seconds=5)

    stats = read_side.read_models.durations.status_durations("default", "agent", now=now)

    by_key = {(s.key, s.status): s for s in stats}
    assert {status for _, status in by_key} == {"pending", "running"}  # terminal: no duration
    for agent in ("fast", "slow"):
        mine = [i for i in ids if service.state(i).agent_id == agent]
        running = []
        for execution_id in mine:
            stamps = [e.timestamp for e in service.timeline(execution_id)]
            running.append((stamps[-1] - stamps[1]).total_seconds())
        figures = by_key[(agent, "running")]
        assert figures.intervals == 3
        assert figures.p50 == pytest.approx(percentile(running, 0.5))
        assert figures.p99 == pytest.approx(percentile(running, 0.99))
    assert by_key[("slow", "pending")].intervals == 4  # the stuck one counts, up to now
    assert by_key[("slow", "pending")].p99 >= 5 - 1
    assert service.state(stuck).status == "pending"
    with pytest.raises(InvalidQuery):
        read_side.read_models.durations.status_durations("default", "colour")


@pytest.mark.parametrize("group_by", ["team", "queue", "tenant"])
def test_percentiles_group_by_team_queue_or_tenant(
    container: Container, read_side: ProjectionSupervisor, group_by: str
) -> None:
    service = container.service
    placed = {  # execution -> (team, queue, tenant)
        create(service, type="team", team_id="red", worker_queue="gpu"): ("red", "gpu", "default"),
        create(service, type="team", team_id="red", worker_queue="cpu"): ("red", "cpu", "default"),
        create(service, worker_queue="gpu"): (None, "gpu", "default"),
        create(service, tenant="acme", type="team", team_id="red"): ("red", "default", "acme"),
    }
    for execution_id in placed:
        run_to_completion(service, execution_id)
    read_side.catch_up()
    index = ("team", "queue", "tenant").index(group_by)

    stats = read_side.read_models.durations.status_durations("default", group_by)

    running = {s.key: s.intervals for s in stats if s.status == "running"}
    expected: dict[str | None, int] = {}
    for team_queue_tenant in placed.values():
        if team_queue_tenant[2] == "default":  # a tenant sees only its own
            key = team_queue_tenant[index]
            expected[key] = expected.get(key, 0) + 1
    assert running == expected  # no team: its own group (key None)


def test_tool_calls_are_listed_per_attempt(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    execution_id = create(service, retry={"max_attempts": 2, "retry_on": ["tool_error"]})
    lease = service.process_one(c.PickUp(execution_id, "w", "claim-1")).lease
    service.process_one(c.RecordToolCall(execution_id, lease, "c1", "bash", {"command": "make"}))
    read_side.catch_up()  # the call and its outcome land in different pages
    service.process_one(
        c.FinishToolCall(
            execution_id, lease, "c1", "failed", result_summary="exit 2", duration_seconds=1.5
        )
    )
    service.process_one(c.Fail(execution_id, lease, "make failed", "tool_error"))
    lease = service.process_one(c.PickUp(execution_id, "w", "claim-2")).lease
    service.process_one(
        c.RecordToolCall(execution_id, lease, "c1", "bash", {"command": "make -j1"})
    )
    service.process_one(c.FinishToolCall(execution_id, lease, "c1", "success", result_summary="ok"))
    read_side.catch_up()

    calls = read_side.read_models.tool_calls("default", execution_id)

    assert [(c["attempt"], c["call_id"], c["outcome"], c["arguments"]) for c in calls] == [
        (1, "c1", "failed", {"command": "make"}),
        (2, "c1", "success", {"command": "make -j1"}),
    ]
    assert calls[0]["duration_seconds"] == 1.5
    assert calls[0]["finished_at"] > calls[0]["called_at"]
    assert read_side.read_models.tool_calls("other-tenant", execution_id) == []


def test_the_timeline_comes_from_the_store_in_order_with_actors(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    execution_id = create(service)
    service.process_one(c.RequestCancel(execution_id, "changed my mind", BOB))

    timeline = read_side.read_models.timeline.timeline("default", execution_id)

    assert [(e["version"], e["type"]) for e in timeline] == [(1, "Created"), (2, "Cancelled")]
    assert [e["actor"] for e in timeline] == [
        {"kind": "user", "id": "alice"}, {"kind": "user", "id": "bob"},
    ]  # fmt: skip
    assert timeline[0]["position"] < timeline[1]["position"]
    assert timeline[1]["data"]["reason"] == "changed my mind"
    assert timeline[0]["data"]["tenant"] == "default"
    datetime.fromisoformat(timeline[0]["timestamp"])
