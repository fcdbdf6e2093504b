"""The live hub's fan-out: one batch of events to many streams, a slow stream dropped alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from api.http.live import CLIENT_QUEUE, Client, LiveHub
from projections.views.card import Card
from projections.views.filters import ExecutionFilter

NOW = datetime(2026, 12, 4, tzinfo=UTC)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def card(execution_id: UUID, tenant: str = "acme", agent: str = "script") -> Card:
    return Card(
        id=execution_id, tenant=tenant, type="task", agent_id=agent, team_id=None,
        worker_queue="default", prompt="p", parameters={}, priority=0, labels={},
        status="pending", attempt=1, worker_id=None, created_by={"kind": "api", "id": "t"},
        created_at=NOW, updated_at=NOW, deadline=None, parent_execution_id=None,
        not_before=None, result=None, error=None, failure_reason=None, completion_notes=None,
        question=None, pending_input=None, cancel_requested=False, blocked=None,
        last_tool=None, last_tool_call_id=None,
        last_tool_outcome=None, status_entered_at=NOW, version=1, pipeline=None, position=1,
    )  # fmt: skip


def hub_with(cards: dict[UUID, Card]) -> LiveHub:
    async def cards_at(position: int, ids: Sequence[UUID]) -> dict[UUID, Card]:
        return {i: cards[i] for i in ids if i in cards}

    return LiveHub("nats://unused", cards_at)


def events(cards: dict[UUID, Card], start: int = 1) -> list[dict[str, object]]:
    return [
        {"execution_id": str(c.id), "tenant": c.tenant, "type": "Created", "position": n}
        for n, c in enumerate(cards.values(), start)
    ]


async def test_a_batch_reaches_each_board_as_one_take_in_order() -> None:
    cards = {c.id: c for c in (card(uuid4()), card(uuid4(), agent="shell"), card(uuid4()))}
    hub = hub_with(cards)
    everything = hub.join(Client("acme"))
    shell_only = hub.join(Client("acme", where=ExecutionFilter(agent="shell")))
    other_tenant = hub.join(Client("globex"))

    await hub._dispatch(events(cards))

    assert [m.id for m in await everything.take(1)] == [1, 2, 3]
    assert [m.data["execution"].agent_id for m in await shell_only.take(1)] == ["shell"]
    assert not other_tenant._pending
    assert hub.delivered == 4


async def test_a_client_that_falls_behind_is_dropped_and_the_others_get_everything() -> None:
    cards = {c.id: c for c in (card(uuid4()) for _ in range(100))}
    hub = hub_with(cards)
    slow, fast = hub.join(Client("acme")), hub.join(Client("acme"))
    received = 0
    for round_ in range(CLIENT_QUEUE // 100 + 2):
        await hub._dispatch(events(cards, start=round_ * 100 + 1))
        received += len(await fast.take(1))  # fast reads each batch; slow reads nothing

    assert slow.dropped
    assert received == (CLIENT_QUEUE // 100 + 2) * 100
    assert not fast.dropped
    await asyncio.wait_for(slow.take(60), 1)  # a dropped stream wakes at once, and ends


async def test_a_follower_gets_its_execution_s_events_only_and_times_out_when_idle() -> None:
    mine, theirs = card(uuid4()), card(uuid4())
    hub = hub_with({mine.id: mine, theirs.id: theirs})
    follower = hub.join(Client("acme", execution_id=mine.id))

    await hub._dispatch(events({mine.id: mine, theirs.id: theirs}))

    assert [m.data["execution_id"] for m in await follower.take(1)] == [str(mine.id)]
    with pytest.raises(TimeoutError):  # idle: the stream sends a heartbeat comment
        await follower.take(0.05)
    assert hub._watched(f"agentboard.events.acme.{mine.id}.Created")
    hub.leave(follower)
    assert not hub._watched(f"agentboard.events.acme.{mine.id}.Created")
