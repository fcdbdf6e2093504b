"""Audit benchmark: export and verify rates and memory over 1,000,000 stored events.

    python -m bench.audit [--events 1000000] [--runs 3]

Starts its own embedded PostgreSQL (fsync off) in a temporary directory, stores the
events directly (8-event lifecycles of 1,000 executions at a time, step by step), builds
the audit chain (a rebuild, as an operator would), then prints, as medians of ``--runs``:

1. the raw read rate of the same rows (a server-side cursor over the events table);
2. export events/s (to a file) and the export process's peak RSS, beside it; also
   through the HTTP API (``GET /v1/audit/export``, curl writing the file);
3. verify events/s and its peak RSS, beside the raw read rate of the file's lines.

Export and verify each run in a process of their own, so their peak RSS is theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import uvicorn

from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind, ToolOutcome
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.eventstore import EVENTS_TABLE, ensure_schema, eventsourcing_env
from infra.nats import connect, ensure_topology
from infra.processes import free_port
from infra.settings import Settings
from projections.engine.rebuild import rebuild
from projections.engine.registry import datastore_for
from projections.engine.supervisor import create_view_tables

KEY = bytes(range(32))
BLOCK = 1000
COPY_EVENTS = (
    f"COPY {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
    "FROM STDIN (FORMAT BINARY)"
)
RAW_READ = (
    f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} "
    "ORDER BY notification_id"
)
CHILD = """
import json, re, sys, time
from pathlib import Path
from projections.audit.export import ExportQuery, export_to
from projections.audit.verify import verify
def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) / 1024
task, url, path = sys.argv[1:4]
key = bytes(range(32))
started = time.perf_counter()
if task == "export":
    with open(path, "wb") as out:
        lines = export_to(url, ExportQuery("default"), key, out)["lines"] - 1
elif task == "verify":
    verdict = verify(Path(path), key)
    assert verdict.ok, verdict.problems[:3]
    lines = verdict.events
else:
    with open(path, "rb") as stream:
        lines = sum(1 for _ in stream) - 1
