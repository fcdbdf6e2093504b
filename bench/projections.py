"""Read-side benchmark: rebuild rate, live lag, board and list query latency.

    python -m bench.projections [--executions 27500] [--cards 1000000]
        [--only-rebuilds | --only-queries]

Starts its own embedded PostgreSQL in a temporary directory with fsync off (figures
are for the read side, not for durable writes), and prints each figure beside a
baseline measured in the same run:

1. rebuild events/s over >= 200,000 stored events: each view alone, every view at once
   (a process each, and all in one process), beside the raw read rate of the same rows
   through ``select_notifications`` (same page size), medians of ``--rebuild-runs``
   (``bench.rebuilds``);
2. live lag p50/p99 (commit of an event -> its view's commit) while ~2,000 events/s
   arrive through group commits;
3. board and filtered-list query p50/p99 with 1,000,000 cards in the board view
   (the cards beyond those built from the log are loaded directly with SQL).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
from cachetools import LRUCache

from bench.rebuilds import measure_rebuilds
from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, ToolOutcome
from infra.embedded import EmbeddedPostgres
from infra.eventstore import ensure_schema, eventsourcing_env
from infra.settings import Settings
from projections.engine.registry import ProjectionOptions, datastore_for
from projections.engine.supervisor import ProjectionSupervisor
from projections.views.filters import ExecutionFilter

ALICE = Actor(ActorKind.USER, "alice")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def lifecycle(execution_id: UUID, step: int, n: int) -> c.Command | None:
    """Eight events per execution: created, picked up, two tool calls, output, done."""
    steps: list[Callable[[], c.Command]] = [
        lambda: c.CreateExecution(
            execution_id,
            tenant="default",
            agent_id=f"agent-{n % 50}",
            worker_queue=f"q{n % 5}",
            prompt=f"task {n}",
            created_by=ALICE,
            priority=n % 10,
            labels={"env": ("prod", "dev")[n % 2]},
        ),
        lambda: c.PickUp(execution_id, f"worker-{n % 20}", f"claim-{n}"),
        lambda: c.RecordToolCall(execution_id, 1, "c1", "bash", {"command": "ls"}),
        lambda: c.FinishToolCall(execution_id, 1, "c1", ToolOutcome.SUCCESS, "ok", 0.2),
        lambda: c.RecordToolCall(execution_id, 1, "c2", "http", {"url": "https://x"}),
        lambda: c.FinishToolCall(execution_id, 1, "c2", ToolOutcome.SUCCESS, "200", 0.1),
        lambda: c.AppendOutput(execution_id, 1, "done thinking", 1),
        lambda: c.Complete(execution_id, 1, {"answer": n}, "fine"),
    ]
    return steps[step]() if step < len(steps) else None


def load_log(service: ExecutionService, executions: int) -> float:
    """Write ``executions`` full lifecycles, 1,000 commands per group commit, step by
    step across all of them: every execution is in flight at once, as on a busy board
    whose executions run for minutes, so a page of 5,000 events touches 5,000 different
    executions (the hard case for a projection: nothing folds within a page)."""
    started = time.perf_counter()
    ids = [uuid4() for _ in range(executions)]
    for step in range(8):
        for start in range(0, executions, 1000):
            batch = [
                lifecycle(ids[n], step, n) for n in range(start, min(start + 1000, executions))
            ]
            service.process([command for command in batch if command is not None])
    return time.perf_counter() - started


def measure_live_lag(service: ExecutionService, url: str, rate: int, seconds: float) -> None:
    applied: dict[str, list[tuple[int, float]]] = {}
    lock = threading.Lock()

    def on_page(view: str, position: int) -> None:
        with lock:
            applied.setdefault(view, []).append((position, time.perf_counter()))

    supervisor = ProjectionSupervisor(
        service, datastore_for(url), database_url=url, options=ProjectionOptions(), on_page=on_page
    ).start()
    time.sleep(0.5)
    committed: list[tuple[int, float]] = []
    batch, interval = max(rate // 100, 1), 0.01  # 100 group commits per second
    ids: list[tuple[UUID, int]] = []
    started = time.perf_counter()
    next_at, n = started, 10**6
    while time.perf_counter() - started < seconds:
        commands: list[c.Command] = []
        while len(commands) < batch:
            if not ids or random.random() < 0.15:
                ids.append((uuid4(), 0))
                n += 1
            index = random.randrange(len(ids))
            execution_id, step = ids[index]
            command = lifecycle(execution_id, step, n)
            if command is None:
                ids.pop(index)
                continue
            ids[index] = (execution_id, step + 1)
            commands.append(command)
        results = service.process(commands)
        stored = [r.position or 0 for r in results if not isinstance(r, BaseException)]
        if any(stored):
            committed.append((max(stored), time.perf_counter()))
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    elapsed = time.perf_counter() - started
    head = service.recorder.max_notification_id() or 0
    for view in supervisor.names:
        supervisor.wait_for(view, head, timeout=30)
    supervisor.stop()
    events = committed[-1][0] - committed[0][0] if committed else 0
    print(
        f"\n2. live lag at {events / elapsed:,.0f} events/s for {elapsed:.0f}s, "
        "from a group commit returning to its view committing"
    )
    for view, pages in applied.items():
        reached = [position for position, _ in pages]
        lags = []
        for position, at in committed:
            index = bisect.bisect_left(reached, position)
            if index < len(pages):
                lags.append(max(pages[index][1] - at, 0.0) * 1000)
        print(
            f"   {view:<17} p50 {percentile(lags, 0.5):6.1f} ms   "
            f"p99 {percentile(lags, 0.99):6.1f} ms   max {max(lags):6.1f} ms   "
            f"({len(pages)} pages)"
        )


STATUS_SHARES = (
    ["pending"] * 5 + ["running"] * 8 + ["requires_input"] * 2 + ["blocked"] * 1
    + ["completed"] * 70 + ["failed"] * 10 + ["cancelled"] * 4
)  # fmt: skip
LOAD_CARDS = """
INSERT INTO board_cards (id, tenant, type, agent_id, team_id, worker_queue, prompt, parameters,
    priority, labels, status, attempt, worker_id, created_by, created_at, updated_at, deadline,
    not_before, result, error, failure_reason, completion_notes, question, cancel_requested,
    last_tool, last_tool_call_id, last_tool_outcome, status_entered_at, version, position)
