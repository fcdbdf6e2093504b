"""Workers over NATS JetStream, measured end to end on this machine.

- Dispatch latency: created -> picked up by an idle worker (from the two events'
  timestamps, both taken on the command side), one execution at a time.
- Full lifecycles per second (create, claim, two tool calls with results, complete)
  across 4 worker processes, every event stored; printed beside raw JetStream publish and
  raw PostgreSQL insert rates measured in the same run, with the CPU each process used
  (what limits it).

Targets (issue 4): dispatch p50 < 10 ms, p99 < 50 ms; 1,000 lifecycles/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
import psycopg

from bench.write_path import _raw_executemany, _stored_state_size
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.bootstrap import bootstrap
from infra.children import LocalProjections, LocalRelay, LocalWorker
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.eventstore import ensure_schema
from infra.keys import KeyStore, Role
from infra.nats import connect
from infra.services import BackgroundServices
from infra.settings import Settings

WORKERS = 4
LIFECYCLES = 2_000
DISPATCH_SAMPLES = 200
BENCH = Actor(ActorKind.USER, "bench")
TWO_TOOLS = {"steps": [{"tool": "search", "args": {"q": "x"}}, {"tool": "read", "args": {}}]}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="agentboard-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp), fsync=True)
        nats = EmbeddedNats(Path(tmp))
        database_url, nats_url = postgres.start(), nats.start()
        try:
            asyncio.run(_run(database_url, nats_url))
        finally:
            nats.stop()
            postgres.stop()


async def _run(database_url: str, nats_url: str) -> None:
    settings = Settings(database_url=database_url, nats_url=nats_url)
    ensure_schema(database_url, settings)
    container = bootstrap(settings, database_url=database_url, nats_url=nats_url)
    services = BackgroundServices(container, relay=False)
    await services.start()
    relay = LocalRelay(database_url, nats_url)  # as `agentboard up` runs it
    await relay.start()
    try:
        latencies = await _dispatch_latency(container, nats_url)
        rate, cpu = await _lifecycles(container, relay, database_url)
    finally:
        await services.stop()
        await relay.stop()
        container.close()
    publish_rate = await _raw_jetstream_publish(nats_url)
    insert_rate = _raw_executemany(database_url, _stored_state_size(database_url))
    _report(latencies, rate, cpu, publish_rate, insert_rate)


async def _spawn_workers(container: Any, count: int, concurrency: int) -> list[LocalWorker]:
    key = KeyStore(container.database_url).create("default", Role.WORKER, "bench")
    workers = [LocalWorker(container.nats_url, key, "default", concurrency) for _ in range(count)]
    for worker in workers:
        await worker.start()
    return workers


async def _stop(workers: list[LocalWorker]) -> None:
    await asyncio.gather(*(worker.stop() for worker in workers))


async def _create(container: Any, parameters: dict[str, Any]) -> None:
    """As the API creates: through the group-commit writer."""
    await container.writer.send(
        c.CreateExecution(
            uuid4(), tenant="bench", agent_id="script", worker_queue="default",
            prompt="bench", created_by=BENCH, parameters=parameters,
        )
    )  # fmt: skip


async def _dispatch_latency(container: Any, nats_url: str) -> list[float]:
    workers = await _spawn_workers(container, 1, 4)
    try:
        await asyncio.sleep(2.0)  # the worker connects and long-polls
        for _ in range(DISPATCH_SAMPLES):
            await _create(container, {"steps": []})
            await asyncio.sleep(0.02)
        await _wait_for_completed(container.database_url, DISPATCH_SAMPLES)
    finally:
        await _stop(workers)
    return _pickup_latencies(container.database_url)


def _pickup_latencies(database_url: str) -> list[float]:
    service_rows = _rows(
        database_url,
        "SELECT originator_id, originator_version, topic, state FROM agentboard_events "
        "WHERE originator_version <= 2 ORDER BY originator_id, originator_version",
    )
    stamps: dict[Any, dict[int, float]] = {}
    for originator_id, version, _topic, state in service_rows:
        timestamp = json.loads(bytes(state))["timestamp"]["_data_"]
        stamps.setdefault(originator_id, {})[version] = _seconds(timestamp)
    return [(versions[2] - versions[1]) * 1000 for versions in stamps.values() if 2 in versions]


async def _lifecycles(
    container: Any, relay: LocalRelay, database_url: str
) -> tuple[float, dict[str, float]]:
    workers = await _spawn_workers(container, WORKERS, 64)
    projections = LocalProjections(database_url)  # as `agentboard up` runs them
    await projections.start()
    processes = [psutil.Process(os.getpid())] + [
        psutil.Process(w.process.pid) for w in workers if w.process
    ]
    assert projections.process is not None
    assert relay.process is not None
    relayer = psutil.Process(relay.process.pid)
    processes.append(psutil.Process(projections.process.pid))
    try:
        await asyncio.sleep(2.0)
        before = _completed(database_url)
        for process in [*processes, relayer]:
            process.cpu_percent()
        started = time.perf_counter()
        pending = [_create(container, TWO_TOOLS) for _ in range(LIFECYCLES)]
        for chunk in range(0, len(pending), 200):
            await asyncio.gather(*pending[chunk : chunk + 200])
        await _wait_for_completed(database_url, before + LIFECYCLES)
        head = container.service.recorder.max_notification_id() or 0
        await asyncio.to_thread(container.views.wait_for, "board", head, 300)  # caught up
        elapsed = time.perf_counter() - started
        cpu = {
            "api (writer, command service, lease monitor)": processes[0].cpu_percent(),
            "relay": relayer.cpu_percent(),
            f"{WORKERS} workers together": sum(p.cpu_percent() for p in processes[1:-1]),
            "projections": processes[-1].cpu_percent(),
        }
    finally:
        await _stop(workers)
        await projections.stop()
    return LIFECYCLES / elapsed, cpu


async def _raw_jetstream_publish(nats_url: str, count: int = 20_000) -> float:
    nc = await connect(nats_url, "bench")
    js = nc.jetstream(publish_async_max_pending=10_000)
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw"])
    payload = b"x" * 300
    started = time.perf_counter()
    acks = [await js.publish_async("bench.raw", payload) for _ in range(count)]
    await asyncio.gather(*acks)
    rate = count / (time.perf_counter() - started)
    await nc.close()
    return rate


def _completed(database_url: str) -> int:
    [(count,)] = _rows(
        database_url,
        "SELECT count(*) FROM agentboard_events WHERE topic = 'agentboard.execution.Completed.v1'",
    )
    return int(count)


async def _wait_for_completed(database_url: str, count: int, timeout: float = 300) -> None:
    """Poll in a thread: this loop is the API's (command service, relay), and a blocking
    count on it would slow the very thing measured."""
    deadline = time.monotonic() + timeout
    while (done := await asyncio.to_thread(_completed, database_url)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {count} completed")
        await asyncio.sleep(0.1)


def _rows(database_url: str, sql: str) -> list[Any]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _report(
    latencies: list[float],
    rate: float,
    cpu: dict[str, float],
    publish_rate: float,
    insert_rate: float,
) -> None:
    print("workers — embedded PostgreSQL (fsync on) and NATS on this machine")
    print(f"  dispatch latency created -> picked up ({len(latencies)} samples, idle worker)")
    print(f"    p50 {_percentile(latencies, 50):7.1f} ms   target < 10 ms")
    print(f"    p99 {_percentile(latencies, 99):7.1f} ms   target < 50 ms")
    print(f"  full lifecycles ({LIFECYCLES}, {WORKERS} worker processes, 7 events each, "
          "until completed and on the board)")  # fmt: skip
    print(f"    {rate:10,.0f} lifecycles/s  target >= 1,000  ({rate * 7:,.0f} events/s stored)")
    print(f"  raw JetStream publish (baseline)  {publish_rate:10,.0f} msgs/s")
    print(f"  raw PostgreSQL executemany        {insert_rate:10,.0f} rows/s")
    print(f"  lifecycle ratio to raw publish    {rate * 8 / publish_rate:10.2f}x (8 msgs each)")
    print("  CPU during the lifecycle run (100% = one core of 2):")
    for name, percent in cpu.items():
        print(f"    {name:40} {percent:6.0f}%")


if __name__ == "__main__":
    main()
