"""Shared by the audit tests: a store with some history, its chain, and exports of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID, uuid4

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, ToolOutcome
from projections.audit.export import ExportQuery, export_to
from projections.engine.registry import datastore_for
from projections.engine.supervisor import ProjectionSupervisor

ALICE = Actor(ActorKind.USER, "key:alice")
KEY = bytes(range(32))


def lifecycle(execution_id: UUID, n: int, tenant: str = "default") -> list[c.Command]:
    """Six events: created, picked up, a tool call and its end, output, completed with notes."""
    return [
        c.CreateExecution(
            execution_id, tenant=tenant, agent_id=f"agent-{n % 3}", worker_queue="default",
            prompt=f"task {n}: résumé ✓", created_by=ALICE, parameters={"n": n, "pi": 3.14},
        ),
        c.PickUp(execution_id, f"worker-{n % 2}", f"claim-{n}"),
        c.RecordToolCall(execution_id, 1, "c1", "bash", {"command": "ls\n-la"}),
        c.FinishToolCall(execution_id, 1, "c1", ToolOutcome.SUCCESS, "ok", 0.25),
        c.AppendOutput(execution_id, 1, 'line "one"\nline two', 1),
        c.Complete(execution_id, 1, {"answer": n}, f"notes {n}"),
    ]  # fmt: skip


def write_history(
    service: ExecutionService, executions: int, tenant: str = "default"
) -> list[UUID]:
    """``executions`` lifecycles, interleaved step by step (as on a busy board)."""
    ids = [uuid4() for _ in range(executions)]
    plans = [lifecycle(i, n, tenant) for n, i in enumerate(ids)]
    for step in range(len(plans[0])):
        batch = [plan[step] for plan in plans]
        for start in range(0, len(batch), 1000):
            for outcome in service.process(batch[start : start + 1000]):
                if isinstance(outcome, BaseException):
                    raise outcome
    return ids


@contextmanager
def chained(service: ExecutionService, database_url: str) -> Iterator[ProjectionSupervisor]:
    """The audit chain (and the board), caught up with the log; ``catch_up()`` again after
    more writes."""
    datastore = datastore_for(database_url, pool_size=2)
    supervisor = ProjectionSupervisor(
        service, datastore, database_url=database_url, names=["audit_chain", "board"]
    )
    supervisor.create_tables()
    supervisor.catch_up()
    try:
        yield supervisor
    finally:
        datastore.close()


def export(database_url: str, path: Path, key: bytes = KEY, **filters: object) -> Path:
    query = ExportQuery(tenant=str(filters.pop("tenant", "default")), **filters)  # type: ignore[arg-type]
    with path.open("wb") as out:
        export_to(database_url, query, key, out)
    return path