SELECT gen_random_uuid(), CASE WHEN r.t < 0.1 THEN 'other' ELSE 'default' END, 'agent',
    'agent-' || floor(r.a * 200), CASE WHEN r.m < 0.3 THEN 'team-' || floor(r.m * 60) END,
    'q' || floor(r.q * 20), 'synthetic task ' || g, '{"n": 1}'::jsonb, floor(r.p * 10),
    jsonb_build_object('env', (ARRAY['prod', 'dev', 'test', 'stage', 'qa'])[1 + floor(r.e * 5)]),
    (%(statuses)s::text[])[1 + floor(r.s * 100)], 1, NULL,
    jsonb_build_object('kind', 'user', 'id', 'user-' || floor(r.c * 1000)),
    now() - make_interval(secs => g * 2.5), now(),
    CASE WHEN r.d < 0.2 THEN now() + make_interval(hours => floor(r.d * 240)::int - 24) END,
    NULL, NULL, NULL, NULL, NULL, NULL, false, 'bash', 'c1', 'success',
    now() - make_interval(secs => g), 8, 0
FROM generate_series(1, %(count)s) AS g,
    LATERAL (SELECT g AS n, random() AS t, random() AS a, random() AS m, random() AS q,
             random() AS p, random() AS e, random() AS s, random() AS d, random() AS c) AS r
