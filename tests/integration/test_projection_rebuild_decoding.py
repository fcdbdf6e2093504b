"""The log reader a rebuild replays through reads stored events from PostgreSQL itself
and decodes them without the application's mapper: whatever it hands the views must be
what the mapper makes of the same rows, object for object, and what the mapper refuses
must still be named, not raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import Notification

from domain.application import ExecutionService
from domain.execution import commands as c
from infra.bootstrap import Container
from projections.engine.log import KNOWN_EVENTS, LoggedEvent, LogReader, Undecodable
from tests.integration.test_projection_rebuild import act
from tests.integration.test_projection_support import create, run_to_completion, scalar

CREATED = "agentboard.execution.Created.v1"
LIVES = (
    ("pick_up", "tool_call", "finish_tool", "output", "artifact", "ask", "answer", "block",
     "unblock", "complete"),
    ("pick_up", "fail", "retry", "pick_up", "expire"),
    ("pick_up", "cancel", "confirm_cancel"),
    ("block", "force_complete"),
)  # fmt: skip
STAMP = {"_type_": "datetime_iso", "_data_": "2025-01-01T00:00:00+00:00"}


def every_kind_of_event(service: ExecutionService) -> None:
    for life in LIVES:
        execution_id = create(
            service,
            prompt='résumé ✓ \u2028 "quoted"',
            parameters={"big": 2**80, "float": 0.1, "nested": [{"a": None}], "empty": {}},
            labels={"env": "prod"},
            deadline=datetime.now(UTC) + timedelta(days=1),  # a second envelope
            retry={"max_attempts": 3, "retry_on": ["agent_error", "worker_lost"]},
        )
        for step, operation in enumerate(life):
            act(service, [execution_id], operation, 0, step)
    run_to_completion(service, create(service))
    used = create(service)  # a model's token usage, reported by its run
    service.process_one(c.PickUp(used, "w-usage", "claim-usage"))
    service.process_one(c.RecordUsage(used, 1, "gpt-x", 1200, 300, "usage-1", cost_usd=0.01))


def store_created(database_url: str, service: ExecutionService, **changes: Any) -> int:
    """A stored ``Created`` like the application writes, with ``changes`` to its state."""
    execution_id = create(service)
    [stored] = [service.mapper.to_stored_event(e) for e in service.timeline(execution_id)][:1]
    state = json.loads(stored.state)
    state.update(changes)
    return store_raw(database_url, CREATED, json.dumps(state, separators=(",", ":")).encode())


def store_raw(database_url: str, topic: str, state: bytes) -> int:
    return int(
        scalar(
            database_url,
            "INSERT INTO agentboard_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, %s, %s) RETURNING notification_id",
            uuid4(),
            topic,
            state,
        )
    )


def by_the_mapper(service: ExecutionService, notification: Notification) -> Any:
    try:
        return service.mapper.to_domain_event(notification)
    except Exception as error:  # what the reader must name instead of raising
        return error


def test_what_the_reader_decodes_is_what_the_mapper_makes_of_the_same_rows(
    container: Container, database_url: str
) -> None:
    service = container.service
    every_kind_of_event(service)
    tricky = {
        store_created(database_url, service, parameters={"when": STAMP}): "a datetime",
        store_created(database_url, service, parameters={"xs": [STAMP, [STAMP]]}): "in lists",
        store_created(database_url, service, parameters={"x": float("nan")}): "NaN",
        store_created(database_url, service, parameters={"_type_": "x"}): "one key only",
        store_created(database_url, service, class_version=1): "class_version",
        store_created(database_url, service, parameters={"_type_": "nope", "_data_": 1}): None,
        store_raw(database_url, CREATED, json.dumps(STAMP).encode()): None,  # all envelope
        store_raw(database_url, CREATED, b'{"timestamp": 1e400}'): None,
    }
    head = service.recorder.max_notification_id() or 0
    notifications = service.recorder.select_notifications(0, head + 1)
    reader = LogReader(service.recorder, service.mapper)

    page = reader.read(0, head + 1)

    assert [entry.position for entry in page.entries] == [n.id for n in notifications]
    assert {n.topic for n in notifications} >= KNOWN_EVENTS.keys()  # every kind of event
    for entry, notification in zip(page.entries, notifications, strict=True):
        expected = by_the_mapper(service, notification)
        if isinstance(expected, Exception):
            assert isinstance(entry, Undecodable)
            assert entry.reason.startswith("state does not decode"), entry
            assert tricky.get(notification.id, "") is None
        elif isinstance(entry, LoggedEvent):
            assert type(entry.event) is type(expected)
            assert repr(vars(entry.event)) == repr(vars(expected))  # repr: NaN, key order
        else:
            assert isinstance(entry, Undecodable)  # a field check the mapper does not make
            assert notification.id in tricky
    decoded = {e.position: e for e in page.entries if isinstance(e, LoggedEvent)}
    when = next(position for position, why in tricky.items() if why == "a datetime")
    assert decoded[when].event.parameters["when"] == datetime(2025, 1, 1, tzinfo=UTC)


def test_the_reader_stops_where_it_is_told(container: Container) -> None:
    service = container.service
    every_kind_of_event(service)
    reader = LogReader(service.recorder, service.mapper)

    page = reader.read(3, 100, stop=10)

    assert (page.after, page.last, page.size) == (3, 10, 7)
    assert [entry.position for entry in page.entries] == list(range(4, 11))
    assert reader.read(page.last, 5).entries[0].position == 11
