"""Time travel: the board as it stood at a past log position or time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg
import pytest

from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from projections.engine.errors import InvalidQuery
from projections.engine.supervisor import ProjectionSupervisor
from projections.views.board_queries import Board
from projections.views.filters import ExecutionFilter
from tests.integration.test_projection_support import (
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
)

BOB = Actor(ActorKind.USER, "bob")


def shown(board: Board) -> dict[str, list[str]]:
    return {c.status: [card.prompt for card in c.items] for c in board.columns if c.items}


def counted(board: Board) -> dict[str, int]:
    return {c.status: c.count for c in board.columns if c.count}


def test_the_board_as_of_past_positions_and_times(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    soon = datetime.now(UTC) + timedelta(seconds=2)
    a = create(service, prompt="a", agent_id="coder", deadline=soon)
    b = create(service, prompt="b")  # position 2
    lease = service.process_one(c.PickUp(a, "w1", "claim")).lease  # 3
    service.process_one(c.RecordToolCall(a, lease, "c1", "bash", {}))  # 4
    service.process_one(c.Complete(a, lease, {"ok": True}))  # 5
    service.process_one(c.RequestCancel(b, "no", BOB))  # 6
    read_side.catch_up()
    travel = read_side.read_models.time_travel

    at_2 = travel.board("default", position=2)
    assert (shown(at_2), counted(at_2), at_2.position) == (
        {"pending": ["a", "b"]}, {"pending": 2}, 2,
    )  # fmt: skip
    at_4 = travel.board("default", position=4)
    assert shown(at_4) == {"pending": ["b"], "running": ["a"]}
    card_a = at_4.columns[1].items[0]
    assert (card_a.worker_id, card_a.last_tool, card_a.version, card_a.result) == (
        "w1", "bash", 3, None,
    )  # fmt: skip
    now = travel.board("default", position=10_000)  # clamps to what the views hold
    assert (shown(now), now.position) == ({"completed": ["a"], "cancelled": ["b"]}, 6)

    stamps = {e.originator_version: e.timestamp for e in service.timeline(a)}
    at_pickup = travel.board("default", at=stamps[2])
    assert (at_pickup.position, shown(at_pickup)) == (3, {"pending": ["b"], "running": ["a"]})
    assert at_pickup.as_of == stamps[2]
    before = travel.board("default", at=stamps[1] - timedelta(seconds=1))
    assert (before.position, shown(before)) == (0, {})

    coder = travel.board("default", position=4, where=ExecutionFilter(agent="coder"))
    assert shown(coder) == {"running": ["a"]}
    running = travel.board("default", position=4, where=ExecutionFilter(status=("running",)))
    assert [c.status for c in running.columns] == ["running"]
    late = travel.board("default", at=soon + timedelta(days=1), where=ExecutionFilter(overdue=True))
    assert shown(late) == {}  # a was done, b had no deadline
    late_then = travel.board("default", position=4, where=ExecutionFilter(overdue=True))
    assert shown(late_then) == {}  # at position 4 the deadline had not passed
    create(service, prompt="c", deadline=datetime.now(UTC) - timedelta(minutes=1))
    read_side.catch_up()
    overdue = travel.board("default", at=datetime.now(UTC), where=ExecutionFilter(overdue=True))
    assert (shown(overdue), counted(overdue)) == ({"pending": ["c"]}, {"pending": 1})


def test_as_of_needs_one_position_or_one_aware_time(read_side: ProjectionSupervisor) -> None:
    travel = read_side.read_models.time_travel
    with pytest.raises(InvalidQuery):
        travel.board("default")
    with pytest.raises(InvalidQuery):
        travel.board("default", position=1, at=datetime.now(UTC))
    with pytest.raises(InvalidQuery, match="time zone"):
        travel.board("default", at=datetime(2025, 1, 1))


def test_a_position_in_a_gap_of_the_log_is_as_of_the_event_before_it(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    service = container.service
    a = create(service, prompt="a")  # position 1
    with psycopg.connect(database_url) as conn:  # takes position 2, then rolls it back
        conn.execute(
            "INSERT INTO agentboard_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'x', '')",
            (uuid4(),),
        )
        conn.rollback()
    time.sleep(0.05)  # the time under test: b is stored 50 ms after a
    create(service, prompt="b")  # position 3
    read_side.catch_up()

    in_the_gap = read_side.read_models.time_travel.board("default", position=2)

    assert (in_the_gap.position, shown(in_the_gap)) == (2, {"pending": ["a"]})
    assert in_the_gap.as_of == service.timeline(a)[0].timestamp  # not b's time, 50 ms later
