"""Reading the log, with no database: what counts as a bad stored event, how a view
treats one, and the naming, filter and cursor rules the views and queries rely on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from projections.engine.errors import BadEvent, InvalidQuery
from projections.engine.log import LoggedEvent, LogReader, Undecodable
from projections.views.board import BoardView
from projections.views.card import CHANGE_TYPES, CHANGING_COLUMNS, COLUMN_TYPES, COLUMNS
from projections.views.filters import Cursor, ExecutionFilter, parse_age

ALICE = Actor(ActorKind.USER, "alice")
CREATED = "agentboard.execution.Created.v1"
PICKED_UP = "agentboard.execution.PickedUp.v1"


class ListRecorder:
    """Just enough of an application recorder: a list of notifications."""

    def __init__(self, notifications: Sequence[Notification]) -> None:
        self.notifications = list(notifications)

    def select_notifications(
        self, start: int | None, limit: int, stop: int | None = None, **_: Any
    ) -> list[Notification]:
        after = [n for n in self.notifications if n.id > (start or 0)]
        return [n for n in after if stop is None or n.id <= stop][:limit]

    def max_notification_id(self) -> int | None:
        return self.notifications[-1].id if self.notifications else None


def stored_log(*bad: tuple[str, bytes]) -> tuple[ExecutionService, list[Notification]]:
    """Created (1), PickedUp (2), then the ``bad`` events (3, 4, ...)."""
    service = ExecutionService()
    execution_id = service.process_one(
        c.CreateExecution.new(
            tenant="t", agent_id="a", worker_queue="q", prompt="p", created_by=ALICE
        )
    ).execution.id
    service.process_one(c.PickUp(execution_id, "w", "claim"))
    stored = [service.mapper.to_stored_event(e) for e in service.timeline(execution_id)]
    stored += [
        type(stored[0])(uuid4(), 1 if topic == CREATED else 2, topic, state) for topic, state in bad
    ]  # each of another execution, at a version where its kind can stand
    notifications = [
        Notification(
            id=n,
            originator_id=s.originator_id,
            originator_version=s.originator_version,
            topic=s.topic,
            state=s.state,
        )
        for n, s in enumerate(stored, start=1)
    ]
    return service, notifications


def reader(*bad: tuple[str, bytes], topics: Any = None) -> LogReader:
    service, notifications = stored_log(*bad)
    return LogReader(ListRecorder(notifications), service.mapper, topics)  # type: ignore[arg-type]


def test_good_events_decode_and_carry_their_positions() -> None:
    page = reader().read(0, 10)
    assert (page.after, page.last, page.size) == (0, 2, 2)
    assert [(e.position, e.topic) for e in page.entries] == [(1, CREATED), (2, PICKED_UP)]
    assert all(isinstance(e, LoggedEvent) for e in page.entries)


@pytest.mark.parametrize(
    ("topic", "state", "reason"),
    [
        ("agentboard.execution.Teleported.v1", b"{}", "unknown topic"),
        ("some.module:Thing", b"{}", "unknown topic"),
        (PICKED_UP, b"{not json", "state does not decode"),
        (PICKED_UP, b'{"worker_id": "w"}', "field 'attempt' is missing"),
        (
            PICKED_UP,
            b'{"timestamp": {"_type_": "datetime_iso", "_data_": "2025-01-01T00:00:00+00:00"},'
            b' "worker_id": "w", "attempt": "one", "lease": 1, "claim_token": "c"}',
            "field 'attempt' holds str",
        ),
    ],
)
def test_bad_stored_events_are_named_not_raised_while_reading(
    topic: str, state: bytes, reason: str
) -> None:
    [entry] = reader((topic, state)).read(2, 10).entries
    assert isinstance(entry, Undecodable)
    assert (entry.position, entry.topic) == (3, topic)
    assert reason in entry.reason


def test_an_event_where_no_event_of_its_kind_can_stand_is_named() -> None:
    service, notifications = stored_log()
    created, picked_up = notifications
    again = replace(created, id=3, originator_version=2)  # Created a second time
    first = replace(picked_up, id=4, originator_id=uuid4(), originator_version=1)
    log = LogReader(ListRecorder([*notifications, again, first]), service.mapper, None)  # type: ignore[arg-type]

    entries = log.read(0, 10).entries

    assert [type(e).__name__ for e in entries] == [
        "LoggedEvent", "LoggedEvent", "Undecodable", "Undecodable",
    ]  # fmt: skip
    assert "Created at version 2" in entries[2].reason
    assert "version 1 of an execution must be its Created event" in entries[3].reason


def test_a_view_halts_on_a_bad_event_unless_told_to_skip_it() -> None:
    page = reader(("x.y.Z.v1", b"{}"), (CREATED, b"{}")).read(0, 10)

    with pytest.raises(BadEvent) as halted:
        page.for_view("board", None, frozenset())
    assert (halted.value.view, halted.value.position) == ("board", 3)
    assert "agentboard projections skip board 3" in str(halted.value)

    with pytest.raises(BadEvent) as next_one:
        page.for_view("board", None, frozenset({3}))
    assert next_one.value.position == 4
    events = page.for_view("board", None, frozenset({3, 4}))
    assert [e.position for e in events] == [1, 2]
    assert page.before(3).last == 2


def test_a_narrow_view_passes_over_other_topics_undecoded_but_never_unknown_ones() -> None:
    narrow = reader((PICKED_UP, b"garbage"), ("x.y.Z.v1", b"{}"), topics={CREATED})
    page = narrow.read(0, 10)
    assert [e.position for e in page.entries] == [1, 4]  # 2 and 3 were not decoded
    assert isinstance(page.entries[1], Undecodable)


def test_fresh_tables_and_their_indexes_carry_the_suffix_after_the_table_name() -> None:
    datastore = PostgresDatastore("db", "127.0.0.1", 1, "u", "")  # never connects here
    fresh = BoardView(datastore, suffix="__next")
    assert fresh.table_names() == [
        "board_cards__next",
        "board_columns__next",
        "board_tracking__next",
    ]
    assert fresh.resolve("board_cards_by_column") == "board_cards__next_by_column"
    assert fresh.resolve("board_columns") == "board_columns__next"
    assert BoardView(datastore).lock_key != fresh.lock_key


def test_filters_and_cursors() -> None:
    now = datetime(2025, 1, 31, tzinfo=UTC)
    clauses, params = ExecutionFilter(
        status=("pending",), agent="a", label="env=prod", created_by="user:bob",
        overdue=True, older_than=parse_age("7d"),
    ).where(now)  # fmt: skip
    assert len(clauses) == 6
    assert params["created_before"] == now - timedelta(days=7)
    assert params["created_by"].obj == {"kind": "user", "id": "bob"}
    assert ExecutionFilter().is_empty
    assert not ExecutionFilter(agent="a").is_empty

    cursor = Cursor(-3, now, uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    with pytest.raises(InvalidQuery):
        Cursor.decode("bm90IGpzb24")
    with pytest.raises(InvalidQuery):
        ExecutionFilter(type="robot")
    with pytest.raises(InvalidQuery):
        ExecutionFilter(older_than=timedelta(0))


def test_binary_copy_types_follow_the_card_columns() -> None:
    assert list(COLUMN_TYPES) == list(COLUMNS)
    assert list(CHANGE_TYPES) == ["id", *CHANGING_COLUMNS]
