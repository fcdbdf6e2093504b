"""Command throughput through the real write path (group commit), beside two baselines
measured in the same run on equally sized rows:

- raw psycopg ``executemany`` in batches into a table shaped like the events table;
- eventsourcing's one-save-per-command (the same service, each command its own transaction).

200 executions report concurrently (asyncio callers, as the API and workers are).
Targets (issue 2): >= 10,000 events/s, >= 15x one-save-per-command, >= 0.2x raw executemany,
peak RSS of the writer's process < 300 MB.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID, uuid4

import psycopg

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.commands import RecordToolCall
from domain.execution.values import Actor, ActorKind
from infra.embedded import EmbeddedPostgres
from infra.eventstore import ensure_schema, eventsourcing_env
from infra.settings import Settings
from infra.writer import GroupCommitWriter

EXECUTIONS = 200
COMMANDS_PER_EXECUTION = 100  # 20,000 events through group commit
BASELINE_COMMANDS = 3_000  # one-save-per-command is slow; a smaller sample suffices
RUNS = 3
ALICE = Actor(ActorKind.USER, "bench")


def _prepare(database_url: str, settings: Settings) -> tuple[ExecutionService, list[UUID]]:
    service = ExecutionService(eventsourcing_env(database_url, settings, create_table=False))
    ids = []
    for n in range(EXECUTIONS):
        execution_id = service.process_one(c.CreateExecution.new(
            tenant="bench", agent_id="script", worker_queue="default",
            prompt=f"benchmark execution {n}", created_by=ALICE,
        )).execution.id  # fmt: skip
        service.process_one(c.PickUp(execution_id, "worker", f"claim-{n}"))
        ids.append(execution_id)
    return service, ids


def _command(execution_id: UUID, run: int, n: int) -> RecordToolCall:
    return RecordToolCall(
        execution_id, 1, f"r{run}-c{n}", "bash", {"command": "ls -la /tmp", "timeout": 30}
    )


async def _group_commit(writer: GroupCommitWriter, ids: list[UUID], run: int) -> float:
    async def one_execution(execution_id: UUID) -> None:
        for n in range(COMMANDS_PER_EXECUTION):
            await writer.send(_command(execution_id, run, n))

    started = time.perf_counter()
    await asyncio.gather(*(one_execution(i) for i in ids))
    return EXECUTIONS * COMMANDS_PER_EXECUTION / (time.perf_counter() - started)


async def _one_save_per_command(service: ExecutionService, ids: list[UUID], run: int) -> float:
    per_execution = BASELINE_COMMANDS // EXECUTIONS

    async def one_execution(execution_id: UUID) -> None:
        for n in range(per_execution):
            await asyncio.to_thread(service.process_one, _command(execution_id, 100 + run, n))

    started = time.perf_counter()
    await asyncio.gather(*(one_execution(i) for i in ids))
    return per_execution * EXECUTIONS / (time.perf_counter() - started)


def _raw_executemany(database_url: str, state: bytes, batch: int = 1000) -> float:
    rows = EXECUTIONS * COMMANDS_PER_EXECUTION
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_events (originator_id uuid, originator_version "
            "bigint, topic text, state bytea, notification_id bigserial, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute("TRUNCATE raw_events")
        topic = "agentboard.execution.ToolCalled.v1"
        ids = [uuid4() for _ in range(EXECUTIONS)]
        started = time.perf_counter()
        version = 0
        while version * EXECUTIONS < rows:
            with conn.transaction(), conn.cursor() as cursor:
                values = [
                    (i, version + v, topic, state)
                    for v in range(1, batch // EXECUTIONS + 1)
                    for i in ids
                ]
                cursor.executemany(
                    "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
                    "VALUES (%s, %s, %s, %s)",
                    values,
                )
            version += batch // EXECUTIONS
        return rows / (time.perf_counter() - started)


def _stored_state_size(database_url: str) -> bytes:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT state FROM agentboard_events WHERE topic LIKE '%ToolCalled%' LIMIT 1"
        ).fetchone()
    return bytes(row[0]) if row else b"{}" * 100


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="agentboard-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp), fsync=True)
        database_url = postgres.start()
        try:
            _run(database_url)
        finally:
            postgres.stop()


def _run(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    ensure_schema(database_url, settings)
    service, ids = _prepare(database_url, settings)
    writer = GroupCommitWriter(service, max_batch=settings.writer_max_batch).start()
    grouped = [asyncio.run(_group_commit(writer, ids, run)) for run in range(RUNS)]
    batches, commands = writer.batches, writer.commands
    writer.stop()
    single = [asyncio.run(_one_save_per_command(service, ids, run)) for run in range(RUNS)]
    state = _stored_state_size(database_url)
    raw = [_raw_executemany(database_url, state) for _ in range(RUNS)]
    service.close()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    g, s, r = statistics.median(grouped), statistics.median(single), statistics.median(raw)
    print("write path — PostgreSQL embedded, fsync on (durable); medians of", RUNS, "runs")
    print(f"  {EXECUTIONS} executions reporting concurrently; event state {len(state)} bytes")
    print(f"  group commit (agentboard)       {g:>10,.0f} events/s   target >= 10,000")
    print(f"  one save per command (baseline) {s:>10,.0f} events/s")
    print(f"  raw executemany (baseline)      {r:>10,.0f} events/s")
    print(f"  ratio to one-save-per-command   {g / s:>10.1f}x        target >= 15x")
    print(f"  ratio to raw executemany        {g / r:>10.2f}x        target >= 0.2x")
    print(f"  mean commands per commit        {commands / max(batches, 1):>10.1f}")
    print(f"  peak RSS of the writer process  {peak_rss_mb:>10.0f} MB        target < 300 MB")


if __name__ == "__main__":
    main()
