"""One LISTEN connection per process: what the store and the views announce reaches every
part of the process that subscribed, on one connection."""

from __future__ import annotations

import queue

from infra.bootstrap import Container
from projections.engine.listener import EVENTS_CHANNEL, VIEWS_CHANNEL, Listener
from projections.engine.supervisor import ProjectionSupervisor
from tests.integration.test_projection_support import (
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
)


def heard(channel: str, listener: Listener) -> queue.Queue[str | None]:
    payloads: queue.Queue[str | None] = queue.Queue()
    listener.subscribe(channel, payloads.put)
    return payloads


def next_payload(payloads: queue.Queue[str | None]) -> str:
    """The next announcement (skipping the None said on listening)."""
    while (payload := payloads.get(timeout=10)) is None:
        continue
    return payload


def test_the_channel_is_the_one_the_event_store_notifies(container: Container) -> None:
    assert container.service.recorder.channel_name == EVENTS_CHANNEL  # type: ignore[attr-defined]


def test_one_connection_carries_the_log_s_commits_and_the_views_pages(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    listener = Listener(database_url).start()
    try:
        commits, pages = heard(EVENTS_CHANNEL, listener), heard(VIEWS_CHANNEL, listener)
        assert commits.get(timeout=10) is None  # listening: look for what came before
        assert pages.get(timeout=10) is None
        create(container.service)
        assert next_payload(commits) == ""  # the store's NOTIFY carries nothing
        read_side.catch_up()
        position = container.service.recorder.max_notification_id()
        announced = {next_payload(pages) for _ in read_side.names}
        assert announced == {f"{name} {position}" for name in read_side.names}
        assert listener.connections == 1
    finally:
        listener.stop()


def test_a_subscriber_that_left_hears_nothing_more(container: Container, database_url: str) -> None:
    listener = Listener(database_url).start()
    try:
        gone, staying = queue.Queue[str | None](), heard(EVENTS_CHANNEL, listener)
        unsubscribe = listener.subscribe(EVENTS_CHANNEL, gone.put)
        assert staying.get(timeout=10) is None
        unsubscribe()
        while not gone.empty():
            gone.get()
        create(container.service)
        assert next_payload(staying) == ""
        assert gone.empty()
    finally:
        listener.stop()
