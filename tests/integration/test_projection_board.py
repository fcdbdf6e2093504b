"""The board view on the real PostgreSQL: columns, counts, cards, filters, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.postgres import PostgresDatastore

from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from projections.engine.errors import InvalidQuery, NotFound
from projections.engine.supervisor import ProjectionSupervisor
from projections.views.filters import STATUSES, ExecutionFilter, parse_age
from tests.integration.test_projection_support import (
    counted_columns,
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    kept_columns,
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
    run_to_completion,
)

BOB = Actor(ActorKind.USER, "bob")


def columns(supervisor: ProjectionSupervisor, tenant: str = "default") -> dict[str, list[str]]:
    board = supervisor.read_models.board.board(tenant)
    return {c.status: [card.prompt for card in c.items] for c in board.columns if c.items}


def counts(supervisor: ProjectionSupervisor, tenant: str = "default") -> dict[str, int]:
    board = supervisor.read_models.board.board(tenant)
    return {c.status: c.count for c in board.columns if c.count}


def test_columns_and_counts_follow_a_full_lifecycle(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore
) -> None:
    service = container.service
    a, b, third = (create(service, prompt=p) for p in ("a", "b", "c"))
    read_side.catch_up()
    assert columns(read_side) == {"pending": ["a", "b", "c"]}
    assert counts(read_side) == {"pending": 3}

    lease_a = service.process_one(c.PickUp(a, "w1", "claim-a")).lease
    lease_b = service.process_one(c.PickUp(b, "w2", "claim-b")).lease
    read_side.catch_up()
    assert columns(read_side) == {"pending": ["c"], "running": ["a", "b"]}

    service.process_one(c.RequestInput(a, lease_a, "which branch?"))
    service.process_one(c.Block(b, "waiting for credentials", BOB))
    service.process_one(c.RequestCancel(third, "not needed", BOB))
    read_side.catch_up()
    assert counts(read_side) == {"requires_input": 1, "blocked": 1, "cancelled": 1}
    card_a = read_side.read_models.board.get("default", a)
    assert card_a.question == "which branch?"

    service.process_one(c.ProvideInput(a, "main", BOB))
    service.process_one(c.Complete(a, lease_a, {"merged": True}, "done"))
    service.process_one(c.Unblock(b, "credentials arrived", BOB))
    service.process_one(c.Fail(b, lease_b, "tool crashed", "tool_error"))
    read_side.catch_up()
    assert counts(read_side) == {"completed": 1, "failed": 1, "cancelled": 1}

    service.process_one(c.Retry(b, BOB))
    read_side.catch_up()
    board = read_side.read_models.board.board("default")
    assert counts(read_side) == {"pending": 1, "completed": 1, "cancelled": 1}
    [retried] = next(col for col in board.columns if col.status == "pending").items
    assert (retried.attempt, retried.error, retried.failure_reason) == (2, None, None)
    assert board.position == service.recorder.max_notification_id()
    assert kept_columns(datastore) == counted_columns(datastore)


def test_a_card_carries_what_the_aggregate_says(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    deadline = datetime.now(UTC) + timedelta(hours=1)
    execution_id = create(
        service, priority=5, labels={"env": "prod"}, deadline=deadline,
        parameters={"commands": ["ls"]}, type="team", team_id="red",
    )  # fmt: skip
    run_to_completion(service, execution_id)
    read_side.catch_up()

    card = read_side.read_models.board.get("default", execution_id)
    state = service.state(execution_id)
    for field in (
        "id", "tenant", "type", "agent_id", "team_id", "worker_queue", "prompt", "parameters",
        "priority", "labels", "status", "attempt", "worker_id", "created_by", "created_at",
        "updated_at", "deadline", "result", "error", "failure_reason", "completion_notes",
        "question", "cancel_requested", "not_before",
    ):  # fmt: skip
        assert getattr(card, field) == getattr(state, field), field
    assert (card.last_tool, card.last_tool_outcome) == ("bash", "success")
    assert card.version == state.version
    assert card.status_entered_at == state.updated_at


def test_filters_select_what_they_say(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    past = datetime.now(UTC) - timedelta(minutes=5)
    ids = {
        "plain": create(service, prompt="plain"),
        "agent": create(service, prompt="agent", agent_id="coder"),
        "team": create(service, prompt="team", type="team", team_id="red"),
        "queue": create(service, prompt="queue", worker_queue="gpu"),
        "label": create(service, prompt="label", labels={"env": "prod"}),
        "bob": create(service, prompt="bob", created_by=BOB),
        "late": create(service, prompt="late", deadline=past),
        "late-done": create(service, prompt="late-done", deadline=past),
    }
    run_to_completion(service, ids["late-done"])
    read_side.catch_up()
    board = read_side.read_models.board

    everything = board.list("default", ExecutionFilter()).items

    def prompts(**where: object) -> set[str]:
        chosen = ExecutionFilter(**where)  # type: ignore[arg-type]
        page = board.list("default", chosen)
        found = {card.prompt for card in page.items}
        now = datetime.now(UTC)  # live streams filter in memory: the same answer
        assert {card.prompt for card in everything if chosen.matches(card, now)} == found
        return found

    assert prompts(agent="coder") == {"agent"}
    assert prompts(team="red") == {"team"}
    assert prompts(type="team") == {"team"}
    assert prompts(queue="gpu") == {"queue"}
    assert prompts(label="env=prod") == {"label"}
    assert prompts(label="env") == {"label"}
    assert prompts(created_by="user:bob") == {"bob"}
    assert prompts(created_by="bob") == {"bob"}
    assert prompts(overdue=True) == {"late"}
    assert prompts(status=("completed",)) == {"late-done"}
    assert prompts(older_than=timedelta(hours=1)) == set()
    assert prompts(q="LATE") == {"late", "late-done"}
    assert prompts(q="%") == set()  # LIKE wildcards are text here
    later = datetime.now(UTC) + parse_age("2m")
    aged = board.list("default", ExecutionFilter(older_than=parse_age("1m")), now=later)
    assert len(aged.items) == len(ids)
    filtered = board.board("default", ExecutionFilter(agent="coder"))
    counts = {c.status: c.count for c in filtered.columns}
    assert counts == {**dict.fromkeys(STATUSES, 0), "pending": 1}
    assert [card.prompt for c in filtered.columns for card in c.items] == ["agent"]


def test_keyset_pages_cover_every_execution_once_in_order(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    for n in range(23):
        create(service, prompt=f"task {n}", priority=n % 3)
    read_side.catch_up()
    seen, cursor = [], None
    while True:
        page = read_side.read_models.board.list("default", limit=5, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len({card.id for card in seen}) == 23
    keys = [(-card.priority, card.created_at) for card in seen]
    assert keys == sorted(keys)

    board = read_side.read_models.board.board("default", limit=4)
    pending = next(c for c in board.columns if c.status == "pending")
    rest = read_side.read_models.board.list(
        "default", ExecutionFilter(status=("pending",)), limit=50, cursor=pending.next_cursor
    )
    assert [c.id for c in pending.items + rest.items] == [c.id for c in seen]


def test_tenants_never_see_each_other(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    mine = create(service, tenant="acme", prompt="mine")
    create(service, tenant="globex", prompt="theirs")
    read_side.catch_up()
    board = read_side.read_models.board
    assert columns(read_side, "acme") == {"pending": ["mine"]}
    assert counts(read_side, "globex") == {"pending": 1}
    with pytest.raises(NotFound):
        board.get("globex", mine)
    with pytest.raises(NotFound):
        read_side.read_models.durations.time_in_status("globex", mine)
    with pytest.raises(NotFound):
        read_side.read_models.timeline.timeline("globex", mine)


def test_bad_queries_are_refused_with_a_reason(read_side: ProjectionSupervisor) -> None:
    board = read_side.read_models.board
    with pytest.raises(InvalidQuery, match="status must be among"):
        ExecutionFilter(status=("done",))
    with pytest.raises(InvalidQuery, match="cursor"):
        board.list("default", cursor="not-a-cursor")
    with pytest.raises(InvalidQuery, match="limit"):
        board.list("default", limit=0)
    with pytest.raises(InvalidQuery, match="age"):
        parse_age("yesterday")
    with pytest.raises(NotFound):
        board.get("default", uuid4())