"""
RECOUNT = """
DELETE FROM board_columns;
INSERT INTO board_columns SELECT tenant, status, count(*) FROM board_cards GROUP BY 1, 2;
"""


def measure_queries(service: ExecutionService, url: str, cards: int, runs: int) -> None:
    datastore = datastore_for(url, pool_size=2)
    supervisor = ProjectionSupervisor(service, datastore, database_url=url)
    supervisor.create_tables()
    supervisor.catch_up()  # the cards built from the log (already, unless --only-queries)
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM board_cards").fetchone()
        missing = cards - (have[0] if have else 0)
        started = time.perf_counter()
        conn.execute(LOAD_CARDS, {"statuses": STATUS_SHARES, "count": missing})
        conn.execute(RECOUNT)
        conn.execute("VACUUM ANALYZE board_cards")
        loaded = time.perf_counter() - started
    board = supervisor.read_models.board
    print(
        f"\n3. queries with {cards:,} cards in the board view ({missing:,} loaded in {loaded:.0f}s)"
    )
    agents = [f"agent-{n}" for n in range(200)]
    users = [f"user-{n}" for n in range(1000)]
    cases: dict[str, Callable[[], object]] = {
        "board (7 columns x 20)": lambda: board.board("default"),
        "list, no filter": lambda: board.list("default"),
        "list status+agent": lambda: board.list(
            "default",
            ExecutionFilter(status=("running",), agent=random.choice(agents)),
        ),
        "list queue": lambda: board.list("default", ExecutionFilter(queue="q7")),
        "list label": lambda: board.list("default", ExecutionFilter(label="env=stage")),
        "list overdue": lambda: board.list("default", ExecutionFilter(overdue=True)),
        "list created_by": lambda: board.list(
            "default", ExecutionFilter(created_by=f"user:{random.choice(users)}")
        ),
        "list older_than 20d": lambda: board.list(
            "default", ExecutionFilter(older_than=timedelta(days=20))
        ),
        "list q, common text": lambda: board.list("default", ExecutionFilter(q="task 12")),
        "list q, rare text": lambda: board.list("default", ExecutionFilter(q="task 999999")),
        "board filtered by agent": lambda: board.board(
            "default",
            ExecutionFilter(agent=random.choice(agents)),
        ),
    }
    page = board.list("default", ExecutionFilter(status=("completed",)), limit=50)
    for _ in range(200):  # deep into a column, by keyset
        page = board.list(
            "default", ExecutionFilter(status=("completed",)), cursor=page.next_cursor
        )
    cursor = page.next_cursor
    cases["list page 200 of completed"] = lambda: board.list(
        "default", ExecutionFilter(status=("completed",)), cursor=cursor
    )
    scans = ("list q, common text", "list q, rare text")  # no index: fewer runs
    for label, query in cases.items():
        for _ in range(20 if label not in scans else 2):
            query()  # warm the connection's prepared statements and the cache
        timings = []
        for _ in range(runs if label not in scans else 20):
            started = time.perf_counter()
            query()
            timings.append((time.perf_counter() - started) * 1000)
        print(
            f"   {label:<28} p50 {statistics.median(timings):6.2f} ms   "
            f"p99 {percentile(timings, 0.99):6.2f} ms"
        )
    datastore.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=27_500, help="8 events each")
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2000, help="live events per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rebuild-runs", type=int, default=3)
    parser.add_argument("--only-rebuilds", action="store_true")
    parser.add_argument("--only-queries", action="store_true")
    args = parser.parse_args()
    print("agentboard read-side benchmark: embedded PostgreSQL, fsync OFF (not a durability test)")
    with tempfile.TemporaryDirectory(prefix="agentboard-bench-") as directory:
        postgres = EmbeddedPostgres(Path(directory), fsync=False)
        url = postgres.start()
        try:
            settings = Settings(database_url=url)
            ensure_schema(url, settings)
            env = eventsourcing_env(url, settings, create_table=False)
            writer = ExecutionService(env, cache=LRUCache(args.executions + 10_000))
            seconds = load_log(writer, args.executions)
            stored = writer.recorder.max_notification_id() or 0
            print(f"stored {stored:,} events in {seconds:.0f}s ({stored / seconds:,.0f} events/s)")
            writer.close()  # what follows runs as a fresh process would: an empty cache
            del writer
            gc.collect()
            service = ExecutionService(env)
            if not args.only_queries:
                measure_rebuilds(service, url, args.rebuild_runs)
            if not args.only_rebuilds and not args.only_queries:
                measure_live_lag(service, url, args.rate, args.seconds)
            if not args.only_rebuilds:
                measure_queries(service, url, args.cards, args.runs)
            service.close()
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