print(json.dumps({"events": lines, "seconds": time.perf_counter() - started, "peak_mb": peak_mb()}))
"""


def template_lifecycle() -> list[tuple[str, bytes]]:
    """One execution's eight stored events (topic, state), made by the real domain."""
    service = ExecutionService({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    execution_id = uuid4()
    actor = Actor(ActorKind.USER, "key:bench")
    service.process([
        c.CreateExecution(execution_id, tenant="default", agent_id="agent-0",
                          worker_queue="default", prompt="summarise the quarterly report",
                          created_by=actor, parameters={"pages": 12}),
        c.PickUp(execution_id, "worker-1", "claim-1"),
        c.RecordToolCall(execution_id, 1, "c1", "read", {"path": "/reports/q3.pdf"}),
        c.FinishToolCall(execution_id, 1, "c1", ToolOutcome.SUCCESS, "12 pages", 0.4),
        c.RecordToolCall(execution_id, 1, "c2", "search", {"q": "revenue"}),
        c.FinishToolCall(execution_id, 1, "c2", ToolOutcome.SUCCESS, "3 hits", 0.2),
        c.AppendOutput(execution_id, 1, "Revenue rose 4% on the quarter.", 1),
        c.Complete(execution_id, 1, {"summary": "revenue up 4%"}, "checked by hand"),
    ])  # fmt: skip
    stored = service.recorder.select_notifications(1, 10)
    return [(n.topic, n.state) for n in stored]


def load_events(url: str, events: int) -> float:
    """``events`` stored events; returns the seconds it took."""
    template = template_lifecycle()
    stamps = [json.loads(state)["timestamp"]["_data_"].encode() for _, state in template]
    started = time.perf_counter()
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    executions = events // len(template)
    with psycopg.connect(url) as conn, conn.cursor().copy(COPY_EVENTS) as copy:
        copy.set_types(["uuid", "int8", "text", "bytea"])
        for block in range(0, executions, BLOCK):
            ids: list[UUID] = [uuid4() for _ in range(min(BLOCK, executions - block))]
            for version, ((topic, state), stamp) in enumerate(zip(template, stamps, strict=True)):
                for n, execution_id in enumerate(ids):
                    moment += tick
                    body = state.replace(stamp, moment.isoformat().encode())
                    if version == 0:
                        body = body.replace(b'"agent-0"', b'"agent-%d"' % ((block + n) % 50))
                    copy.write_row((execution_id, version + 1, topic, body))
    return time.perf_counter() - started


def build_chain(url: str) -> tuple[int, float]:
    """The chain, built as ``agentboard projections rebuild audit_chain`` builds it."""
    settings = Settings(database_url=url)
    service = ExecutionService(eventsourcing_env(url, settings, create_table=False))
    datastore = datastore_for(url, pool_size=3)
    try:
        create_view_tables(datastore)
        report = rebuild(service, datastore, "audit_chain")
        return report.position, report.seconds
    finally:
        datastore.close()
        service.close()


def raw_read_rate(url: str) -> float:
    started, rows = time.perf_counter(), 0
    with psycopg.connect(url) as conn, conn.cursor(name="raw", binary=True) as cursor:
        cursor.itersize = 2000
        cursor.execute(RAW_READ)
        while batch := cursor.fetchmany(2000):
            rows += len(batch)
    return rows / (time.perf_counter() - started)


def child(task: str, url: str, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, task, url, str(path)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout)
    return result


def http_export_rates(
    url: str, nats_url: str, data_dir: Path, path: Path, runs: int
) -> list[float]:
    """The same export through ``GET /v1/audit/export``: the app served in this process as
    ``agentboard up`` serves it, curl in its own process writing the file."""
    from api.http.app import create_app  # noqa: PLC0415
    from infra.bootstrap import bootstrap  # noqa: PLC0415
    from infra.keys import KeyStore, Role  # noqa: PLC0415

    async def streams() -> None:  # what the background services would declare
        nc = await connect(nats_url, "bench audit")
        await ensure_topology(nc.jetstream())
        await nc.drain()

    asyncio.run(streams())
    settings = Settings(database_url=url, data_dir=data_dir)
    (data_dir / "audit.key").write_text(KEY.hex())
    container = bootstrap(settings, database_url=url, nats_url=nats_url)
    key = KeyStore(url).create("default", Role.VIEWER, "bench")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(container), port=port, log_level="warning", lifespan="on",
        loop="uvloop", http="httptools",
    ))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        rates = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                ["curl", "-sSf", "-o", str(path), "-H", f"Authorization: Bearer {key}",
                 f"http://127.0.0.1:{port}/v1/audit/export"], check=True,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            with path.open("rb") as stream:
                stream.seek(-4096, 2)
                manifest = json.loads(stream.read().splitlines()[-1])["manifest"]
            rates.append(manifest["events"]["count"] / seconds)
        return rates
    finally:
        server.should_exit = True
        thread.join(30)
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentboard-bench-audit-") as work:
        root = Path(work)
        postgres, nats = EmbeddedPostgres(root, fsync=False), EmbeddedNats(root)
        url, nats_url = postgres.start(), nats.start()
        try:
            ensure_schema(url, Settings(database_url=url))
            loaded = load_events(url, args.events)
            position, chained = build_chain(url)
            print(
                f"{position:,} events stored in {loaded:.0f}s; audit chain rebuilt at "
                f"{position / chained:,.0f} events/s ({chained:.0f}s)",
                flush=True,
            )
            measure(url, nats_url, root, args.runs)
        finally:
            nats.stop()
            postgres.stop()


def measure(url: str, nats_url: str, root: Path, runs: int) -> None:
    path = root / "export.ndjson"
    raw, exports, verifies, lines = [], [], [], []
    for _ in range(runs):
        raw.append(raw_read_rate(url))
        exports.append(child("export", url, path))
        verifies.append(child("verify", url, path))
        lines.append(child("lines", url, path))
    http = http_export_rates(url, nats_url, root, root / "http.ndjson", runs)
    raw_rate = statistics.median(raw)

    def rate(results: list[dict[str, float]]) -> float:
        return statistics.median(r["events"] / r["seconds"] for r in results)

    export_rate, verify_rate, line_rate = rate(exports), rate(verifies), rate(lines)
    size = path.stat().st_size / 1e6
    events = int(exports[0]["events"])
    print(f"\nmedians of {runs} runs over {events:,} events ({size:,.0f} MB of NDJSON)")
    print(f"1. raw read of the same rows   {raw_rate:>10,.0f} events/s  (baseline)")
    print(
        f"2. export to a file            {export_rate:>10,.0f} events/s  "
        f"({export_rate / raw_rate:.2f} x raw)   peak RSS "
        f"{max(r['peak_mb'] for r in exports):.0f} MB   (target >= 100,000/s, < 200 MB)"
    )
    print(
        f"   export over HTTP            {statistics.median(http):>10,.0f} events/s  "
        f"({statistics.median(http) / raw_rate:.2f} x raw)"
    )
    print(
        f"3. verify the file             {verify_rate:>10,.0f} events/s  "
        f"({verify_rate / raw_rate:.2f} x raw, {verify_rate / line_rate:.2f} x reading its "
        f"lines at {line_rate:,.0f}/s)   peak RSS {max(r['peak_mb'] for r in verifies):.0f} MB"
        "   (target >= 200,000/s)"
    )


if __name__ == "__main__":
    main()
