"""The command side on the real PostgreSQL event store, through the group-commit writer."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import psycopg
import pytest

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.errors import ExecutionNotFound, InvalidTransition, LeaseLost
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import Container
from infra.eventstore import ensure_schema, eventsourcing_env
from infra.settings import Settings
from infra.writer import GroupCommitWriter

ALICE = Actor(ActorKind.USER, "alice")


def create(writer: GroupCommitWriter, **overrides: object) -> UUID:
    fields: dict[str, object] = {
        "tenant": "default", "agent_id": "script", "worker_queue": "default",
        "prompt": "summarise the logs", "created_by": ALICE,
    }  # fmt: skip
    fields.update(overrides)
    return writer.execute(c.CreateExecution.new(**fields)).execution.id  # type: ignore[arg-type]


def stored_versions(database_url: str) -> dict[UUID, list[int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version FROM agentboard_events "
            "ORDER BY originator_id, originator_version"
        ).fetchall()
    versions: dict[UUID, list[int]] = {}
    for originator_id, version in rows:
        versions.setdefault(originator_id, []).append(version)
    return versions


def test_a_full_lifecycle_is_stored_and_replays(container: Container) -> None:
    service, writer = container.service, container.writer
    execution_id = create(writer)
    lease = writer.execute(c.PickUp(execution_id, "worker-1", "claim-1")).lease
    writer.execute(c.RecordToolCall(execution_id, lease, "call-1", "bash", {"command": "ls"}))
    writer.execute(
        c.FinishToolCall(execution_id, lease, "call-1", "success", result_summary="3 files")
    )
    done = writer.execute(c.Complete(execution_id, lease, {"answer": 42}, "all good"))

    assert done.execution.status == "completed"
    assert done.position is not None
    replayed = service.state(execution_id)
    assert replayed.status == "completed"
    assert replayed.result == {"answer": 42}
    assert [type(e).__name__ for e in service.timeline(execution_id)] == [
        "Created", "PickedUp", "ToolCalled", "ToolCallFinished", "Completed",
    ]  # fmt: skip


def test_pooled_connections_the_server_dropped_are_replaced_without_an_error(
    container: Container, database_url: str
) -> None:
    """As after a PostgreSQL restart: the pool is not pinged before each use; a dead
    connection fails once, is thrown away, and the command is retried on a fresh one."""
    service, writer = container.service, container.writer
    before = [create(writer) for _ in range(3)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
        ).fetchone()
    assert dropped is not None
    assert dropped[0] > 0

    after = [create(writer) for _ in range(3)]
    assert [service.state(execution_id).status for execution_id in before + after] == [
        "pending"
    ] * 6
    assert all(len(stored_versions(database_url)[e]) == 1 for e in before + after)


def test_many_threads_on_many_executions_lose_nothing(
    container: Container, database_url: str
) -> None:
    writer = container.writer
    ids = [create(writer, prompt=f"task {n}") for n in range(40)]
    leases = {i: writer.execute(c.PickUp(i, "worker", f"claim-{i}")).lease for i in ids}

    def report(execution_id: UUID) -> None:
        for call in range(10):
            writer.execute(
                c.RecordToolCall(execution_id, leases[execution_id], f"c{call}", "bash", {})
            )

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(report, ids))

    versions = stored_versions(database_url)
    assert all(versions[i] == list(range(1, 13)) for i in ids)
    assert container.writer.batches < container.writer.commands  # commits were shared


def test_threads_racing_on_one_execution_keep_one_unforked_history(
    container: Container, database_url: str
) -> None:
    writer = container.writer
    execution_id = create(writer)
    lease = writer.execute(c.PickUp(execution_id, "worker", "claim")).lease
    barrier = threading.Barrier(20, timeout=30)

    def report(n: int) -> None:
        barrier.wait()
        for call in range(5):
            writer.execute(c.RecordToolCall(execution_id, lease, f"t{n}-c{call}", "bash", {}))

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(report, range(20)))

    assert stored_versions(database_url)[execution_id] == list(range(1, 103))


def _write_from_another_process(database_url: str, execution_ids: list[str], tag: str) -> None:
    settings = Settings(database_url=database_url)
    service = ExecutionService(eventsourcing_env(database_url, settings, create_table=False))
    for execution_id in execution_ids:
        state = service.state(UUID(execution_id))
        for call in range(20):
            service.process_one(
                c.RecordToolCall(UUID(execution_id), state.lease, f"{tag}-{call}", "bash", {})
            )
    service.close()


def test_two_processes_on_the_same_executions_never_fork_a_version(
    container: Container, database_url: str
) -> None:
    service, writer = container.service, container.writer
    ids = [create(writer, prompt=f"shared {n}") for n in range(5)]
    for execution_id in ids:
        writer.execute(c.PickUp(execution_id, "worker", f"claim-{execution_id}"))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_write_from_another_process, args=(database_url, [str(i) for i in ids], tag)
        )
        for tag in ("p1", "p2")
    ]
    for process in processes:
        process.start()
    # ... while this process, whose cached copies go stale, writes to them too
    for call in range(20):
        for execution_id in ids:
            lease = 1
            writer.execute(c.RecordToolCall(execution_id, lease, f"p0-{call}", "bash", {}))
    for process in processes:
        process.join(60)
        assert process.exitcode == 0

    versions = stored_versions(database_url)
    for execution_id in ids:
        assert versions[execution_id] == list(range(1, 2 + 1 + 60))
        timeline = service.timeline(execution_id)
        call_ids = {e.call_id for e in timeline if type(e).__name__ == "ToolCalled"}  # type: ignore[attr-defined]
        assert len(call_ids) == 60


def test_a_repeated_idempotency_key_records_once(container: Container, database_url: str) -> None:
    writer = container.writer

    def create_with_key(_: int) -> UUID:
        return create(writer, idempotency_key="order-7")

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = set(pool.map(create_with_key, range(10)))

    assert len(ids) == 1
    assert stored_versions(database_url) == {ids.pop(): [1]}


def test_a_stale_lease_is_refused_and_records_nothing(
    container: Container, database_url: str
) -> None:
    writer = container.writer
    execution_id = create(writer, retry={"max_attempts": 3})  # type: ignore[arg-type]
    first = writer.execute(c.PickUp(execution_id, "worker-a", "claim-a")).lease
    writer.execute(c.ExpireLease(execution_id, first))  # worker-a presumed dead: requeued
    second = writer.execute(c.PickUp(execution_id, "worker-b", "claim-b")).lease
    before = stored_versions(database_url)[execution_id]

    with pytest.raises(LeaseLost):
        writer.execute(c.Complete(execution_id, first, "late result from the lost worker"))

    assert stored_versions(database_url)[execution_id] == before
    assert writer.execute(c.Complete(execution_id, second, "ok")).execution.status == "completed"


def test_bad_commands_fail_alone_in_a_shared_commit(container: Container) -> None:
    writer = container.writer
    good = [create(writer, prompt=f"good {n}") for n in range(10)]
    finished = create(writer, prompt="already done")
    lease = writer.execute(c.PickUp(finished, "w", "c")).lease
    writer.execute(c.Complete(finished, lease))
    barrier = threading.Barrier(12, timeout=30)

    def good_pickup(execution_id: UUID) -> str:
        barrier.wait()
        return writer.execute(c.PickUp(execution_id, "w", "c")).execution.status

    def bad(kind: str) -> str:
        barrier.wait()
        try:
            if kind == "transition":
                writer.execute(c.PickUp(finished, "w", "other-claim"))
            else:
                writer.execute(c.PickUp(UUID(int=7), "w", "c"))
        except (InvalidTransition, ExecutionNotFound) as error:
            return type(error).__name__
        return "accepted"

    with ThreadPoolExecutor(max_workers=12) as pool:
        good_results = [pool.submit(good_pickup, execution_id) for execution_id in good]
        bad_results = [pool.submit(bad, kind) for kind in ("transition", "unknown")]
        statuses = [result.result() for result in good_results]
        errors = [result.result() for result in bad_results]

    assert statuses == ["running"] * 10
    assert errors == ["InvalidTransition", "ExecutionNotFound"]


def test_tables_are_created_once(settings: Settings, database_url: str) -> None:
    assert ensure_schema(database_url, settings) is True
    assert ensure_schema(database_url, settings) is False
