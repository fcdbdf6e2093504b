"""Runners and their supervisor: live views, read-your-writes, lag, restarts after a
crash mid-page (nothing lost, nothing twice), a silent LISTEN, bad stored events."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.projection import ProjectionRunner
from psycopg import Cursor
from psycopg.rows import DictRow
from rich.console import Console

from api.cli.projections import skip_command, status_command
from domain.application import ExecutionService
from infra.bootstrap import Container
from infra.eventstore import eventsourcing_env
from infra.settings import Settings
from projections.audit.chain import AuditChainProjection
from projections.engine.errors import BadEvent
from projections.engine.listener import Listener
from projections.engine.log import LogReader
from projections.engine.positions import ViewPositions
from projections.engine.rebuild import rebuild
from projections.engine.registry import AnyProjection, datastore_for, make_projection
from projections.engine.runner import ViewRunner
from projections.engine.supervisor import ProjectionSupervisor
from projections.views.board import BoardProjection, BoardView
from tests.eventually import eventually
from tests.integration.test_projection_support import (
    FAST,
    counted_columns,
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    kept_columns,
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
    run_to_completion,
    scalar,
    snapshot,
)


def write_some(service: ExecutionService, executions: int) -> None:
    for n in range(executions):
        run_to_completion(service, create(service, prompt=f"task {n}"))


def test_live_views_follow_writes_and_answer_read_your_writes(
    container: Container, read_side: ProjectionSupervisor
) -> None:
    service = container.service
    read_side.start()
    execution_id = create(service, prompt="fresh")
    position = service.recorder.max_notification_id() or 0

    assert read_side.wait_for("board", position, timeout=5)
    assert read_side.read_models.board.get("default", execution_id).prompt == "fresh"
    assert read_side.read_models.progress.wait_for("status_intervals", position, timeout=5)
    assert not read_side.wait_for("board", position + 1_000, timeout=0.2)
    assert all(status.lag == 0 and status.state == "running" for status in read_side.status())


def test_another_process_hears_each_page_a_view_commits(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    """The API reads the views' positions from their announcements (a NOTIFY in each
    page's transaction); its once-a-second re-read is turned off here, so only an
    announcement can move it."""
    reader = ViewPositions(database_url, container.read_models.datastore)
    reader.start()
    reader._resync = lambda: None  # type: ignore[method-assign]
    try:
        read_side.start()
        create(container.service, prompt="heard")
        position = container.service.recorder.max_notification_id() or 0
        assert reader.wait_for("board", position, timeout=10)
        assert reader.wait_for("tool_calls", position, timeout=10)
    finally:
        reader.stop()


def test_lag_is_the_stored_position_minus_the_tracked_one(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    service = container.service
    write_some(service, 3)  # 15 events
    assert {s.name: s.lag for s in read_side.status()} == {
        "board": 15, "status_intervals": 15, "tool_calls": 15, "audit_chain": 15, "usage": 15,
    }  # fmt: skip
    read_side.catch_up()
    assert read_side.lag() == {
        "board": 0, "status_intervals": 0, "tool_calls": 0, "audit_chain": 0, "usage": 0,
    }  # fmt: skip

    create(service)
    console = Console(record=True, width=200)
    assert status_command(service, database_url, console) == 0
    printed = console.export_text()
    assert "board" in printed
    assert "16" in printed
    assert printed.count(" 1 ") >= 3


def crashing(projection: AnyProjection, crash: dict[str, Any]) -> AnyProjection:
    """The projection, made to die after writing part of a page, before the commit: the
    way a runner is killed. (The audit chain reads a page's stored events itself and
    writes them in ``chain``; every other view writes in ``apply``.)"""
    method = "chain" if isinstance(projection, AuditChainProjection) else "apply"
    write = getattr(projection, method)

    def write_then_crash(curs: Cursor[DictRow], events: list[Any], *args: Any) -> None:
        write(curs, events, *args)
        if len(events) > 1 and crash["left"] > 0:
            crash["left"] -= 1
            crash["how"](curs)

    setattr(projection, method, write_then_crash)
    return projection


def kill_connection(curs: Cursor[DictRow]) -> None:
    curs.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def raise_error(curs: Cursor[DictRow]) -> None:
    raise RuntimeError("killed mid-batch")


@pytest.mark.parametrize("how", [raise_error, kill_connection], ids=["raises", "connection"])
def test_a_runner_killed_mid_page_loses_and_repeats_nothing(
    container: Container,
    datastore: PostgresDatastore,
    database_url: str,
    how: Any,
) -> None:
    service = container.service
    crash = {"left": 2, "how": how}

    def factory(name: str, store: PostgresDatastore, suffix: str) -> AnyProjection:
        projection = make_projection(name, store, suffix)
        return crashing(projection, crash) if name == "board" else projection

    supervisor = ProjectionSupervisor(
        service, datastore, database_url=database_url, options=FAST, factory=factory
    )
    write_some(service, 20)  # 100 events: the first page crashes twice, then lands
    supervisor.start()
    try:
        writers = [
            threading.Thread(target=write_some, args=(service, 10)) for _ in range(3)
        ]  # more pages arrive while the board restarts
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        head = service.recorder.max_notification_id() or 0
        assert supervisor.wait_for("board", head, timeout=20)
        [board] = [s for s in supervisor.status() if s.name == "board"]
        assert (board.restarts, board.state, crash["left"]) == (2, "running", 0)

        live = snapshot(datastore)
        assert len(live["board_cards"]) == 50
        assert all(
            card["version"] == 5 and card["status"] == "completed" for card in live["board_cards"]
        )
        assert (
            kept_columns(datastore) == counted_columns(datastore) == {("default", "completed"): 50}
        )
    finally:
        supervisor.stop()


@pytest.mark.parametrize("view", ["status_intervals", "tool_calls", "audit_chain"])
def test_every_view_killed_mid_page_ends_equal_to_its_rebuild(
    container: Container, datastore: PostgresDatastore, database_url: str, view: str
) -> None:
    service = container.service
    crash = {"left": 2, "how": kill_connection}

    def factory(name: str, store: PostgresDatastore, suffix: str) -> AnyProjection:
        projection = make_projection(name, store, suffix)
        return crashing(projection, crash) if name == view else projection

    supervisor = ProjectionSupervisor(
        service, datastore_for(database_url, pool_size=4), database_url=database_url,
        options=FAST, factory=factory,
    )  # fmt: skip
    write_some(service, 20)
    supervisor.start()
    try:
        write_some(service, 10)  # more pages arrive while the view restarts
        head = service.recorder.max_notification_id() or 0
        assert supervisor.wait_for(view, head, timeout=20)
        [status] = [s for s in supervisor.status() if s.name == view]
        assert (status.restarts, status.state, crash["left"]) == (2, "running", 0)
    finally:
        supervisor.stop()
    built_live = snapshot(datastore)

    rebuild(service, datastore, view)

    assert snapshot(datastore) == built_live


class SilentListener(Listener):
    """A LISTEN connection that stays up and hears nothing (a half-dead TCP session)."""

    def _listen(self) -> None:
        self.connections += 1
        while not self._stopping.is_set() and not self._reconnect.is_set():
            time.sleep(0.05)
        self._reconnect.clear()


def test_views_keep_up_when_listen_goes_silent(
    container: Container, read_side: ProjectionSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    service = container.service
    silent = SilentListener(read_side.listener.database_url)
    read_side.listener = silent
    read_side.start()
    time.sleep(1.2)  # the time under test: the listener has been quiet for over a second
    caplog.set_level(logging.WARNING, logger="projections.engine.listener")
    create(service)
    position = service.recorder.max_notification_id() or 0

    assert read_side.wait_for("board", position, timeout=5)  # found by polling
    assert "missed a commit" in caplog.text
    eventually(lambda: silent.connections, lambda n: n >= 2, timeout=2,
               what="the silent listener to be told to reconnect")  # fmt: skip


def test_the_listener_reconnects_after_its_connection_is_killed(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    service = container.service
    read_side.start()
    eventually(lambda: read_side.listener.connections, lambda n: n >= 1, timeout=5,
               what="the listener to connect")  # fmt: skip
    scalar(
        database_url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()",
    )
    create(service)
    position = service.recorder.max_notification_id() or 0
    assert read_side.wait_for("board", position, timeout=5)
    eventually(lambda: read_side.listener.connections, lambda n: n >= 2, timeout=5,
               what="the listener to connect again")  # fmt: skip


def store_raw_event(
    database_url: str, topic: str, state: bytes, version: int = 1, originator: UUID | None = None
) -> int:
    return int(
        scalar(
            database_url,
            "INSERT INTO agentboard_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) RETURNING notification_id",
            originator or uuid4(),
            version,
            topic,
            state,
        )
    )


@pytest.mark.parametrize("version", [1, 2])
def test_an_event_out_of_its_place_in_a_history_halts_every_view(
    container: Container, read_side: ProjectionSupervisor, database_url: str, version: int
) -> None:
    """A second Created for an execution (version 2), or a history that starts with
    another event: stored by hand, never by the service; each view halts in front of it
    rather than start the execution over or guess."""
    service = container.service
    first = create(service, prompt="before")
    topic, state = (
        ("agentboard.execution.Created.v1", "SELECT state FROM agentboard_events LIMIT 1")
        if version == 2
        else (
            "agentboard.execution.PickedUp.v1",
            "SELECT state FROM agentboard_events WHERE topic LIKE '%%PickedUp%%' LIMIT 1",
        )
    )
    if version == 1:
        run_to_completion(service, create(service, prompt="done"))
    bad = store_raw_event(
        database_url,
        topic,
        bytes(scalar(database_url, state)),
        version,
        first if version == 2 else None,
    )  # a Created again for the first execution, or a new history that starts PickedUp
    reason = "Created is its version 1" if version == 2 else "must be its Created event"

    for name in ("board", "status_intervals", "tool_calls"):
        projection = make_projection(name, read_side.datastore)
        reader = LogReader(service.recorder, service.mapper, projection.decoded)
        runner = ViewRunner(projection, reader, read_side.control, page_size=50, poll_interval=1)
        with pytest.raises(BadEvent, match=reason) as halted:
            runner.catch_up()
        assert halted.value.position == bad
        assert projection.view.position() == bad - 1


@pytest.mark.parametrize(
    ("topic", "state", "reason"),
    [
        ("agentboard.execution.Teleported.v1", b"{}", "unknown topic"),
        ("agentboard.execution.Created.v1", b"not json", "state does not decode"),
        ("agentboard.execution.Created.v1", b'{"tenant": "default"}', "is missing"),
    ],
    ids=["unknown-topic", "undecodable", "missing-field"],
)
def test_a_bad_stored_event_halts_the_view_until_an_explicit_skip(
    container: Container,
    read_side: ProjectionSupervisor,
    database_url: str,
    topic: str,
    state: bytes,
    reason: str,
) -> None:
    service = container.service
    create(service, prompt="before")
    bad = store_raw_event(database_url, topic, state)
    create(service, prompt="after")

    with pytest.raises(BadEvent, match=reason) as halted:
        read_side.catch_up()
    assert halted.value.position == bad
    assert make_projection("board", read_side.datastore).view.position() == bad - 1

    read_side.start()
    statuses = eventually(read_side.status, lambda now: {s.state for s in now} == {"halted"},
                          timeout=5, what="every view to halt")  # fmt: skip
    assert {(s.state, s.error_position) for s in statuses} == {("halted", bad)}
    assert all(f"position {bad}" in (s.error or "") for s in statuses)
    console = Console(record=True, width=300)
    status_command(service, database_url, console)
    assert "halted" in console.export_text()

    for name in ("board", "status_intervals", "tool_calls"):
        assert skip_command(service, database_url, name, bad, "written by a test", Console()) == 0
    head = service.recorder.max_notification_id() or 0
    assert read_side.wait_for("board", head, timeout=10)
    assert read_side.wait_for("tool_calls", head, timeout=10)
    board = read_side.read_models.board.board("default")
    assert [c.prompt for col in board.columns for c in col.items] == ["before", "after"]


def test_eventsourcings_own_runner_can_drive_a_view_one_event_at_a_time(
    container: Container, read_side: ProjectionSupervisor, database_url: str, settings: Settings
) -> None:
    service = container.service
    write_some(service, 2)
    env = eventsourcing_env(database_url, settings, create_table=True)
    with ProjectionRunner(
        application_class=ExecutionService,
        projection_class=BoardProjection,
        view_class=BoardView,
        env=env,
    ) as runner:
        runner.wait(service.recorder.max_notification_id(), timeout=10)
    cards = read_side.read_models.board.list("default").items
    assert [(card.status, card.version) for card in cards] == [("completed", 5)] * 2
