"""Several `projections run` processes on one store (DESIGN §11): each view has one active
runner; when it goes, another process takes the view over within 10 s and runs it from
its tracking position, nothing lost and nothing twice."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore

from infra.bootstrap import Container, event_store
from infra.settings import Settings
from projections.engine.election import VIEW_LOCKS, view_lock
from projections.engine.rebuild import rebuild
from projections.engine.registry import datastore_for, view_names
from projections.engine.supervisor import ProjectionSupervisor
from tests.integration.test_projection_support import (
    FAST,
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    run_to_completion,
    snapshot,
)

pytestmark = pytest.mark.integration

TAKEOVER_SECONDS = 10.0


@pytest.fixture
def two_processes(
    container: Container, settings: Settings, database_url: str
) -> Iterator[list[ProjectionSupervisor]]:
    """Two supervisors as two `projections run` processes would have them: a store, a
    pool and an election connection each."""
    supervisors = []
    for _ in range(2):
        service = event_store(settings, database_url, cache_size=10)
        supervisors.append(ProjectionSupervisor(
            service, datastore_for(database_url, pool_size=2), database_url=database_url,
            options=FAST,
        ))  # fmt: skip
    yield supervisors
    for supervisor in supervisors:
        if supervisor._threads:
            supervisor.stop()
        supervisor.service.close()


def lock_holders(database_url: str) -> dict[str, int]:
    """How many sessions hold each view's lock."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT objid::bigint, count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND classid = %s::oid AND objsubid = 2 GROUP BY 1",
            (VIEW_LOCKS,),
        ).fetchall()
    by_lock = {int(objid): count for objid, count in rows}
    return {name: by_lock.get(view_lock(name) % 2**32, 0) for name in view_names()}


def active_in(supervisor: ProjectionSupervisor) -> set[str]:
    return {status.name for status in supervisor.status() if status.state == "running"}


def until(check: object, timeout: float) -> float:
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_each_view_has_one_active_runner_and_another_takes_over_when_it_stops(
    container: Container,
    two_processes: list[ProjectionSupervisor],
    database_url: str,
    datastore: PostgresDatastore,
) -> None:
    first, second = two_processes
    service = container.service
    for n in range(5):
        run_to_completion(service, create(service, prompt=f"before {n}"))
    first.start()
    until(lambda: active_in(first) == set(view_names()), 10)
    second.start()
    time.sleep(2 * FAST.poll_interval + 1.0)  # the second has tried for the locks

    assert lock_holders(database_url) == dict.fromkeys(view_names(), 1)
    assert {s.state for s in second.status()} == {"standby"}
    head = service.recorder.max_notification_id() or 0
    assert all(first.wait_for(name, head, timeout=10) for name in view_names())

    first.stop()
    took = until(lambda: active_in(second) == set(view_names()), TAKEOVER_SECONDS)
    for n in range(5):
        run_to_completion(service, create(service, prompt=f"after {n}"))
    head = service.recorder.max_notification_id() or 0

    assert all(second.wait_for(name, head, timeout=10) for name in view_names())
    assert took < TAKEOVER_SECONDS
    built_live = snapshot(datastore)
    for name in view_names():
        rebuild(service, datastore, name)
    assert snapshot(datastore) == built_live  # nothing lost, nothing twice


def test_a_process_that_loses_its_database_session_stops_running_its_views(
    container: Container, two_processes: list[ProjectionSupervisor], database_url: str
) -> None:
    """Its session ends (a network cut, a PostgreSQL restart), its locks with it: its
    runners stop, and each view is run again by one process (the one that took the lock
    first: either), from where it was."""
    first, second = two_processes
    first.start()
    until(lambda: active_in(first) == set(view_names()), 10)
    second.start()

    with psycopg.connect(database_url, autocommit=True) as conn:  # its election session goes
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s::oid AND objsubid = 2",
            (VIEW_LOCKS,),
        )

    def one_runner_each() -> bool:
        ours, theirs = active_in(first), active_in(second)
        held = lock_holders(database_url) == dict.fromkeys(view_names(), 1)
        return held and not ours & theirs and ours | theirs == set(view_names())

    took = until(one_runner_each, TAKEOVER_SECONDS)
    create(container.service, prompt="after the session was lost")
    head = container.service.recorder.max_notification_id() or 0
    running = {name: first if name in active_in(first) else second for name in view_names()}

    assert all(running[name].wait_for(name, head, timeout=10) for name in view_names())
    assert took < TAKEOVER_SECONDS
