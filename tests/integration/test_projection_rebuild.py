"""Rebuilds: a rebuilt view equals the live one (for random histories too), and the swap
happens under a running board without readers ever seeing a mix or going back."""

from __future__ import annotations

import contextlib
import threading
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from api.cli.projections import rebuild_command
from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import DomainError
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from projections.engine.errors import RebuildInProgress
from projections.engine.rebuild import REBUILD_NAMESPACE, RebuildProgress, rebuild
from projections.engine.registry import VIEWS, ProjectionOptions, view_names
from projections.engine.supervisor import ProjectionSupervisor
from projections.engine.view import lock_key
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

BOB = Actor(ActorKind.USER, "bob")
OPERATIONS = (
    "create", "pick_up", "tool_call", "finish_tool", "output", "artifact", "ask", "answer",
    "block", "unblock", "cancel", "confirm_cancel", "complete", "force_complete", "fail",
    "expire", "retry", "catch_up",
)  # fmt: skip
REASONS = ("tool_error", "worker_lost", "timeout", "agent_error")


def act(
    service: ExecutionService, ids: list[UUID], operation: str, pick: int, variant: int
) -> None:
    """One random command; the domain may refuse it, which is part of a real history."""
    if operation == "create" or not ids:
        ids.append(
            create(
                service,
                tenant=("acme", "globex")[variant % 2],
                agent_id=f"agent-{variant}",
                priority=variant,
                labels={"v": str(variant)},
                retry={"max_attempts": 3, "retry_on": list(REASONS)},
            )
        )
        return
    execution_id = ids[pick % len(ids)]
    lease = service.state(execution_id).lease
    call = f"call-{variant}"
    commands = {
        "pick_up": lambda: service.process_one(c.PickUp(execution_id, f"w{variant}", str(uuid4()))),
        "tool_call": lambda: service.process_one(
            c.RecordToolCall(execution_id, lease, call, "bash", {"n": variant})
        ),
        "finish_tool": lambda: service.process_one(
            c.FinishToolCall(
                execution_id, lease, call, ("success", "failed")[variant % 2], result_summary="r"
            )
        ),
        "output": lambda: service.process_one(
            c.AppendOutput(execution_id, lease, "chunk", 10**6 + pick)
        ),
        "artifact": lambda: service.process_one(
            c.AddArtifact(
                execution_id,
                lease,
                name=f"a{variant}",
                media_type="text/plain",
                size=1,
                sha256=uuid4().hex,
                object_key="k",
            )
        ),
        "ask": lambda: service.process_one(
            c.RequestInput(execution_id, lease, f"question {variant}?")
        ),
        "answer": lambda: service.process_one(c.ProvideInput(execution_id, variant, BOB)),
        "block": lambda: service.process_one(c.Block(execution_id, "wait", BOB)),
        "unblock": lambda: service.process_one(c.Unblock(execution_id, "go", BOB)),
        "cancel": lambda: service.process_one(c.RequestCancel(execution_id, "stop", BOB)),
        "confirm_cancel": lambda: service.process_one(c.ConfirmCancel(execution_id, lease)),
        "complete": lambda: service.process_one(
            c.Complete(execution_id, lease, {"v": variant}, "notes")
        ),
        "force_complete": lambda: service.process_one(
            c.ForceComplete(execution_id, BOB, completion_notes="forced")
        ),
        "fail": lambda: service.process_one(
            c.Fail(execution_id, lease, "boom", REASONS[variant % 4])
        ),
        "expire": lambda: service.process_one(c.ExpireLease(execution_id, lease)),
        "retry": lambda: service.process_one(c.Retry(execution_id, BOB)),
    }
    with contextlib.suppress(DomainError):
        commands[operation]()


def start_afresh(database_url: str, read_side: ProjectionSupervisor) -> None:
    view_tables = [table for view in snapshot_tables() for table in view]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE agentboard_events RESTART IDENTITY")
        for table in view_tables:
            for suffix in ("", "__next", "__old"):
                conn.execute(f"DROP TABLE IF EXISTS {table}{suffix}")
    read_side.create_tables()


def snapshot_tables() -> list[list[str]]:
    return [[*view.tables, f"{name}_tracking"] for name, (_, view) in VIEWS.items()]


history = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 9), st.integers(0, 3)),
    min_size=1, max_size=40,
)  # fmt: skip


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=history, live_page=st.integers(1, 8), rebuild_page=st.integers(1, 60))
def test_views_rebuilt_from_the_log_equal_the_views_built_live(
    container: Container,
    read_side: ProjectionSupervisor,
    datastore: PostgresDatastore,
    database_url: str,
    steps: list[tuple[str, int, int]],
    live_page: int,
    rebuild_page: int,
) -> None:
    service = container.service
    start_afresh(database_url, read_side)  # examples must not depend on each other
    live = ProjectionSupervisor(
        service, datastore, database_url=database_url,
        options=ProjectionOptions(page_size=live_page),
    )  # fmt: skip
    ids: list[UUID] = []
    for operation, pick, variant in steps:
        if operation == "catch_up":
            live.catch_up()  # pages end at random points of each execution's history
        else:
            act(service, ids, operation, pick, variant)
    live.catch_up()
    built_live = snapshot(datastore)

    rebuild(service, datastore, page_size=rebuild_page)

    assert snapshot(datastore) == built_live
    assert kept_columns(datastore) == counted_columns(datastore)
    for card in built_live["board_cards"]:  # and both equal what the aggregate says
        state = service.state(card["id"])
        assert (card["status"], card["attempt"], card["worker_id"], card["version"]) == (
            state.status, state.attempt, state.worker_id, state.version,
        )  # fmt: skip


def test_a_rebuild_swaps_in_while_the_board_is_live_and_read(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore
) -> None:
    service = container.service
    for _ in range(30):
        run_to_completion(service, create(service))
    read_side.start()
    stop = threading.Event()
    seen_positions: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        while not stop.is_set():
            run_to_completion(service, create(service))

    def read() -> None:
        while not stop.is_set():
            try:
                seen_positions.append(read_side.read_models.board.board("default").position)
            except BaseException as error:  # the test reports it below
                errors.append(error)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    phases: list[str] = []
    try:
        report = rebuild(
            service, datastore, "board", page_size=40,
            progress=lambda p: phases.append(p.phase),
        )  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert seen_positions == sorted(seen_positions)  # never back in time, never a mix
    assert {"replaying", "indexing", "done"} <= set(phases)
    assert report.events >= 150
    head = service.recorder.max_notification_id() or 0
    assert read_side.wait_for("board", head, timeout=10)  # the live runner carried on
    live = snapshot(datastore)
    rebuild(service, datastore, "board")
    assert snapshot(datastore)["board_cards"] == live["board_cards"]
    assert kept_columns(datastore) == counted_columns(datastore)


def test_the_rebuild_command_reports_and_refuses_unknown_views(
    container: Container, read_side: ProjectionSupervisor, database_url: str
) -> None:
    service = container.service
    run_to_completion(service, create(service))
    console = Console(record=True, width=200, force_terminal=True)  # a terminal: a bar

    assert rebuild_command(service, database_url, None, console) == 0
    printed = console.export_text()
    assert f"rebuilt {', '.join(view_names())}: 5 events" in printed
    bar = [line for line in printed.splitlines() if "done all views" in line]
    assert bar, printed  # the bar's last state: phase, events done of the log's, rate
    assert "5/5" in bar[-1]
    assert "events/s" in bar[-1]
    assert rebuild_command(service, database_url, "kanban", console) == 2
    assert "no view named 'kanban'" in console.export_text()


def test_one_rebuild_of_a_view_at_a_time(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str,
) -> None:  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute(
            "SELECT pg_advisory_lock(%s, %s)", (REBUILD_NAMESPACE, lock_key("tool_calls"))
        )
        with pytest.raises(RebuildInProgress):
            rebuild(container.service, datastore, "tool_calls")
        other.execute(  # now, not when the server gets round to the closed connection
            "SELECT pg_advisory_unlock(%s, %s)", (REBUILD_NAMESPACE, lock_key("tool_calls"))
        )
    progress: list[RebuildProgress] = []
    rebuild(container.service, datastore, "tool_calls", progress=progress.append)
    assert progress[-1].phase == "done"


def test_a_live_runner_forgets_the_rows_it_remembered_once_a_rebuild_swaps_in(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore,
    database_url: str,
) -> None:  # fmt: skip
    """A rebuild repairs a damaged view; the live runner, which remembers the rows it last
    wrote, must not write its copy of the damage back over the rebuilt rows."""
    service = container.service
    execution_id = create(service)
    read_side.catch_up()
    with psycopg.connect(database_url, autocommit=True) as conn:  # damage, then remember it
        conn.execute("UPDATE board_cards SET error = 'ghost' WHERE id = %s", (execution_id,))
    read_side.start()
    lease = service.process_one(c.PickUp(execution_id, "worker-1", f"claim-{uuid4()}")).lease
    head = service.recorder.max_notification_id() or 0
    assert read_side.wait_for("board", head, timeout=10)
    error = "SELECT error FROM board_cards WHERE id = %s"
    assert scalar(database_url, error, execution_id) == "ghost"  # the runner read the damage

    rebuild(service, datastore, "board")
    assert scalar(database_url, error, execution_id) is None
    service.process_one(c.RecordToolCall(execution_id, lease, "call-1", "bash", {"command": "ls"}))
    head = service.recorder.max_notification_id() or 0
    assert read_side.wait_for("board", head, timeout=10)

    card = "SELECT coalesce(error, 'no error') || ', ' || last_tool FROM board_cards WHERE id = %s"
    assert scalar(database_url, card, execution_id) == "no error, bash"
