"""The HTTP API under load from other processes on loopback, against `agentboard up`.

- GET /v1/board and GET /v1/executions?status=running with 100,000 executions stored,
  one caller at a time: p50/p99 (target p99 < 20 ms each).
- POST /v1/executions: the most a closed loop of 32 connections gets, beside the same for
  GET /healthz (a trivial Litestar endpoint: the framework's ceiling here); then an open loop
  at 2,000/s for 10 s (target: sustained, p99 < 50 ms).
- SSE: 100 clients on /v1/board/stream in 4 processes; executions created at 1,000/s by a
  process writing to the store (the HTTP create path is measured above on its own);
  latency from the event's timestamp (taken before its commit) to each client's receipt
  (target p99 < 50 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from bench.http_load import (
    Connection,
    Result,
    closed_loop,
    open_loop,
    request_bytes,
    sequential,
)
from domain.application import ExecutionService
from domain.execution import commands as c
from domain.execution.values import Actor, ActorKind
from infra.eventstore import eventsourcing_env
from infra.keys import KeyStore, Role
from infra.nats import WORKERS_BUCKET, connect
from infra.processes import free_port
from infra.settings import Settings

EXECUTIONS = 100_000
RUNNING = 5_000
SSE_CLIENTS, SSE_PROCESSES, SSE_RATE, SSE_SECONDS = 100, 4, 1_000, 10
BENCH = Actor(ActorKind.USER, "bench")
IDLE_QUEUE = "bench"  # no worker serves it: creations stay one event each


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="agentboard-bench-api-") as tmp:
        port = free_port()
        env = {**os.environ, "AGENTBOARD_DATA_DIR": f"{tmp}/data",
               "AGENTBOARD_HTTP_PORT": str(port)}  # fmt: skip
        env.pop("AGENTBOARD_DATABASE_URL", None)
        env.pop("AGENTBOARD_NATS_URL", None)
        agentboard = Path(sys.executable).parent / "agentboard"
        with open(f"{tmp}/up.log", "wb") as log:
            stack = subprocess.Popen([str(agentboard), "up"], env=env, stdout=log, stderr=log)
        try:
            _wait_up(port, stack, Path(tmp))
            info = json.loads(Path(f"{tmp}/data/stack.json").read_text())
            asyncio.run(_run(port, info["database_url"], info["nats_url"]))
        finally:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                stack.kill()  # its embedded servers die with it
                stack.wait()


def _wait_up(port: int, stack: subprocess.Popen[bytes], tmp: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            sys.exit(f"agentboard up exited:\n{(tmp / 'up.log').read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    sys.exit("agentboard up did not answer")


async def _run(port: int, database_url: str, nats_url: str) -> None:
    key = KeyStore(database_url).create("default", Role.OPERATOR, "bench")
    presence = asyncio.create_task(_present(nats_url))  # keeps "running" ones held
    started = time.perf_counter()
    await asyncio.to_thread(_seed, database_url)
    await _caught_up(port)
    print(f"seeded {EXECUTIONS:,} executions ({RUNNING:,} running); views and relay caught up "
          f"in {time.perf_counter() - started:.1f}s")  # fmt: skip

    print("\n-- reads, one caller at a time (target p99 < 20 ms) --")
    for name, path in (("GET /v1/board", "/v1/board"),
                       ("GET /v1/executions?status=running",
                        "/v1/executions?status=running")):  # fmt: skip
        raw = request_bytes("GET", path, key)
        await sequential(port, raw, 50)
        print((await sequential(port, raw, 1_000)).line(name))

    print("\n-- writes beside the framework's ceiling (closed loop, 32 connections, 5 s) --")
    trivial = await closed_loop(port, lambda n: request_bytes("GET", "/healthz"), 32, 5)
    creates = await closed_loop(port, _create(key), 32, 5, ok=201)
    print(trivial.line("GET /healthz (trivial)"))
    print(creates.line("POST /v1/executions"))
    print(f"POST / trivial: {creates.rate / trivial.rate:.2f}x")
    print("\n-- POST /v1/executions, open loop at 2,000/s for 10 s (target p99 < 50 ms) --")
    paced = await open_loop(port, _create(key), 2_000, 10, ok=201)
    print(paced.line("POST /v1/executions @2,000/s"))

    print(f"\n-- SSE: {SSE_CLIENTS} clients, {SSE_RATE:,} events/s (target p99 < 50 ms) --")
    await _sse(port, key, database_url)
    presence.cancel()


def _create(key: str) -> Any:
    def make(n: int) -> bytes:
        body = {"agent_id": "script", "worker_queue": IDLE_QUEUE, "prompt": f"load {n}",
                "parameters": {"steps": []}}  # fmt: skip
        return request_bytes("POST", "/v1/executions", key, body)

    return make


def _seed(database_url: str) -> None:
    service = ExecutionService(eventsourcing_env(database_url, Settings(), create_table=False))
    ids = [uuid4() for _ in range(EXECUTIONS)]
    for start in range(0, EXECUTIONS, 1_000):
        service.process([
            c.CreateExecution(
                execution_id, tenant="default", agent_id=f"agent-{n % 7}",
                worker_queue=IDLE_QUEUE, prompt=f"seeded execution {n}", created_by=BENCH,
                priority=n % 3, labels={"batch": str(n // 10_000)},
            )
            for n, execution_id in enumerate(ids[start:start + 1_000], start)
        ])  # fmt: skip
    for start in range(0, RUNNING, 1_000):
        service.process([
            c.PickUp(execution_id, "bench-worker", f"claim-{n}")
            for n, execution_id in enumerate(ids[start:start + 1_000], start)
        ])  # fmt: skip


async def _present(nats_url: str) -> None:
    """A worker that says it is alive, so the lease monitor leaves its executions be."""
    nc = await connect(nats_url, "bench presence")
    bucket = await nc.jetstream().key_value(WORKERS_BUCKET)
    try:
        while True:
            await bucket.put("bench-worker", json.dumps({"executions": {}}).encode())
            await asyncio.sleep(3)
    finally:
        await nc.close()


async def _caught_up(port: int) -> None:
    async with httpx.AsyncClient() as client:
        while True:
            ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).json()
            lags = ready["checks"].get("projections", {}).get("lag", {})
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            relay = [
                line for line in metrics.splitlines() if line.startswith("agentboard_relay_lag")
            ]
            published = bool(relay) and float(relay[0].split()[-1]) == 0
            if lags and max(lags.values()) == 0 and published:
                return
            await asyncio.sleep(0.5)


async def _sse(port: int, key: str, database_url: str) -> None:
    ctx = mp.get_context("spawn")
    results: Any = ctx.Queue()
    per = SSE_CLIENTS // SSE_PROCESSES
    seconds = SSE_SECONDS + 8  # connect, load, drain
    procs = [ctx.Process(target=sse_clients, args=(port, key, per, seconds, results))
             for _ in range(SSE_PROCESSES)]  # fmt: skip
    for proc in procs:
        proc.start()
    for _ in procs:
        results.get(timeout=60)  # each says when its clients are connected
    # The events come straight from the store, as from several API processes: the create
    # path over HTTP is measured above and tops out below this rate on one process.
    source = ctx.Process(target=store_load, args=(database_url, SSE_RATE, SSE_SECONDS, results))
    source.start()
    latencies: list[float] = []
    received = 0
    stored = 0
    for _ in range(len(procs) + 1):
        got = await asyncio.to_thread(results.get, timeout=120)
        if isinstance(got, int):
            stored = got
            continue
        latencies += got
        received += len(got)
    for proc in [*procs, source]:
        proc.join(30)
    print(f"stored {stored:,} creates in {SSE_SECONDS}s ({stored / SSE_SECONDS:,.0f}/s) "
          "while streaming")  # fmt: skip
    expected = stored * SSE_CLIENTS
    fanout = Result(received, 0, SSE_SECONDS, latencies)
    print(f"delivered {received:,} of {expected:,} messages "
          f"({received / max(expected, 1):.1%}); commit -> client "
          f"p50 {fanout.p50:.1f} ms, p99 {fanout.p(0.99):.1f} ms")  # fmt: skip


def store_load(database_url: str, rate: int, seconds: float, out: Any) -> None:
    """Creates at ``rate`` a second, written to the store in a group commit per tick."""
    service = ExecutionService(eventsourcing_env(database_url, Settings(), create_table=False))
    started, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            service.process([
                c.CreateExecution(uuid4(), tenant="default", agent_id="sse",
                                  worker_queue=IDLE_QUEUE, prompt=f"sse {sent + n}",
                                  created_by=BENCH)
                for n in range(due)
            ])  # fmt: skip
            sent += due
        time.sleep(0.005)
    service.close()
    out.put(sent)


def sse_clients(port: int, key: str, count: int, seconds: float, results: Any) -> None:
    results.put(asyncio.run(_sse_clients(port, key, count, seconds, results)))


async def _sse_clients(port: int, key: str, count: int, seconds: float, out: Any) -> list[float]:
    latencies: list[float] = []
    conns = []
    for _ in range(count):
        conn = await Connection.open(port)
        conn.writer.write(request_bytes("GET", "/v1/board/stream", key))
        while (await conn.reader.readline()) not in (b"\r\n", b""):
            pass
        conns.append(conn)
    out.put("ready")
    deadline = time.monotonic() + seconds

    async def read(conn: Connection) -> None:
        # Whole chunks, scanned for each message's card timestamp: a client reading line
        # by line costs more CPU than the server that feeds it, on the same two cores.
        marker = b'"updated_at":"'
        pending = b""
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(conn.reader.read(1 << 16), remaining)
            except TimeoutError:
                return
            if not chunk:
                return
            now = time.time()
            pending += chunk
            end = pending.rfind(b"\n\n") + 2  # complete messages only
            if end < 2:
                continue
            at = pending.find(marker, 0, end)
            while at != -1:
                at += len(marker)
                stamp = datetime.fromisoformat(pending[at : pending.find(b'"', at)].decode())
                latencies.append((now - stamp.timestamp()) * 1000)
                at = pending.find(marker, at, end)
            pending = pending[end:]

    await asyncio.gather(*(read(conn) for conn in conns))
    for conn in conns:
        conn.close()
    return latencies


if __name__ == "__main__":
    main()
