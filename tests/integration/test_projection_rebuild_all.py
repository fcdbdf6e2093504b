"""Rebuilding every view at once, each in its own process (``agentboard projections
rebuild`` with no NAME), and the write-behind that spares a rebuilt board an UPDATE per
event: what is swapped in equals what the live views hold, while the board keeps
serving; a view that cannot be rebuilt is named, the others are rebuilt regardless."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from rich.console import Console

from api.cli.projections import rebuild_command
from domain.application import ExecutionService
from infra.bootstrap import Container
from projections.engine.control import Control
from projections.engine.errors import ProjectionError, RebuildInProgress
from projections.engine.rebuild import REBUILD_NAMESPACE, rebuild
from projections.engine.rebuild_processes import rebuild_in_processes
from projections.engine.registry import VIEWS, ProjectionOptions, view_names
from projections.engine.supervisor import ProjectionSupervisor
from projections.engine.view import lock_key
from tests.integration.test_projection_rebuild import act
from tests.integration.test_projection_support import (
    counted_columns,
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    kept_columns,
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
    run_to_completion,
    scalar,
    snapshot,
)

OPERATIONS = ("pick_up", "tool_call", "finish_tool", "ask", "answer", "block", "unblock",
              "fail", "retry", "complete", "cancel", "confirm_cancel", "output")  # fmt: skip


def busy_history(service: ExecutionService, executions: int) -> list[UUID]:
    """Executions in every state, their events interleaved across the log."""
    ids = [create(service, agent_id=f"agent-{n % 3}", priority=n % 4) for n in range(executions)]
    for round_ in range(6):
        for n, operation in enumerate(OPERATIONS):
            act(service, ids, operation, n * 7 + round_, round_ + n)
    for execution_id in ids[: executions // 2]:
        act(service, [execution_id], "pick_up", 0, 1)
    return ids


def table_ids(database_url: str) -> dict[str, int]:
    """The identity of each live view table: a rebuild swaps in new ones."""
    tables = [table for _, view in VIEWS.values() for table in view.tables]
    return {table: scalar(database_url, "SELECT to_regclass(%s)::oid", table) for table in tables}


def tables_of(view: str) -> list[str]:
    return list(VIEWS[view][1].tables)


def test_rebuilding_every_view_from_the_cli_swaps_in_what_the_live_views_hold(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str,
) -> None:  # fmt: skip
    service = container.service
    busy_history(service, 40)
    read_side.start()
    head = service.recorder.max_notification_id() or 0
    assert all(read_side.wait_for(view, head, timeout=30) for view in read_side.names)
    built_live = snapshot(datastore)
    before = table_ids(database_url)
    stop, errors, positions = threading.Event(), list[BaseException](), list[int]()

    def read_the_board() -> None:
        while not stop.is_set():
            try:
                positions.append(read_side.read_models.board.board("default").position)
            except BaseException as error:  # the test reports it below
                errors.append(error)

    reader = threading.Thread(target=read_the_board)
    reader.start()
    console = Console(record=True, width=200)
    try:
        code = rebuild_command(service, database_url, None, console)
    finally:
        stop.set()
        reader.join()

    assert code == 0
    output = console.export_text()
    assert f"rebuilt {', '.join(view_names())}: {head:,} events" in output
    assert "done all views" in output  # the progress bar's last word
    after = table_ids(database_url)
    assert all(after[table] != before[table] for table in before)  # every view swapped in
    assert errors == []
    assert positions
    assert positions == sorted(positions)
    assert snapshot(datastore) == built_live
    assert kept_columns(datastore) == counted_columns(datastore)


def test_the_agentboard_command_rebuilds_every_view_without_a_traceback(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str, tmp_path: Path,
) -> None:  # fmt: skip
    """The real entry point, as an operator runs it: its children start from a console
    script, not from this test process."""
    service = container.service
    busy_history(service, 10)
    read_side.catch_up()
    built_live = snapshot(datastore)
    before = table_ids(database_url)
    env = {
        **os.environ,
        "AGENTBOARD_DATABASE_URL": database_url,
        "AGENTBOARD_DATA_DIR": str(tmp_path),
    }
    agentboard = Path(sys.executable).parent / "agentboard"

    command = [str(agentboard), "projections", "rebuild"]
    done = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)

    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    head = service.recorder.max_notification_id() or 0
    assert f"{head:,} events in".encode() in done.stdout
    after = table_ids(database_url)
    assert all(after[table] != before[table] for table in before)
    assert snapshot(datastore) == built_live


def test_writes_during_a_rebuild_in_processes_reach_the_swapped_in_views(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore
) -> None:
    service = container.service
    busy_history(service, 20)
    read_side.start()
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            run_to_completion(service, create(service))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        report = rebuild_in_processes(service, datastore, page_size=25)
    finally:
        stop.set()
        writer.join()

    assert report.views == view_names()
    head = service.recorder.max_notification_id() or 0
    assert all(read_side.wait_for(view, head, timeout=30) for view in read_side.names)
    followed_live = snapshot(datastore)
    rebuild(service, datastore)  # once more from scratch, in this process, nothing moving
    assert snapshot(datastore) == followed_live
    for card in followed_live["board_cards"]:
        state = service.state(card["id"])
        assert (card["status"], card["version"]) == (state.status, state.version)


def test_a_rebuild_of_every_view_refuses_at_once_while_one_is_being_rebuilt(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str,
) -> None:  # fmt: skip
    run_to_completion(container.service, create(container.service))
    read_side.catch_up()
    before = table_ids(database_url)
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (REBUILD_NAMESPACE, lock_key("board")))
        with pytest.raises(RebuildInProgress, match="'board'"):
            rebuild_in_processes(container.service, datastore)
    assert table_ids(database_url) == before  # nothing was swapped


def test_a_view_that_cannot_be_rebuilt_is_named_and_the_others_are_swapped_in(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str,
) -> None:  # fmt: skip
    service = container.service
    run_to_completion(service, create(service, prompt="before"))
    bad = int(
        scalar(
            database_url,
            "INSERT INTO agentboard_events (originator_id, originator_version, topic, state) "
            "VALUES (gen_random_uuid(), 1, 'agentboard.execution.Teleported.v1', '{}') "
            "RETURNING notification_id",
        )
    )
    run_to_completion(service, create(service, prompt="after"))
    control = Control(datastore)
    for view in view_names():
        if view != "board":  # the board alone has not been told to pass over it
            control.record_skip(service.recorder, view, bad, "written by a test")
    before = table_ids(database_url)
    console = Console(record=True, width=300)

    assert rebuild_command(service, database_url, None, console) == 1

    output = console.export_text()
    assert f"rebuild of board failed: view 'board' halted at log position {bad}" in output
    after = table_ids(database_url)
    assert all(after[t] == before[t] for t in tables_of("board"))
    others = [t for view in view_names() if view != "board" for t in tables_of(view)]
    assert all(after[t] != before[t] for t in others)
    with pytest.raises(ProjectionError, match="unknown topic"):
        rebuild_in_processes(service, datastore, ["board"])


@pytest.mark.parametrize("view", ["board", "status_intervals", "tool_calls"])
@pytest.mark.parametrize(
    ("remembered", "held"),
    [(2, 1000), (5, 5)],
    ids=["holding-what-it-forgot", "saving-before-the-end"],
)
def test_a_rebuilt_view_that_holds_more_rows_than_it_remembers_equals_the_live_one(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str, monkeypatch: pytest.MonkeyPatch, view: str, remembered: int,
    held: int,
) -> None:  # fmt: skip
    """Write-behind with a tiny cache: rows held back across pages must be found even
    when the cache has forgotten them; rows saved before the last page (at the hold
    limit) are read back by later pages."""
    service = container.service
    busy_history(service, 12)
    live = ProjectionSupervisor(
        service, datastore, database_url=database_url, options=ProjectionOptions(page_size=3)
    )
    live.catch_up()
    built_live = snapshot(datastore)
    monkeypatch.setattr(VIEWS[view][0], "cache_size", remembered)
    monkeypatch.setattr(VIEWS[view][0], "hold_limit", held)

    rebuild(service, datastore, view, page_size=3)

    assert snapshot(datastore) == built_live
    assert kept_columns(datastore) == counted_columns(datastore)
